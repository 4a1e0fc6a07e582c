"""Outcomes: win/loss/breakeven of closed positions, and shadow outcomes of every signal.

A return is a win above +WIN_THRESHOLD_PCT, a loss below −WIN_THRESHOLD_PCT and a
breakeven in between (both bounds included). Breakevens are never counted as losses.
Prices are adjusted (see `portfolio.adjusted_ohlc`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feedback_loop.lib.frames import MARKET_TICKER, day_numbers
from feedback_loop.lib.policy import WIN_THRESHOLD_PCT

LABEL_RULE = f"win > +{WIN_THRESHOLD_PCT}%, loss < −{WIN_THRESHOLD_PCT}%, else breakeven"
from feedback_loop.lib.portfolio.paper import adjusted_ohlc
from feedback_loop.lib.vocab import SIGNAL_DIRECTION, Outcome, PositionStatus

SIGNAL_OUTCOME_COLUMNS = [
    "position_id", "signal_id", "ticker", "signal_type", "confidence", "entry_date", "exit_date",
    "entry_price", "exit_price", "return_pct", "spy_return_pct", "excess_return_pct",
    "holding_days", "outcome", "exit_reason", "features", "model_id", "model_version", "ml_enhanced",
]
SHADOW_OUTCOME_COLUMNS = [
    "signal_id", "ticker", "as_of", "entry_date", "exit_date", "horizon_days", "return_pct",
    "spy_return_pct", "heuristic_signal_type", "ml_signal_type", "challenger_signal_type",
    "heuristic_outcome", "ml_outcome", "challenger_outcome",
]


def classify_returns(return_pct: pd.Series) -> pd.Series:
    """Vectorized `classify_return`; NaN returns give None."""
    values = return_pct.astype("float64")
    labels = np.select(
        [values > WIN_THRESHOLD_PCT, values < -WIN_THRESHOLD_PCT, values.notna()],
        [Outcome.WIN.value, Outcome.LOSS.value, Outcome.BREAKEVEN.value],
        default=None,
    )
    return pd.Series(labels, index=return_pct.index, dtype=object)


def classify_return(return_pct: float) -> Outcome:
    """win if > +WIN_THRESHOLD_PCT, loss if < −WIN_THRESHOLD_PCT, else breakeven."""
    if return_pct is None or np.isnan(return_pct):
        raise ValueError("cannot classify a missing return")
    return Outcome(classify_returns(pd.Series([return_pct])).iloc[0])


def _market_return_pct(adjusted: pd.DataFrame, entry_dates: pd.Series, exit_dates: pd.Series) -> pd.Series:
    """SPY adjusted open at each entry date → adjusted close at each exit date, percent; NaN if missing."""
    market = adjusted[adjusted["ticker"] == MARKET_TICKER].set_index("date")
    entry = pd.to_datetime(entry_dates).map(market["adj_open"]).astype("float64")
    exit_ = pd.to_datetime(exit_dates).map(market["adj_close"]).astype("float64")
    return (exit_.to_numpy() / entry.to_numpy() - 1.0) * 100.0


def outcomes_from_positions(positions: pd.DataFrame, signals: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """SIGNAL_OUTCOME_COLUMNS for every closed position.

    return_pct = (exit − entry) / entry × 100 of the long; spy_return_pct over the same
    dates (SPY adjusted open at entry → adjusted close at exit); excess = the difference;
    holding_days in calendar days. Signal fields (type, features, model) come from the
    opening signal; a closed position whose signal is missing is an error.
    """
    closed = positions[positions["status"] == PositionStatus.CLOSED]
    signal_fields = signals.set_index("signal_id")[
        ["signal_type", "features", "model_id", "model_version", "ml_enhanced"]]
    missing = closed.loc[~closed["signal_id"].isin(signal_fields.index), "signal_id"]
    if len(missing):
        raise ValueError(f"closed positions without their opening signal: {sorted(missing)}")
    out = closed.join(signal_fields, on="signal_id")
    entry_dates = pd.to_datetime(out["entry_date"])
    exit_dates = pd.to_datetime(out["exit_date"])
    return_pct = (out["exit_price"] / out["entry_price"] - 1.0) * 100.0
    spy_return_pct = _market_return_pct(adjusted_ohlc(prices), entry_dates, exit_dates)
    out = out.assign(
        entry_date=entry_dates,
        exit_date=exit_dates,
        return_pct=return_pct,
        spy_return_pct=spy_return_pct,
        excess_return_pct=return_pct - spy_return_pct,
        holding_days=(exit_dates - entry_dates).dt.days.astype("int64"),
        outcome=classify_returns(return_pct),
    )
    return out[SIGNAL_OUTCOME_COLUMNS].reset_index(drop=True)


#: Day numbers (days since 1970) stay below this, so rank × it + day sorts like (rank, day).
_DAY_NUMBERS = 1 << 20


def _directional_outcome(signal_types: pd.Series, return_pct: pd.Series) -> pd.Series:
    """classify(direction × return) for buy/sell types; None for hold or missing types."""
    direction = signal_types.map(SIGNAL_DIRECTION).astype("float64")
    return classify_returns((direction * return_pct).where(direction != 0))


def shadow_outcomes(signals: pd.DataFrame, prices: pd.DataFrame, as_of, horizon_days: int) -> pd.DataFrame:
    """SHADOW_OUTCOME_COLUMNS for every signal whose horizon resolved by `as_of`.

    Entry at the adjusted open of the ticker's first trading day after the signal's as_of,
    exit at the adjusted close of the ticker's `horizon_days`-th trading day counting the entry
    day (trading days = the dates the ticker has prices): the trade the paper portfolio makes
    under the timeout exit policy, and the exit day of the training label. A signal is scored by each side that
    has a direction: a sell call wins when the price falls. Signals whose heuristic says
    hold make no call to compare and get no row; signals without enough prices stay
    unresolved (no row). Challenger columns are filled when `signals` has
    `challenger_signal_type` (shadow scoring of a candidate model), else None.
    """
    as_of = pd.Timestamp(as_of).normalize()
    adjusted = adjusted_ohlc(prices[pd.to_datetime(prices["date"]) <= as_of])
    called = signals[signals["heuristic_signal_type"].map(SIGNAL_DIRECTION).fillna(0) != 0].copy()
    if "challenger_signal_type" not in called.columns:
        called["challenger_signal_type"] = None
    called["as_of"] = pd.to_datetime(called["as_of"]).dt.normalize().astype("datetime64[ns]")
    called["ticker"] = called["ticker"].astype(object)

    # The bars (sorted by ticker, date) as one ascending key: a signal's entry is the first bar
    # above (its ticker, its date), its exit the bar horizon_days - 1 later if still its ticker's.
    tickers = adjusted["ticker"].to_numpy(object)
    names = pd.unique(tickers)
    bar_rank = np.searchsorted(names, tickers)
    keys = bar_rank * _DAY_NUMBERS + day_numbers(adjusted["date"])
    signal_tickers = called["ticker"].to_numpy(object)
    rank = np.searchsorted(names, signal_tickers)
    entry = np.searchsorted(keys, rank * _DAY_NUMBERS + day_numbers(called["as_of"]), side="right")
    exit_ = entry + horizon_days - 1
    found = exit_ < len(keys)
    found[found] = bar_rank[exit_[found]] == rank[found]  # so rank is a ticker with bars
    found[found] = (bar_rank[entry[found]] == rank[found]) & (names[rank[found]] == signal_tickers[found])
    found[found] = adjusted["adj_open"].notna().to_numpy()[entry[found]]
    entry, exit_ = entry[found], exit_[found]
    resolved = called[found].reset_index(drop=True).assign(
        entry_date=adjusted["date"].to_numpy()[entry], entry_price=adjusted["adj_open"].to_numpy("float64")[entry],
        exit_date=adjusted["date"].to_numpy()[exit_], exit_price=adjusted["adj_close"].to_numpy("float64")[exit_])

    return_pct = (resolved["exit_price"] / resolved["entry_price"] - 1.0) * 100.0
    out = resolved.assign(
        horizon_days=horizon_days,
        return_pct=return_pct,
        spy_return_pct=_market_return_pct(adjusted, resolved["entry_date"], resolved["exit_date"]),
        heuristic_outcome=_directional_outcome(resolved["heuristic_signal_type"], return_pct),
        ml_outcome=_directional_outcome(resolved["ml_signal_type"], return_pct),
        challenger_outcome=_directional_outcome(resolved["challenger_signal_type"], return_pct),
    )
    return out[SHADOW_OUTCOME_COLUMNS].sort_values("signal_id").reset_index(drop=True)
