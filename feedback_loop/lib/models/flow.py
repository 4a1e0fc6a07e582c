"""Training as of a date from the database, and the champion/challenger decision applied to it.

Shared by the Dagster training assets and `feedback-loop train`; the engine runs the same
label/train/decide functions on its in-memory state.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from feedback_loop.lib import policy, rules
from feedback_loop.lib.frames import MARKET_TICKER
from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.models import registry
from feedback_loop.lib.models import store as model_store
from feedback_loop.lib.models.promotion import PromotionDecision, compare_on_holdout
from feedback_loop.lib.portfolio import loop_store
from feedback_loop.lib.signals.features import FEATURE_HISTORY_DAYS, compute_ticker_features
from feedback_loop.lib.training.artifact import ArtifactIntegrityError
from feedback_loop.lib.training.config import TrainingConfig
from feedback_loop.lib.training.labels import (
    LabeledSet,
    market_labeled_set,
    outcome_labeled_set,
    training_pairs,
)


def latest_market_date(conn: sa.Connection) -> pd.Timestamp | None:
    """The last day with a SPY price: the default training date."""
    latest = conn.execute(sa.text("SELECT max(date) FROM prices WHERE ticker = :t"), {"t": MARKET_TICKER}).scalar()
    return None if latest is None else pd.Timestamp(latest)


def feature_window_start(as_of, config: TrainingConfig, window_days: int) -> pd.Timestamp:
    """Earliest filing date whose features a training run as of `as_of` can need (the member
    record reads the `FEATURE_HISTORY_DAYS` before a row, more than its window)."""
    return pd.Timestamp(as_of) - pd.Timedelta(days=config.lookback_days + max(window_days, FEATURE_HISTORY_DAYS))


def market_set(conn: sa.Connection, as_of, config: TrainingConfig, window_days: int = 90) -> LabeledSet:
    as_of = pd.Timestamp(as_of)
    start = feature_window_start(as_of, config, window_days)
    disclosures = ingest.read_disclosures(conn, as_of=as_of)
    disclosures = disclosures[disclosures["disclosure_date"] >= start]
    prices = ingest.read_prices(conn, start=start - pd.Timedelta(days=60), end=as_of)
    pairs = training_pairs(disclosures, as_of - pd.Timedelta(days=config.lookback_days), as_of)
    features = compute_ticker_features(disclosures, prices, pairs=pairs, window_days=window_days,
                                       sectors=ingest.read_sectors(conn))
    return market_labeled_set(features, prices, as_of, config)


def outcome_set(conn: sa.Connection, as_of, config: TrainingConfig) -> LabeledSet:
    return outcome_labeled_set(loop_store.read_outcomes(conn, as_of), pd.Timestamp(as_of), config)


@dataclass
class PromotionResult:
    decision: PromotionDecision
    new_metrics: dict
    current_metrics: dict | None
    current_model_id: str | None
    holdout_rows: int
    png: bytes
    #: The comparison as logged (`comparison_record`); None when nothing was compared (no change).
    comparison: dict | None = None


def decide_and_apply(engine: sa.Engine, challenger_id: str, *, as_of, trigger: str,
                     run_id: str | None = None) -> PromotionResult:
    """Score champion and challenger on the challenger's holdout, decide, promote or park, log both tables.

    One transaction under the promotion lock: the champion compared against is the one in force
    from the day after `as_of` when the decision is written, and the comparison, the event, the
    candidate statuses and the promotion commit together or not at all.
    """
    from feedback_loop.lib.plots import comparison_png

    effective_from = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    with engine.begin() as conn:
        registry.lock_promotions(conn, as_of)
        challenger_record = registry.get_model(conn, challenger_id)
        champion_record = registry.champion_as_of(conn, effective_from)
        if champion_record is not None and champion_record.model_id == challenger_id:
            return _no_change(conn, challenger_record, as_of=as_of, trigger=trigger, run_id=run_id)
        candidate_ids = registry.candidate_ids(conn)
        shadow = loop_store.read_shadow(conn, as_of)
        challenger = model_store.load_verified(challenger_record)
        holdout = challenger.holdout
        champion, champion_note = None, ""
        if champion_record is not None:
            try:
                champion = model_store.load_verified(champion_record)
            except ArtifactIntegrityError as exc:
                champion_note = f"; champion {champion_record.version} could not be verified ({exc})"
        compared = compare_on_holdout(challenger, champion, holdout)
        new_metrics, current_metrics, decision = compared.new_metrics, compared.current_metrics, compared.decision
        reason = decision.reason + champion_note
        champion_id = champion_record.model_id if champion_record else None
        comparison = comparison_record(
            as_of, challenger_id, champion_id if current_metrics else None, new_metrics,
            current_metrics, len(holdout), decision, shadow, reason=reason)
        registry.record_comparison(conn, **comparison)
        registry.record_retraining_event(
            conn, as_of=as_of, trigger=trigger, dagster_run_id=run_id,
            old_model_id=champion_id, new_model_id=challenger_id,
            old_metrics=current_metrics, new_metrics=new_metrics, accuracy_improvement=decision.accuracy_gain,
            f1_improvement=decision.f1_gain, deployed=decision.promote, reason=reason,
        )
        statuses = rules.model_statuses_after_decision(challenger_id, decision.promote, champion_id, candidate_ids)
        # The promotion itself (champion archived, challenger active, deployment) is the registry's.
        registry.set_statuses(conn, {model_id: status for model_id, status in statuses.items()
                                     if model_id not in (challenger_id, champion_id)})
        if decision.promote:
            registry.promote_locked(conn, challenger_id, as_of=as_of, trigger=trigger, reason=reason)
    png = comparison_png(new_metrics, current_metrics, holdout, challenger, champion)
    return PromotionResult(decision, new_metrics, current_metrics, champion_id, len(holdout), png, comparison)


def _no_change(conn: sa.Connection, record, *, as_of, trigger: str, run_id: str | None) -> PromotionResult:
    """A retrain that reproduced the model in service: logged as an event, never compared with itself."""
    reason = f"no change: the retrain reproduced the model in service ({record.version})"
    decision = PromotionDecision(False, reason, None, None)
    registry.record_retraining_event(
        conn, as_of=as_of, trigger=trigger, dagster_run_id=run_id, old_model_id=record.model_id,
        new_model_id=record.model_id, old_metrics=record.metrics, new_metrics=record.metrics,
        accuracy_improvement=None, f1_improvement=None, deployed=False, reason=reason,
    )
    return PromotionResult(decision, record.metrics, record.metrics, record.model_id, 0, b"")


def comparison_record(as_of, new_model_id: str, current_model_id: str | None, new_metrics: dict,
                      current_metrics: dict | None, holdout_rows: int, decision: PromotionDecision,
                      shadow: pd.DataFrame | None, reason: str | None = None) -> dict:
    """One champion/challenger comparison as `registry.record_comparison` logs it, on every path:
    the holdout metrics of both, the shadow win rates resolved by `as_of`, the decision (its
    reason unless `reason` is given) and the gate's evidence (test, intervals, p-value)."""
    new_rate, current_rate = shadow_win_rates(shadow if shadow is not None else pd.DataFrame(), new_model_id)
    evidence = decision.evidence
    return {
        "as_of": as_of, "new_model_id": new_model_id, "current_model_id": current_model_id,
        "new_accuracy": new_metrics["accuracy"], "new_f1": new_metrics["f1_weighted"],
        "current_accuracy": current_metrics["accuracy"] if current_metrics else None,
        "current_f1": current_metrics["f1_weighted"] if current_metrics else None,
        "holdout_rows": holdout_rows, "new_shadow_win_rate": new_rate, "current_shadow_win_rate": current_rate,
        "promoted": decision.promote, "reason": decision.reason if reason is None else reason,
        "gate_test": evidence.test if evidence else None,
        "accuracy_gain_ci": evidence.accuracy_gain_ci if evidence else None,
        "log_loss_gain": evidence.log_loss_gain if evidence else None,
        "log_loss_gain_ci": evidence.log_loss_gain_ci if evidence else None,
        "p_value": evidence.p_value if evidence else None,
        "new_queue_excess_pct": evidence.new_queue_excess_pct if evidence else None,
        "current_queue_excess_pct": evidence.current_queue_excess_pct if evidence else None,
        "details": {"new": new_metrics, "current": current_metrics,
                    "evidence": evidence.to_dict() if evidence else None},
    }


