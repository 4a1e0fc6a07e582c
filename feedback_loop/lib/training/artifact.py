"""Model artifacts: XGBoost's own UBJ format plus JSON, a sha256 verified on load; no pickle.

An artifact is a directory named after the model version holding `ARTIFACT_FILES`. Its
sha256 runs over the files in sorted name order (name, length, bytes of each), so it does
not depend on the file system's listing order.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import xgboost as xgb

from feedback_loop.lib.training.config import TrainingConfig
from feedback_loop.lib.training.model import TemperatureCalibrator, TrainedModel
from feedback_loop.lib.vocab import SignalType

BOOSTER_FILE = "booster.ubj"
MODEL_FILE = "model.json"
HOLDOUT_FILE = "holdout.parquet"
CALIBRATION_PNG_FILE = "calibration.png"
ARTIFACT_FILES = sorted([BOOSTER_FILE, MODEL_FILE, HOLDOUT_FILE, CALIBRATION_PNG_FILE])


class ArtifactIntegrityError(Exception):
    """The artifact is missing files, was modified after saving, or cannot be read."""


def artifact_sha256(path: Path) -> str:
    """sha256 over `ARTIFACT_FILES` of the artifact directory `path`."""
    digest = hashlib.sha256()
    for name in ARTIFACT_FILES:
        content = (path / name).read_bytes()
        digest.update(name.encode())
        digest.update(len(content).to_bytes(8, "big"))
        digest.update(content)
    return digest.hexdigest()


def save_model(model: TrainedModel, directory: Path) -> tuple[Path, str]:
    """Write the artifact to directory/<version>/; return (its path, its sha256)."""
    path = Path(directory) / model.version
    path.mkdir(parents=True, exist_ok=True)
    (path / BOOSTER_FILE).write_bytes(bytes(model.booster.save_raw("ubj")))
    document = {
        "version": model.version,
        "feature_names": model.feature_names,
        "num_classes": model.num_classes,
        "classes": [c.value for c in model.classes],
        "config": model.config.to_dict(),
        "calibrator": model.calibrator.to_dict(),
        "metrics": model.metrics,
        "feature_importance": model.feature_importance,
        "model_card": model.model_card,
        "training_start": model.training_start.date().isoformat(),
        "training_end": model.training_end.date().isoformat(),
    }
    (path / MODEL_FILE).write_text(json.dumps(document, sort_keys=True, indent=2))
    model.holdout.to_parquet(path / HOLDOUT_FILE, index=False)
    (path / CALIBRATION_PNG_FILE).write_bytes(model.calibration_png)
    return path, artifact_sha256(path)


def load_model(path: Path, expected_sha256: str) -> TrainedModel:
    """Read an artifact after checking its sha256; ArtifactIntegrityError when it differs."""
    path = Path(path)
    missing = [name for name in ARTIFACT_FILES if not (path / name).is_file()]
    if missing:
        raise ArtifactIntegrityError(f"model artifact {path} lacks {missing}")
    actual = artifact_sha256(path)
    if actual != expected_sha256:
        raise ArtifactIntegrityError(
            f"model artifact {path} has sha256 {actual}, expected {expected_sha256}: "
            "its files changed after it was saved; refusing to load it"
        )
    try:
        document = json.loads((path / MODEL_FILE).read_text())
        config = TrainingConfig.from_dict(document["config"])
        booster = xgb.Booster(params={"nthread": config.hyperparameters.nthread})
        booster.load_model(bytearray((path / BOOSTER_FILE).read_bytes()))
        return TrainedModel(
            version=document["version"],
            feature_names=document["feature_names"],
            num_classes=document["num_classes"],
            classes=[SignalType(c) for c in document["classes"]],
            config=config,
            booster=booster,
            calibrator=TemperatureCalibrator.from_dict(document["calibrator"]),
            metrics=document["metrics"],
            feature_importance=document["feature_importance"],
            model_card=document["model_card"],
            training_start=pd.Timestamp(document["training_start"]),
            training_end=pd.Timestamp(document["training_end"]),
            holdout=pd.read_parquet(path / HOLDOUT_FILE),
            calibration_png=(path / CALIBRATION_PNG_FILE).read_bytes(),
        )
    except (ValueError, KeyError, TypeError, OSError, xgb.core.XGBoostError) as error:
        raise ArtifactIntegrityError(f"model artifact {path} cannot be read: {error}") from error
