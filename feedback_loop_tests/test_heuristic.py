"""score_heuristic at every rule boundary (just below / at each threshold) and at each cap."""

from __future__ import annotations

import pandas as pd
import pytest

from feedback_loop.lib import policy
from feedback_loop.lib.signals.features import FEATURE_NAMES
from feedback_loop.lib.signals.heuristic import score_heuristic

BASE = policy.HEURISTIC_BASE_CONFIDENCE
BUY_BONUS = 0.10  # ratio 2.0 is a plain buy: +0.10, cap 0.90


def row(**fields) -> dict:
    """A feature row that earns no bonus except the plain-buy one."""
    values = dict.fromkeys(FEATURE_NAMES, 0.0)
    values.update(
        ticker="AAA",
        as_of=pd.Timestamp("2024-03-29"),
        trade_count=2,
        buy_count=2,
        sell_count=1,
        politician_count=1.0,
        buy_sell_ratio=2.0,
    )
    values.update(fields)
    return values


def score(**fields) -> pd.DataFrame:
    return score_heuristic(pd.DataFrame([row(**fields)]))


def confidence(**fields) -> float:
    out = score(**fields)
    assert len(out) == 1
    return out.loc[0, "heuristic_confidence"]


@pytest.mark.parametrize(
    ("politicians", "bonus"), [(1, 0.0), (2, 0.05), (3, 0.10), (4, 0.10), (5, 0.15), (9, 0.15)]
)
def test_politician_tiers(politicians, bonus):
    assert confidence(politician_count=float(politicians)) == pytest.approx(
        BASE + bonus + BUY_BONUS
    )


@pytest.mark.parametrize(
    ("trades", "bonus"), [(2, 0.0), (4, 0.0), (5, 0.05), (9, 0.05), (10, 0.10)]
)
def test_trade_count_tiers(trades, bonus):
    assert confidence(trade_count=trades) == pytest.approx(BASE + bonus + BUY_BONUS)


@pytest.mark.parametrize(("recent", "bonus"), [(1, 0.0), (2, 0.05), (4, 0.05), (5, 0.10)])
def test_recent_activity_tiers(recent, bonus):
    assert confidence(recent_activity_30d=float(recent)) == pytest.approx(BASE + bonus + BUY_BONUS)


def test_bipartisan_bonus():
    assert confidence(bipartisan=1.0) == pytest.approx(BASE + 0.10 + BUY_BONUS)
    assert confidence(bipartisan=0.0) == pytest.approx(BASE + BUY_BONUS)


@pytest.mark.parametrize(
    ("net_volume_usd", "bonus"),
    [
        (100_000.0, 0.0),
        (100_000.01, 0.05),
        (-150_000.0, 0.05),
        (1_000_000.0, 0.05),
        (1_000_000.01, 0.10),
        (-2_000_000.0, 0.10),
        (float("nan"), 0.0),
    ],
)
def test_net_volume_tiers_are_strict_and_use_the_magnitude(net_volume_usd, bonus):
    assert confidence(net_volume=net_volume_usd) == pytest.approx(BASE + bonus + BUY_BONUS)


@pytest.mark.parametrize(
    ("ratio", "signal_type", "bonus"),
    [
        (policy.BUY_SELL_RATIO_CAP, "strong_buy", 0.15),
        (3.0, "strong_buy", 0.15),
        (2.99, "buy", 0.10),
        (1.5, "buy", 0.10),
        (0.67, "sell", 0.10),
        (0.34, "sell", 0.10),
        (0.33, "strong_sell", 0.15),
        (0.0, "strong_sell", 0.15),
    ],
)
def test_ratio_picks_the_signal_type(ratio, signal_type, bonus):
    out = score(buy_sell_ratio=ratio)
    assert out.loc[0, "heuristic_signal_type"] == signal_type
    assert out.loc[0, "heuristic_confidence"] == pytest.approx(BASE + bonus)


@pytest.mark.parametrize("ratio", [1.49, 1.0, 0.68])
def test_hold_rows_are_dropped(ratio):
    assert score(buy_sell_ratio=ratio).empty


def test_rows_below_min_trades_are_dropped():
    assert score(trade_count=policy.HEURISTIC_MIN_TRADES - 1).empty
    assert len(score(trade_count=policy.HEURISTIC_MIN_TRADES)) == 1


ALL_BONUSES = {
    "politician_count": 5.0,
    "trade_count": 10,
    "recent_activity_30d": 5.0,
    "bipartisan": 1.0,
    "net_volume": 2e6,
}


@pytest.mark.parametrize(("ratio", "cap"), [(3.0, 0.95), (0.2, 0.95), (2.0, 0.90), (0.5, 0.90)])
def test_caps(ratio, cap):
    assert confidence(buy_sell_ratio=ratio, **ALL_BONUSES) == cap  # uncapped it would exceed 1


def test_just_below_the_caps_is_not_capped():
    # strong: 0.5 + 0.15 (5 politicians) + 0.10 (bipartisan) + 0.15 = 0.90 < 0.95
    assert confidence(buy_sell_ratio=3.0, politician_count=5.0, bipartisan=1.0) == pytest.approx(
        0.90
    )
    # plain: 0.5 + 0.15 (5 politicians) + 0.10 = 0.75 < 0.90
    assert confidence(buy_sell_ratio=0.5, politician_count=5.0) == pytest.approx(0.75)


def test_sums_are_exact_at_hundredths():
    # unrounded, 0.5 + 0.10 + 0.10 + 0.10 is 0.7999999999999999 and would fail an operator's 0.80 threshold
    assert confidence(bipartisan=1.0, net_volume=2e6) == 0.80
    assert confidence(politician_count=2.0) == 0.65


def test_keeps_input_columns_and_order():
    frame = pd.DataFrame(
        [
            row(ticker="A"),
            row(ticker="HOLD", buy_sell_ratio=1.0),
            row(ticker="C", buy_sell_ratio=0.1),
        ]
    )
    out = score_heuristic(frame)
    assert list(out["ticker"]) == ["A", "C"]
    assert list(out.columns) == [*frame.columns, "heuristic_signal_type", "heuristic_confidence"]
    assert list(out.index) == [0, 1]
    pd.testing.assert_frame_equal(out[frame.columns], frame.iloc[[0, 2]].reset_index(drop=True))
