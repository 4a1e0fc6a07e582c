"""Automation: schedules, sensors, gates that hold across automated runs, one retrain at a time.

Schedules and sensors are the project's own definitions, evaluated with Dagster's test contexts
against a real Dagster instance and a real Postgres holding the loop's state.
"""

import datetime as dt
import json
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from dagster._utils.schedules import cron_string_iterator

from feedback_loop.definitions import defs as project_defs
from feedback_loop.defs.automation import DAILY_LOOP_TAG
from feedback_loop.defs.resources import (
    DatabaseResource,
)
from feedback_loop.lib import policy
from feedback_loop.lib.models import registry
from feedback_loop.lib.monitoring.drift import DriftReport, write_drift_report
from feedback_loop.lib.portfolio import loop_store
from feedback_loop.lib.portfolio.loop_store import EQUITY_COLUMNS
from feedback_loop.lib.portfolio.paper import PortfolioState
from feedback_loop.lib.store import db
from feedback_loop.lib.vocab import DriftRecommendation
from feedback_loop_tests.harness import definitions_for
from feedback_loop_tests.processes import project_code_server

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NEW_YORK = ZoneInfo("America/New_York")
TRAINING_OPS = ("market_labeled_set", "outcome_labeled_set", "blended_training_set", "challenger_model",
                "promotion_decision")


@pytest.fixture(scope="module")
def loaded() -> dg.Definitions:
    return project_defs()


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _ny(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NEW_YORK)


def _schedule_context(loaded: dg.Definitions, scheduled_execution_time: dt.datetime):
    """What the daemon passes a schedule: its tick time and the repository (to resolve partition keys)."""
    return dg.build_schedule_context(repository_def=loaded.get_repository_def(), resources=loaded.resources,
                                     scheduled_execution_time=scheduled_execution_time)


def _training_config(run_request: dg.RunRequest) -> dict:
    """The TrainingRunConfig of a retrain request; every training asset must get the same one."""
    ops = run_request.run_config["ops"]
    assert set(ops) == set(TRAINING_OPS)
    configs = [ops[name]["config"] for name in TRAINING_OPS]
    assert all(c == configs[0] for c in configs), configs
    return configs[0]


