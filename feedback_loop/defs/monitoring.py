"""Monitoring that moves the loop: the self-tuning blend weight and feature drift of the champion."""


import dagster as dg
import pandas as pd

from feedback_loop.defs import checks
from feedback_loop.defs import metadata as md
from feedback_loop.defs.partitions import daily_partitions
from feedback_loop.defs.resources import DatabaseResource
from feedback_loop.lib.models import registry
from feedback_loop.lib.models import store as model_store
from feedback_loop.lib.monitoring import blend_weight as blend_weight_lib
from feedback_loop.lib.monitoring import checks as monitoring_checks
from feedback_loop.lib.monitoring import drift
from feedback_loop.lib.portfolio import loop_store
from feedback_loop.lib.signals.features import FEATURE_NAMES
from feedback_loop.lib.training.artifact import ArtifactIntegrityError
from feedback_loop.lib.training.config import TrainingConfig
from feedback_loop.lib.vocab import DriftRecommendation

OWNERS = ["team:ml"]


def blend_metadata(decision, counts: dict) -> dict:
    return md.numbers({
        "old_weight": decision.old_weight, "new_weight": decision.new_weight, "changed": decision.changed,
        "reason": decision.reason, "sample_size": decision.sample_size,
        "ml_win_rate": decision.ml_win_rate, "heuristic_win_rate": decision.heuristic_win_rate,
        "ml_breakevens": counts["ml_breakevens"], "heuristic_breakevens": counts["heuristic_breakevens"],
        "test": decision.test or "none (no resolved outcomes on a side)", "p_value": decision.p_value,
        **({"difference_ci": ", ".join(f"{v:.4f}" for v in decision.difference_ci)} if decision.difference_ci else {}),
    })


def drift_metadata(report, model_version: str) -> dict:
    ks = pd.DataFrame([{"feature": name, "ks_statistic": r.statistic, "live_rows": r.n_live}
                       for name, r in report.ks.items()])
    return {
        "recommendation": report.recommendation.value,
        "reason": report.reason,
        **md.numbers({"score_psi": report.psi, "rolling_accuracy": report.rolling_accuracy,
                      "validation_accuracy": report.validation_accuracy, "live_rows": report.live_rows,
                      "reference_rows": report.reference_rows, "resolved_outcomes": report.resolved_outcomes}),
        "drifting_features": ", ".join(report.drifting_features) or "none",
        "ks_statistics": md.table(ks),
        "model_version": model_version,
    }


@dg.asset(
    group_name="monitoring", kinds={"python", "postgres"}, owners=OWNERS, partitions_def=daily_partitions,
    deps=["signal_outcomes"], check_specs=checks.specs("blend_weight"),
    description=blend_weight_lib.RULE_DESCRIPTION,
)
def blend_weight(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    day = pd.Timestamp(context.partition_key)
    engine = database.get_engine()
    with engine.connect() as conn:
        shadow = loop_store.read_shadow(conn, day)
        current = blend_weight_lib.blend_weight_as_of(conn, day)
        since = blend_weight_lib.days_since_last_move(conn, day)
    decision, counts = blend_weight_lib.decide_blend_weight(shadow, day, current, since)
    with engine.begin() as conn:
        blend_weight_lib.apply_blend_weight(conn, decision, day)
    return dg.MaterializeResult(metadata=blend_metadata(decision, counts),
                                check_results=checks.results(monitoring_checks.blend_weight_checks(decision)))


@dg.asset(
    group_name="monitoring", kinds={"python", "scipy", "postgres"}, owners=OWNERS, partitions_def=daily_partitions,
    deps=["ticker_features", "signal_outcomes"], check_specs=checks.specs("feature_drift"),
    description=drift.RULE_DESCRIPTION,
)
def feature_drift(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    day = pd.Timestamp(context.partition_key)
    engine = database.get_engine()
    with engine.begin() as conn:
        drift.clear_drift_reports(conn, day)
    with engine.connect() as conn:
        record = registry.champion_as_of(conn, day)
        if record is None:
            return dg.MaterializeResult(metadata={"recommendation": "no_action", "reason": "no champion in service"},
                                        check_results=checks.not_evaluated("feature_drift", "no champion in service"))
        since = drift.live_window_start(day, record.trained_as_of)
        live = loop_store.read_features(conn, since + pd.Timedelta(days=1), day)
        shadow = loop_store.read_shadow(conn, day)
    live_days = live["as_of"].nunique() if len(live) else 0
    if (too_few := drift.too_few_live_days(live_days)) is not None:
        return dg.MaterializeResult(metadata={
            "recommendation": "no_action", "model_version": record.version, "reason": too_few},
            check_results=checks.not_evaluated("feature_drift", too_few))
    try:
        model = model_store.load_verified(record)
    except ArtifactIntegrityError as exc:
        reason = f"champion artifact failed verification: {exc}"
        return dg.MaterializeResult(metadata={"recommendation": "emergency_retrain", "reason": reason},
                                    check_results=checks.results(monitoring_checks.feature_drift_checks(
                                        None, reason, DriftRecommendation.EMERGENCY_RETRAIN)))
    reference_features = model_store.load_reference_features(record)
    reference = drift.DriftReference.of(
        reference_features, model.predict_proba(reference_features[FEATURE_NAMES]).max(axis=1), FEATURE_NAMES)
    hits = drift.champion_hits(shadow, record.model_id, day, TrainingConfig.from_dict(record.config))
    live_scores = model.predict_proba(live[FEATURE_NAMES]).max(axis=1) if len(live) else []
    report = drift.drift_report(reference, live[FEATURE_NAMES] if len(live) else live, live_scores, hits,
                                record.metrics.get("accuracy"), FEATURE_NAMES)
    with engine.begin() as conn:
        drift.write_drift_report(conn, report, day, record.model_id)
    return dg.MaterializeResult(metadata=drift_metadata(report, record.version),
                                check_results=checks.results(monitoring_checks.feature_drift_checks(report)))
