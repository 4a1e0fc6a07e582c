"""Monitoring: feature drift and the self-tuning blend weight."""