# ------------------------------------------------------------------ schedules
SCHEDULES = {
    # name: (job, cron, a tick as the daemon computes it, what that tick must request)
    "daily_loop_schedule": ("daily_loop_job", "30 17 * * 1-5", _ny(2024, 3, 1, 17, 30),
                            {"partition": "2024-03-01"}),
    "blend_weight_schedule": ("blend_weight_job", "30 18 * * 1-5", _ny(2024, 3, 1, 18, 30),
                              {"partition": "2024-03-01"}),
    "market_retrain_schedule": ("market_retrain_job", "0 2 * * 0", _ny(2024, 3, 3, 2, 0),
                                {"as_of": "2024-03-02", "use_outcomes": False, "trigger": "scheduled"}),
    "outcome_retrain_schedule": ("outcome_retrain_job", "0 3 1 * *", _ny(2024, 3, 1, 3, 0),
                                 {"as_of": "2024-02-29", "use_outcomes": True, "trigger": "scheduled"}),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_definition(loaded, name):
    job_name, cron, _, _ = SCHEDULES[name]
    schedule = loaded.get_repository_def().get_schedule_def(name)
    assert schedule.job_name == job_name
    assert schedule.cron_schedule == cron
    assert schedule.execution_timezone == "America/New_York"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_run_request_for_a_tick(loaded, name):
    job_name, _, tick, expected = SCHEDULES[name]
    schedule = loaded.get_repository_def().get_schedule_def(name)
    data = schedule.evaluate_tick(_schedule_context(loaded, tick))
    assert len(data.run_requests) == 1, data.skip_message
    request = data.run_requests[0]
    job = loaded.resolve_job_def(job_name)
    if "partition" in expected:
        assert request.partition_key == expected["partition"]
        assert request.partition_key in job.partitions_def.get_partition_keys(current_time=tick)
    else:
        assert request.partition_key is None
        assert _training_config(request) == {**expected, "num_classes": 5}
        assert dg.validate_run_config(job, request.run_config)
    assert request.run_key, "a run key makes a re-evaluated tick idempotent"


def test_daily_schedule_skips_a_day_the_source_has_no_price_for(loaded):
    """The demo's prices end in 2024: a weekday tick after that skips with the reason instead of
    launching a run whose blocking SPY-freshness check would fail."""
    last = loaded.resources["price_source"].last_market_day()
    tick = _ny(last.year, last.month, last.day, 17, 30) + dt.timedelta(days=7)
    while tick.weekday() >= 5:
        tick += dt.timedelta(days=1)
    data = loaded.get_repository_def().get_schedule_def("daily_loop_schedule").evaluate_tick(
        _schedule_context(loaded, tick))
    assert not data.run_requests
    assert f"its last is {last.date()}" in data.skip_message


def test_schedule_ticks_fall_on_new_york_times(loaded):
    """The daemon's own tick iterator over the schedules' cron and timezone, across the March DST switch."""
    def ticks(name, start, n):
        schedule = loaded.get_repository_def().get_schedule_def(name)
        iterator = cron_string_iterator(start.timestamp(), schedule.cron_schedule, schedule.execution_timezone)
        return [next(iterator) for _ in range(n)]

    # Friday after the loop ran: next runs are Monday and Tuesday 17:30 New York (EDT from March 10).
    daily = ticks("daily_loop_schedule", _ny(2024, 3, 8, 18, 0), 2)
    assert [t.astimezone(NEW_YORK).replace(tzinfo=None) for t in daily] == [
        dt.datetime(2024, 3, 11, 17, 30), dt.datetime(2024, 3, 12, 17, 30)]
    assert daily[0].astimezone(dt.UTC).hour == 21  # 17:30 EDT, not 17:30 UTC
    # Sunday 02:00 does not exist on 2024-03-10 (clocks jump to 03:00): the tick still falls that Sunday,
    # and its retrain is as of the Saturday before.
    weekly = ticks("market_retrain_schedule", _ny(2024, 3, 4), 2)
    assert [t.astimezone(NEW_YORK).strftime("%a %Y-%m-%d") for t in weekly] == ["Sun 2024-03-10", "Sun 2024-03-17"]
    assert weekly[1].astimezone(NEW_YORK).strftime("%H:%M") == "02:00"
    retrain = loaded.get_repository_def().get_schedule_def("market_retrain_schedule").evaluate_tick(
        _schedule_context(loaded, weekly[0])).run_requests[0]
    assert _training_config(retrain)["as_of"] == "2024-03-09"
    monthly = ticks("outcome_retrain_schedule", _ny(2024, 1, 15), 2)
    assert [t.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M") for t in monthly] == [
        "2024-02-01 03:00", "2024-03-01 03:00"]


# ------------------------------------------------------------------ database state for the sensors
def _register_and_promote(engine: sa.Engine, model_id: str, trained_as_of: dt.date) -> None:
    with engine.begin() as conn:
        registry.register_model(
            conn, model_id=model_id, version=f"v-{model_id}", trained_as_of=trained_as_of, trigger="scheduled",
            num_classes=5, config={}, feature_names=["a"], metrics={"accuracy": 0.5}, model_card={},
            artifact_path=None, artifact_sha256=None, training_start=trained_as_of - dt.timedelta(days=365),
            training_end=trained_as_of,
        )
    registry.promote(engine, model_id, as_of=trained_as_of, trigger="manual", reason="test")


def _write_outcomes(engine: sa.Engine, rows: list[tuple], prefix: str) -> None:
    """One signal → position → outcome per (exit_date or None for still open, outcome, ticker suffix)."""
    signals, positions, outcomes = [], [], []
    for exit_date, outcome, suffix in rows:
        ticker = f"{prefix}{suffix}"
        entry = (exit_date or dt.date(2024, 6, 1)) - dt.timedelta(days=10)
        as_of = entry - dt.timedelta(days=1)
        signal_id = f"{as_of}:{ticker}"
        signals.append({
            "signal_id": signal_id, "as_of": as_of, "ticker": ticker, "signal_type": "buy", "confidence": 0.8,
            "heuristic_signal_type": "buy", "heuristic_confidence": 0.8, "ml_signal_type": None,
            "ml_confidence": None, "blend_weight": 0.2, "blend_case": "heuristic_only", "ml_enhanced": False,
            "model_id": None, "model_version": None, "serving_path": "no_champion", "status": "filled",
            "features": {},
        })
        closed = exit_date is not None
        positions.append({
            "position_id": signal_id, "signal_id": signal_id, "ticker": ticker,
            "status": "closed" if closed else "open", "trading_mode": "paper", "quantity": 10.0,
            "entry_date": entry, "entry_price": 100.0, "stop_loss_price": 90.0, "highest_close": 105.0,
            "confidence": 0.8, "exit_date": exit_date, "exit_price": 101.0 if closed else None,
            "exit_reason": "timeout" if closed else None, "broker_order_id": None,
        })
        outcomes.append({
            "position_id": signal_id, "signal_id": signal_id, "ticker": ticker, "signal_type": "buy",
            "confidence": 0.8, "entry_date": entry, "exit_date": exit_date, "entry_price": 100.0,
            "exit_price": 101.0 if closed else None, "return_pct": 1.0 if outcome == "win" else -1.0,
            "spy_return_pct": 0.0, "excess_return_pct": 1.0 if outcome == "win" else -1.0,
            "holding_days": 10, "outcome": outcome, "exit_reason": "timeout" if closed else None, "features": {},
            "model_id": None, "model_version": None, "ml_enhanced": False,
        })
    state = PortfolioState(positions=pd.DataFrame(positions), cash_usd=100_000.0,
                           equity=pd.DataFrame(columns=EQUITY_COLUMNS))
    with engine.begin() as conn:
        loop_store.write_signals(conn, pd.DataFrame(signals))
        loop_store.write_portfolio(conn, state)
        loop_store.write_outcomes(conn, pd.DataFrame(outcomes))


def _loop_day(engine: sa.Engine, day: dt.date) -> None:
    """The daily loop has run through `day` (the sensors decide after the loop's latest day)."""
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO portfolio_equity (date, equity_usd, cash_usd, invested_usd, open_positions)"
                             " VALUES (:d, 1e5, 1e5, 0, 0) ON CONFLICT DO NOTHING"), {"d": day})


