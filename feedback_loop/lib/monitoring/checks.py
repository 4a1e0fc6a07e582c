"""Checks of the monitoring assets: blend_weight and feature_drift.

Inputs are the values both drivers hold after a day's evaluation: the `BlendWeightDecision`
(`decide_blend_weight`; the engine keeps the moves in `LoopState.blend_weight_path`) and the
`DriftReport` (`drift_report`; the engine's `LoopState.drift_reports`), None when no report was made.
"""

from __future__ import annotations

import math

from feedback_loop.lib import policy
from feedback_loop.lib.checks import ERROR, WARN, Check, CheckOutcome
from feedback_loop.lib.monitoring.blend_weight import BlendWeightDecision
from feedback_loop.lib.monitoring.drift import DriftReport, ks_evaluable
from feedback_loop.lib.vocab import DriftRecommendation

WEIGHT_WITHIN_BOUNDS = Check(
    "blend_weight_within_bounds", ERROR,
    f"The weight in force after the decision is within [{policy.BLEND_WEIGHT_MIN}, {policy.BLEND_WEIGHT_MAX}].")
WEIGHT_ONE_STEP = Check(
    "blend_weight_moves_at_most_one_step", ERROR,
    f"A decision moves the weight by at most one step of {policy.BLEND_WEIGHT_STEP} and says whether it moved.")
DRIFT_REPORT_COMPLETE = Check(
    "feature_drift_report_complete", ERROR,
    "The drift report is complete: a valid recommendation, a finite KS statistic in [0, 1] for every feature with "
    "values on both sides, a finite score PSI when both sides have enough rows, and drifting features only among "
    "the evaluated ones.")
NO_RETRAIN_RECOMMENDED = Check(
    "feature_drift_recommends_no_retrain", WARN,
    "The drift report recommends no_action (warning only: the drift sensor acts on a retrain recommendation).")
CHECKS = {
    "blend_weight": [WEIGHT_WITHIN_BOUNDS, WEIGHT_ONE_STEP],
    "feature_drift": [DRIFT_REPORT_COMPLETE, NO_RETRAIN_RECOMMENDED],
}


def blend_weight_checks(decision: BlendWeightDecision) -> list[CheckOutcome]:
    move = round(abs(decision.new_weight - decision.old_weight), policy.THRESHOLD_DECIMALS)
    within = policy.BLEND_WEIGHT_MIN <= round(decision.new_weight, policy.THRESHOLD_DECIMALS) <= policy.BLEND_WEIGHT_MAX
    return [
        WEIGHT_WITHIN_BOUNDS.outcome(within, new_weight=decision.new_weight, min_weight=policy.BLEND_WEIGHT_MIN,
                                     max_weight=policy.BLEND_WEIGHT_MAX),
        WEIGHT_ONE_STEP.outcome(move <= policy.BLEND_WEIGHT_STEP and decision.changed == (move > 0),
                                old_weight=decision.old_weight, new_weight=decision.new_weight, move=move,
                                changed=decision.changed, max_step=policy.BLEND_WEIGHT_STEP),
    ]


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def feature_drift_checks(report: DriftReport | None, why_none: str = "",
                         recommendation_without_report: DriftRecommendation | None = None) -> list[CheckOutcome]:
    """`report`: the day's drift report; None when none was made, `why_none` saying why and
    `recommendation_without_report` what was recommended anyway (an unverifiable champion)."""
    if report is None:
        reason = why_none or "no drift report"
        if recommendation_without_report in (None, DriftRecommendation.NO_ACTION):
            return [DRIFT_REPORT_COMPLETE.not_evaluated(reason), NO_RETRAIN_RECOMMENDED.not_evaluated(reason)]
        return [DRIFT_REPORT_COMPLETE.not_evaluated(reason),
                NO_RETRAIN_RECOMMENDED.outcome(False, recommendation=recommendation_without_report.value,
                                               reason=reason)]
    valid = {r.value for r in DriftRecommendation}
    recommendation = getattr(report.recommendation, "value", report.recommendation)
    missing_ks = sorted(name for name, r in report.ks.items()
                        if r.n_ref and r.n_live and not (_finite(r.statistic) and 0.0 <= r.statistic <= 1.0))
    evaluable = {name for name, r in report.ks.items() if ks_evaluable(r)}
    stray = sorted(set(report.drifting_features) - evaluable)
    psi_due = (report.live_rows >= policy.DRIFT_MIN_LIVE_ROWS
               and report.reference_rows >= policy.DRIFT_MIN_REFERENCE_ROWS)
    psi_ok = _finite(report.psi) if psi_due else report.psi is None or _finite(report.psi)
    return [
        DRIFT_REPORT_COMPLETE.outcome(
            recommendation in valid and not missing_ks and not stray and psi_ok,
            recommendation=recommendation, features=len(report.ks), ks_missing=missing_ks,
            drifting_not_evaluated=stray, score_psi=report.psi, live_rows=report.live_rows,
            reference_rows=report.reference_rows),
        NO_RETRAIN_RECOMMENDED.outcome(recommendation == DriftRecommendation.NO_ACTION.value,
                                       recommendation=recommendation, reason=report.reason,
                                       drifting_features=list(report.drifting_features)),
    ]
