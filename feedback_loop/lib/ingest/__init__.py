"""Ingest: parsing the published files, sources, synthetic data, and the ingest tables."""
