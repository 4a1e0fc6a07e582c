"""Training and promotion: labeled sets → blended training set (gated) → challenger → promotion decision."""


import dagster as dg
import pandas as pd
import sqlalchemy as sa

from feedback_loop.defs.resources import DatabaseResource
from feedback_loop.lib.models import flow as training_flow
from feedback_loop.lib.models import store as model_store
from feedback_loop.lib.models.promotion import GATE_DESCRIPTION
from feedback_loop.lib.plots import png_markdown
from feedback_loop.lib.store import db
from feedback_loop.lib.training.config import TrainingConfig
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

    def training_config(self) -> TrainingConfig:
        return TrainingConfig(use_outcomes=self.use_outcomes, num_classes=self.num_classes)


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


def model_metadata(model, record) -> dict:
    """What a person reads about a challenger in the UI: holdout metrics, folds, importance, calibration."""
    metrics = model.metrics
    numbers = {f"holdout_{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None}
    intervals = {f"holdout_{k}": dg.MetadataValue.json(metrics[k]) for k in ("roc_auc_ovr_ci", "accuracy_ci",
                                                                           "top_confidence_excess_pct_ci")
                 if metrics.get(k) is not None}
    fold_lines = ["| validation | fold | accuracy | f1_weighted |", "|---|---|---|---|"]
    for scheme, folds in metrics.get("folds", {}).items():
        for i, fold in enumerate(folds.get("per_fold", []) if isinstance(folds, dict) else folds):
            fold_lines.append(f"| {scheme} | {i} | {fold.get('accuracy', float('nan')):.4f} | {fold.get('f1_weighted', float('nan')):.4f} |")
    importance = sorted(model.feature_importance.items(), key=lambda kv: -kv[1])
    return {
        **numbers, **intervals,
        "skill": metrics.get("skill_verdict", "no edge detected: no skill interval"),
        "model_id": record.model_id, "version": record.version, "status": record.status,
        "artifact_sha256": record.artifact_sha256,
        "folds": dg.MetadataValue.md("\n".join(fold_lines)),
        "feature_importance": dg.MetadataValue.md(
            "| feature | gain |\n|---|---|\n" + "\n".join(f"| {k} | {v:.4f} |" for k, v in importance)),
        "calibration_curve": dg.MetadataValue.md(png_markdown(model.calibration_png, "calibration on the holdout")),
        "model_card": dg.MetadataValue.json(record.model_card),
    }


def _dropped_md(dropped: dict[str, int]) -> dg.MetadataValue:
    rows = "\n".join(f"| {reason} | {count} |" for reason, count in dropped.items())
    return dg.MetadataValue.md("| reason | rows |\n|---|---|\n" + rows if rows else "_no rows dropped_")


@dg.asset(
    group_name="training", kinds={"python", "pandas"}, owners=OWNERS, deps=["disclosures", "market_prices"],
    description=("Feature rows (the one feature function) at each filing date, labeled by the forward return from the "
                 "first trading day after filing over the horizon, in excess of SPY. Each row carries t0 and t1."),
)
def market_labeled_set(config: TrainingRunConfig, database: DatabaseResource) -> dg.Output[pd.DataFrame]:
    training = config.training_config()
    with database.get_engine().connect() as conn:
        as_of = resolve_as_of(config, conn)
        labeled = training_flow.market_set(conn, as_of, training)
    return dg.Output(labeled.frame, metadata={
        "dagster/row_count": len(labeled.frame), "as_of": str(as_of.date()),
        "dropped_by_reason": _dropped_md(labeled.dropped),
        "class_counts": dg.MetadataValue.json(labeled.frame["label"].value_counts().sort_index().to_dict()),
    })


@dg.asset(
    group_name="training", kinds={"python", "pandas"}, owners=OWNERS, deps=["signal_outcomes"],
    description=("Closed trade outcomes with their stored feature vectors: win → buy side, loss → sell side, "
                 "breakeven → hold. Rows that cannot be used are counted by reason, never dropped silently."),
)
def outcome_labeled_set(config: TrainingRunConfig, database: DatabaseResource) -> dg.Output[pd.DataFrame]:
    training = config.training_config()
    with database.get_engine().connect() as conn:
        as_of = resolve_as_of(config, conn)
        labeled = training_flow.outcome_set(conn, as_of, training)
    return dg.Output(labeled.frame, metadata={
        "dagster/row_count": len(labeled.frame), "as_of": str(as_of.date()),
        "dropped_by_reason": _dropped_md(labeled.dropped),
    })


@dg.asset(
    group_name="training", kinds={"python", "pandas"}, owners=OWNERS,
    check_specs=[dg.AssetCheckSpec(name, asset="blended_training_set", blocking=True, description=text)
                 for name, text in CHECK_DESCRIPTIONS.items()],
    description=("Market-labeled rows (weight 1.0) and, with use_outcomes, outcome-labeled rows (weight "
                 "outcome_weight, default 2.0). Blocking checks gate the challenger."),
)
def blended_training_set(config: TrainingRunConfig, database: DatabaseResource,
                         market_labeled_set: pd.DataFrame, outcome_labeled_set: pd.DataFrame):
    training = config.training_config()
    with database.get_engine().connect() as conn:
        as_of = resolve_as_of(config, conn)
    frame = blend_sets(LabeledSet(market_labeled_set), LabeledSet(outcome_labeled_set), training)
    yield dg.Output(frame, metadata={
        "dagster/row_count": len(frame), "as_of": str(as_of.date()),
        "rows_by_source": dg.MetadataValue.json(frame["source"].value_counts().to_dict()),
        "use_outcomes": training.use_outcomes,
    })
    for check in training_set_checks(frame, training, as_of):
        yield dg.AssetCheckResult(
            check_name=check.name, passed=bool(check.passed),
            severity=dg.AssetCheckSeverity.ERROR if check.severity == "ERROR" else dg.AssetCheckSeverity.WARN,
            metadata={k: (float(v) if isinstance(v, (int, float)) else dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else str(v))
                      for k, v in check.metadata.items()},
        )


@dg.asset(
    group_name="training", kinds={"python", "xgboost"}, owners=OWNERS, pool="retrain",
    description=("XGBoost (hist) trained with the sample weights, validated in time (holdout with purge/embargo, "
                 "walk-forward, purged k-fold), calibrated on a later slice. Registered as a candidate: training "
                 "never promotes."),
)
def challenger_model(context: dg.AssetExecutionContext, config: TrainingRunConfig, database: DatabaseResource,
                     blended_training_set: pd.DataFrame) -> dg.Output[dict]:
    training = config.training_config()
    engine = database.get_engine()
    with engine.connect() as conn:
        as_of = resolve_as_of(config, conn)
    model = train_challenger(blended_training_set, training, as_of, validate=True)
    with engine.begin() as conn:
        record = model_store.store_model(conn, model, model_id=f"model-{model.version}", trigger=config.trigger,
                                         training_frame=blended_training_set,
                                         artifact_root=db.state_dir() / "models")
    return dg.Output({"model_id": record.model_id, "version": record.version, "as_of": str(as_of.date())},
                     metadata=model_metadata(model, record))


@dg.asset(
    group_name="training", kinds={"python", "postgres"}, owners=OWNERS, pool="retrain",
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
    return dg.MaterializeResult(metadata={
        "promoted": result.decision.promote,
        "reason": result.decision.reason,
        "comparison": dg.MetadataValue.md(result.table_markdown()),
        **({"comparison_plot": dg.MetadataValue.md(png_markdown(result.png, "champion vs challenger"))}
           if result.png else {}),
        "holdout_rows": result.holdout_rows,
        **{key: dg.MetadataValue.json(value) if isinstance(value, list) else float("nan") if value is None else value
           for key, value in result.evidence_metadata().items()},
    })