def _closed(first_exit: dt.date, n: int, outcome: str = "loss", start: int = 0) -> list[tuple]:
    return [(first_exit + dt.timedelta(days=i % 20), outcome, start + i) for i in range(n)]


def _drift_report(recommendation: DriftRecommendation) -> DriftReport:
    return DriftReport(recommendation=recommendation, reason=f"test: {recommendation.value}", ks={},
                       drifting_features=[] if recommendation == DriftRecommendation.NO_ACTION else ["x"],
                       psi=0.3, rolling_accuracy=None, validation_accuracy=None, live_rows=50,
                       reference_rows=500, resolved_outcomes=0)


class SensorTicks:
    """Evaluates one sensor tick after tick, carrying the cursor as the daemon does."""

    def __init__(self, sensor, instance, db_url):
        self.sensor, self.instance, self.db_url, self.cursor = sensor, instance, db_url, None

    def tick(self):
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                          resources={"database": DatabaseResource(url=self.db_url)})
        data = self.sensor.evaluate_tick(context)
        if data.cursor is not None:
            self.cursor = data.cursor
        return data


def _single_request(data, loaded, job_name) -> dg.RunRequest:
    assert len(data.run_requests) == 1, data.skip_message
    request = data.run_requests[0]
    assert dg.validate_run_config(loaded.resolve_job_def(job_name), request.run_config)
    return request


