"""The XGBoost challenger: fit, temperature calibration, holdout and fold metrics.

Rows are cut by time (t0) into fit | calibration | holdout with a purge/embargo of
`config.embargo_days` before each later slice: a row is fit on only if its label resolved
before the calibration slice's first t0 minus the embargo, and likewise for calibration
rows before the holdout. Validation folds (walk-forward rolling and expanding, purged
k-fold) run on the rows before the holdout only, with uncalibrated boosters of the same
hyperparameters.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from feedback_loop.lib.signals.features import FEATURE_NAMES
from feedback_loop.lib.training import metrics as metric_fns
from feedback_loop.lib.training.config import TrainingConfig
from feedback_loop.lib.training.splits import (
    holdout_split,
    purged_kfold_splits,
    walk_forward_splits,
)
from feedback_loop.lib.vocab import SIGNAL_DIRECTION, LabelSource, SignalType

HOLDOUT_COLUMNS = ["ticker", "t0", "t1", *FEATURE_NAMES, "forward_return_pct", "label", "weight", "source"]
#: Search range of log(temperature) for calibration: temperatures e^-4 .. e^4.
_LOG_TEMPERATURE_BOUNDS = (-4.0, 4.0)


@dataclass(frozen=True)
class TemperatureCalibrator:
    """Calibrated probabilities = softmax(margin / temperature); one scalar, JSON-serializable.

    Temperature scaling keeps the argmax (and so accuracy and F1) and fixes over- or
    under-confidence; it needs few rows, which suits a short time-later calibration slice.
    """

    temperature: float

    def apply(self, margins: np.ndarray) -> np.ndarray:
        return softmax(margins / self.temperature, axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "temperature", "temperature": self.temperature}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TemperatureCalibrator:
        if data.get("type") != "temperature":
            raise ValueError(f"unknown calibrator type {data.get('type')!r}")
        return cls(float(data["temperature"]))


def fit_temperature(margins: np.ndarray, y: np.ndarray, weights: np.ndarray) -> TemperatureCalibrator:
    """The temperature minimizing the weighted log loss of softmax(margins / T) on (margins, y)."""
    rows = np.arange(len(y))

    def loss(log_temperature: float) -> float:
        log_p = log_softmax(margins / np.exp(log_temperature), axis=1)
        return float(-(weights * log_p[rows, y]).sum() / weights.sum())

    result = minimize_scalar(loss, bounds=_LOG_TEMPERATURE_BOUNDS, method="bounded")
    return TemperatureCalibrator(float(np.exp(result.x)))


def _feature_values(frame: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
    missing = [name for name in feature_names if name not in frame.columns]
    if missing:
        raise ValueError(f"feature columns missing from the frame: {missing}")
    return frame[feature_names].to_numpy(dtype=np.float32)


def _training_matrix(frame: pd.DataFrame, feature_names: list[str]) -> xgb.DMatrix:
    return xgb.DMatrix(
        _feature_values(frame, feature_names), label=frame["label"].to_numpy(dtype=int),
        weight=frame["weight"].to_numpy(dtype=float), feature_names=feature_names, missing=np.nan,
    )


def _fit_booster(frame: pd.DataFrame, feature_names: list[str], config: TrainingConfig) -> xgb.Booster:
    hp = config.hyperparameters
    params = {
        "objective": "multi:softprob", "num_class": config.num_classes, "tree_method": "hist",
        "max_depth": hp.max_depth, "eta": hp.learning_rate, "subsample": hp.subsample,
        "colsample_bytree": hp.colsample_bytree, "min_child_weight": hp.min_child_weight,
        "max_bin": hp.max_bin, "seed": hp.seed, "nthread": hp.nthread, "eval_metric": "mlogloss",
        "multi_strategy": hp.multi_strategy,
    }
    return xgb.train(params, _training_matrix(frame, feature_names),
                     num_boost_round=hp.n_estimators)


def _margins(booster: xgb.Booster, frame: pd.DataFrame, feature_names: list[str]) -> np.ndarray:
    """Raw class scores; `inplace_predict` skips building a DMatrix (most of a small batch's cost)."""
    margins = booster.inplace_predict(_feature_values(frame, feature_names), predict_type="margin",
                                      missing=np.nan, validate_features=False)
    return np.asarray(margins, dtype=np.float64)


def _scalars(result: dict[str, Any]) -> dict[str, Any]:
    return {name: result[name] for name in metric_fns.SCALAR_METRICS}


def fold_proba(train: pd.DataFrame, test: pd.DataFrame, config: TrainingConfig,
               feature_names: list[str] = FEATURE_NAMES) -> np.ndarray:
    """Class probabilities of `test` from an uncalibrated booster fit on `train`: the model of
    every validation fold (and of the feature ablation, on other feature sets)."""
    booster = _fit_booster(train, feature_names, config)
    return softmax(_margins(booster, test, feature_names), axis=1)


def _fold_metrics(
    frame: pd.DataFrame, splits: list[tuple[np.ndarray, np.ndarray]], config: TrainingConfig
) -> list[dict[str, Any]]:
    folds = []
    for number, (train_idx, test_idx) in enumerate(splits):
        train, test = frame.iloc[train_idx], frame.iloc[test_idx]
        proba = fold_proba(train, test, config)
        result = metric_fns.classification_metrics(test["label"], proba, config.classes())
        folds.append({
            "fold": number, "train_rows": len(train), "test_rows": len(test),
            "test_start": test["t0"].min().date().isoformat(),
            "test_end": test["t0"].max().date().isoformat(),
            **_scalars(result),
        })
    return folds


def _averages(folds: list[dict[str, Any]]) -> dict[str, float | None]:
    out = {}
    for name in metric_fns.SCALAR_METRICS:
        values = [f[name] for f in folds if f[name] is not None]
        out[name] = float(np.mean(values)) if values else None
    return out


@dataclass
class TrainedModel:
    version: str
    feature_names: list[str]
    num_classes: int
    classes: list[SignalType]
    config: TrainingConfig
    booster: xgb.Booster
    calibrator: TemperatureCalibrator
    metrics: dict[str, Any]
    feature_importance: dict[str, float]
    model_card: dict[str, Any]
    #: First t0 and last t1 of the rows the booster was fit on.
    training_start: pd.Timestamp
    training_end: pd.Timestamp
    #: HOLDOUT_COLUMNS: the rows champion and challenger are both scored on.
    holdout: pd.DataFrame
    calibration_png: bytes
    #: `evaluate(holdout)` as training computed it (None for a model loaded from its artifact).
    holdout_metrics: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated class probabilities, columns in `classes` order; NaN features allowed."""
        return self.calibrator.apply(_margins(self.booster, features, self.feature_names))

    def predict_signals(self, features: pd.DataFrame) -> pd.DataFrame:
        """The call: the most probable side (sell side, hold, buy side by total probability),
        then the most probable class within it; probabilities = {class: p}.

        ml_confidence is a calibrated probability on the heuristic's scale (0.5 = a coin
        flip on direction): for a buy- or sell-side call, the probability that the price
        moves that way given it moves beyond the hold band, P(side) / (P(buy side) +
        P(sell side)); for hold, P(hold). The unconditional P(side) of a 5-class model sits
        near 0.4 even for good calls, so blending it with heuristic confidences of
        0.65-0.95 would push every signal under the generation threshold as the model's
        weight grows.
        """
        proba = self.predict_proba(features)
        direction = np.array([SIGNAL_DIRECTION[c] for c in self.classes])
        up, down = proba[:, direction > 0].sum(axis=1), proba[:, direction < 0].sum(axis=1)
        hold = proba[:, direction == 0].sum(axis=1)
        side = np.select([(up >= down) & (up > hold), (down > up) & (down > hold)], [1, -1], default=0)
        predicted = np.where(direction[None, :] == side[:, None], proba, -1.0).argmax(axis=1)
        moving = np.maximum(up + down, np.finfo(float).tiny)
        names = [c.value for c in self.classes]
        confidence = np.select([side > 0, side < 0], [up / moving, down / moving], default=hold)
        return pd.DataFrame({
            "ml_signal_type": np.array(names, dtype=object)[predicted],
            "ml_confidence": confidence,
            "probabilities": [dict(zip(names, row)) for row in proba.tolist()],
        }, index=features.index)

    def evaluate(self, frame: pd.DataFrame) -> dict[str, Any]:
        """classification_metrics of this model on labeled rows (e.g. a challenger's holdout),
        with skill intervals when the rows carry their forward returns."""
        if frame is self.holdout and self.holdout_metrics is not None:
            return copy.deepcopy(self.holdout_metrics)
        has_returns = "forward_return_pct" in frame
        return metric_fns.classification_metrics(
            frame["label"], self.predict_proba(frame), self.classes,
            frame["forward_return_pct"] if has_returns else None, frame["ticker"] if has_returns else None)


def _version(as_of: pd.Timestamp, booster: xgb.Booster, config: TrainingConfig,
             calibrator: TemperatureCalibrator) -> str:
    digest = hashlib.sha256(bytes(booster.save_raw("ubj")))
    digest.update(json.dumps([config.to_dict(), calibrator.to_dict()], sort_keys=True).encode())
    return f"{as_of:%Y%m%d}-{digest.hexdigest()[:8]}"


def train_challenger(
    training_set: pd.DataFrame, config: TrainingConfig, as_of, *, validate: bool = True
) -> TrainedModel:
    """Train, calibrate and evaluate a challenger on a blended training set (LABELED_COLUMNS)."""
    as_of = pd.Timestamp(as_of).normalize()
    frame = training_set.sort_values(["t0", "ticker"], kind="stable").reset_index(drop=True)
    late = frame["t1"] > as_of
    if late.any():
        raise ValueError(f"{int(late.sum())} training rows have labels resolving after as_of "
                         f"{as_of:%Y-%m-%d}; labels must be known by the training date")
    embargo = config.embargo_days
    dev_idx, holdout_idx = holdout_split(frame["t0"], frame["t1"], config.holdout_frac, embargo)
    dev, holdout = frame.iloc[dev_idx], frame.iloc[holdout_idx]
    if dev.empty:
        raise ValueError("no rows left before the holdout after purging; need a longer history")
    fit_idx, cal_idx = holdout_split(dev["t0"], dev["t1"],
                                     config.calibration_frac / (1 - config.holdout_frac), embargo)
    fit, calibration = dev.iloc[fit_idx], dev.iloc[cal_idx]
    if fit.empty:
        raise ValueError("no rows left to fit on after the calibration slice and its embargo")

    booster = _fit_booster(fit, FEATURE_NAMES, config)
    calibrator = fit_temperature(_margins(booster, calibration, FEATURE_NAMES),
                                 calibration["label"].to_numpy(dtype=int),
                                 calibration["weight"].to_numpy(dtype=float))
    classes = config.classes()
    holdout_proba = calibrator.apply(_margins(booster, holdout, FEATURE_NAMES))
    holdout_result = metric_fns.classification_metrics(holdout["label"], holdout_proba, classes,
                                                       holdout["forward_return_pct"], holdout["ticker"])

    folds: dict[str, list[dict[str, Any]]] = {}
    if validate:
        t0, t1 = dev["t0"], dev["t1"]
        folds = {
            "walk_forward_rolling": _fold_metrics(dev, walk_forward_splits(
                t0, t1, config.walk_forward_folds, "rolling", embargo), config),
            "walk_forward_expanding": _fold_metrics(dev, walk_forward_splits(
                t0, t1, config.walk_forward_folds, "expanding", embargo), config),
            "purged_kfold": _fold_metrics(dev, purged_kfold_splits(
                t0, t1, config.purged_kfold_folds, embargo), config),
        }
    result = {
        **holdout_result,
        "holdout_rows": len(holdout),
        "calibration_rows": len(calibration),
        "fit_rows": len(fit),
        "purged_rows": len(frame) - len(fit) - len(calibration) - len(holdout),
        "temperature": calibrator.temperature,
        "folds": folds,
        "fold_averages": {scheme: _averages(rows) for scheme, rows in folds.items()},
    }
    gain = booster.get_score(importance_type="gain")
    importance = {name: float(gain.get(name, 0.0)) for name in FEATURE_NAMES}
    version = _version(as_of, booster, config, calibrator)
    training_start, training_end = fit["t0"].min(), fit["t1"].max()
    rows_by_source = frame["source"].value_counts().reindex(
        [s.value for s in LabelSource], fill_value=0).astype(int).to_dict()
    model_card = {
        "version": version,
        "trained_as_of": as_of.date().isoformat(),
        "feature_names": list(FEATURE_NAMES),
        "classes": [c.value for c in classes],
        "config": config.to_dict(),
        "training_window": {"start": training_start.date().isoformat(),
                            "end": training_end.date().isoformat()},
        "holdout_window": {"start": holdout["t0"].min().date().isoformat(),
                           "end": holdout["t1"].max().date().isoformat()},
        "rows_by_source": rows_by_source,
        "calibrator": calibrator.to_dict(),
        "metrics": {**_scalars(holdout_result), "holdout_rows": len(holdout),
                    **{key: holdout_result[key] for key in metric_fns.SKILL_KEYS},
                    "fold_averages": result["fold_averages"]},
    }
    return TrainedModel(
        version=version, feature_names=list(FEATURE_NAMES), num_classes=config.num_classes,
        classes=classes, config=config, booster=booster, calibrator=calibrator, metrics=result,
        feature_importance=importance, model_card=model_card, training_start=training_start,
        training_end=training_end, holdout=holdout[HOLDOUT_COLUMNS].reset_index(drop=True),
        # Rendered for validated (published) models only: the engine's in-loop retrains skip it.
        calibration_png=(metric_fns.calibration_curve_png(holdout["label"], holdout_proba, classes)
                         if validate else b""),
        holdout_metrics=copy.deepcopy(holdout_result),
    )
