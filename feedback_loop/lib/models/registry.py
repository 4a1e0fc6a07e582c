"""Model registry: `ml_models` rows, the champion as of a date, promotion and rollback.

Rules the functions here keep:

- Training registers a model as 'candidate'; only `promote` (after the gate in
  `promotion.py`) or `rollback` makes a model 'active'.
- At most one model is active (the partial unique index `ml_models_one_active`), and once
  a champion has existed there is always one: promotion and rollback archive the old
  champion and activate the new one in ONE transaction, serialized across processes by a
  transaction-scoped advisory lock.
- `model_deployments` is the history of which model served from which date. A deployment
  decided on `as_of` takes effect on the next calendar day (`effective_from = as_of + 1`):
  the signals of `as_of` were already scored by the old champion and are never changed
  retroactively, and replaying a past date reproduces the champion that served it.
- Deployments are ordered by (effective_from, deployment_id). A 'promote' row pushes its
  model onto the champion stack, a 'rollback' row pops the latest champion; the previous
  champion is the model below the top of that stack. So after A, B, rollback-to-A the
  previous champion is none — never B, the model that was rolled back.
- A manual promotion or rollback (`manual_promote`, `manual_rollback`) writes its
  `model_retraining_events` row in the same transaction, naming as the old model the one
  active under the lock; promoting the model already in service and promoting a model whose
  artifact fails its sha256 are refused.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from feedback_loop.lib.training.artifact import ArtifactIntegrityError, read_verified
from feedback_loop.lib.vocab import DeploymentAction, ModelStatus, RetrainTrigger

#: Key of the pg_advisory_xact_lock that serializes promotions and rollbacks.
PROMOTION_LOCK_KEY = 727275


class NoPreviousChampionError(LookupError):
    """Rollback was asked for but the deployment history holds no earlier champion."""


class PromotionRefused(ValueError):
    """A manual promotion that would deploy nothing or deploy an unverifiable model."""


class AlreadyChampionError(PromotionRefused):
    """A manual promotion of the model already in service (it would log a deployment that never happened)."""


@dataclass(frozen=True)
class ModelRecord:
    """One row of `ml_models`."""

    model_id: str
    version: str
    status: str
    trained_as_of: dt.date
    trigger: str | None
    num_classes: int
    training_start: dt.date | None
    training_end: dt.date | None
    config: dict
    feature_names: list[str]
    metrics: dict
    model_card: dict
    artifact_path: str | None
    artifact_sha256: str | None
    created_at: dt.datetime
    promoted_at: dt.datetime | None
    archived_at: dt.datetime | None


_MODEL_COLUMNS = ", ".join(f"m.{name}" for name in ModelRecord.__dataclass_fields__)


def _day(value) -> dt.date:
    return pd.Timestamp(value).date()


def _plain(value):
    """JSON-ready copy: numpy scalars/arrays to Python, dates to ISO text, NaN/inf to null."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.date, pd.Timestamp)):
        return value.isoformat()
    return value


def _json(value) -> str:
    """JSON text Postgres accepts as JSONB (which has no NaN)."""
    return json.dumps(_plain(value), allow_nan=False)


def _record(row) -> ModelRecord:
    return ModelRecord(**row._mapping)


def register_model(
    conn: sa.Connection,
    *,
    model_id: str,
    version: str,
    trained_as_of,
    trigger: str | None,
    num_classes: int,
    config: dict,
    feature_names: list[str],
    metrics: dict,
    model_card: dict,
    artifact_path: str | None,
    artifact_sha256: str | None,
    training_start,
    training_end,
) -> str:
    """Insert a trained model as 'candidate' (training never promotes); return its id."""
    conn.execute(
        sa.text(
            "INSERT INTO ml_models (model_id, version, status, trained_as_of, trigger, num_classes,"
            " training_start, training_end, config, feature_names, metrics, model_card,"
            " artifact_path, artifact_sha256)"
            " VALUES (:model_id, :version, :status, :trained_as_of, :trigger, :num_classes,"
            " :training_start, :training_end, CAST(:config AS JSONB), CAST(:feature_names AS JSONB),"
            " CAST(:metrics AS JSONB), CAST(:model_card AS JSONB), :artifact_path, :artifact_sha256)"
        ),
        {
            "model_id": model_id,
            "version": version,
            "status": ModelStatus.CANDIDATE.value,
            "trained_as_of": _day(trained_as_of),
            "trigger": RetrainTrigger(trigger).value if trigger is not None else None,
            "num_classes": num_classes,
            "training_start": _day(training_start) if training_start is not None else None,
            "training_end": _day(training_end) if training_end is not None else None,
            "config": _json(config),
            "feature_names": _json(list(feature_names)),
            "metrics": _json(metrics),
            "model_card": _json(model_card),
            "artifact_path": artifact_path,
            "artifact_sha256": artifact_sha256,
        },
    )
    return model_id


