"""The loop's daily partitions: one per as-of date (trading days do work; other days record none).

They start where the configured data starts: FEEDBACK_LOOP_PARTITIONS_START (YYYY-MM-DD) when set,
else the first day of the synthetic data when the source is synthetic, else the first day of
the real disclosures this project ships tests for (the House/Senate stock-watcher files, 2012).
"""

import os

import dagster as dg

from feedback_loop.defs.resources import synthetic_config

#: The first trade date in the public House/Senate stock-watcher files.
FIRST_PUBLIC_DISCLOSURE_DATE = "2012-01-01"


def partitions_start() -> str:
    if configured := os.environ.get("FEEDBACK_LOOP_PARTITIONS_START"):
        return configured
    if os.environ.get("FEEDBACK_LOOP_SOURCE", "synthetic") == "synthetic":
        config = synthetic_config(int(os.environ.get("FEEDBACK_LOOP_SYNTHETIC_SEED", "7")),
                                  os.environ.get("FEEDBACK_LOOP_SYNTHETIC_SCALE", ""))
        return f"{config.start:%Y-%m-%d}"
    return FIRST_PUBLIC_DISCLOSURE_DATE


#: end_offset=1: today's partition exists during the day, so the after-close schedules can run it.
daily_partitions = dg.DailyPartitionsDefinition(start_date=partitions_start(), timezone="America/New_York",
                                                end_offset=1)
