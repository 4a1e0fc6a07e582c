"""Training and promotion: labeled sets → blended training set (gated) → challenger → promotion decision."""


from pathlib import Path

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from feedback_loop.defs import checks
from feedback_loop.defs import metadata as md
from feedback_loop.defs.resources import DatabaseResource
from feedback_loop.lib.models import checks as model_checks
from feedback_loop.lib.models import flow as training_flow
from feedback_loop.lib.models import registry
from feedback_loop.lib.models import store as model_store
from feedback_loop.lib.models.promotion import GATE_DESCRIPTION
from feedback_loop.lib.plots import png_markdown
from feedback_loop.lib.portfolio.broker import read_policy
from feedback_loop.lib.store import db
from feedback_loop.lib.training import metrics as metric_fns
from feedback_loop.lib.training.artifact import ArtifactIntegrityError, artifact_sha256
from feedback_loop.lib.training.config import TrainingConfig, training_config_for
from feedback_loop.lib.training.labels import CHECK_DESCRIPTIONS, LabeledSet, training_set_checks
from feedback_loop.lib.training.labels import blended_training_set as blend_sets
from feedback_loop.lib.training.model import train_challenger

OWNERS = ["team:ml"]


class TrainingRunConfig(dg.Config):
    """One training run: as of which date, with outcomes or not, and why it runs."""

    as_of: str = ""  # YYYY-MM-DD; empty = the latest SPY price date
    use_outcomes: bool = False
    trigger: str = "manual"
    num_classes: int = 5

    def training_config(self, conn: sa.Connection) -> TrainingConfig:
        """Labels over the persisted portfolio's hold_days (its exit timeout)."""
        return training_config_for(read_policy(conn), use_outcomes=self.use_outcomes, num_classes=self.num_classes)


def training_run_config(*, as_of: str = "", use_outcomes: bool, trigger: str) -> dg.RunConfig:
    """Run config giving every training asset the same TrainingRunConfig."""
    config = TrainingRunConfig(as_of=as_of, use_outcomes=use_outcomes, trigger=trigger)
    return dg.RunConfig(ops={name: config for name in (
        "market_labeled_set", "outcome_labeled_set", "blended_training_set", "challenger_model", "promotion_decision")})


def resolve_as_of(config: TrainingRunConfig, conn: sa.Connection) -> pd.Timestamp:
    if config.as_of:
        return pd.Timestamp(config.as_of)
    latest = training_flow.latest_market_date(conn)
    if latest is None:
        raise dg.Failure("no SPY prices ingested: materialize market_prices first")
    return latest


#: The metrics a comparison shows, challenger beside champion.
COMPARED_METRICS = ["accuracy", "f1_weighted", "roc_auc_ovr", "brier", "log_loss", "ece"]


