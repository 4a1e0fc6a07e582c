"""Signals: the one feature function (and its DuckDB twin), the heuristic, blending, a day's signals."""
