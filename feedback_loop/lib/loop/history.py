"""Write a finished engine run into the loop's tables, as if the loop had run every day.

Models get their artifacts and ml_models rows, deployments keep their effective dates,
comparisons and retraining events are logged, and signals, positions, equity, outcomes,
shadow outcomes, every blend-weight decision and drift reports land in their tables.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from feedback_loop.lib.loop.engine import LoopState
from feedback_loop.lib.models import registry
from feedback_loop.lib.models import store as model_store
from feedback_loop.lib.monitoring import blend_weight as blend_weight_lib
from feedback_loop.lib.monitoring import drift
from feedback_loop.lib.portfolio import loop_store
from feedback_loop.lib.vocab import ModelStatus


def persist_history(engine: sa.Engine, state: LoopState, artifact_root: Path) -> dict[str, int]:
    """Idempotent for a given run: every table is upserted on its natural key."""
    with engine.begin() as conn:
        for entry in state.models.values():
            model_store.store_model(conn, entry.model, model_id=entry.model_id, trigger=entry.trigger.value,
                                    training_frame=entry.reference_features, artifact_root=artifact_root)
        _set_statuses(conn, state)
        conn.execute(sa.text("DELETE FROM model_deployments WHERE model_id = ANY(:ids)"),
                     {"ids": list(state.models)})
        for effective_from, model_id, action, trigger, reason in state.deployments:
            conn.execute(sa.text(
                "INSERT INTO model_deployments (model_id, action, trigger, effective_from, reason)"
                " VALUES (:m, :a, :t, :e, :r)"),
                {"m": model_id, "a": action, "t": trigger, "e": pd.Timestamp(effective_from).date(), "r": reason})
        _log_decisions(conn, state)
        signals = state.all_signals()
        loop_store.write_signals(conn, signals)
        if len(state.candidates):
            loop_store.write_candidate_calls(conn, state.candidates)
        loop_store.write_portfolio(conn, state.portfolio)
        outcomes = state.all_outcomes()
        loop_store.write_outcomes(conn, outcomes)
        if state.shadow is not None:
            loop_store.write_shadow(conn, state.shadow)
        for logged in state.blend_weight_decisions:
            blend_weight_lib.apply_blend_weight(conn, logged["decision"], logged["as_of"], logged["window_days"])
        for report in state.drift_reports:
            drift.write_drift_report(conn, report["report"], report["as_of"], report["model_id"])
    return {"models": len(state.models), "signals": len(signals), "positions": len(state.portfolio.positions),
            "outcomes": len(outcomes), "shadow_outcomes": 0 if state.shadow is None else len(state.shadow)}


def _set_statuses(conn: sa.Connection, state: LoopState) -> None:
    """Final statuses; the active model last so the one-active index holds at every statement."""
    by_status = {entry.model_id: entry.status for entry in state.models.values()}
    for model_id, status in sorted(by_status.items(), key=lambda kv: kv[1] == ModelStatus.ACTIVE.value):
        conn.execute(sa.text("UPDATE ml_models SET status = :s WHERE model_id = :m"), {"s": status, "m": model_id})


def _log_decisions(conn: sa.Connection, state: LoopState) -> None:
    ids = list(state.models)
    conn.execute(sa.text("DELETE FROM ml_model_comparisons WHERE new_model_id = ANY(:ids)"), {"ids": ids})
    conn.execute(sa.text("DELETE FROM model_retraining_events WHERE new_model_id = ANY(:ids) OR new_model_id IS NULL"),
                 {"ids": ids})
    for c in state.comparisons:
        registry.record_comparison(conn, **c)
    for event in state.retrain_events:
        registry.record_retraining_event(
            conn, as_of=event["as_of"], trigger=event["trigger"], dagster_run_id=None,
            old_model_id=event.get("old_model_id"), new_model_id=event.get("new_model_id"),
            old_metrics=event.get("old_metrics"), new_metrics=event.get("new_metrics"),
            accuracy_improvement=event.get("accuracy_improvement"), f1_improvement=event.get("f1_improvement"),
            deployed=event["deployed"], reason=event["reason"],
        )
