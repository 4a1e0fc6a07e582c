"""Classification metrics of class probabilities (scikit-learn for each), ECE, calibration plot with counts.

Brier score: the multiclass form of Brier (1950), mean over rows of the sum over classes of
(p_k - 1[y = k])^2 (range 0..2), via `brier_score_loss(..., scale_by_half=False)`.
ROC AUC: one-vs-rest, macro average; when some class is absent from `y_true` (small folds),
the macro average runs over the classes present (`roc_auc_classes` names them).
Skill intervals: percentile bootstrap (scipy.stats.bootstrap) over the holdout rows, seeded
from policy, so every model and every driver gets the same resamples of the same rows.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    classification_report,
    log_loss,
    roc_auc_score,
)

from feedback_loop.lib import policy
from feedback_loop.lib.vocab import SIGNAL_DIRECTION, SignalType

#: Scalar metrics averaged over validation folds.
SCALAR_METRICS = ["accuracy", "f1_weighted", "roc_auc_ovr", "brier", "log_loss", "ece"]
#: What `skill_intervals` adds to a model's holdout metrics.
SKILL_KEYS = ["roc_auc_ovr_ci", "accuracy_ci", "rank_ic", "top_confidence_rows", "top_confidence_excess_pct",
              "top_confidence_excess_pct_ci", "skill_verdict"]


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


def bootstrap_rows(statistic, rows: int) -> stats.BootstrapResult:
    """Percentile bootstrap over `rows` rows: `statistic(idx)` gets resampled row indices (last
    axis: one resample's rows) and returns one value per resample, or a stack of several."""
    return stats.bootstrap((np.arange(rows),), lambda idx, axis=-1: statistic(np.asarray(idx, dtype=int)),
                           vectorized=True, n_resamples=policy.EVIDENCE_BOOTSTRAP_DRAWS,
                           confidence_level=policy.EVIDENCE_CONFIDENCE, method="percentile",
                           random_state=policy.EVIDENCE_SEED)


def _interval(result: stats.BootstrapResult, row: int | None = None) -> list[float]:
    low, high = result.confidence_interval
    return [float(low if row is None else low[row]), float(high if row is None else high[row])]


def roc_auc_draws(y: np.ndarray, p: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Macro one-vs-rest ROC AUC of each resample (a row of `idx`), over the classes present on
    both sides (as `_roc_auc`).

    A resample is the original rows weighted by how often each was drawn, so each class's AUC
    is the weighted Mann-Whitney U over the rows sorted once (ties count one half) divided by
    n_pos * n_neg: vectorized over resamples, as sklearn's roc_auc_score costs ~10 ms a call.
    """
    draws, n = idx.shape
    counts = np.bincount((idx + n * np.arange(draws)[:, None]).ravel(), minlength=draws * n).reshape(draws, n).astype(np.float32)
    aucs = []
    for k in range(p.shape[1]):
        order = np.argsort(p[:, k], kind="stable")
        score = p[order, k]
        group = np.cumsum(np.r_[True, score[1:] != score[:-1]]) - 1
        positive = y[order] == k
        ordered = counts[:, order]
        pos_w, neg_w = ordered * positive, ordered * ~positive
        cum_neg = np.cumsum(neg_w, axis=1)
        group_end = np.r_[np.flatnonzero(np.diff(group)), n - 1]
        neg_through = cum_neg[:, group_end]
        neg_before = np.c_[np.zeros(draws, dtype=np.float32), neg_through[:, :-1]]
        ties = neg_through - neg_before
        u = (pos_w * (neg_before[:, group] + 0.5 * ties[:, group])).sum(axis=1)
        n_pos, n_neg = pos_w.sum(axis=1), neg_w.sum(axis=1)
        aucs.append(np.where((n_pos > 0) & (n_neg > 0), u / np.maximum(n_pos * n_neg, 1), np.nan))
    return np.nanmean(np.stack(aucs), axis=0)


def buy_side_probability(proba, classes: list[SignalType]) -> np.ndarray:
    """P(buy side) per row: the score a long-only portfolio ranks a model's calls by."""
    direction = np.array([SIGNAL_DIRECTION[c] for c in classes])
    return np.asarray(proba, dtype=float)[:, direction > 0].sum(axis=1)


def top_confidence_rows(proba, classes: list[SignalType]) -> np.ndarray:
    """Row positions of the policy.TOP_CONFIDENCE_FRAC of rows with the highest buy-side
    probability (at least one): the rows a model would queue."""
    score = buy_side_probability(proba, classes)
    count = max(1, int(np.ceil(policy.TOP_CONFIDENCE_FRAC * len(score))))
    return np.argsort(-score, kind="stable")[:count]


def skill_verdict(metrics: dict[str, Any]) -> str:
    """Edge detected only when the ROC AUC interval lies above 0.5 and the top-confidence rows'
    excess-return interval above 0; otherwise "no edge detected" and why."""
    auc, excess = metrics.get("roc_auc_ovr_ci"), metrics.get("top_confidence_excess_pct_ci")
    if auc is None or excess is None:
        return "no edge detected: no skill interval (too few rows or no forward returns)"
    auc_text = f"ROC AUC 95% interval [{auc[0]:.3f}, {auc[1]:.3f}]"
    excess_text = f"top-confidence excess return 95% interval [{excess[0]:+.2f}%, {excess[1]:+.2f}%]"
    chance = ([f"{auc_text} includes or is below 0.5"] if auc[0] <= 0.5 else []) + (
        [f"{excess_text} includes or is below 0"] if excess[0] <= 0 else [])
    if chance:
        return "no edge detected: " + "; ".join(chance)
    return f"edge detected: {auc_text} above 0.5, {excess_text} above 0"


def skill_intervals(y_true, proba, forward_return_pct, classes: list[SignalType]) -> dict[str, Any]:
    """Bootstrap intervals of ROC AUC, accuracy and the mean forward (excess) return of the
    top-confidence rows, the rank IC (Spearman of buy-side probability and forward return),
    and the verdict of `skill_verdict`."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(proba, dtype=float)
    returns = np.asarray(forward_return_pct, dtype=float)
    correct = (p.argmax(axis=1) == y).astype(float)
    both = bootstrap_rows(lambda idx: np.stack([roc_auc_draws(y, p, idx), correct[idx].mean(axis=-1)]), len(y))
    top = top_confidence_rows(p, classes)
    top_returns = returns[top]
    excess = bootstrap_rows(lambda idx: top_returns[idx].mean(axis=-1), len(top))
    out = {
        "roc_auc_ovr_ci": _interval(both, 0), "accuracy_ci": _interval(both, 1),
        "rank_ic": float(stats.spearmanr(buy_side_probability(p, classes), returns).statistic),
        "top_confidence_rows": len(top), "top_confidence_excess_pct": float(top_returns.mean()),
        "top_confidence_excess_pct_ci": _interval(excess),
    }
    return {**out, "skill_verdict": skill_verdict(out)}


def classification_metrics(y_true, proba, classes: list[SignalType], forward_return_pct=None) -> dict[str, Any]:
    """accuracy, f1_weighted, roc_auc_ovr, brier, log_loss, ece, per_class report, rows; with
    the rows' forward returns also the `skill_intervals`."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(proba, dtype=float)
    labels = list(range(len(classes)))
    predicted = p.argmax(axis=1)
    auc, auc_classes = _roc_auc(y, p, labels)
    report = classification_report(y, predicted, labels=labels, target_names=[c.value for c in classes],
                                   output_dict=True, zero_division=0)
    skill = skill_intervals(y, p, forward_return_pct, classes) if forward_return_pct is not None else {}
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
        **skill,
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
