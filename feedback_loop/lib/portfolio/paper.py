"""Paper executor: fills queued signals, sizes positions, applies exits, one trading day at a time.

`step_portfolio(state, as_of, queued_signals, prices, policy)` runs one trading day:

(a) at as_of's adjusted open, queued signals known at the previous close are filled —
    sell-side signals first (they close longs and free cash and slots; never shorts),
    then buy-side signals by descending confidence (ties by signal_id);
(b) at as_of's adjusted close every open position updates its highest close and is
    checked for the exits of its exit policy (`policy.exit_rules()`, in that order): the
    timeout on the close of the hold_days-th trading day counting the entry day (trading days
    are the ticker's bars: the entry day's bar is the first), the trailing stop (close below
    highest close × (1 − trailing_stop_frac)), the stop loss (close below the stop set at entry);
(c) the equity curve gets the row for as_of.

Sizing: size_usd = equity_usd × base_position_frac × confidence / min_queue_confidence,
capped at max_position_frac × equity_usd and at the cash available at that moment
(so cash never goes negative; a signal meeting no cash is skipped_risk). equity_usd is the
equity marked at the previous close (initial capital on the first day). Quantities are
fractional shares (quantity = size_usd / fill price).

Stop loss at entry (recorded under every policy, checked only under atr_stop): entry −
atr_stop_multiple × ATR, ATR being the simple mean of the atr_window_days true ranges before
the entry date (needs atr_window_days + 1 adjusted bars, each true range using the previous
adjusted close); without them the stop is entry × (1 − fallback_stop_frac).

Prices are adjusted throughout: adj_close for closes, open/high/low × adj_close / close.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.vocab import (
    SIGNAL_DIRECTION,
    ExitReason,
    PositionStatus,
    SignalStatus,
)

#: The columns of table portfolio_positions that the executor owns.
POSITION_DTYPES = {
    "position_id": object,
    "signal_id": object,
    "ticker": object,
    "status": object,
    "trading_mode": object,
    "quantity": "float64",
    "entry_date": "datetime64[ns]",
    "entry_price": "float64",
    "stop_loss_price": "float64",
    "highest_close": "float64",
    "confidence": "float64",
    "exit_date": "datetime64[ns]",
    "exit_price": "float64",
    "exit_reason": object,
    "broker_order_id": object,
}
POSITION_COLUMNS = list(POSITION_DTYPES)
EQUITY_DTYPES = {
    "date": "datetime64[ns]",
    "equity_usd": "float64",
    "cash_usd": "float64",
    "invested_usd": "float64",
    "open_positions": "int64",
}
EQUITY_COLUMNS = list(EQUITY_DTYPES)
SIGNAL_STATUS_COLUMNS = ["signal_id", "status"]
#: The signal columns the executor reads.
QUEUED_SIGNAL_COLUMNS = ["signal_id", "ticker", "as_of", "signal_type", "confidence", "status"]
ADJUSTED_COLUMNS = ["ticker", "date", "adj_open", "adj_high", "adj_low", "adj_close"]

BUY_SIDE = frozenset(t for t, d in SIGNAL_DIRECTION.items() if d > 0)
SELL_SIDE = frozenset(t for t, d in SIGNAL_DIRECTION.items() if d < 0)


def adjusted_ohlc(prices: pd.DataFrame) -> pd.DataFrame:
    """PRICE_COLUMNS → ADJUSTED_COLUMNS sorted by (ticker, date): open/high/low × adj_close/close."""
    factor = prices["adj_close"] / prices["close"]
    out = pd.DataFrame({
        "ticker": prices["ticker"],
        "date": pd.to_datetime(prices["date"]).dt.normalize().astype("datetime64[ns]"),
        "adj_open": prices["open"].astype("float64") * factor,
        "adj_high": prices["high"].astype("float64") * factor,
        "adj_low": prices["low"].astype("float64") * factor,
        "adj_close": prices["adj_close"].astype("float64"),
    })
    return out.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)


def _typed_positions(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[POSITION_COLUMNS].astype(POSITION_DTYPES).reset_index(drop=True)


@dataclass
class PortfolioState:
    """Positions (open and closed), cash, and the equity curve marked at each close."""

    positions: pd.DataFrame  # POSITION_COLUMNS
    cash_usd: float
    equity: pd.DataFrame  # EQUITY_COLUMNS

    @classmethod
    def initial(cls, policy: PortfolioPolicy) -> PortfolioState:
        positions = _typed_positions(pd.DataFrame(columns=POSITION_COLUMNS))
        equity = pd.DataFrame(columns=EQUITY_COLUMNS).astype(EQUITY_DTYPES)
        return cls(positions=positions, cash_usd=float(policy.initial_capital), equity=equity)

    def open_positions(self) -> pd.DataFrame:
        return self.positions[self.positions["status"] == PositionStatus.OPEN]

    def last_equity_usd(self) -> float:
        """Equity at the last marked close; the cash (initial capital) before the first mark."""
        return float(self.equity["equity_usd"].iloc[-1]) if len(self.equity) else self.cash_usd


def stop_loss_price(history: pd.DataFrame, entry_price: float, policy: PortfolioPolicy) -> float:
    """Initial stop of a long: entry − atr_stop_multiple × ATR(atr_window_days), else the fallback.

    `history` holds one ticker's ADJUSTED_COLUMNS rows strictly before the entry date.
    ATR is the simple mean of the last atr_window_days true ranges; each true range is
    max(high − low, |high − previous close|, |low − previous close|).
    """
    window = history.tail(policy.atr_window_days + 1)
    previous_close = window["adj_close"].shift(1)
    true_range = pd.concat(
        [
            window["adj_high"] - window["adj_low"],
            (window["adj_high"] - previous_close).abs(),
            (window["adj_low"] - previous_close).abs(),
        ],
        axis=1,
    ).max(axis=1, skipna=False).iloc[1:]
    if len(true_range) < policy.atr_window_days or true_range.isna().any():
        return entry_price * (1.0 - policy.fallback_stop_frac)
    return entry_price - policy.atr_stop_multiple * float(true_range.mean())


def held_trading_days(positions: pd.DataFrame, bars: pd.DataFrame) -> pd.Series:
    """Per position: the ticker's bars dated from its entry date through the last bar given (0 if none).
    `bars` is sorted by (ticker, date), as `adjusted_ohlc` returns it."""
    tickers, dates = bars["ticker"].to_numpy(object), bars["date"].to_numpy("datetime64[ns]")
    counts = []
    for ticker, entry in zip(positions["ticker"].tolist(), positions["entry_date"].to_numpy("datetime64[ns]")):
        first, end = np.searchsorted(tickers, ticker, "left"), np.searchsorted(tickers, ticker, "right")
        counts.append(end - (first + np.searchsorted(dates[first:end], entry, "left")))
    return pd.Series(np.array(counts, dtype="int64"), index=positions.index)


def step_portfolio(
    state: PortfolioState,
    as_of,
    queued_signals: pd.DataFrame,
    prices: pd.DataFrame,
    policy: PortfolioPolicy,
) -> tuple[PortfolioState, pd.DataFrame]:
    """Run trading day `as_of`; return the new state and SIGNAL_STATUS_COLUMNS for acted-on signals.

    `queued_signals` must all be dated before as_of (known at the previous close); rows whose
    status is not 'queued', and hold signals, are ignored; an empty frame (even without
    columns) means no signals. Only prices dated <= as_of are read.
    The input state is not modified.
    """
    as_of = pd.Timestamp(as_of).normalize()
    if len(state.equity) and state.equity["date"].iloc[-1] >= as_of:
        raise ValueError(f"state is already marked at {state.equity['date'].iloc[-1].date()}; "
                         f"cannot step to {as_of.date()}")
    if queued_signals.empty:
        queued_signals = pd.DataFrame(columns=QUEUED_SIGNAL_COLUMNS)
    signals = queued_signals[queued_signals["status"] == SignalStatus.QUEUED]
    late = pd.to_datetime(signals["as_of"]) >= as_of
    if late.any():
        raise ValueError(f"signals {list(signals.loc[late, 'signal_id'])} are not known before "
                         f"{as_of.date()}; fills happen at the next trading day's open")

    positions = _typed_positions(state.positions)  # a typed copy; the input state is not modified
    tickers = set(signals["ticker"]) | set(positions.loc[positions["status"] == PositionStatus.OPEN, "ticker"])
    relevant = prices[prices["ticker"].isin(tickers) & (pd.to_datetime(prices["date"]) <= as_of)]
    bars = adjusted_ohlc(relevant)
    today = bars[bars["date"] == as_of].set_index("ticker")
    cash_usd = state.cash_usd
    statuses: list[tuple[str, str]] = []

    # (a1) sell-side signals close longs at the open.
    open_rows: dict[str, list[int]] = {}  # ticker -> row positions of its open longs (positions has a RangeIndex)
    for row in np.flatnonzero((positions["status"] == PositionStatus.OPEN).to_numpy()):
        open_rows.setdefault(positions["ticker"].iat[row], []).append(int(row))
    open_today = today["adj_open"].to_dict()
    sells = signals[signals["signal_type"].isin(SELL_SIDE)].sort_values("signal_id")
    for signal_id, ticker in zip(sells["signal_id"].tolist(), sells["ticker"].tolist()):
        held = open_rows.get(ticker)
        if not held:
            statuses.append((signal_id, SignalStatus.SKIPPED_NO_POSITION))
            continue
        fill_price = open_today.get(ticker, np.nan)
        if np.isnan(fill_price):
            statuses.append((signal_id, SignalStatus.SKIPPED_NO_PRICE))
            continue
        cash_usd += float((positions.loc[held, "quantity"] * fill_price).sum())
        positions.loc[held, ["status", "exit_date", "exit_price", "exit_reason"]] = [
            PositionStatus.CLOSED.value, as_of, fill_price, ExitReason.SELL_SIGNAL.value,
        ]
        del open_rows[ticker]
        statuses.append((signal_id, SignalStatus.CLOSED_LONG))

    # (a2) buy-side signals open longs at the open, highest confidence first.
    equity_usd = state.last_equity_usd()
    held_tickers = set(open_rows)
    opened: list[dict] = []
    buys = signals[signals["signal_type"].isin(BUY_SIDE)].sort_values(
        ["confidence", "signal_id"], ascending=[False, True], kind="stable")
    bar_tickers = bars["ticker"].to_numpy(object)
    for signal_id, ticker, confidence in zip(buys["signal_id"].tolist(), buys["ticker"].tolist(),
                                             buys["confidence"].tolist()):
        fill_price = open_today.get(ticker, np.nan)
        size_usd = min(
            equity_usd * policy.base_position_frac * confidence / policy.min_queue_confidence,
            equity_usd * policy.max_position_frac,
            cash_usd,
        )
        if ticker in held_tickers:
            status = SignalStatus.SKIPPED_ALREADY_HELD
        elif len(held_tickers) >= policy.max_open_positions:
            status = SignalStatus.SKIPPED_MAX_POSITIONS
        elif (confidence < policy.risk_check_confidence
              and len(held_tickers) >= policy.risk_check_open_positions):
            status = SignalStatus.SKIPPED_RISK
        elif np.isnan(fill_price) or fill_price <= 0:
            status = SignalStatus.SKIPPED_NO_PRICE
        elif size_usd <= 0:
            status = SignalStatus.SKIPPED_RISK  # no cash left
        else:
            status = SignalStatus.FILLED
            cash_usd -= size_usd
            held_tickers.add(ticker)
            ticker_bars = bars.iloc[np.searchsorted(bar_tickers, ticker, "left"):
                                    np.searchsorted(bar_tickers, ticker, "right")]
            history = ticker_bars[ticker_bars["date"] < as_of]
            opened.append({
                "position_id": signal_id, "signal_id": signal_id,
                "ticker": ticker, "status": PositionStatus.OPEN.value,
                "trading_mode": str(policy.trading_mode), "quantity": size_usd / fill_price,
                "entry_date": as_of, "entry_price": fill_price,
                "stop_loss_price": stop_loss_price(history, fill_price, policy),
                "highest_close": today.at[ticker, "adj_close"],
                "confidence": confidence, "exit_date": pd.NaT, "exit_price": np.nan,
                "exit_reason": None, "broker_order_id": None,
            })
        statuses.append((signal_id, status))
    if opened:
        positions = _typed_positions(pd.concat([positions, pd.DataFrame(opened)], ignore_index=True))

    # (b) exits at the close: the policy's rules in their order.
    is_open = positions["status"] == PositionStatus.OPEN
    close = positions["ticker"].map(today["adj_close"]).where(is_open).astype("float64")
    priced = close.notna()
    positions.loc[priced, "highest_close"] = np.fmax(positions.loc[priced, "highest_close"], close[priced])
    rules = policy.exit_rules()
    hits = {
        ExitReason.TIMEOUT: lambda: held_trading_days(positions[is_open], bars) >= policy.hold_days,
        ExitReason.TRAILING_STOP: lambda: close < positions["highest_close"] * (1.0 - policy.trailing_stop_frac),
        ExitReason.STOP_LOSS: lambda: close < positions["stop_loss_price"],
    }
    reason = pd.Series("", index=positions.index, dtype=object)
    for rule in reversed(rules):  # the first rule in order that hits is the reason
        hit = hits[rule]().reindex(positions.index, fill_value=False)
        reason[hit] = rule.value
    exiting = priced & (reason != "")
    cash_usd += float((positions.loc[exiting, "quantity"] * close[exiting]).sum())
    positions.loc[exiting, "status"] = PositionStatus.CLOSED.value
    positions.loc[exiting, "exit_date"] = as_of
    positions.loc[exiting, "exit_price"] = close[exiting]
    positions.loc[exiting, "exit_reason"] = reason[exiting]

    # (c) mark the equity curve at the last known close of each open position.
    still_open = positions[positions["status"] == PositionStatus.OPEN]
    last_close = bars.groupby("ticker")["adj_close"].last()
    mark = still_open["ticker"].map(last_close).fillna(still_open["entry_price"])
    invested_usd = float((still_open["quantity"] * mark).sum())
    row = pd.DataFrame({
        "date": [as_of], "equity_usd": [cash_usd + invested_usd], "cash_usd": [cash_usd],
        "invested_usd": [invested_usd], "open_positions": [len(still_open)],
    }).astype(EQUITY_DTYPES)
    equity = pd.concat([state.equity[EQUITY_COLUMNS].astype(EQUITY_DTYPES), row], ignore_index=True) \
        if len(state.equity) else row

    acted = pd.DataFrame(statuses, columns=SIGNAL_STATUS_COLUMNS)
    acted["status"] = acted["status"].map(str)
    return PortfolioState(positions=positions, cash_usd=cash_usd, equity=equity), acted