# ------------------------------------------------------------------ sensors
def test_sensors_start_running_and_target_the_retrain_jobs(loaded):
    targets = {name: loaded.get_repository_def().get_sensor_def(name) for name in
               ("new_outcomes_sensor", "feature_drift_sensor", "degradation_sensor", "run_failure_sensor")}
    assert all(s.default_status == dg.DefaultSensorStatus.RUNNING for s in targets.values())
    assert targets["new_outcomes_sensor"].job_name == "outcome_retrain_job"
    assert targets["degradation_sensor"].job_name == "outcome_retrain_job"
    assert targets["feature_drift_sensor"].job_name == "market_retrain_job"


def test_new_outcomes_sensor_fires_once_per_champion_at_twenty_outcomes(loaded, instance, db_url, engine):
    sensor = SensorTicks(loaded.get_repository_def().get_sensor_def("new_outcomes_sensor"), instance, db_url)
    assert "not run yet" in sensor.tick().skip_message
    _loop_day(engine, dt.date(2024, 3, 1))
    assert "no model in service" in sensor.tick().skip_message

    trained = dt.date(2024, 3, 1)
    _register_and_promote(engine, "model-a", trained)
    _loop_day(engine, dt.date(2024, 3, 22))
    # Outcomes closed on or before the training date, and open positions, never count.
    _write_outcomes(engine, _closed(trained - dt.timedelta(days=25), 25, "win", start=100), "OLD")
    _write_outcomes(engine, [(None, "open", i) for i in range(5)], "OPEN")
    _write_outcomes(engine, _closed(trained + dt.timedelta(days=1), 19), "NEW")
    data = sensor.tick()
    assert not data.run_requests and "19 closed outcomes" in data.skip_message
    assert sensor.cursor is None

    _write_outcomes(engine, [(dt.date(2024, 3, 25), "win", 19)], "NEW")  # the 20th
    assert not sensor.tick().run_requests  # closed after the loop's latest day: not known yet
    _loop_day(engine, dt.date(2024, 3, 25))
    request = _single_request(sensor.tick(), loaded, "outcome_retrain_job")
    assert _training_config(request) == {"as_of": "2024-03-25", "use_outcomes": True, "trigger": "new_outcomes",
                                         "num_classes": 5}
    assert json.loads(sensor.cursor) == {"model_id": "model-a"}

    # Once: the next evaluation with the advanced cursor skips, even as outcomes keep closing.
    assert not sensor.tick().run_requests
    _write_outcomes(engine, _closed(dt.date(2024, 3, 26), 10, start=20), "NEW")
    assert not sensor.tick().run_requests

    # A new champion resets the count: nothing until 20 more close after its training date.
    _register_and_promote(engine, "model-b", dt.date(2024, 4, 15))
    _loop_day(engine, dt.date(2024, 4, 15))
    data = sensor.tick()
    assert not data.run_requests and "0 closed outcomes" in data.skip_message
    _write_outcomes(engine, _closed(dt.date(2024, 4, 16), 19), "B")
    assert not sensor.tick().run_requests
    _write_outcomes(engine, [(dt.date(2024, 5, 20), "loss", 19)], "B")
    _loop_day(engine, dt.date(2024, 5, 20))
    request = _single_request(sensor.tick(), loaded, "outcome_retrain_job")
    assert _training_config(request)["as_of"] == "2024-05-20"
    assert request.run_key == "retrain-2024-05-20-outcome"
    assert not sensor.tick().run_requests