def get_model(conn: sa.Connection, model_id: str) -> ModelRecord | None:
    row = conn.execute(
        sa.text(f"SELECT {_MODEL_COLUMNS} FROM ml_models m WHERE m.model_id = :id"), {"id": model_id}
    ).first()
    return _record(row) if row is not None else None


def list_models(conn: sa.Connection) -> list[ModelRecord]:
    rows = conn.execute(
        sa.text(f"SELECT {_MODEL_COLUMNS} FROM ml_models m ORDER BY m.created_at, m.model_id")
    )
    return [_record(row) for row in rows]


def active_model(conn: sa.Connection) -> ModelRecord | None:
    row = conn.execute(
        sa.text(f"SELECT {_MODEL_COLUMNS} FROM ml_models m WHERE m.status = :active"),
        {"active": ModelStatus.ACTIVE.value},
    ).first()
    return _record(row) if row is not None else None


def champion_as_of(conn: sa.Connection, as_of) -> ModelRecord | None:
    """The model of the latest deployment with effective_from <= as_of (None before the first)."""
    row = conn.execute(
        sa.text(
            f"SELECT {_MODEL_COLUMNS} FROM model_deployments d JOIN ml_models m USING (model_id)"
            " WHERE d.effective_from <= :as_of"
            " ORDER BY d.effective_from DESC, d.deployment_id DESC LIMIT 1"
        ),
        {"as_of": _day(as_of)},
    ).first()
    return _record(row) if row is not None else None


def champion_since(conn: sa.Connection, as_of) -> dt.date | None:
    """The effective date of the deployment in force on `as_of` (None before the first)."""
    return conn.execute(sa.text(
        "SELECT effective_from FROM model_deployments WHERE effective_from <= :as_of"
        " ORDER BY effective_from DESC, deployment_id DESC LIMIT 1"), {"as_of": _day(as_of)}).scalar()


def _champion_stack(conn: sa.Connection, as_of: dt.date | None) -> list[str]:
    """Model ids of the champion stack after replaying deployments (all when as_of is None)."""
    rows = conn.execute(
        sa.text(
            "SELECT model_id, action FROM model_deployments"
            " WHERE CAST(:as_of AS DATE) IS NULL OR effective_from <= CAST(:as_of AS DATE)"
            " ORDER BY effective_from, deployment_id"
        ),
        {"as_of": as_of},
    )
    stack: list[str] = []
    for model_id, action in rows:
        if action == DeploymentAction.ROLLBACK:
            stack.pop()
        else:
            stack.append(model_id)
    return stack


def previous_champion(conn: sa.Connection, as_of) -> ModelRecord | None:
    """The champion before the one in force on `as_of` (see the module doc), or None."""
    stack = _champion_stack(conn, _day(as_of))
    return get_model(conn, stack[-2]) if len(stack) >= 2 else None


def _lock_in_date_order(conn: sa.Connection, as_of) -> None:
    """Take the promotion lock; refuse a decision dated before the latest deployment's.

    Deployments are recorded in date order, so the champion stack replays the real history.
    """
    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PROMOTION_LOCK_KEY})
    latest = conn.execute(sa.text("SELECT max(effective_from) FROM model_deployments")).scalar()
    if latest is not None and _day(as_of) + dt.timedelta(days=1) < latest:
        raise ValueError(
            f"deployment decided on {_day(as_of)} would precede the latest deployment, "
            f"effective from {latest}"
        )


def _archive_active(conn: sa.Connection) -> None:
    conn.execute(
        sa.text("UPDATE ml_models SET status = :archived, archived_at = now() WHERE status = :active"),
        {"archived": ModelStatus.ARCHIVED.value, "active": ModelStatus.ACTIVE.value},
    )


def _activate(conn: sa.Connection, model_id: str) -> None:
    conn.execute(
        sa.text(
            "UPDATE ml_models SET status = :active, promoted_at = now(), archived_at = NULL"
            " WHERE model_id = :id"
        ),
        {"active": ModelStatus.ACTIVE.value, "id": model_id},
    )