#: A model's shadow win rate is reported only with at least this many resolved shadow outcomes.
MIN_SHADOW_OUTCOMES = 20


def shadow_win_rates(shadow: pd.DataFrame, challenger_id: str) -> tuple[float | None, float | None]:
    """(challenger, champion) win rates on the signals both scored, when there are enough outcomes."""
    if not len(shadow) or "challenger_outcome" not in shadow:
        return None, None
    both = shadow[shadow["challenger_outcome"].notna() & shadow["ml_outcome"].notna()]
    if len(both) < MIN_SHADOW_OUTCOMES:
        return None, None
    return float((both["challenger_outcome"] == "win").mean()), float((both["ml_outcome"] == "win").mean())


class TrainingSetRejected(RuntimeError):
    """A blocking training-set check failed; the challenger is not trained."""


class TooFewNewSamples(ValueError):
    """An operator's retrain with fewer new labeled rows than MIN_NEW_SAMPLES_FOR_RETRAIN (seed 003)."""


def new_samples_since(frame: pd.DataFrame, since) -> int:
    """Rows of a training set whose label resolved (t1) after `since`: what the champion could not learn from."""
    return int((pd.to_datetime(frame["t1"]) > pd.Timestamp(since)).sum())


def _require_new_samples(engine: sa.Engine, frame: pd.DataFrame, as_of: pd.Timestamp) -> None:
    """Refuse when the champion the decision would face was trained on nearly the same rows."""
    with engine.connect() as conn:
        champion = registry.champion_as_of(conn, as_of + pd.Timedelta(days=1))
    if champion is None:
        return
    count, need = new_samples_since(frame, champion.trained_as_of), policy.MIN_NEW_SAMPLES_FOR_RETRAIN
    if count < need:
        raise TooFewNewSamples(f"only {count} new samples since champion {champion.version} was trained as of "
                               f"{champion.trained_as_of}, need {need} (--force retrains anyway)")


