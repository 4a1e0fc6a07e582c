"""Jobs, schedules and sensors: the loop runs itself.

Schedules (America/New_York):
- daily_loop_schedule      weekdays 17:30, after the close: ingest → features → signals → portfolio → outcomes → performance → drift
- blend_weight_schedule    weekdays 18:30, after the loop
- market_retrain_schedule  Sundays 02:00
- outcome_retrain_schedule the 1st of each month, 03:00

Sensors (each with a cursor, so a condition fires once):
- new_outcomes_sensor       >= 20 closed outcomes since the model in service was trained → outcome-aware retrain
- feature_drift_sensor      the latest drift report recommending a retrain → market-labeled retrain (once per champion)
- degradation_sensor        win rate < 35% over 30 days with >= 20 outcomes → outcome-aware retrain
- run_failure_sensor        records every failed run in pipeline_run_failures

Retrain jobs run in the `retrain` pool (limit 1, dagster.yaml): a second retrain waits.
"""


import datetime as dt
import json

import dagster as dg
import sqlalchemy as sa

from feedback_loop.defs.partitions import daily_partitions
from feedback_loop.defs.resources import DatabaseResource
from feedback_loop.defs.training import training_run_config
from feedback_loop.lib import policy, registry
from feedback_loop.lib.vocab import DriftRecommendation, RetrainTrigger

TIMEZONE = "America/New_York"

daily_loop_job = dg.define_asset_job(
    "daily_loop_job",
    selection=dg.AssetSelection.groups("ingest", "signals", "portfolio")
    | dg.AssetSelection.assets("feature_drift"),
    partitions_def=daily_partitions,
    description="One trading day of the loop, ingest to drift, with every blocking check of those assets.",
)
blend_weight_job = dg.define_asset_job(
    "blend_weight_job", selection=dg.AssetSelection.assets("blend_weight"), partitions_def=daily_partitions,
    description="Moves the ML blend weight from the shadow win rates of the last 30 days.",
)
TRAINING_SELECTION = dg.AssetSelection.groups("training")
market_retrain_job = dg.define_asset_job(
    "market_retrain_job", selection=TRAINING_SELECTION,
    config=training_run_config(use_outcomes=False, trigger=RetrainTrigger.SCHEDULED.value),
    tags={"retrain": "market"},
    description="Market-labeled training set → challenger → champion/challenger promotion.",
)
outcome_retrain_job = dg.define_asset_job(
    "outcome_retrain_job", selection=TRAINING_SELECTION,
    config=training_run_config(use_outcomes=True, trigger=RetrainTrigger.SCHEDULED.value),
    tags={"retrain": "outcome"},
    description="Outcome-aware retrain (outcome rows weighted 2x, 90-day outcome window) → promotion.",
)
RETRAIN_JOBS = (market_retrain_job, outcome_retrain_job)


@dg.schedule(job=daily_loop_job, cron_schedule="30 17 * * 1-5", execution_timezone=TIMEZONE,
             default_status=dg.DefaultScheduleStatus.RUNNING)
def daily_loop_schedule(context: dg.ScheduleEvaluationContext):
    """After the close on weekdays; a market holiday materializes as 'not a trading day'."""
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return dg.RunRequest(run_key=day, partition_key=day)


@dg.schedule(job=blend_weight_job, cron_schedule="30 18 * * 1-5", execution_timezone=TIMEZONE,
             default_status=dg.DefaultScheduleStatus.RUNNING)
def blend_weight_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return dg.RunRequest(run_key=day, partition_key=day)


@dg.schedule(job=market_retrain_job, cron_schedule="0 2 * * 0", execution_timezone=TIMEZONE,
             default_status=dg.DefaultScheduleStatus.RUNNING)
