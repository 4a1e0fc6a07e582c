"""The champion/challenger gate: does a freshly trained model replace the active one?

Both metric dicts must be measured on the SAME holdout rows (the caller scores the
champion and the challenger on one time-ordered holdout). Gains are absolute points:
accuracy 0.61 -> 0.63 is a gain of 0.02. Training never promotes; only this decision,
followed by `registry.promote`, does.
"""

from __future__ import annotations

from dataclasses import dataclass

from feedback_loop.lib import policy

#: Gains are rounded to this many decimals before comparing, so a gain that is the
#: threshold up to float error (0.30 - 0.28 = 0.019999999999999962) counts.
_GAIN_DECIMALS = 10


GATE_DESCRIPTION = (f"promote when accuracy improves by >= {policy.PROMOTION_MIN_ACCURACY_GAIN} or weighted F1 "
                    f"by >= {policy.PROMOTION_MIN_F1_GAIN} (absolute), in one transaction.")


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    accuracy_gain: float | None
    f1_gain: float | None


def decide_promotion(new: dict, current: dict | None) -> PromotionDecision:
    """Promote `new` when there is no champion, or when it beats `current` by at least
    policy.PROMOTION_MIN_ACCURACY_GAIN accuracy OR policy.PROMOTION_MIN_F1_GAIN F1-weighted.

    `new` and `current` carry `accuracy` and `f1_weighted` (fractions) on the same rows.
    """
    if current is None:
        return PromotionDecision(True, "no champion: first model is promoted", None, None)

    accuracy_gain = round(float(new["accuracy"]) - float(current["accuracy"]), _GAIN_DECIMALS)
    f1_gain = round(float(new["f1_weighted"]) - float(current["f1_weighted"]), _GAIN_DECIMALS)
    accuracy_text = f"accuracy {accuracy_gain:+.4f}"
    f1_text = f"f1_weighted {f1_gain:+.4f}"

    if accuracy_gain >= policy.PROMOTION_MIN_ACCURACY_GAIN:
        return PromotionDecision(
            True, f"{accuracy_text} >= {policy.PROMOTION_MIN_ACCURACY_GAIN}", accuracy_gain, f1_gain
        )
    if f1_gain >= policy.PROMOTION_MIN_F1_GAIN:
        return PromotionDecision(
            True, f"{f1_text} >= {policy.PROMOTION_MIN_F1_GAIN}", accuracy_gain, f1_gain
        )
    return PromotionDecision(
        False,
        f"stays candidate: {accuracy_text} < {policy.PROMOTION_MIN_ACCURACY_GAIN} and "
        f"{f1_text} < {policy.PROMOTION_MIN_F1_GAIN}",
        accuracy_gain,
        f1_gain,
    )