def train_candidate(engine: sa.Engine, as_of, config: TrainingConfig, *, trigger: str, artifact_root,
                    validate: bool = True, require_new_samples: bool = False):
    """The training job's steps without Dagster: labeled sets → blended set → gates → challenger (candidate).

    `require_new_samples` (an operator's retrain): TooFewNewSamples, before any training, when the
    set holds fewer than MIN_NEW_SAMPLES_FOR_RETRAIN rows resolved since the champion's training date.
    """
    from feedback_loop.lib.training.labels import blended_training_set, training_set_checks
    from feedback_loop.lib.training.model import train_challenger

    as_of = pd.Timestamp(as_of)
    with engine.connect() as conn:
        market = market_set(conn, as_of, config)
        outcome = outcome_set(conn, as_of, config) if config.use_outcomes else None
    frame = blended_training_set(market, outcome, config)
    accepted, why = rules.training_set_accepted(training_set_checks(frame, config, as_of))
    if not accepted:
        raise TrainingSetRejected(why)
    if require_new_samples:
        _require_new_samples(engine, frame, as_of)
    model = train_challenger(frame, config, as_of, validate=validate)
    with engine.begin() as conn:
        record = model_store.store_model(conn, model, model_id=f"model-{model.version}", trigger=trigger,
                                         training_frame=frame, artifact_root=artifact_root)
    return record, model, {"market_dropped": market.dropped, "outcome_dropped": outcome.dropped if outcome else {}}
