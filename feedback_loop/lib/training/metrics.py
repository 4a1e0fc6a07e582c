"""Classification metrics of class probabilities (scikit-learn for each), ECE, calibration plot with counts.

Brier score: the multiclass form of Brier (1950), mean over rows of the sum over classes of
(p_k - 1[y = k])^2 (range 0..2), via `brier_score_loss(..., scale_by_half=False)`.
ROC AUC: one-vs-rest, macro average; when some class is absent from `y_true` (small folds),
the macro average runs over the classes present (`roc_auc_classes` names them).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
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


def calibration_buckets(y_true, proba, classes: list[SignalType], n_bins: int = 10) -> pd.DataFrame:
    """One-vs-rest reliability per class on `n_bins` equal-width probability buckets (scikit-learn's
    uniform `calibration_curve`): class, bucket (low, high), rows in it, mean predicted probability and
    observed frequency (NaN for a class absent from or alone in `y_true`); empty buckets omitted."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(proba, dtype=float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    parts = []
    for k, signal in enumerate(classes):
        counts = np.bincount(np.searchsorted(edges[1:-1], p[:, k]), minlength=n_bins)  # calibration_curve's bins
        filled = np.flatnonzero(counts)
        observed = predicted = np.full(len(filled), np.nan)
        if (y == k).any() and (y != k).any():
            observed, predicted = calibration_curve(y == k, p[:, k], n_bins=n_bins, strategy="uniform")
        parts.append(pd.DataFrame({"signal_class": signal.value, "low": edges[filled], "high": edges[filled + 1],
                                   "rows": counts[filled], "mean_predicted": predicted,
                                   "observed_frequency": observed}))
    return pd.concat(parts, ignore_index=True)


def calibration_figure(y_true, proba, classes: list[SignalType], n_bins: int = 10) -> Figure:
    """Reliability diagram (one-vs-rest per class) over the rows in each bucket, which the lower panel counts."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(proba, dtype=float)
    buckets = calibration_buckets(y, p, classes, n_bins)
    figure = Figure(figsize=(6, 7), dpi=100)
    curve, counts = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    curve.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    width = 1.0 / n_bins / max(len(classes), 1)
    for k, signal in enumerate(classes):
        rows = buckets[buckets["signal_class"] == signal.value]
        if rows["observed_frequency"].notna().any():
            curve.plot(rows["mean_predicted"], rows["observed_frequency"], marker="o", label=signal.value)
        counts.bar(rows["low"] + (k + 0.5) * width, rows["rows"], width=width, label=signal.value)
    curve.set_ylabel("observed frequency")
    curve.set_title(f"Calibration on {len(y)} holdout rows (ECE {expected_calibration_error(y, p):.3f})")
    curve.legend(loc="upper left")
    counts.set_xlabel("predicted probability")
    counts.set_ylabel("rows per bucket")
    counts.set_yscale("symlog")
    figure.tight_layout()
    return figure


def calibration_curve_png(y_true, proba, classes: list[SignalType], n_bins: int = 10) -> bytes:
    """`calibration_figure` as PNG bytes."""
    buffer = io.BytesIO()
    calibration_figure(y_true, proba, classes, n_bins).savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
