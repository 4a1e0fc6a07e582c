"""blend_signals: each blend case with numbers from the formula, caps, thresholds, weights."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from feedback_loop.lib import policy as constants
from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.signals.blending import blend_signals
from feedback_loop.lib.signals.features import FEATURE_NAMES
from feedback_loop.lib.signals.heuristic import score_heuristic

POLICY = PortfolioPolicy()
AS_OF = pd.Timestamp("2024-03-29")


def heuristic(*rows: tuple[str, str, float]) -> pd.DataFrame:
    """(ticker, heuristic_signal_type, heuristic_confidence) rows at AS_OF."""
    return pd.DataFrame(
        {
            "ticker": [r[0] for r in rows],
            "as_of": AS_OF,
            "heuristic_signal_type": [r[1] for r in rows],
            "heuristic_confidence": [r[2] for r in rows],
        }
    )


def ml(*rows: tuple[str, str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": [r[0] for r in rows],
            "as_of": AS_OF,
            "ml_signal_type": [r[1] for r in rows],
            "ml_confidence": [r[2] for r in rows],
        }
    )


def blended(h: float, m: float, w: float) -> float:
    return h * (1 - w) + m * w


def one(out: pd.DataFrame) -> pd.Series:
    assert len(out) == 1
    return out.iloc[0]


def test_heuristic_only_without_a_champion():
    out = blend_signals(
        heuristic(("A", "buy", 0.80), ("B", "strong_sell", 0.70)), None, 0.2, POLICY
    )
    assert list(out["confidence"]) == [0.80, 0.70]
    assert set(out["blend_case"]) == {"heuristic_only"} and not out["ml_enhanced"].any()
    assert list(out["signal_type"]) == ["buy", "strong_sell"]
    assert list(out["status"]) == ["queued", "below_queue_threshold"]
    assert out["ml_signal_type"].isna().all() and out["ml_confidence"].isna().all()
    assert list(out["signal_id"]) == ["2024-03-29:A", "2024-03-29:B"]
    assert (out["blend_weight"] == 0.2).all()


def test_agree():
    h, m, w = 0.80, 0.70, 0.2
    row = one(blend_signals(heuristic(("A", "buy", h)), ml(("A", "buy", m)), w, POLICY))
    assert row.blend_case == "agree" and row.ml_enhanced
    assert row.confidence == pytest.approx(
        min(blended(h, m, w) * constants.AGREE_MULTIPLIER, constants.AGREE_CAP)
    )
    assert row.confidence == pytest.approx(0.858)
    assert row.status == "queued"


def test_agree_is_capped_at_agree_cap():
    h, m, w = 0.95, 0.99, 0.7
    assert blended(h, m, w) * constants.AGREE_MULTIPLIER > constants.AGREE_CAP
    row = one(
        blend_signals(heuristic(("A", "strong_buy", h)), ml(("A", "strong_buy", m)), w, POLICY)
    )
    assert row.confidence == constants.AGREE_CAP == 0.98


def test_same_direction_keeps_the_heuristic_type():
    h, m, w = 0.90, 0.80, 0.2
    row = one(blend_signals(heuristic(("A", "strong_buy", h)), ml(("A", "buy", m)), w, POLICY))
    assert row.blend_case == "same_direction" and row.ml_enhanced
    assert row.signal_type == "strong_buy" and row.ml_signal_type == "buy"
    assert row.confidence == pytest.approx(blended(h, m, w) * constants.SAME_DIRECTION_MULTIPLIER)
    assert row.confidence == pytest.approx(0.748)
    assert row.status == "below_queue_threshold"


def test_ml_neutral_discounts_like_same_direction():
    h, m, w = 0.90, 0.90, 0.2
    row = one(blend_signals(heuristic(("A", "sell", h)), ml(("A", "hold", m)), w, POLICY))
    assert row.blend_case == "ml_neutral" and row.ml_enhanced and row.signal_type == "sell"
    assert row.confidence == pytest.approx(blended(h, m, w) * constants.SAME_DIRECTION_MULTIPLIER)
    assert row.status == "queued"  # 0.765


def test_opposite_is_never_generated_under_the_default_policy():
    # min(h, m) * 0.5 <= 0.5 < 0.65: a direction disagreement never becomes a signal
    out = blend_signals(
        heuristic(("A", "strong_buy", 0.95)), ml(("A", "strong_sell", 0.99)), 0.7, POLICY
    )
    assert out.empty


def test_opposite_is_never_queued_even_above_the_queue_threshold():
    permissive = PortfolioPolicy(min_signal_confidence=0.30, min_queue_confidence=0.40)
    h, m, w = 0.95, 0.99, 0.7
    row = one(blend_signals(heuristic(("A", "strong_buy", h)), ml(("A", "sell", m)), w, permissive))
    assert row.blend_case == "opposite" and row.ml_enhanced and row.signal_type == "strong_buy"
    assert row.confidence == pytest.approx(min(h, m) * constants.OPPOSITE_MULTIPLIER)
    assert row.confidence >= permissive.min_queue_confidence
    assert row.status == "direction_disagreement"


def test_missing_model_row_falls_back_to_heuristic_only():
    out = blend_signals(
        heuristic(("A", "buy", 0.80), ("B", "buy", 0.80)), ml(("A", "buy", 0.9)), 0.2, POLICY
    )
    assert list(out["blend_case"]) == ["agree", "heuristic_only"]
    assert list(out["ml_enhanced"]) == [True, False]
    assert out.loc[1, "confidence"] == 0.80


@pytest.mark.parametrize(
    ("confidence", "kept", "status"),
    [
        (0.65, True, "below_queue_threshold"),
        (0.6499, False, None),
        (0.75, True, "queued"),
        (0.7499, True, "below_queue_threshold"),
    ],
)
def test_signal_and_queue_boundaries(confidence, kept, status):
    out = blend_signals(heuristic(("A", "buy", confidence)), None, 0.2, POLICY)
    assert len(out) == int(kept)
    if kept:
        assert out.loc[0, "status"] == status


@pytest.mark.parametrize(
    ("threshold", "delta", "status"),
    [
        ("min_signal_confidence", 1e-6, "below_queue_threshold"),
        ("min_signal_confidence", -1e-6, None),
        ("min_queue_confidence", 1e-6, "queued"),
        ("min_queue_confidence", -1e-6, "below_queue_threshold"),
    ],
)
def test_blended_confidence_meets_the_thresholds_as_the_formula_says(threshold, delta, status):
    # the model confidence that puts an agreeing blend exactly on the threshold, nudged by delta
    h, w = 0.60, 0.5
    target = getattr(POLICY, threshold)
    m = (target / constants.AGREE_MULTIPLIER - h * (1 - w)) / w + delta
    expected = blended(h, m, w) * constants.AGREE_MULTIPLIER
    assert (expected >= target) == (delta > 0)
    out = blend_signals(heuristic(("A", "buy", h)), ml(("A", "buy", m)), w, POLICY)
    assert list(out["status"]) == ([status] if status else [])
    if status:
        assert out.loc[0, "confidence"] == pytest.approx(expected)


def test_blend_weight_shifts_the_result_as_the_formula_says():
    h, m = 0.80, 0.60
    frames = {
        w: blend_signals(heuristic(("A", "buy", h)), ml(("A", "buy", m)), w, POLICY)
        for w in (0.10, 0.70)
    }
    low, high = one(frames[0.10]), one(frames[0.70])
    assert low.confidence == pytest.approx(
        blended(h, m, 0.10) * constants.AGREE_MULTIPLIER
    )  # 0.858
    assert high.confidence == pytest.approx(
        blended(h, m, 0.70) * constants.AGREE_MULTIPLIER
    )  # 0.726
    assert (low.status, high.status) == ("queued", "below_queue_threshold")
    assert (low.blend_weight, high.blend_weight) == (0.10, 0.70)


def test_heuristic_caps_pass_through_unchanged():
    features = pd.DataFrame(
        [
            dict(
                dict.fromkeys(FEATURE_NAMES, 0.0),
                ticker=t,
                as_of=AS_OF,
                trade_count=10,
                buy_count=0,
                sell_count=0,
                politician_count=5.0,
                recent_activity_30d=5.0,
                bipartisan=1.0,
                net_volume=2e6,
                buy_sell_ratio=ratio,
            )
            for t, ratio in [("STRONG", 5.0), ("PLAIN", 2.0)]
        ]
    )
    out = blend_signals(score_heuristic(features), None, 0.2, POLICY)
    assert list(out["confidence"]) == [0.95, 0.90]
    assert list(out["signal_type"]) == ["strong_buy", "buy"]


def test_invalid_inputs_raise():
    with pytest.raises(ValueError):
        blend_signals(heuristic(("A", "buy", 0.8)), None, 1.5, POLICY)
    with pytest.raises(ValueError):
        blend_signals(heuristic(("A", "hold", 0.8)), None, 0.2, POLICY)
    with pytest.raises(pd.errors.MergeError):
        blend_signals(
            heuristic(("A", "buy", 0.8)), ml(("A", "buy", 0.9), ("A", "sell", 0.9)), 0.2, POLICY
        )


def test_no_nan_confidence_escapes():
    out = blend_signals(heuristic(("A", "buy", 0.8)), ml(("A", None, math.nan)), 0.2, POLICY)
    assert one(out).blend_case == "heuristic_only" and one(out).confidence == 0.8
