"""The batch driver through Dagster: an ordered multi-day run, doing between days what the daemon would.

For each trading day D of a range, strictly in date order:

1. the retrain schedules' ticks after the previous day's loop and before D's (`loop_rules.retrain_ticks`),
   each evaluated as the real schedule at its tick time, its run executed;
2. D's partition of `daily_loop_job` (the daily schedule's tick, 17:30 New York);
3. D's `blend_weight_job` (18:30);
4. the three retrain sensors, each with its cursor carried from its previous tick as the daemon
   stores it. All three decide on the same state: a sensor's runs are created in the instance
   (queued, with their run key and training key tags, as the daemon submits them) before the next
   sensor evaluates, so the cross-sensor merge of `automation._evaluate_retrain_sensor` sees them,
   and they execute after the last sensor.

Before the first day, the first model is trained as of the day before the range through
`market_retrain_job` (a scheduled, market-labeled retrain), as the engine does. Every rule is the
schedules', the sensors' and the assets' own: this module only orders them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

# No public API executes a run created beforehand (as the daemon's run queue does): these two do.
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.execution.api import execute_run

from feedback_loop.defs.automation import retrain_run_request
from feedback_loop.lib import rules
from feedback_loop.lib.frames import MARKET_TICKER
from feedback_loop.lib.loop.engine import trading_days_between
from feedback_loop.lib.vocab import RetrainTrigger

#: The tags the Dagster daemon puts on the runs it launches (dagster/_core/storage/tags.py).
RUN_KEY_TAG = "dagster/run_key"
SCHEDULE_NAME_TAG = "dagster/schedule_name"
SENSOR_NAME_TAG = "dagster/sensor_name"
INGEST_ASSETS = [dg.AssetKey(k) for k in ("politicians", "disclosures", "market_prices")]
QUIET_LOGGERS = {"console": {"config": {"log_level": "WARNING"}}}


class BatchRunFailed(RuntimeError):
    """A run of the batch failed: the days after it are not run."""


@dataclass
class BatchRun:
    """What the batch launched: run ids per job, and each sensor's tick answers."""

    days: list[pd.Timestamp] = field(default_factory=list)
    runs: list[tuple[str, str]] = field(default_factory=list)  # (job name, run key or partition)
    skipped: list[tuple[pd.Timestamp, str, str]] = field(default_factory=list)  # (day, origin, reason)
    cursors: dict[str, str | None] = field(default_factory=dict)


def trading_days(definitions: dg.Definitions, start, end) -> pd.DatetimeIndex:
    """The range's trading days: the dates the configured price source has a SPY price for."""
    prices = definitions.resources["price_source"].get_source().load_prices([MARKET_TICKER])
    return trading_days_between(prices, start, end)


