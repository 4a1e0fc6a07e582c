"""Jobs, schedules and sensors: the loop runs itself.

Every rule here — cron strings, the sensors' conditions, the training inputs of a request,
the merging of equal requests — is `lib.loop_rules`; this module reads the state the rules
need and turns their answers into run requests. Descriptions come from the same constants.

Retrain jobs run in the `retrain` pool (limit 1, dagster.yaml): a second retrain waits, and a
request whose training inputs already have a run (same training key) is merged into it.
"""


import json

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from feedback_loop.defs.resources import DatabaseResource, PriceSourceResource
from feedback_loop.defs.training import training_run_config
from feedback_loop.lib import rules
from feedback_loop.lib.frames import MARKET_TICKER
from feedback_loop.lib.loop.sensor_inputs import sensor_inputs
from feedback_loop.lib.monitoring import blend_weight as blend_weight_lib
from feedback_loop.lib.vocab import RetrainTrigger

#: Runs of the daily loop job carry this tag; dagster.yaml lets one run at a time, so a backfill
#: launched from the job's page (one run per day, queued in date order) steps the days in order.
DAILY_LOOP_TAG = "feedback_loop/daily_loop"
daily_loop_job = dg.define_asset_job(
    "daily_loop_job",
    selection=dg.AssetSelection.groups("ingest", "signals", "portfolio")
    | dg.AssetSelection.assets("feature_drift"),
    tags={DAILY_LOOP_TAG: "day"},
    description="One trading day of the loop, ingest to drift, with every blocking check of those assets.",
)
blend_weight_job = dg.define_asset_job(
    "blend_weight_job", selection=dg.AssetSelection.assets("blend_weight"),
    description=blend_weight_lib.RULE_DESCRIPTION,
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


@dg.schedule(job=daily_loop_job, cron_schedule=rules.DAILY_LOOP_CRON, execution_timezone=rules.SCHEDULE_TIMEZONE,
             default_status=dg.DefaultScheduleStatus.RUNNING)
def daily_loop_schedule(context: dg.ScheduleEvaluationContext, price_source: PriceSourceResource):
    """After the close on weekdays. A day the price source has no price for skips with the reason (a
    market holiday, or a source that ends before the day, such as the demo's data)."""
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    last = price_source.last_market_day()
    if last is None or last < pd.Timestamp(day):
        return dg.SkipReason(f"the price source has no {MARKET_TICKER} price for {day} "
                             f"(its last is {last.date() if last is not None else 'none'}): nothing to run")
    return dg.RunRequest(run_key=day, partition_key=day)


@dg.schedule(job=blend_weight_job, cron_schedule=rules.BLEND_WEIGHT_CRON, execution_timezone=rules.SCHEDULE_TIMEZONE,
             default_status=dg.DefaultScheduleStatus.RUNNING)
def blend_weight_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return dg.RunRequest(run_key=day, partition_key=day)


#: Every retrain run carries its training key: runs with equal training inputs are one run.
TRAINING_KEY_TAG = "feedback_loop/training_key"


def retrain_run_request(request: rules.RetrainRequest) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=request.training_key, tags={TRAINING_KEY_TAG: request.training_key},
        run_config=training_run_config(as_of=request.as_of.strftime("%Y-%m-%d"), use_outcomes=request.use_outcomes,
                                       trigger=request.trigger.value))


def _retrain_schedule(cron: str, job, name: str, doc: str):
    def evaluate(context: dg.ScheduleEvaluationContext):
        return retrain_run_request(rules.scheduled_request(cron, context.scheduled_execution_time))

    return dg.ScheduleDefinition(name=name, job=job, cron_schedule=cron, execution_timezone=rules.SCHEDULE_TIMEZONE,
                                 execution_fn=evaluate, description=doc,
                                 default_status=dg.DefaultScheduleStatus.RUNNING)


market_retrain_schedule = _retrain_schedule(
    rules.MARKET_RETRAIN_CRON, market_retrain_job, "market_retrain_schedule",
    "Market-labeled retrain as of the day before the run.")
outcome_retrain_schedule = _retrain_schedule(
    rules.OUTCOME_RETRAIN_CRON, outcome_retrain_job, "outcome_retrain_schedule",
    "Outcome-aware retrain as of the last day of the previous month.")


def _cursor(context) -> str | None:
    return json.loads(context.cursor).get("model_id") if context.cursor else None


def _evaluate_retrain_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource, sensor: str):
    """One retrain sensor: the rule decides; a request whose training inputs already have a run is merged into it."""
    with database.get_engine().connect() as conn:
        inputs = sensor_inputs(conn)
    if inputs is None:
        return dg.SkipReason("the daily loop has not run yet")
    decision = rules.sensor_decisions(inputs.day, inputs.champion, inputs.outcomes, inputs.drift,
                                      {sensor: _cursor(context)})[sensor]
    if decision.request is None:
        return dg.SkipReason(decision.reason)
    context.update_cursor(json.dumps({"model_id": decision.cursor}))
    key = decision.request.training_key
    if context.instance.get_run_records(dg.RunsFilter(tags={TRAINING_KEY_TAG: key}), limit=1):
        return dg.SkipReason(f"{decision.reason}: merged into the existing run {key} (same training inputs)")
    return retrain_run_request(decision.request)


@dg.sensor(job=outcome_retrain_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
           description=rules.SENSOR_DESCRIPTIONS[rules.NEW_OUTCOMES])
def new_outcomes_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    return _evaluate_retrain_sensor(context, database, rules.NEW_OUTCOMES)


@dg.sensor(job=market_retrain_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
           description=rules.SENSOR_DESCRIPTIONS[rules.FEATURE_DRIFT])
def feature_drift_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    return _evaluate_retrain_sensor(context, database, rules.FEATURE_DRIFT)


@dg.sensor(job=outcome_retrain_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING,
           description=rules.SENSOR_DESCRIPTIONS[rules.DEGRADATION])
def degradation_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    return _evaluate_retrain_sensor(context, database, rules.DEGRADATION)


@dg.run_failure_sensor(monitor_all_code_locations=False, default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_sensor(context: dg.RunFailureSensorContext, database: DatabaseResource):
    """Every failed run lands in pipeline_run_failures (and the sensor's tick log in the UI)."""
    run = context.dagster_run
    error = context.failure_event.message if context.failure_event else None
    with database.get_engine().begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO pipeline_run_failures (run_id, job_name, error) VALUES (:r, :j, :e)"
            " ON CONFLICT (run_id) DO NOTHING"), {"r": run.run_id, "j": run.job_name, "e": error})
