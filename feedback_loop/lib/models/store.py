"""Trained models on disk and in ml_models: the artifact (sha256-verified) and its drift reference.

Layout under the artifact root: `<model_id>/<version>/` is the artifact written by
`training.artifact.save_model` (XGBoost booster, calibrator, model card and the holdout
rows the promotion gate scores both models on), covered by the sha256;
`<model_id>/reference_features.parquet` holds the training features drift is measured against.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from feedback_loop.lib.models import registry
from feedback_loop.lib.signals.features import FEATURE_NAMES
from feedback_loop.lib.training.artifact import ArtifactIntegrityError, load_model, save_model
from feedback_loop.lib.training.model import TrainedModel

REFERENCE_FILE = "reference_features.parquet"


def model_dir(record: registry.ModelRecord) -> Path:
    return Path(record.artifact_path).parent


def store_model(conn: sa.Connection, model: TrainedModel, *, model_id: str, trigger: str,
                training_frame: pd.DataFrame, artifact_root: Path) -> registry.ModelRecord:
    """Write the artifact and side files, register the model as candidate, return its record.

    The same training run again (same data, config and seed) yields the same version: its
    existing record is returned, so re-running a retrain never fails or duplicates a model.
    """
    existing = registry.get_model(conn, model_id)
    if existing is not None:
        if existing.version != model.version:
            raise ValueError(f"model id {model_id} already holds version {existing.version}, not {model.version}")
        return existing
    directory = Path(artifact_root) / model_id
    directory.mkdir(parents=True, exist_ok=True)
    artifact_path, sha256 = save_model(model, directory)
    training_frame[FEATURE_NAMES].to_parquet(directory / REFERENCE_FILE, index=False)
    registry.register_model(
        conn, model_id=model_id, version=model.version, trained_as_of=model.model_card["trained_as_of"], trigger=trigger,
        num_classes=model.num_classes, config=model.config.to_dict(), feature_names=list(model.feature_names),
        metrics=model.metrics, model_card=model.model_card, artifact_path=str(artifact_path),
        artifact_sha256=sha256, training_start=model.training_start, training_end=model.training_end,
    )
    return registry.get_model(conn, model_id)


def load_verified(record: registry.ModelRecord) -> TrainedModel:
    """The model of `record`, built from the bytes whose sha256 matched the recorded one.

    Raises ArtifactIntegrityError on any failure: no recorded artifact, a file missing,
    unreadable (OSError) or changed.
    """
    if not record.artifact_path or not record.artifact_sha256:
        raise ArtifactIntegrityError(f"model {record.model_id} has no recorded artifact or sha256")
    return load_model(Path(record.artifact_path), record.artifact_sha256)


def load_reference_features(record: registry.ModelRecord) -> pd.DataFrame:
    return pd.read_parquet(model_dir(record) / REFERENCE_FILE)
