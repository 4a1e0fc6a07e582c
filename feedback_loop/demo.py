"""`feedback-loop demo`: the whole loop on synthetic data, recorded in Dagster's Postgres storage.

1. ingest (through Dagster) the synthetic disclosures, politicians and prices;
2. 12 months of daily history in one run of `loop_history_job`: the batch driver steps the days
   in date order and records each day as the daily assets' materializations, each retrain as the
   training assets', each blend-weight evaluation as `blend_weight`'s (so the UI shows every day);
3. the final day through the live jobs: the daily loop job, the blend-weight job and a
   market-labeled retrain with its promotion decision;
4. print a summary.
"""

from __future__ import annotations

import os
import time

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from feedback_loop.lib.monitoring.blend_weight import blend_weight_as_of
from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.store import db

DEMO_HISTORY_START = "2024-01-02"
DEMO_FINAL_DAY = "2024-12-31"
INGEST_ASSETS = [dg.AssetKey(k) for k in ("politicians", "disclosures", "market_prices")]


def _definitions() -> dg.Definitions:
    from feedback_loop.definitions import defs

    return defs() if callable(defs) else defs


#: A failed step reaches the user as the CLI's one line (`JobFailed`: the step and its reason);
#: its stack trace stays in the run's log in the Dagster UI instead of the terminal.
QUIET_LOGGERS = {"console": {"config": {"log_level": "CRITICAL"}}}


def _run(job: dg.JobDefinition, instance: dg.DagsterInstance, run_config: dg.RunConfig | None = None,
         **kwargs) -> dg.ExecuteInProcessResult:
    config = run_config or dg.RunConfig()
    config = dg.RunConfig(ops=config.ops, resources=config.resources, loggers=QUIET_LOGGERS)
    result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=config, **kwargs)
    if not result.success:
        raise JobFailed(f"{job.name} failed at " + "; ".join(
            f"{e.step_key}: {_failure_reason(e)}" for e in result.all_events if e.is_step_failure)
            + " (the run and its log are in the Dagster UI)")
    return result


class JobFailed(RuntimeError):
    """A job of the demo failed; the message names each failed step and why."""


def _failure_reason(event: dg.DagsterEvent) -> str:
    """A step's own reason (a `dg.Failure`'s description), else the first line of the error that
    caused it (Dagster wraps an op's exception in a step execution error)."""
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    while error.cause is not None:
        error = error.cause
    return error.message.strip().splitlines()[0]


def run_demo(echo=print) -> dict:
    from feedback_loop.defs.history import HistoryConfig

    db.migrate(db.engine_for(db.ensure_databases()))
    os.environ.update(db.dagster_environment())
    definitions = _definitions()
    instance = dg.DagsterInstance.get()
    engine = db.engine_for(db.app_database_url())
    final_day = pd.Timestamp(DEMO_FINAL_DAY)

    echo(f"[1/4] ingest through Dagster (partition {DEMO_FINAL_DAY})")
    daily = definitions.resolve_job_def("daily_loop_job")
    _run(daily, instance, partition_key=DEMO_FINAL_DAY, asset_selection=INGEST_ASSETS)

    history_end = final_day - pd.Timedelta(days=1)
    echo(f"[2/4] daily history {DEMO_HISTORY_START} .. {history_end.date()} through Dagster (one loop_history_job run)")
    started = time.perf_counter()
    _run(definitions.resolve_job_def("loop_history_job"), instance, run_config=dg.RunConfig(ops={
        "step_history_days": HistoryConfig(start=DEMO_HISTORY_START, end=f"{history_end:%Y-%m-%d}")}))
    simulated_s = time.perf_counter() - started
    echo(f"      recorded in {simulated_s:.1f}s")

    echo(f"[3/4] materialize {DEMO_FINAL_DAY} through Dagster: daily loop, blend weight, retrain + promotion")
    _run(daily, instance, partition_key=DEMO_FINAL_DAY)
    _run(definitions.resolve_job_def("blend_weight_job"), instance, partition_key=DEMO_FINAL_DAY)
    from feedback_loop.defs.training import training_run_config

    _run(definitions.resolve_job_def("market_retrain_job"), instance,
         run_config=training_run_config(as_of=DEMO_FINAL_DAY, use_outcomes=False, trigger="manual"))

    summary = demo_summary(engine, DEMO_FINAL_DAY)
    summary["history_seconds"] = round(simulated_s, 1)
    echo("[4/4] summary")
    for key, value in summary.items():
        echo(f"      {key}: {value}")
    echo("Open the UI with `make ui` (or `.venv/bin/feedback-loop dev`) to browse runs, assets and lineage.")
    return summary


QUEUE_THRESHOLD = PortfolioPolicy().min_queue_confidence


def demo_summary(engine: sa.Engine, day: str) -> dict:
    queries = {
        "disclosures": "SELECT count(*) FROM disclosures",
        "signals": "SELECT count(*) FROM trading_signals",
        f"queued_signals_below_{QUEUE_THRESHOLD}": (
            "SELECT count(*) FROM trading_signals WHERE status <> 'below_queue_threshold' "
            f"AND status <> 'direction_disagreement' AND confidence < {QUEUE_THRESHOLD}"),
        "open_positions": "SELECT count(*) FROM portfolio_positions WHERE status = 'open'",
        "closed_positions": "SELECT count(*) FROM portfolio_positions WHERE status = 'closed'",
        "outcomes": "SELECT count(*) FROM signal_outcomes",
        "models": "SELECT count(*) FROM ml_models",
        "promotions": "SELECT count(*) FROM model_deployments WHERE action = 'promote'",
        "active_model": "SELECT version FROM ml_models WHERE status = 'active'",
    }
    with engine.connect() as conn:
        summary = {k: conn.execute(sa.text(q)).scalar() for k, q in queries.items()}
        summary["blend_weight"] = blend_weight_as_of(conn, pd.Timestamp(day) + pd.Timedelta(days=1))
        perf = conn.execute(sa.text(
            "SELECT win_rate, sharpe, max_drawdown_frac, excess_return_pct FROM model_performance_history"
            " WHERE scope = 'portfolio' AND as_of = :d"), {"d": day}).mappings().first()
    if perf:
        summary.update({f"performance_{k}": (round(v, 4) if v is not None else None) for k, v in perf.items()})
    return summary
