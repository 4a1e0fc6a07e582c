"""Safe model serving: sha256-verified loading with fallbacks, and prediction logging rows.

Serving order on a date: the champion in force, then the previous champion, then the
heuristic alone; while the operator's kill switch (`switch.py`) is off, the heuristic alone.
A model is served only if its artifact's sha256 matches the one recorded in `ml_models` at
registration (`model_store.load_verified`: the bytes hashed are the bytes loaded); any failure
to read or verify an artifact falls back, the model skipped and why listed in `failures`, and
the path taken is recorded with each signal and prediction.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa

from feedback_loop.lib.models import registry, switch
from feedback_loop.lib.models import store as model_store
from feedback_loop.lib.models.registry import ModelRecord
from feedback_loop.lib.signals.features import feature_vectors
from feedback_loop.lib.store import db
from feedback_loop.lib.training.artifact import ArtifactIntegrityError
from feedback_loop.lib.training.model import TrainedModel
from feedback_loop.lib.vocab import ModelStatus, PredictionRole, ServingPath

PREDICTION_COLUMNS = ["ticker", "as_of", "ml_signal_type", "ml_confidence"]
#: The columns of table ml_predictions that a prediction writes (ids and timestamps are defaults).
PREDICTION_LOG_COLUMNS = [
    "signal_id", "as_of", "ticker", "model_id", "model_version", "role", "serving_path",
    "feature_hash", "probabilities", "predicted_class", "confidence", "latency_ms",
]


@dataclass(frozen=True)
class ServingResult:
    model: TrainedModel | None
    record: ModelRecord | None
    serving_path: ServingPath
    failures: list[str] = field(default_factory=list)
    #: Why no model serves when that was decided rather than failed (the kill switch).
    note: str = ""


def load_for_serving(candidates: list[tuple[ModelRecord, str]]) -> ServingResult:
    """Serve the first candidate whose artifact verifies; `candidates` are (record, path)
    in preference order, path a ServingPath value ('champion', 'previous_champion').

    None verifying -> 'heuristic_fallback'; no candidate at all -> 'no_champion'.
    """
    failures: list[str] = []
    for record, path in candidates:
        try:
            model = model_store.load_verified(record)
        except (ArtifactIntegrityError, OSError) as error:
            failures.append(f"{ServingPath(path).value} {record.model_id} ({record.version}): {error}")
            continue
        return ServingResult(model, record, ServingPath(path), failures)
    path = ServingPath.HEURISTIC_FALLBACK if candidates else ServingPath.NO_CHAMPION
    return ServingResult(None, None, path, failures)


def serve_as_of(conn: sa.Connection, as_of) -> ServingResult:
    """The model serving the signals of `as_of`: champion in force, else previous champion;
    none ('ml_disabled', with the switch's who/why as `note`) while ML is switched off."""
    ml = switch.ml_switch_as_of(conn, as_of)
    if not ml.enabled:
        return ServingResult(None, None, ServingPath.ML_DISABLED, note=ml.describe())
    candidates = [
        (record, path)
        for record, path in (
            (registry.champion_as_of(conn, as_of), ServingPath.CHAMPION),
            (registry.previous_champion(conn, as_of), ServingPath.PREVIOUS_CHAMPION),
        )
        if record is not None
    ]
    return load_for_serving(candidates)


def candidate_as_of(conn: sa.Connection, as_of) -> ServingResult:
    """The challenger scoring in shadow on `as_of`: the newest model trained before `as_of`,
    unless it had been deployed by then (then there is none). Its path is 'no_champion'
    when there is no such model, else 'champion' (the path it would take if promoted)."""
    newest = conn.execute(
        sa.text(
            "SELECT m.model_id,"
            " EXISTS (SELECT 1 FROM model_deployments d WHERE d.model_id = m.model_id"
            "         AND d.effective_from <= :as_of) AS deployed"
            " FROM ml_models m WHERE m.trained_as_of < :as_of AND m.status NOT IN (:training, :failed)"
            " ORDER BY m.trained_as_of DESC, m.created_at DESC, m.model_id DESC LIMIT 1"
        ),
        {
            "as_of": pd.Timestamp(as_of).date(),
            "training": ModelStatus.TRAINING.value,
            "failed": ModelStatus.FAILED.value,
        },
    ).first()
    if newest is None or newest.deployed:
        return ServingResult(None, None, ServingPath.NO_CHAMPION)
    return load_for_serving([(registry.get_model(conn, newest.model_id), ServingPath.CHAMPION)])


def feature_hashes(features: pd.DataFrame) -> list[str]:
    """sha256 of each row's JSON feature vector (the one stored in trading_signals.features)."""
    return [hashlib.sha256(json.dumps(vector, sort_keys=True).encode()).hexdigest()
            for vector in feature_vectors(features)]


def score_with_logging(
    model: TrainedModel,
    record: ModelRecord,
    features: pd.DataFrame,
    role: PredictionRole,
    serving_path: ServingPath,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score the feature rows in one timed call, returning (predictions, prediction log).

    `features` holds ticker, as_of, the model's feature columns and signal_id; without a
    signal_id column the id is built as 'YYYY-MM-DD:TICKER' (the trading_signals key).
    predictions: PREDICTION_COLUMNS. log: PREDICTION_LOG_COLUMNS, one row per prediction.
    A prediction's latency_ms is the wall time of the call that made it: every row of a batch
    waits for the whole batch, so that is how long each one took to serve (not the call's time
    divided by its rows, which would shrink with the batch and hide a slow model).
    """
    if not len(features):
        return pd.DataFrame(columns=PREDICTION_COLUMNS), pd.DataFrame(columns=PREDICTION_LOG_COLUMNS)
    as_of = pd.to_datetime(features["as_of"]).dt.normalize()
    signal_ids = (
        features["signal_id"] if "signal_id" in features.columns
        else as_of.dt.strftime("%Y-%m-%d") + ":" + features["ticker"].astype(str)
    )
    start = time.perf_counter()
    scored = model.predict_signals(features)
    latency_ms = (time.perf_counter() - start) * 1000.0
    predictions = pd.DataFrame({
        "ticker": features["ticker"].to_numpy(),
        "as_of": as_of.to_numpy(),
        "ml_signal_type": scored["ml_signal_type"].to_numpy(),
        "ml_confidence": scored["ml_confidence"].to_numpy(dtype=float),
    })
    log = pd.DataFrame({
        "signal_id": signal_ids.to_numpy(),
        "as_of": as_of.to_numpy(),
        "ticker": features["ticker"].to_numpy(),
        "model_id": record.model_id,
        "model_version": record.version,
        "role": PredictionRole(role).value,
        "serving_path": ServingPath(serving_path).value,
        "feature_hash": feature_hashes(features),
        "probabilities": scored["probabilities"].to_list(),
        "predicted_class": scored["ml_signal_type"].to_numpy(),
        "confidence": scored["ml_confidence"].to_numpy(dtype=float),
        "latency_ms": latency_ms,
    })
    return predictions, log


def write_predictions(conn: sa.Connection, log: pd.DataFrame) -> int:
    """Upsert prediction log rows into ml_predictions (one per signal and model)."""
    return db.upsert_frame(conn, "ml_predictions", log[PREDICTION_LOG_COLUMNS], ["signal_id", "model_id"])


def latency_summary(log: pd.DataFrame) -> dict[str, float]:
    """Median and 99th percentile of the per-prediction scoring latency, milliseconds."""
    p50, p99 = np.percentile(log["latency_ms"].to_numpy(dtype=float), [50, 99])
    return {"p50_ms": float(p50), "p99_ms": float(p99)}