def test_feature_drift_sensor_fires_once_per_champion(loaded, instance, db_url, engine):
    sensor = SensorTicks(loaded.get_repository_def().get_sensor_def("feature_drift_sensor"), instance, db_url)
    assert not sensor.tick().run_requests  # no report yet

    _register_and_promote(engine, "model-a", dt.date(2024, 3, 1))
    _loop_day(engine, dt.date(2024, 3, 5))
    with engine.begin() as conn:
        write_drift_report(conn, _drift_report(DriftRecommendation.NO_ACTION), "2024-03-05", "model-a")
    data = sensor.tick()
    assert not data.run_requests and "no_action" in data.skip_message

    with engine.begin() as conn:
        write_drift_report(conn, _drift_report(DriftRecommendation.SCHEDULE_RETRAIN), "2024-03-06", "model-a")
    assert not sensor.tick().run_requests  # a report of a later day than the loop's latest is not acted on yet
    _loop_day(engine, dt.date(2024, 3, 6))
    request = _single_request(sensor.tick(), loaded, "market_retrain_job")
    assert _training_config(request) == {"as_of": "2024-03-06", "use_outcomes": False, "trigger": "feature_drift",
                                         "num_classes": 5}
    assert not sensor.tick().run_requests  # once
    with engine.begin() as conn:  # still drifting days later, even an emergency: same champion, no new retrain
        write_drift_report(conn, _drift_report(DriftRecommendation.EMERGENCY_RETRAIN), "2024-03-07", "model-a")
    _loop_day(engine, dt.date(2024, 3, 7))
    assert not sensor.tick().run_requests

    _register_and_promote(engine, "model-b", dt.date(2024, 3, 8))
    with engine.begin() as conn:
        write_drift_report(conn, _drift_report(DriftRecommendation.EMERGENCY_RETRAIN), "2024-03-11", "model-b")
    _loop_day(engine, dt.date(2024, 3, 11))
    request = _single_request(sensor.tick(), loaded, "market_retrain_job")
    assert _training_config(request)["as_of"] == "2024-03-11"
    assert request.run_key == "retrain-2024-03-11-market"
    assert not sensor.tick().run_requests


def test_degradation_sensor_fires_below_35_percent_with_enough_outcomes(loaded, instance, db_url, engine):
    assert policy.DEGRADATION_WIN_RATE == 0.35 and policy.DEGRADATION_MIN_OUTCOMES == 20
    sensor = SensorTicks(loaded.get_repository_def().get_sensor_def("degradation_sensor"), instance, db_url)
    _register_and_promote(engine, "model-a", dt.date(2024, 1, 2))
    latest = dt.date(2024, 3, 29)
    _loop_day(engine, latest)
    in_window = [latest - dt.timedelta(days=i) for i in range(20)]  # the last 30 days before `latest`
    # Outside the window: 10 losses 31+ days before the latest exit must not count.
    _write_outcomes(engine, [(latest - dt.timedelta(days=31 + i), "loss", 100 + i) for i in range(10)], "OLD")

    # 19 outcomes in the window, none won: too few to judge.
    _write_outcomes(engine, [(d, "loss", i) for i, d in enumerate(in_window[:19])], "W")
    data = sensor.tick()
    assert not data.run_requests and "19 outcomes" in data.skip_message

    # 20 outcomes with exactly 35% wins (7/20): not degraded.
    _write_outcomes(engine, [(d, "win" if i < 7 else "loss", i) for i, d in enumerate(in_window)], "W")
    data = sensor.tick()
    assert not data.run_requests and "35.0%" in data.skip_message

    # One win turns out a loss: 6/20 = 30% → one outcome-aware retrain as of the latest exit.
    _write_outcomes(engine, [(in_window[0], "loss", 0)], "W")
    request = _single_request(sensor.tick(), loaded, "outcome_retrain_job")
    assert _training_config(request) == {"as_of": latest.isoformat(), "use_outcomes": True,
                                         "trigger": "performance_degradation", "num_classes": 5}
    assert not sensor.tick().run_requests  # once per champion


def test_run_failure_sensor_records_a_really_failed_run(loaded, instance, db_url, engine, tmp_path):
    sensor = SensorTicks(loaded.get_repository_def().get_sensor_def("run_failure_sensor"), instance, db_url)
    assert not sensor.tick().run_requests  # the first tick only positions the cursor
    definitions = definitions_for(db_url, tmp_path, loaded)

    succeeded = definitions.resolve_job_def("blend_weight_job").execute_in_process(
        instance=instance, partition_key="2024-03-01")
    assert succeeded.success
    # A retrain on an empty database: no SPY prices, the run fails.
    failed = definitions.resolve_job_def("market_retrain_job").execute_in_process(
        instance=instance, raise_on_error=False)
    assert not failed.success
    sensor.tick()
    sensor.tick()  # a second tick finds nothing new
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT run_id, job_name, error FROM pipeline_run_failures")).all()
    assert [(r.run_id, r.job_name) for r in rows] == [(failed.run_id, "market_retrain_job")]
    assert "market_labeled_set" in rows[0].error