def _record_deployment(
    conn: sa.Connection, model_id: str, action: DeploymentAction, trigger: str, as_of, reason: str
) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO model_deployments (model_id, action, trigger, effective_from, reason)"
            " VALUES (:model_id, :action, :trigger, :effective_from, :reason)"
        ),
        {
            "model_id": model_id,
            "action": action.value,
            "trigger": RetrainTrigger(trigger).value,
            "effective_from": _day(as_of) + dt.timedelta(days=1),
            "reason": reason,
        },
    )


def _promote_locked(conn: sa.Connection, model_id: str, *, as_of, trigger: str, reason: str) -> bool:
    """Promote under the lock already held; False when `model_id` is already active (nothing changes)."""
    status = conn.execute(
        sa.text("SELECT status FROM ml_models WHERE model_id = :id FOR UPDATE"), {"id": model_id}
    ).scalar()
    if status is None:
        raise LookupError(f"model {model_id!r} is not registered")
    if status == ModelStatus.ACTIVE:
        return False
    if status not in (ModelStatus.CANDIDATE, ModelStatus.ARCHIVED):
        raise ValueError(f"model {model_id!r} has status {status!r} and cannot be promoted")
    _archive_active(conn)
    _activate(conn, model_id)
    _record_deployment(conn, model_id, DeploymentAction.PROMOTE, trigger, as_of, reason)
    return True


def lock_promotions(conn: sa.Connection, as_of) -> None:
    """Hold the promotion lock for the rest of the caller's transaction (see `_lock_in_date_order`)."""
    _lock_in_date_order(conn, as_of)


def promote_locked(conn: sa.Connection, model_id: str, *, as_of, trigger: str, reason: str) -> bool:
    """`promote` inside the caller's transaction, which holds `lock_promotions`."""
    return _promote_locked(conn, model_id, as_of=as_of, trigger=trigger, reason=reason)


def promote(engine: sa.Engine, model_id: str, *, as_of, trigger: str, reason: str) -> None:
    """Make `model_id` the champion from the day after `as_of`, in one transaction.

    The old champion is archived; a 'promote' deployment is recorded. Promoting the model
    that is already active changes nothing (re-runs are idempotent). Raises LookupError
    for an unknown model, ValueError for a model that is 'training' or 'failed' and for
    an `as_of` before the latest deployment's decision date.
    """
    with engine.begin() as conn:
        _lock_in_date_order(conn, as_of)
        _promote_locked(conn, model_id, as_of=as_of, trigger=trigger, reason=reason)


def _rollback_locked(conn: sa.Connection, *, as_of, trigger: str, reason: str) -> str:
    stack = _champion_stack(conn, None)
    if len(stack) < 2:
        raise NoPreviousChampionError(
            "no previous champion to roll back to: the deployment history holds "
            f"{len(stack)} champion(s) on its stack"
        )
    previous = stack[-2]
    _archive_active(conn)
    _activate(conn, previous)
    _record_deployment(conn, previous, DeploymentAction.ROLLBACK, trigger, as_of, reason)
    return previous


def rollback(engine: sa.Engine, *, as_of, reason: str, trigger: str = "manual") -> ModelRecord:
    """Re-activate the previous champion from the day after `as_of`, in one transaction.

    Uses the whole deployment history (including a promotion decided today that takes
    effect tomorrow). Raises NoPreviousChampionError when there is no earlier champion;
    the current champion then stays active.
    """
    with engine.begin() as conn:
        _lock_in_date_order(conn, as_of)
        return get_model(conn, _rollback_locked(conn, as_of=as_of, trigger=trigger, reason=reason))


def _record_manual_event(conn: sa.Connection, *, as_of, old_model_id: str | None, new_model_id: str,
                         reason: str) -> None:
    record_retraining_event(
        conn, as_of=as_of, trigger=RetrainTrigger.MANUAL, dagster_run_id=None, old_model_id=old_model_id,
        new_model_id=new_model_id, old_metrics=None, new_metrics=None, accuracy_improvement=None,
        f1_improvement=None, deployed=True, reason=reason)


def _active_id(conn: sa.Connection) -> str | None:
    return conn.execute(sa.text("SELECT model_id FROM ml_models WHERE status = :active"),
                        {"active": ModelStatus.ACTIVE.value}).scalar()


