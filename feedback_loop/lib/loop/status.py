"""What `feedback-loop status` reports: the seeds' health and metrics endpoints as one read, as of a date.

The state in service (champion, blend weight, ML switch) is the one in force on `as_of`; the serving
SLA is measured over the SERVING_FALLBACK_WINDOW_DAYS of signals up to the loop's latest day on or before
`as_of` (a loop that stopped still shows its last figures, with its latest day). Everything is plain
JSON-ready values; the CLI only formats them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pandas as pd
import sqlalchemy as sa

from feedback_loop.lib import policy
from feedback_loop.lib.models import registry, switch
from feedback_loop.lib.monitoring import blend_weight, drift
from feedback_loop.lib.portfolio import broker, loop_store
from feedback_loop.lib.vocab import (
    DeploymentAction,
    DriftRecommendation,
    PredictionRole,
    RetrainTrigger,
)

#: Failed pipeline runs of this many days before `as_of` make the loop "degraded".
FAILURE_WINDOW_DAYS = 7


def _champion(conn: sa.Connection, as_of: pd.Timestamp) -> dict | None:
    record = registry.champion_as_of(conn, as_of)
    if record is None:
        return None
    deployment = [d for d in registry.deployments(conn, record.model_id) if pd.Timestamp(d["effective_from"]) <= as_of][-1]
    return {"model_id": record.model_id, "version": record.version, "trained_as_of": record.trained_as_of,
            "since": deployment["effective_from"], "action": deployment["action"], "trigger": deployment["trigger"],
            "reason": deployment["reason"], "holdout_accuracy": record.metrics.get("accuracy"),
            "holdout_f1": record.metrics.get("f1_weighted")}


def _pending(conn: sa.Connection, as_of: pd.Timestamp) -> dict | None:
    """A deployment decided on `as_of`: it serves from the next day."""
    tomorrow = (as_of + pd.Timedelta(days=1)).date()
    decided = [d for d in registry.deployments(conn) if d["effective_from"] == tomorrow]
    return {key: decided[-1][key] for key in ("model_id", "version", "action", "effective_from")} if decided else None


def _blend_weight(conn: sa.Connection, as_of: pd.Timestamp) -> dict:
    in_force = blend_weight.blend_weight_moves(conn, as_of - pd.Timedelta(days=1))
    return {"weight": blend_weight.blend_weight_as_of(conn, as_of),
            "starting_weight": blend_weight.starting_blend_weight(conn),
            "last_move": in_force[-1] if in_force else None}


def _serving_sla(conn: sa.Connection, latest_day: pd.Timestamp | None) -> dict:
    window = policy.SERVING_FALLBACK_WINDOW_DAYS
    sla = {"window_days": window, "start": None, "end": None, "predictions": 0, "mean_latency_ms": None,
           "fallback_rate": None, "target_mean_latency_ms": policy.SERVING_MAX_MEAN_LATENCY_MS,
           "target_fallback_rate": policy.SERVING_MAX_FALLBACK_RATE_FRAC}
    if latest_day is None:
        return sla
    start = latest_day - pd.Timedelta(days=window - 1)
    count, mean = conn.execute(sa.text(
        "SELECT count(*), avg(latency_ms) FROM ml_predictions WHERE role = :role AND as_of BETWEEN :s AND :e"),
        {"role": PredictionRole.CHAMPION.value, "s": start.date(), "e": latest_day.date()}).one()
    rate = loop_store.fallback_rate(conn, start, latest_day)
    return dict(sla, start=start.date(), end=latest_day.date(), predictions=int(count),
                mean_latency_ms=float(mean) if mean is not None else None,
                fallback_rate=float(rate) if rate is not None else None)


def _decisions(conn: sa.Connection, as_of: pd.Timestamp, limit: int) -> list[dict]:
    """Promotions and rejections of the gate, manual promotions and rollbacks, blend-weight moves; newest first."""
    events = [{"decided": c["as_of"], "kind": "promoted" if c["promoted"] else "rejected",
               "model_id": c["new_model_id"], "reason": c["reason"], "at": c["created_at"]}
              for c in registry.comparisons(conn, through=as_of)]
    events += [{"decided": d["effective_from"] - dt.timedelta(days=1),
                "kind": "rollback" if d["action"] == DeploymentAction.ROLLBACK.value else "manual promotion",
                "model_id": d["model_id"], "reason": d["reason"], "at": d["created_at"]}
               for d in registry.deployments(conn) if d["trigger"] == RetrainTrigger.MANUAL.value
               and pd.Timestamp(d["effective_from"]) <= as_of + pd.Timedelta(days=1)]
    events += [{"decided": m["decided"], "kind": "blend weight", "model_id": None,
                "reason": f"{m['old_weight']:.2f} -> {m['new_weight']:.2f}: {m['reason']}", "at": None}
               for m in blend_weight.blend_weight_moves(conn, as_of)]
    events.sort(key=lambda e: (e["decided"], e["at"] is not None, e["at"] or dt.datetime.min), reverse=True)
    return [{key: value for key, value in event.items() if key != "at"} for event in events[:limit]]


def _failures(conn: sa.Connection, as_of: pd.Timestamp, limit: int) -> list[dict]:
    rows = conn.execute(sa.text(
        "SELECT run_id, job_name, error, failed_at FROM pipeline_run_failures WHERE failed_at < :until"
        " ORDER BY failed_at DESC LIMIT :n"), {"until": (as_of + pd.Timedelta(days=1)).date(), "n": limit})
    return [dict(row._mapping) for row in rows]


def health(status: dict) -> dict:
    """The seeds' health verdict: 'healthy', or 'degraded' with every reason."""
    sla, problems = status["serving_sla"], []
    if sla["mean_latency_ms"] is not None and sla["mean_latency_ms"] >= sla["target_mean_latency_ms"]:
        problems.append(f"mean scoring latency {sla['mean_latency_ms']:.1f} ms >= {sla['target_mean_latency_ms']:.0f} ms")
    if sla["fallback_rate"] is not None and sla["fallback_rate"] >= sla["target_fallback_rate"]:
        problems.append(f"fallback rate {sla['fallback_rate']:.1%} >= {sla['target_fallback_rate']:.0%}")
    report = status["drift"]
    if report is not None and report["recommendation"] != DriftRecommendation.NO_ACTION.value:
        problems.append(f"drift report of {report['as_of']}: {report['recommendation']}")
    since = pd.Timestamp(status["as_of"]) - pd.Timedelta(days=FAILURE_WINDOW_DAYS - 1)
    recent = [f for f in status["failures"] if pd.Timestamp(f["failed_at"].date()) >= since]
    if recent:
        problems.append(f"{len(recent)} failed pipeline run(s) in the last {FAILURE_WINDOW_DAYS} days")
    return {"status": "degraded" if problems else "healthy", "problems": problems}


def loop_status(conn: sa.Connection, as_of, *, decisions: int = 10, failures: int = 5) -> dict:
    """Everything `feedback-loop status` shows, as of `as_of` (see the module doc)."""
    as_of = pd.Timestamp(as_of).normalize()
    latest = conn.execute(sa.text("SELECT max(as_of) FROM trading_signals WHERE as_of <= :d"),
                          {"d": as_of.date()}).scalar()
    latest_day = pd.Timestamp(latest) if latest is not None else None
    status = {
        "as_of": as_of.date(),
        "latest_loop_day": latest_day.date() if latest_day is not None else None,
        "champion": _champion(conn, as_of),
        "pending_deployment": _pending(conn, as_of),
        "blend_weight": _blend_weight(conn, as_of),
        "ml": dataclasses.asdict(switch.ml_switch_as_of(conn, as_of)),
        "trading_mode": {"mode": broker.read_policy(conn).trading_mode, "last_change": broker.last_mode_change(conn)},
        "serving_sla": _serving_sla(conn, latest_day),
        "drift": drift.latest_drift_report(conn, as_of),
        "decisions": _decisions(conn, as_of, decisions),
        "failures": _failures(conn, as_of, failures),
    }
    status["health"] = health(status)
    return status
