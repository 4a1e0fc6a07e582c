"""Model artifacts: XGBoost's own UBJ format plus JSON, a sha256 verified on load; no pickle.

An artifact is a directory named after the model version holding `ARTIFACT_FILES`. Its
sha256 runs over the files in sorted name order (name, length, bytes of each), so it does
not depend on the file system's listing order. Loading reads each file once: the bytes
hashed are the bytes the model is built from.
"""

from __future__ import annotations

import hashlib
import io
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


def _sha256_of(contents: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in ARTIFACT_FILES:
        digest.update(name.encode())
        digest.update(len(contents[name]).to_bytes(8, "big"))
        digest.update(contents[name])
    return digest.hexdigest()


def _read_files(path: Path) -> dict[str, bytes]:
    contents = {}
    for name in ARTIFACT_FILES:
        try:
            contents[name] = (path / name).read_bytes()
        except FileNotFoundError as error:
            raise ArtifactIntegrityError(f"model artifact {path} lacks {name}") from error
        except OSError as error:
            raise ArtifactIntegrityError(f"model artifact {path} cannot read {name}: {error}") from error
    return contents


def artifact_sha256(path: Path) -> str:
    """sha256 over `ARTIFACT_FILES` of the artifact directory `path`."""
    return _sha256_of(_read_files(Path(path)))


def read_verified(path: Path, expected_sha256: str) -> dict[str, bytes]:
    """The artifact's files (name -> bytes), read once, after their sha256 matched.

    ArtifactIntegrityError when a file is missing or unreadable or the sha256 differs.
    """
    path = Path(path)
    contents = _read_files(path)
    actual = _sha256_of(contents)
    if actual != expected_sha256:
        raise ArtifactIntegrityError(
            f"model artifact {path} has sha256 {actual}, expected {expected_sha256}: "
            "its files changed after it was saved; refusing to load it"
        )
    return contents


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
    """The model built from the artifact's bytes that matched `expected_sha256` (see `read_verified`);
    ArtifactIntegrityError on any failure to read, verify or parse it."""
    contents = read_verified(path, expected_sha256)
    try:
        document = json.loads(contents[MODEL_FILE])
        config = TrainingConfig.from_dict(document["config"])
        booster = xgb.Booster(params={"nthread": config.hyperparameters.nthread})
        booster.load_model(bytearray(contents[BOOSTER_FILE]))
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
            holdout=pd.read_parquet(io.BytesIO(contents[HOLDOUT_FILE])),
            calibration_png=contents[CALIBRATION_PNG_FILE],
        )
    except (ValueError, KeyError, TypeError, OSError, xgb.core.XGBoostError) as error:
        raise ArtifactIntegrityError(f"model artifact {path} cannot be read: {error}") from error