def manual_promote(engine: sa.Engine, model_id: str, *, as_of, reason: str) -> str | None:
    """An operator's promotion: verify the artifact, promote, log the event, all in one transaction
    under the promotion lock; return the model that was in service before.

    Raises AlreadyChampionError when `model_id` is already active, PromotionRefused when its
    artifact is missing or fails its sha256, and what `promote` raises.
    """
    with engine.begin() as conn:
        _lock_in_date_order(conn, as_of)
        record = get_model(conn, model_id)
        if record is None:
            raise LookupError(f"model {model_id!r} is not registered")
        if record.status == ModelStatus.ACTIVE:
            raise AlreadyChampionError(f"model {model_id!r} is already the champion: nothing to promote")
        if not record.artifact_path or not record.artifact_sha256:
            raise PromotionRefused(f"model {model_id!r} has no recorded artifact or sha256: not promoted")
        try:
            read_verified(record.artifact_path, record.artifact_sha256)
        except ArtifactIntegrityError as error:
            raise PromotionRefused(f"model {model_id!r} not promoted: {error}") from error
        old_model_id = _active_id(conn)
        _promote_locked(conn, model_id, as_of=as_of, trigger=RetrainTrigger.MANUAL, reason=f"manual: {reason}")
        _record_manual_event(conn, as_of=as_of, old_model_id=old_model_id, new_model_id=model_id,
                             reason=f"manual promotion: {reason}")
    return old_model_id


def manual_rollback(engine: sa.Engine, *, as_of, reason: str) -> ModelRecord:
    """An operator's rollback and its event in one transaction under the promotion lock; the restored model."""
    with engine.begin() as conn:
        _lock_in_date_order(conn, as_of)
        old_model_id = _active_id(conn)
        restored = _rollback_locked(conn, as_of=as_of, trigger=RetrainTrigger.MANUAL, reason=f"manual: {reason}")
        _record_manual_event(conn, as_of=as_of, old_model_id=old_model_id, new_model_id=restored,
                             reason=f"manual rollback: {reason}")
        return get_model(conn, restored)


def record_comparison(
    conn: sa.Connection,
    *,
    as_of,
    new_model_id: str,
    current_model_id: str | None,
    new_accuracy: float,
    current_accuracy: float | None,
    new_f1: float,
    current_f1: float | None,
    holdout_rows: int,
    new_shadow_win_rate: float | None,
    current_shadow_win_rate: float | None,
    promoted: bool,
    reason: str,
    details: dict,
    gate_test: str | None = None,
    accuracy_gain_ci: tuple[float, float] | None = None,
    log_loss_gain: float | None = None,
    log_loss_gain_ci: tuple[float, float] | None = None,
    p_value: float | None = None,
    new_queue_excess_pct: float | None = None,
    current_queue_excess_pct: float | None = None,
) -> int:
    """Log one champion/challenger comparison to `ml_model_comparisons`; return its id.

    The gate's evidence (sql/010) is None for a first model, which is compared with nothing."""
    accuracy_ci = accuracy_gain_ci or (None, None)
    log_loss_ci = log_loss_gain_ci or (None, None)
    return conn.execute(
        sa.text(
            "INSERT INTO ml_model_comparisons (as_of, new_model_id, current_model_id, new_accuracy,"
            " current_accuracy, new_f1, current_f1, holdout_rows, new_shadow_win_rate,"
            " current_shadow_win_rate, promoted, reason, details, gate_test, accuracy_gain_ci_low,"
            " accuracy_gain_ci_high, log_loss_gain, log_loss_gain_ci_low, log_loss_gain_ci_high, p_value,"
            " new_queue_excess_pct, current_queue_excess_pct)"
            " VALUES (:as_of, :new_model_id, :current_model_id, :new_accuracy, :current_accuracy,"
            " :new_f1, :current_f1, :holdout_rows, :new_shadow_win_rate, :current_shadow_win_rate,"
            " :promoted, :reason, CAST(:details AS JSONB), :gate_test, :accuracy_low, :accuracy_high,"
            " :log_loss_gain, :log_loss_low, :log_loss_high, :p_value, :new_queue_excess_pct,"
            " :current_queue_excess_pct) RETURNING comparison_id"
        ),
        {
            "as_of": _day(as_of),
            "new_model_id": new_model_id,
            "current_model_id": current_model_id,
            "new_accuracy": new_accuracy,
            "current_accuracy": current_accuracy,
            "new_f1": new_f1,
            "current_f1": current_f1,
            "holdout_rows": holdout_rows,
            "new_shadow_win_rate": new_shadow_win_rate,
            "current_shadow_win_rate": current_shadow_win_rate,
            "promoted": promoted,
            "reason": reason,
            "details": _json(details),
            "gate_test": gate_test,
            "accuracy_low": accuracy_ci[0],
            "accuracy_high": accuracy_ci[1],
            "log_loss_gain": log_loss_gain,
            "log_loss_low": log_loss_ci[0],
            "log_loss_high": log_loss_ci[1],
            "p_value": p_value,
            "new_queue_excess_pct": new_queue_excess_pct,
            "current_queue_excess_pct": current_queue_excess_pct,
        },
    ).scalar_one()


