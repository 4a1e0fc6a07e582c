"""The rule-based scorer of the original system, vectorized over feature rows.

Confidence (fraction) starts at `policy.HEURISTIC_BASE_CONFIDENCE` and collects one bonus
per rule family below (the highest tier reached); the buy/sell ratio then picks the
signal type, adds that type's bonus and caps the total. Hold rows and rows with fewer
than `policy.HEURISTIC_MIN_TRADES` trades are dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feedback_loop.lib import policy
from feedback_loop.lib.vocab import SignalType

#: (minimum distinct politicians, confidence bonus), highest tier first.
POLITICIAN_TIERS = ((5, 0.15), (3, 0.10), (2, 0.05))
#: (minimum trades in the window, confidence bonus), highest tier first.
TRADE_COUNT_TIERS = ((10, 0.10), (5, 0.05))
#: (minimum trades filed in the last 30 days, confidence bonus), highest tier first.
RECENT_ACTIVITY_TIERS = ((5, 0.10), (2, 0.05))
#: Confidence bonus when both parties traded the ticker.
BIPARTISAN_BONUS = 0.10
#: (|net_volume| must exceed this many USD, confidence bonus), highest tier first.
NET_VOLUME_TIERS_USD = ((1_000_000.0, 0.10), (100_000.0, 0.05))

#: buy_sell_ratio at or above: strong_buy / buy; at or below: strong_sell / sell.
STRONG_BUY_RATIO = 3.0
BUY_RATIO = 1.5
STRONG_SELL_RATIO = 0.33
SELL_RATIO = 0.67
#: Confidence bonus and cap of strong signals (strong_buy, strong_sell).
STRONG_SIGNAL_BONUS = 0.15
STRONG_SIGNAL_CAP = 0.95
#: Confidence bonus and cap of plain signals (buy, sell).
SIGNAL_BONUS = 0.10
SIGNAL_CAP = 0.90
#: Every bonus is a whole hundredth; rounding to this many decimals removes float
#: summation error so that 0.5 + 0.05 + 0.10 compares equal to a 0.65 threshold.
CONFIDENCE_DECIMALS = 2


def score_heuristic(features: pd.DataFrame) -> pd.DataFrame:
    """Score feature rows (output of `compute_ticker_features`) with the original rules.

    Returns the rows kept (trade_count >= HEURISTIC_MIN_TRADES and a non-hold signal),
    all input columns plus `heuristic_signal_type` (vocab.SignalType value) and
    `heuristic_confidence` (fraction), with a fresh RangeIndex.
    """
    politicians = features["politician_count"].to_numpy(dtype=float)
    trades = features["trade_count"].to_numpy(dtype=float)
    recent = features["recent_activity_30d"].to_numpy(dtype=float)
    abs_net_volume_usd = np.abs(features["net_volume"].to_numpy(dtype=float))
    ratio = features["buy_sell_ratio"].to_numpy(dtype=float)

    confidence = (
        policy.HEURISTIC_BASE_CONFIDENCE
        + _tier_bonus([politicians >= n for n, _ in POLITICIAN_TIERS], POLITICIAN_TIERS)
        + _tier_bonus([trades >= n for n, _ in TRADE_COUNT_TIERS], TRADE_COUNT_TIERS)
        + _tier_bonus([recent >= n for n, _ in RECENT_ACTIVITY_TIERS], RECENT_ACTIVITY_TIERS)
        + np.where(features["bipartisan"].to_numpy(dtype=float) == 1.0, BIPARTISAN_BONUS, 0.0)
        + _tier_bonus(
            [abs_net_volume_usd > usd for usd, _ in NET_VOLUME_TIERS_USD], NET_VOLUME_TIERS_USD
        )
    )
    rules = [
        ratio >= STRONG_BUY_RATIO,
        ratio >= BUY_RATIO,
        ratio <= STRONG_SELL_RATIO,
        ratio <= SELL_RATIO,
    ]
    signal_type = np.select(
        rules,
        [
            SignalType.STRONG_BUY.value,
            SignalType.BUY.value,
            SignalType.STRONG_SELL.value,
            SignalType.SELL.value,
        ],
        SignalType.HOLD.value,
    )
    bonus = np.select(
        rules, [STRONG_SIGNAL_BONUS, SIGNAL_BONUS, STRONG_SIGNAL_BONUS, SIGNAL_BONUS], 0.0
    )
    cap = np.select(rules, [STRONG_SIGNAL_CAP, SIGNAL_CAP, STRONG_SIGNAL_CAP, SIGNAL_CAP], 1.0)

    out = features.copy()
    out["heuristic_signal_type"] = signal_type
    out["heuristic_confidence"] = np.round(np.minimum(confidence + bonus, cap), CONFIDENCE_DECIMALS)
    keep = (trades >= policy.HEURISTIC_MIN_TRADES) & (signal_type != SignalType.HOLD.value)
    return out.loc[keep].reset_index(drop=True)


def _tier_bonus(reached: list[np.ndarray], tiers: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Bonus of the first (highest) tier reached per row, 0 when none."""
    return np.select(reached, [bonus for _, bonus in tiers], 0.0)