# ------------------------------------------------------------------ gates across automated runs
@pytest.mark.slow
def test_failing_gate_holds_in_the_next_automated_retrain(loaded, db_url, engine, tmp_path):
    definitions = definitions_for(db_url, tmp_path, loaded)
    schedule = definitions.get_repository_def().get_schedule_def("market_retrain_schedule")
    retrain = definitions.resolve_job_def("market_retrain_job")
    gated = {dg.AssetKey("challenger_model"), dg.AssetKey("promotion_decision")}
    with dg.instance_for_test() as instance:
        runs = []
        # Two consecutive Sundays, each after the weekday loop ingested its week: weeks of history only.
        for loop_day, sunday in (("2023-02-10", _ny(2023, 2, 12, 2)), ("2023-02-17", _ny(2023, 2, 19, 2))):
            assert definitions.resolve_job_def("daily_loop_job").execute_in_process(
                instance=instance, partition_key=loop_day).success
            context = dg.build_schedule_context(instance=instance, repository_def=definitions.get_repository_def(),
                                                scheduled_execution_time=sunday)
            request = schedule.evaluate_tick(context).run_requests[0]
            result = retrain.execute_in_process(instance=instance, run_config=request.run_config,
                                                tags=request.tags, raise_on_error=False)
            runs.append(result)
            checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
            assert checks["training_set_has_enough_rows"] is False
            materialized = {e.asset_key for e in result.get_asset_materialization_events()}
            assert dg.AssetKey("blended_training_set") in materialized
            assert not materialized & gated
            assert not result.success
        assert len({r.dagster_run.tags.get("dagster/schedule_name") for r in runs}) == 1
        assert runs[0].run_id != runs[1].run_id
        # Never materialized on the instance, never registered in the database.
        for key in gated:
            assert instance.get_latest_materialization_event(key) is None
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ml_models")).scalar() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM model_retraining_events")).scalar() == 0


# ------------------------------------------------------------------ no double retrains
@pytest.fixture
def project_instance(db_url, dagster_db_url, tmp_path, monkeypatch):
    """The project's dagster.yaml as a DagsterInstance, on test databases (the env reaches run workers too)."""
    monkeypatch.setenv(db.DATABASE_URL_ENV, db_url)
    monkeypatch.setenv(db.DAGSTER_URL_ENV, dagster_db_url)
    instance = dg.DagsterInstance.from_config(str(PROJECT_ROOT))
    yield instance
    instance.dispose()


def test_instance_config_limits_retrains_to_one(loaded, project_instance):
    from dagster._core.run_coordinator import QueuedRunCoordinator

    assert isinstance(project_instance.run_coordinator, QueuedRunCoordinator)
    queue = project_instance.get_concurrency_config().run_queue_config
    retrain_limits = [limit for limit in queue.tag_concurrency_limits if limit["key"] == "retrain"]
    # No `value`: the limit counts every run carrying the key, whatever the value (market or outcome).
    assert retrain_limits == [{"key": "retrain", "limit": 1}]
    for name in ("market_retrain_job", "outcome_retrain_job"):
        assert "retrain" in loaded.resolve_job_def(name).tags, name
    assert "retrain" not in loaded.resolve_job_def("daily_loop_job").tags
    # One day of the daily loop at a time: a job backfill's runs dequeue in date order, one by one.
    daily_limits = [limit for limit in queue.tag_concurrency_limits if limit["key"] == DAILY_LOOP_TAG]
    assert daily_limits == [{"key": DAILY_LOOP_TAG, "limit": 1}]
    assert DAILY_LOOP_TAG in loaded.resolve_job_def("daily_loop_job").tags