class _Driver:
    def __init__(self, definitions: dg.Definitions, instance: dg.DagsterInstance, quiet: bool):
        self.definitions = definitions
        self.instance = instance
        self.loggers = QUIET_LOGGERS if quiet else {}
        self.result = BatchRun()
        self.repository = definitions.get_repository_def()
        self.retrain_schedules = {
            schedule.cron_schedule: schedule
            for schedule in (definitions.resolve_schedule_def(n) for n in
                             ("market_retrain_schedule", "outcome_retrain_schedule"))
        }

    def _config(self, run_config) -> dict:
        config = dict(run_config or {})
        return {**config, "loggers": self.loggers} if self.loggers else config

    def _check(self, success: bool, job_name: str, key: str) -> None:
        if not success:
            raise BatchRunFailed(f"{job_name} ({key}) failed; see the run in the Dagster UI")
        self.result.runs.append((job_name, key))

    def _execute(self, job_name: str, request: dg.RunRequest, origin_tags: dict[str, str]) -> None:
        job = self.definitions.resolve_job_def(job_name)
        tags = {**request.tags, **origin_tags, **({RUN_KEY_TAG: request.run_key} if request.run_key else {})}
        outcome = job.execute_in_process(run_config=self._config(request.run_config), instance=self.instance,
                                         partition_key=request.partition_key, tags=tags, raise_on_error=False)
        self._check(outcome.success, job_name, request.run_key or request.partition_key)

    def _already_launched(self, origin_tag: str, origin: str, run_key: str | None) -> bool:
        """The daemon launches a run key once per schedule/sensor."""
        return bool(run_key) and bool(self.instance.get_run_records(
            dg.RunsFilter(tags={origin_tag: origin, RUN_KEY_TAG: run_key}), limit=1))

    def _tick(self, schedule: dg.ScheduleDefinition, when) -> None:
        context = dg.build_schedule_context(instance=self.instance, scheduled_execution_time=when,
                                            repository_def=self.repository, resources=self.definitions.resources)
        data = schedule.evaluate_tick(context)
        for request in data.run_requests or []:
            if self._already_launched(SCHEDULE_NAME_TAG, schedule.name, request.run_key):
                self.result.skipped.append((pd.Timestamp(when.date()), schedule.name,
                                            f"run key {request.run_key} already launched"))
                continue
            self._execute(schedule.job_name, request, {SCHEDULE_NAME_TAG: schedule.name})

    def first_model(self, start: pd.Timestamp) -> None:
        """The first champion: a scheduled market-labeled retrain as of the day before the range, on
        the data ingested as of that day."""
        as_of = start - pd.Timedelta(days=1)
        daily = self.definitions.resolve_job_def("daily_loop_job")
        ingest = daily.execute_in_process(instance=self.instance, partition_key=f"{as_of:%Y-%m-%d}",
                                          asset_selection=INGEST_ASSETS, raise_on_error=False,
                                          run_config=self._config(None))
        self._check(ingest.success, "daily_loop_job[ingest]", f"{as_of:%Y-%m-%d}")
        request = retrain_run_request(rules.RetrainRequest(RetrainTrigger.SCHEDULED, as_of, use_outcomes=False))
        self._execute("market_retrain_job", request, {})

    def day(self, day: pd.Timestamp, previous: pd.Timestamp | None) -> None:
        if previous is not None:
            for when, cron in rules.retrain_ticks(previous, day):
                self._tick(self.retrain_schedules[cron], when)
        self._tick(self.definitions.resolve_schedule_def("daily_loop_schedule"), rules.loop_run_time(day))
        self._tick(self.definitions.resolve_schedule_def("blend_weight_schedule"),
                   rules.run_time(rules.BLEND_WEIGHT_CRON, day))
        self._sensors(day)
        self.result.days.append(day)

    def _sensors(self, day: pd.Timestamp) -> None:
        queued: list[tuple[dg.JobDefinition, object]] = []
        for rule in rules.SENSOR_TRIGGERS:
            sensor = self.definitions.resolve_sensor_def(f"{rule}_sensor")
            context = dg.build_sensor_context(instance=self.instance, cursor=self.result.cursors.get(sensor.name),
                                              resources=self.definitions.resources, sensor_name=sensor.name,
                                              repository_def=self.repository)
            data = sensor.evaluate_tick(context)
            self.result.cursors[sensor.name] = data.cursor
            if data.skip_message:
                self.result.skipped.append((day, sensor.name, data.skip_message))
            for request in data.run_requests or []:
                if self._already_launched(SENSOR_NAME_TAG, sensor.name, request.run_key):
                    continue
                # In process, as execute_in_process runs it: the job with the in-process executor.
                job = self.definitions.resolve_job_def(sensor.job_name).as_ephemeral_job(resource_defs={},
                                                                                         input_values={})
                run = self.instance.create_run_for_job(
                    job_def=job, run_config=self._config(request.run_config),
                    tags={**job.run_tags, **request.tags, SENSOR_NAME_TAG: sensor.name, RUN_KEY_TAG: request.run_key})
                queued.append((job, run))
        for job, run in queued:
            outcome = execute_run(InMemoryJob(job), run, self.instance)
            self._check(outcome.success, job.name, run.tags[RUN_KEY_TAG])


def run_days(definitions: dg.Definitions, instance: dg.DagsterInstance, start, end, *,
             quiet: bool = True, progress: Callable[[pd.Timestamp], None] | None = None) -> BatchRun:
    """Step the trading days of [start, end] through Dagster, one after the other (see the module doc)."""
    days = trading_days(definitions, start, end)
    if not len(days):
        raise ValueError(f"no trading days (SPY prices) between {pd.Timestamp(start).date()} and "
                         f"{pd.Timestamp(end).date()}")
    driver = _Driver(definitions, instance, quiet)
    driver.first_model(days[0])
    previous = None
    for day in days:
        driver.day(day, previous)
        if progress:
            progress(day)
        previous = day
    return driver.result