def market_retrain_schedule(context: dg.ScheduleEvaluationContext):
    as_of = (context.scheduled_execution_time - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    return dg.RunRequest(run_key=f"market-{as_of}", run_config=training_run_config(
        as_of=as_of, use_outcomes=False, trigger=RetrainTrigger.SCHEDULED.value))


@dg.schedule(job=outcome_retrain_job, cron_schedule="0 3 1 * *", execution_timezone=TIMEZONE,
             default_status=dg.DefaultScheduleStatus.RUNNING)
def outcome_retrain_schedule(context: dg.ScheduleEvaluationContext):
    as_of = (context.scheduled_execution_time - dt.timedelta(days=1)).strftime("%Y-%m-%d")
    return dg.RunRequest(run_key=f"outcome-{as_of}", run_config=training_run_config(
        as_of=as_of, use_outcomes=True, trigger=RetrainTrigger.SCHEDULED.value))


def _cursor(context) -> dict:
    return json.loads(context.cursor) if context.cursor else {}


@dg.sensor(job=outcome_retrain_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def new_outcomes_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    """Fires once per model in service when >= 20 outcomes closed after its training date."""
    with database.get_engine().connect() as conn:
        champion = registry.active_model(conn)
        if champion is None:
            return dg.SkipReason("no model in service")
        closed = conn.execute(sa.text(
            "SELECT count(*), max(exit_date) FROM signal_outcomes WHERE outcome <> 'open' AND exit_date > :d"),
            {"d": champion.trained_as_of}).one()
    cursor = _cursor(context)
    if cursor.get("model_id") == champion.model_id:
        return dg.SkipReason(f"already requested a retrain for {champion.version}")
    if closed[0] < policy.NEW_OUTCOMES_RETRAIN_COUNT:
        return dg.SkipReason(f"{closed[0]} closed outcomes since {champion.trained_as_of}, "
                             f"need {policy.NEW_OUTCOMES_RETRAIN_COUNT}")
    context.update_cursor(json.dumps({"model_id": champion.model_id}))
    as_of = closed[1].isoformat()
    return dg.RunRequest(run_key=f"new_outcomes-{champion.model_id}", run_config=training_run_config(
        as_of=as_of, use_outcomes=True, trigger=RetrainTrigger.NEW_OUTCOMES.value))


@dg.sensor(job=market_retrain_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def feature_drift_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    """The latest drift report (written by feature_drift) recommending a retrain → one retrain per champion.

    Market features of a 30-day window differ from a year of training rows for weeks on
    end; retraining on every such report would retrain daily, so the cursor keeps one
    request per model in service.
    """
    with database.get_engine().connect() as conn:
        report = conn.execute(sa.text(
            "SELECT as_of, model_id, recommendation, reason FROM drift_reports ORDER BY as_of DESC LIMIT 1")).first()
    if report is None:
        return dg.SkipReason("no drift report yet")
    if report.recommendation == DriftRecommendation.NO_ACTION.value:
        return dg.SkipReason(f"drift on {report.as_of}: no_action")
    if _cursor(context).get("model_id") == report.model_id:
        return dg.SkipReason(f"already requested a drift retrain for {report.model_id}")
    context.update_cursor(json.dumps({"model_id": report.model_id}))
    as_of = report.as_of.isoformat()
    return dg.RunRequest(run_key=f"feature_drift-{report.model_id}", run_config=training_run_config(
        as_of=as_of, use_outcomes=False, trigger=RetrainTrigger.FEATURE_DRIFT.value))


@dg.sensor(job=outcome_retrain_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING)
def degradation_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    """Win rate under 35% over the last 30 days (with enough outcomes) → one outcome-aware retrain per champion."""
    with database.get_engine().connect() as conn:
        champion = registry.active_model(conn)
        latest = conn.execute(sa.text("SELECT max(exit_date) FROM signal_outcomes")).scalar()
        if champion is None or latest is None:
            return dg.SkipReason("no model in service or no outcomes yet")
        start = latest - dt.timedelta(days=policy.DEGRADATION_WINDOW_DAYS)
        wins, total = conn.execute(sa.text(
            "SELECT count(*) FILTER (WHERE outcome = 'win'), count(*) FROM signal_outcomes"
            " WHERE outcome <> 'open' AND exit_date > :s AND exit_date <= :e"), {"s": start, "e": latest}).one()
    if total < policy.DEGRADATION_MIN_OUTCOMES:
        return dg.SkipReason(f"{total} outcomes in {policy.DEGRADATION_WINDOW_DAYS} days, need {policy.DEGRADATION_MIN_OUTCOMES}")
    win_rate = wins / total
    if win_rate >= policy.DEGRADATION_WIN_RATE:
        return dg.SkipReason(f"win rate {win_rate:.1%} >= {policy.DEGRADATION_WIN_RATE:.0%}")
    if _cursor(context).get("model_id") == champion.model_id:
        return dg.SkipReason(f"already requested a retrain for {champion.version}")
    context.update_cursor(json.dumps({"model_id": champion.model_id}))
    return dg.RunRequest(run_key=f"degradation-{champion.model_id}", run_config=training_run_config(
        as_of=latest.isoformat(), use_outcomes=True, trigger=RetrainTrigger.PERFORMANCE_DEGRADATION.value))


@dg.run_failure_sensor(monitor_all_code_locations=False, default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_sensor(context: dg.RunFailureSensorContext, database: DatabaseResource):
    """Every failed run lands in pipeline_run_failures (and the sensor's tick log in the UI)."""
    run = context.dagster_run
    error = context.failure_event.message if context.failure_event else None
    with database.get_engine().begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO pipeline_run_failures (run_id, job_name, error) VALUES (:r, :j, :e)"
            " ON CONFLICT (run_id) DO NOTHING"), {"r": run.run_id, "j": run.job_name, "e": error})
