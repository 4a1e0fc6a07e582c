"""Classification metrics of class probabilities (scikit-learn for each), ECE, calibration plot.

Brier score: the multiclass form of Brier (1950), mean over rows of the sum over classes of
(p_k - 1[y = k])^2 (range 0..2), via `brier_score_loss(..., scale_by_half=False)`.
ROC AUC: one-vs-rest, macro average; when some class is absent from `y_true` (small folds),
the macro average runs over the classes present (`roc_auc_classes` names them).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    classification_report,
    log_loss,
    roc_auc_score,
)

from feedback_loop.lib.vocab import SignalType

#: Scalar metrics averaged over validation folds.
SCALAR_METRICS = ["accuracy", "f1_weighted", "roc_auc_ovr", "brier", "log_loss", "ece"]


def expected_calibration_error(y_true, proba, n_bins: int = 10) -> float:
    """Top-label ECE: sum over equal-width confidence bins of (rows share) × |accuracy − confidence|."""
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=float)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(float)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    gap = np.bincount(bins, weights=correct - confidence, minlength=n_bins)
    return float(np.abs(gap).sum() / len(y))


def _roc_auc(y: np.ndarray, p: np.ndarray, labels: list[int]) -> tuple[float | None, list[int]]:
    present = [k for k in labels if (y == k).any()]
    if len(present) == len(labels):
        return float(roc_auc_score(y, p, multi_class="ovr", labels=labels)), present
    scorable = [k for k in present if (y != k).any()]
    if not scorable:
        return None, []
    return float(np.mean([roc_auc_score(y == k, p[:, k]) for k in scorable])), scorable


def classification_metrics(y_true, proba, classes: list[SignalType]) -> dict[str, Any]:
    """accuracy, f1_weighted, roc_auc_ovr, brier, log_loss, ece, per_class report, rows."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(proba, dtype=float)
    labels = list(range(len(classes)))
    predicted = p.argmax(axis=1)
    auc, auc_classes = _roc_auc(y, p, labels)
    report = classification_report(y, predicted, labels=labels, target_names=[c.value for c in classes],
                                   output_dict=True, zero_division=0)
    return {
        "rows": len(y),
        "accuracy": float(accuracy_score(y, predicted)),
        # The report's weighted average is f1_score(average="weighted", zero_division=0), computed once.
        "f1_weighted": float(report["weighted avg"]["f1-score"]),
        "roc_auc_ovr": auc,
        "roc_auc_classes": [classes[k].value for k in auc_classes],
        "brier": float(brier_score_loss(y, p, labels=labels, scale_by_half=False)),
        "log_loss": float(log_loss(y, p, labels=labels)),
        "ece": expected_calibration_error(y, p),
        "per_class": report,
    }


def calibration_curve_png(y_true, proba, classes: list[SignalType], n_bins: int = 10) -> bytes:
    """Reliability diagram (one-vs-rest per class, quantile bins) as PNG bytes."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(proba, dtype=float)
    figure = Figure(figsize=(6, 5), dpi=100)
    axis = figure.subplots()
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for k, signal in enumerate(classes):
        if (y == k).any() and (y != k).any():
            observed, predicted = calibration_curve(y == k, p[:, k], n_bins=n_bins,
                                                    strategy="quantile")
            axis.plot(predicted, observed, marker="o", label=signal.value)
    axis.set_xlabel("predicted probability")
    axis.set_ylabel("observed frequency")
    axis.set_title(f"Calibration on {len(y)} holdout rows (ECE {expected_calibration_error(y, p):.3f})")
    axis.legend(loc="upper left")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