def record_retraining_event(
    conn: sa.Connection,
    *,
    as_of,
    trigger: str,
    dagster_run_id: str | None,
    old_model_id: str | None,
    new_model_id: str | None,
    old_metrics: dict | None,
    new_metrics: dict | None,
    accuracy_improvement: float | None,
    f1_improvement: float | None,
    deployed: bool,
    reason: str,
) -> int:
    """Log one retraining run to `model_retraining_events`; return its id."""
    return conn.execute(
        sa.text(
            "INSERT INTO model_retraining_events (as_of, trigger, dagster_run_id, old_model_id,"
            " new_model_id, old_metrics, new_metrics, accuracy_improvement, f1_improvement,"
            " deployed, reason)"
            " VALUES (:as_of, :trigger, :dagster_run_id, :old_model_id, :new_model_id,"
            " CAST(:old_metrics AS JSONB), CAST(:new_metrics AS JSONB), :accuracy_improvement,"
            " :f1_improvement, :deployed, :reason) RETURNING event_id"
        ),
        {
            "as_of": _day(as_of),
            "trigger": RetrainTrigger(trigger).value,
            "dagster_run_id": dagster_run_id,
            "old_model_id": old_model_id,
            "new_model_id": new_model_id,
            "old_metrics": _json(old_metrics) if old_metrics is not None else None,
            "new_metrics": _json(new_metrics) if new_metrics is not None else None,
            "accuracy_improvement": accuracy_improvement,
            "f1_improvement": f1_improvement,
            "deployed": deployed,
            "reason": reason,
        },
    ).scalar_one()


def deployments(conn: sa.Connection, model_id: str | None = None) -> list[dict]:
    """`model_deployments` rows (all, or one model's) in recording order, with the model's version."""
    return [dict(row._mapping) for row in conn.execute(sa.text(
        "SELECT d.deployment_id, d.model_id, m.version, d.action, d.trigger, d.effective_from, d.reason, d.created_at"
        " FROM model_deployments d JOIN ml_models m USING (model_id)"
        " WHERE CAST(:id AS TEXT) IS NULL OR d.model_id = CAST(:id AS TEXT)"
        " ORDER BY d.effective_from, d.deployment_id"), {"id": model_id})]


def comparisons(conn: sa.Connection, model_id: str | None = None, through=None) -> list[dict]:
    """`ml_model_comparisons` rows (all, or those a model took part in, either side) decided by `through`,
    oldest first; `details` (both models' full holdout metrics) left out."""
    return [dict(row._mapping) for row in conn.execute(sa.text(
        "SELECT comparison_id, as_of, new_model_id, current_model_id, new_accuracy, current_accuracy, new_f1,"
        " current_f1, holdout_rows, new_shadow_win_rate, current_shadow_win_rate, promoted, reason, created_at"
        " FROM ml_model_comparisons"
        " WHERE (CAST(:id AS TEXT) IS NULL OR CAST(:id AS TEXT) IN (new_model_id, current_model_id))"
        " AND (CAST(:through AS DATE) IS NULL OR as_of <= CAST(:through AS DATE))"
        " ORDER BY as_of, comparison_id"),
        {"id": model_id, "through": _day(through) if through is not None else None})]


def candidate_ids(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.text("SELECT model_id FROM ml_models WHERE status = :c ORDER BY trained_as_of"),
                             {"c": ModelStatus.CANDIDATE.value}).scalars())


def set_statuses(conn: sa.Connection, statuses: dict[str, ModelStatus]) -> None:
    """Apply status changes of the candidate lifecycle (`loop_rules.model_statuses_after_decision`)."""
    for model_id, status in statuses.items():
        conn.execute(sa.text(
            "UPDATE ml_models SET status = :s, archived_at = CASE WHEN :s = :archived THEN now() END"
            " WHERE model_id = :id"), {"s": status.value, "archived": ModelStatus.ARCHIVED.value, "id": model_id})