@pytest.mark.slow
def test_queued_run_coordinator_dequeues_one_retrain_at_a_time(loaded, project_instance, tmp_path):
    instance = project_instance
    # The daemon's workspace: a code server of the project, started (and always stopped) by this test.
    with project_code_server(PROJECT_ROOT, tmp_path) as workspace_file:
        second_started = _queue_two_retrains_and_tick(loaded, instance, workspace_file)
    assert second_started is None, "the second retrain was launched"


def _queue_two_retrains_and_tick(loaded, instance, workspace_file):
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    done = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}

    def statuses(run_ids):
        return [instance.get_run_by_id(run_id).status for run_id in run_ids]

    def wait_until_finished(run_ids, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(s in done for s in statuses(run_ids)):
                return
            time.sleep(0.5)
        raise AssertionError(f"runs did not finish in {timeout}s: {statuses(run_ids)}")

    target = WorkspaceFileTarget(paths=[str(workspace_file)])
    with WorkspaceProcessContext(instance, target) as workspace, \
            QueuedRunCoordinatorDaemon(interval_seconds=1) as daemon:
        request_context = workspace.create_request_context()
        (location_name,) = request_context.get_code_location_entries()
        repository = request_context.get_code_location(location_name).get_repository("__repository__")
        run_ids = []
        # Two retrains requested by their schedules: the weekly market one and the monthly outcome one.
        for job_name, schedule_name in (("market_retrain_job", "market_retrain_schedule"),
                                        ("outcome_retrain_job", "outcome_retrain_schedule")):
            remote_job = repository.get_full_job(job_name)
            request = loaded.get_repository_def().get_schedule_def(schedule_name).evaluate_tick(
                _schedule_context(loaded, _ny(2024, 3, 3, 2))).run_requests[0]
            # The schedule's run config, executed in one process (the queue, not the executor, is under test).
            run_config = {**request.run_config, "execution": {"config": {"in_process": {}}}}
            run = instance.create_run_for_job(
                job_def=loaded.resolve_job_def(job_name), run_config=run_config,
                tags={**remote_job.tags, **request.tags}, status=dg.DagsterRunStatus.NOT_STARTED,
                remote_job_origin=remote_job.get_remote_origin(), job_code_origin=remote_job.get_python_origin())
            instance.submit_run(run.run_id, request_context)
            run_ids.append(run.run_id)
        # A control without the tag, queued last: the same tick must dequeue it (max_concurrent_runs is 4).
        remote_blend = repository.get_full_job("blend_weight_job")
        control = instance.create_run_for_job(
            job_def=loaded.resolve_job_def("blend_weight_job"),
            run_config={"execution": {"config": {"in_process": {}}}},
            tags={**remote_blend.tags, "dagster/partition": "2024-03-01"}, status=dg.DagsterRunStatus.NOT_STARTED,
            remote_job_origin=remote_blend.get_remote_origin(), job_code_origin=remote_blend.get_python_origin())
        instance.submit_run(control.run_id, request_context)
        assert statuses([*run_ids, control.run_id]) == [dg.DagsterRunStatus.QUEUED] * 3

        list(daemon.run_iteration(workspace))  # one tick of the run queue
        first = statuses([*run_ids, control.run_id])
        assert first[0] != dg.DagsterRunStatus.QUEUED, "the first retrain was not dequeued"
        assert first[1] == dg.DagsterRunStatus.QUEUED, "a second retrain started while one was in progress"
        assert first[2] != dg.DagsterRunStatus.QUEUED, "the queue held a run without the retrain tag"
        wait_until_finished([run_ids[0], control.run_id])
        # The second retrain only ever waited in the queue; cancel it rather than launch it.
        instance.run_coordinator.cancel_run(run_ids[1])
        assert statuses(run_ids)[1] == dg.DagsterRunStatus.CANCELED
        return instance.get_run_record_by_id(run_ids[1]).start_time

