"""The champion/challenger gate: does a freshly trained model replace the active one?

Both models are scored on the SAME holdout rows (the challenger's time-ordered holdout).
Gains are absolute points: accuracy 0.61 -> 0.63 is a gain of 0.02. A challenger is
promoted only when all three hold:

1. the seeds' rule: accuracy +PROMOTION_MIN_ACCURACY_GAIN or weighted F1 +PROMOTION_MIN_F1_GAIN;
2. the gain is supported on those rows: a paired bootstrap (a ticker's rows at a time,
   see lib/training/metrics) of the per-row correctness gain and of the per-row
   log-loss gain, both 95% intervals above 0 (on a 500-row holdout the
   seeds' +2 points is about one standard error, so the rule alone promotes noise);
3. its trading value is not worse: the mean forward (excess) return of the rows it would
   queue (its top-confidence rows) is not below the champion's on its own top rows.

Training never promotes; only this decision, followed by `registry.promote`, does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from feedback_loop.lib import policy
from feedback_loop.lib.training import metrics as metric_fns

#: Probabilities are clipped to [eps, 1] for the per-row log loss (as sklearn's log_loss).
_EPS = np.finfo(float).eps

GATE_TEST = (f"paired bootstrap of tickers ({policy.EVIDENCE_BOOTSTRAP_DRAWS} draws, seed "
             f"{policy.EVIDENCE_SEED}) of per-row correctness and per-row log-loss gains")

GATE_DESCRIPTION = (f"promote when accuracy improves by >= {policy.PROMOTION_MIN_ACCURACY_GAIN} or weighted F1 "
                    f"by >= {policy.PROMOTION_MIN_F1_GAIN} (absolute), AND the {GATE_TEST} both have a "
                    f"{policy.EVIDENCE_CONFIDENCE:.0%} interval above 0, AND the mean forward excess return of "
                    f"its top {policy.TOP_CONFIDENCE_FRAC:.0%} rows is not below the champion's; in one "
                    "transaction.")


@dataclass(frozen=True)
class GateEvidence:
    """The paired evidence of one comparison on the holdout rows (gains: challenger minus champion;
    the log-loss gain is the champion's loss minus the challenger's, so positive is better)."""

    test: str
    accuracy_gain: float
    accuracy_gain_ci: tuple[float, float]
    log_loss_gain: float
    log_loss_gain_ci: tuple[float, float]
    #: Two-sided bootstrap p-value of the weaker of the two gains (an intersection-union test:
    #: both must be supported, so the larger p-value is the test's).
    p_value: float
    queue_rows: int
    new_queue_excess_pct: float | None
    current_queue_excess_pct: float | None

    @property
    def supported(self) -> bool:
        return self.accuracy_gain_ci[0] > 0 and self.log_loss_gain_ci[0] > 0

    @property
    def trading_not_worse(self) -> bool:
        """Unknown forward returns (a holdout stored without them) never count as not worse."""
        if self.new_queue_excess_pct is None or self.current_queue_excess_pct is None:
            return False
        return round(self.new_queue_excess_pct - self.current_queue_excess_pct, policy.THRESHOLD_DECIMALS) >= 0

    def summary(self) -> str:
        acc, ll = self.accuracy_gain_ci, self.log_loss_gain_ci
        return (f"{self.test}: accuracy gain {self.accuracy_gain:+.4f} [{acc[0]:+.4f}, {acc[1]:+.4f}], "
                f"log-loss gain {self.log_loss_gain:+.4f} [{ll[0]:+.4f}, {ll[1]:+.4f}], p={self.p_value:.3f}")

    def trading_summary(self) -> str:
        new, current = self.new_queue_excess_pct, self.current_queue_excess_pct
        if new is None or current is None:
            return "trading value unknown (no forward returns on the holdout)"
        return (f"top-{self.queue_rows} rows' mean forward excess return {new:+.2f}% vs champion's "
                f"{current:+.2f}%")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "supported": self.supported, "trading_not_worse": self.trading_not_worse}


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    accuracy_gain: float | None
    f1_gain: float | None
    evidence: GateEvidence | None = None


def _p_value(draws: np.ndarray) -> float:
    """Two-sided Monte-Carlo p-value of "the gain is 0" from bootstrap draws of the gain."""
    tail = min(int((draws <= 0).sum()), int((draws >= 0).sum()))
    return min(1.0, 2 * (tail + 1) / (len(draws) + 1))


def _queue_excess(proba: np.ndarray, forward: np.ndarray | None, classes) -> float | None:
    if forward is None:
        return None
    return float(forward[metric_fns.top_confidence_rows(proba, classes)].mean())


def holdout_evidence(labels, new_proba, current_proba, classes, tickers, forward_return_pct=None) -> GateEvidence:
    """Paired cluster bootstrap (`metric_fns.bootstrap_weights` of the rows' `tickers`) of the
    per-row gains of `new_proba` over `current_proba` on the same rows, and each model's
    mean forward return on the rows it would queue."""
    y = np.asarray(labels, dtype=int)
    new_p, current_p = np.asarray(new_proba, dtype=float), np.asarray(current_proba, dtype=float)
    rows = np.arange(len(y))
    correct_gain = (new_p.argmax(axis=1) == y).astype(float) - (current_p.argmax(axis=1) == y)
    log_loss_gain = (np.log(np.clip(new_p[rows, y], _EPS, 1.0))
                     - np.log(np.clip(current_p[rows, y], _EPS, 1.0)))
    weights = metric_fns.bootstrap_weights(tickers)
    accuracy_draws = metric_fns.weighted_mean_draws(correct_gain, weights)
    log_loss_draws = metric_fns.weighted_mean_draws(log_loss_gain, weights)
    forward = None if forward_return_pct is None else np.asarray(forward_return_pct, dtype=float)
    return GateEvidence(
        test=GATE_TEST,
        accuracy_gain=float(correct_gain.mean()),
        accuracy_gain_ci=tuple(metric_fns.percentile_interval(accuracy_draws)),
        log_loss_gain=float(log_loss_gain.mean()),
        log_loss_gain_ci=tuple(metric_fns.percentile_interval(log_loss_draws)),
        p_value=max(_p_value(accuracy_draws), _p_value(log_loss_draws)),
        queue_rows=len(metric_fns.top_confidence_rows(new_p, classes)),
        new_queue_excess_pct=_queue_excess(new_p, forward, classes),
        current_queue_excess_pct=_queue_excess(current_p, forward, classes),
    )


def decide_promotion(new: dict, current: dict | None, evidence: GateEvidence | None = None) -> PromotionDecision:
    """Promote `new` when there is no champion, or when it beats `current` by the seeds' rule
    (accuracy or F1-weighted gain, see the module docstring) AND `evidence` supports the gain
    AND its trading value is not worse.

    `new` and `current` carry `accuracy` and `f1_weighted` (fractions) on the same rows;
    `evidence` (`holdout_evidence` on those rows) is required whenever there is a champion.
    """
    if current is None:
        return PromotionDecision(True, "no champion: first model is promoted", None, None)
    if evidence is None:
        raise ValueError("a challenger is compared with a champion only with holdout evidence")

    accuracy_gain = round(float(new["accuracy"]) - float(current["accuracy"]), policy.THRESHOLD_DECIMALS)
    f1_gain = round(float(new["f1_weighted"]) - float(current["f1_weighted"]), policy.THRESHOLD_DECIMALS)
    accuracy_text = f"accuracy {accuracy_gain:+.4f}"
    f1_text = f"f1_weighted {f1_gain:+.4f}"

    def decision(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promote, reason, accuracy_gain, f1_gain, evidence)

    if accuracy_gain >= policy.PROMOTION_MIN_ACCURACY_GAIN:
        rule = f"{accuracy_text} >= {policy.PROMOTION_MIN_ACCURACY_GAIN}"
    elif f1_gain >= policy.PROMOTION_MIN_F1_GAIN:
        rule = f"{f1_text} >= {policy.PROMOTION_MIN_F1_GAIN}"
    else:
        return decision(False, f"stays candidate: {accuracy_text} < {policy.PROMOTION_MIN_ACCURACY_GAIN} and "
                               f"{f1_text} < {policy.PROMOTION_MIN_F1_GAIN}")
    if not evidence.supported:
        return decision(False, f"stays candidate: {rule} but the gain is not supported "
                               f"(an interval reaches 0): {evidence.summary()}")
    if not evidence.trading_not_worse:
        return decision(False, f"stays candidate: {rule}, gain supported, but trading value is worse: "
                               f"{evidence.trading_summary()}")
    return decision(True, f"{rule}; gain supported: {evidence.summary()}; {evidence.trading_summary()}")


@dataclass(frozen=True)
class HoldoutComparison:
    new_metrics: dict
    current_metrics: dict | None
    decision: PromotionDecision


def compare_on_holdout(challenger, champion, holdout: pd.DataFrame) -> HoldoutComparison:
    """Score both models (TrainedModel) on the challenger's holdout and decide: the one comparison
    every driver (Dagster, CLI, engine, bench) makes. `champion` None: no (usable) champion."""
    new_metrics = challenger.evaluate(holdout)
    if champion is None:
        return HoldoutComparison(new_metrics, None, decide_promotion(new_metrics, None))
    current_metrics = champion.evaluate(holdout)
    evidence = holdout_evidence(holdout["label"], challenger.predict_proba(holdout),
                                champion.predict_proba(holdout), challenger.classes, holdout["ticker"],
                                holdout.get("forward_return_pct"))
    return HoldoutComparison(new_metrics, current_metrics, decide_promotion(new_metrics, current_metrics, evidence))