def model_metadata(model, record) -> dict:
    """What a person reads about a challenger in the UI: holdout metrics, folds, importance, calibration."""
    metrics = model.metrics
    holdout = {(k if k.startswith("holdout_") else f"holdout_{k}"): v for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    intervals = {f"holdout_{k}": ", ".join(f"{v:.4f}" for v in metrics[k])
                 for k in metric_fns.INTERVAL_KEYS if metrics.get(k) is not None}
    folds = [{"validation": scheme, "fold": i, "accuracy": fold.get("accuracy"), "f1_weighted": fold.get("f1_weighted")}
             for scheme, runs in metrics.get("folds", {}).items()
             for i, fold in enumerate(runs.get("per_fold", []) if isinstance(runs, dict) else runs)]
    importance = sorted(model.feature_importance.items(), key=lambda kv: -kv[1])
    return {
        **md.numbers(holdout), **intervals,
        "skill": metrics.get("skill_verdict", "no edge detected: no skill interval"),
        "model_id": record.model_id, "version": record.version, "status": record.status,
        "artifact_sha256": record.artifact_sha256 or "",
        "folds": md.table(pd.DataFrame(folds, columns=["validation", "fold", "accuracy", "f1_weighted"])),
        "feature_importance": md.table(pd.DataFrame(importance, columns=["feature", "gain"])),
        **({"calibration_curve": dg.MetadataValue.md(png_markdown(model.calibration_png, "calibration on the holdout"))}
           if model.calibration_png else {}),
        "model_card": dg.MetadataValue.json(record.model_card),
    }


def labeled_metadata(labeled: LabeledSet, as_of: pd.Timestamp, with_classes: bool) -> dict:
    dropped = pd.DataFrame({"reason": list(labeled.dropped), "rows": list(labeled.dropped.values())})
    metadata = {"dagster/row_count": len(labeled.frame), "as_of": str(as_of.date()), "dropped_by_reason": md.table(dropped)}
    if with_classes:
        metadata["class_counts"] = md.counts(labeled.frame["label"] if len(labeled.frame) else None, "label")
    return metadata


def blended_metadata(frame: pd.DataFrame, as_of: pd.Timestamp, use_outcomes: bool) -> dict:
    return {"dagster/row_count": len(frame), "as_of": str(as_of.date()),
            "rows_by_source": md.counts(frame["source"] if len(frame) else None, "source"),
            "use_outcomes": use_outcomes}


#: The gate's evidence in a logged comparison (`flow.comparison_record`): test, intervals, p-value.
EVIDENCE_KEYS = ("gate_test", "accuracy_gain_ci", "log_loss_gain_ci", "p_value", "new_queue_excess_pct",
                 "current_queue_excess_pct")


def evidence_metadata(comparison: dict | None) -> dict:
    """The gate's evidence, readable: intervals as 'low, high', numbers rounded (none for a first model)."""
    if not comparison or comparison.get("gate_test") is None:
        return {}
    values = {key: comparison.get(key) for key in EVIDENCE_KEYS}
    intervals = {key: ", ".join(f"{v:.4f}" for v in value) for key, value in values.items()
                 if isinstance(value, (list, tuple))}
    return {**md.numbers({k: v for k, v in values.items() if k not in intervals}), **intervals}


def promotion_metadata(promoted: bool, reason: str, new_metrics: dict, current_metrics: dict | None,
                       holdout_rows: int, png: bytes | None = None, comparison: dict | None = None) -> dict:
    metrics = pd.DataFrame({
        "metric": COMPARED_METRICS,
        "challenger": [new_metrics.get(k) for k in COMPARED_METRICS],
        "champion": [current_metrics.get(k) if current_metrics else None for k in COMPARED_METRICS],
    })
    return {
        "promoted": promoted, "reason": reason, "holdout_rows": holdout_rows,
        "comparison": md.table(metrics),
        **evidence_metadata(comparison),
        **({"comparison_plot": dg.MetadataValue.md(png_markdown(png, "champion vs challenger"))} if png else {}),
    }


@dg.asset(
    group_name="training", kinds={"python", "pandas"}, owners=OWNERS, deps=["disclosures", "market_prices"],
    description=("Feature rows (the one feature function) at each filing date, labeled by the forward return from the "
                 "first trading day after filing over the portfolio's hold_days (its exit timeout), in excess of SPY. "
                 "Each row carries t0 and t1."),
)
def market_labeled_set(config: TrainingRunConfig, database: DatabaseResource) -> dg.Output[pd.DataFrame]:
    with database.get_engine().connect() as conn:
        training = config.training_config(conn)
        as_of = resolve_as_of(config, conn)
        labeled = training_flow.market_set(conn, as_of, training)
    return dg.Output(labeled.frame, metadata=labeled_metadata(labeled, as_of, with_classes=True))


@dg.asset(
    group_name="training", kinds={"python", "pandas"}, owners=OWNERS, deps=["signal_outcomes"],
    description=("Closed trade outcomes with their stored feature vectors: win → buy side, loss → sell side, "
                 "breakeven → hold. Rows that cannot be used are counted by reason, never dropped silently."),
)
def outcome_labeled_set(config: TrainingRunConfig, database: DatabaseResource) -> dg.Output[pd.DataFrame]:
    with database.get_engine().connect() as conn:
        training = config.training_config(conn)
        as_of = resolve_as_of(config, conn)
        labeled = training_flow.outcome_set(conn, as_of, training)
    return dg.Output(labeled.frame, metadata=labeled_metadata(labeled, as_of, with_classes=False))


@dg.asset(
    group_name="training", kinds={"python", "pandas"}, owners=OWNERS,
    check_specs=[dg.AssetCheckSpec(name, asset="blended_training_set", blocking=True, description=text)
                 for name, text in CHECK_DESCRIPTIONS.items()],
    description=("Market-labeled rows (weight 1.0) and, with use_outcomes, outcome-labeled rows (weight "
                 "outcome_weight, default 2.0). Blocking checks gate the challenger."),
)
def blended_training_set(config: TrainingRunConfig, database: DatabaseResource,
                         market_labeled_set: pd.DataFrame, outcome_labeled_set: pd.DataFrame):
    with database.get_engine().connect() as conn:
        training = config.training_config(conn)
        as_of = resolve_as_of(config, conn)
    frame = blend_sets(LabeledSet(market_labeled_set), LabeledSet(outcome_labeled_set), training)
    yield dg.Output(frame, metadata=blended_metadata(frame, as_of, training.use_outcomes))
    yield from checks.results(training_set_checks(frame, training, as_of))


@dg.asset(
    group_name="training", kinds={"python", "xgboost"}, owners=OWNERS, pool="retrain",
    check_specs=checks.specs("challenger_model"),
    description=("XGBoost (hist) trained with the sample weights, validated in time (holdout with purge/embargo, "
                 "walk-forward, purged k-fold), calibrated on a later slice. Registered as a candidate: training "
                 "never promotes."),
)
def challenger_model(context: dg.AssetExecutionContext, config: TrainingRunConfig, database: DatabaseResource,
                     blended_training_set: pd.DataFrame):
    engine = database.get_engine()
    with engine.connect() as conn:
        training = config.training_config(conn)
        as_of = resolve_as_of(config, conn)
    model = train_challenger(blended_training_set, training, as_of, validate=True)
    with engine.begin() as conn:
        record = model_store.store_model(conn, model, model_id=f"model-{model.version}", trigger=config.trigger,
                                         training_frame=blended_training_set,
                                         artifact_root=db.state_dir() / "models")
    yield dg.Output({"model_id": record.model_id, "version": record.version, "as_of": str(as_of.date())},
                    metadata=model_metadata(model, record))
    try:
        stored_sha256 = artifact_sha256(Path(record.artifact_path))
    except ArtifactIntegrityError:
        stored_sha256 = None
    yield from checks.results(model_checks.challenger_model_checks(
        record.artifact_sha256, stored_sha256, len(model.holdout), model.metrics))


@dg.asset(
    group_name="training", kinds={"python", "postgres"}, owners=OWNERS, pool="retrain",
    check_specs=checks.specs("promotion_decision"),
    description=("Champion and challenger scored on the SAME time-ordered holdout; " + GATE_DESCRIPTION
                 + " Otherwise the challenger stays a candidate and scores in shadow. Every decision is logged."),
)
def promotion_decision(context: dg.AssetExecutionContext, config: TrainingRunConfig, database: DatabaseResource,
                       challenger_model: dict) -> dg.MaterializeResult:
    engine = database.get_engine()
    with engine.connect() as conn:
        as_of = resolve_as_of(config, conn)
    result = training_flow.decide_and_apply(engine, challenger_model["model_id"], as_of=as_of,
                                            trigger=config.trigger, run_id=context.run_id)
    with engine.connect() as conn:
        statuses = {record.model_id: record.status for record in registry.list_models(conn)}
    return dg.MaterializeResult(metadata=promotion_metadata(
        result.decision.promote, result.decision.reason, result.new_metrics, result.current_metrics,
        result.holdout_rows, result.png, result.comparison),
        check_results=checks.results(model_checks.promotion_decision_checks(
            result.comparison, statuses, challenger_model["model_id"], result.decision.promote)))
