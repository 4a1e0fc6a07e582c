"""The loop's daily partitions: one per as-of date (trading days do work; other days record none)."""

import os

import dagster as dg

LOOP_START_DATE = os.environ.get("FEEDBACK_LOOP_PARTITIONS_START", "2019-01-01")
#: end_offset=1: today's partition exists during the day, so the after-close schedules can run it.
daily_partitions = dg.DailyPartitionsDefinition(start_date=LOOP_START_DATE, timezone="America/New_York",
                                                end_offset=1)
