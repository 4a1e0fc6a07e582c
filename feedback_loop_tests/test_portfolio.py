import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest

from feedback_loop.lib import frames
from feedback_loop.lib.policy import HOLD_DAYS, PortfolioPolicy
from feedback_loop.lib.portfolio.paper import (
    POSITION_COLUMNS,
    PortfolioState,
    adjusted_ohlc,
    step_portfolio,
    stop_loss_price,
)
from feedback_loop.lib.vocab import ExitPolicy, ExitReason, PositionStatus, SignalStatus

POLICY = PortfolioPolicy()
START = pd.Timestamp("2024-01-01")


def day(n: int) -> pd.Timestamp:
    return START + pd.Timedelta(days=n)


def bars(ticker, closes, opens=None, start=0, spread=1.0, adj_factor=1.0) -> pd.DataFrame:
    """Daily calendar bars from day(start); adj_close = close × adj_factor."""
    closes = np.asarray(closes, dtype=float)
    opens = closes if opens is None else np.asarray(opens, dtype=float)
    return pd.DataFrame({
        "ticker": ticker,
        "date": [day(start + i) for i in range(len(closes))],
        "open": opens,
        "high": np.maximum(opens, closes) + spread,
        "low": np.minimum(opens, closes) - spread,
        "close": closes,
        "adj_close": closes * adj_factor,
        "volume": 1e6,
    })[frames.PRICE_COLUMNS]


def signal(ticker, as_of, signal_type="buy", confidence=0.8, status="queued") -> dict:
    return {"ticker": ticker, "as_of": as_of, "signal_id": f"{as_of.date()}:{ticker}",
            "signal_type": signal_type, "confidence": confidence, "status": status}


def signals(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["ticker", "as_of", "signal_id", "signal_type",
                                             "confidence", "status"])


NO_SIGNALS = signals()


def status_of(acted: pd.DataFrame) -> dict:
    return dict(zip(acted["signal_id"], acted["status"]))


def holding(n: int, extra_tickers=("X",), days=40, policy=POLICY):
    """State after day(30): n open positions T0..T{n-1}; flat prices at 100 for all tickers."""
    tickers = [f"T{i}" for i in range(n)] + list(extra_tickers)
    prices = pd.concat([bars(t, [100.0] * days) for t in tickers], ignore_index=True)
    state, acted = step_portfolio(PortfolioState.initial(policy), day(30),
                                  signals(*[signal(f"T{i}", day(29)) for i in range(n)]), prices, policy)
    assert (acted["status"] == SignalStatus.FILLED).all()
    return state, prices


# --- fills ---------------------------------------------------------------------------

def test_fill_is_at_next_days_adjusted_open_never_the_signal_days_close():
    prices = pd.concat([bars("AAA", [100.0] * 25, adj_factor=0.5),
                        bars("AAA", [110.0], opens=[104.0], start=25, adj_factor=0.5)])
    sig = signals(signal("AAA", day(24)))
    with pytest.raises(ValueError, match="next trading day"):
        step_portfolio(PortfolioState.initial(POLICY), day(24), sig, prices, POLICY)
    state, acted = step_portfolio(PortfolioState.initial(POLICY), day(25), sig, prices, POLICY)
    position = state.positions.iloc[0]
    assert status_of(acted) == {"2024-01-25:AAA": SignalStatus.FILLED}
    assert position["entry_date"] == day(25)
    assert position["entry_price"] == pytest.approx(52.0)  # open 104 × adj 55 / close 110
    assert position["highest_close"] == pytest.approx(55.0)
    assert position["trading_mode"] == "paper"
    assert list(state.positions.columns) == POSITION_COLUMNS


def test_prices_after_as_of_are_not_read():
    prices = bars("AAA", [100.0] * 30)
    future = bars("AAA", [500.0] * 10, start=30)
    sig = signals(signal("AAA", day(20)))
    a, _ = step_portfolio(PortfolioState.initial(POLICY), day(21), sig, prices, POLICY)
    b, _ = step_portfolio(PortfolioState.initial(POLICY), day(21), sig,
                          pd.concat([prices, future]), POLICY)
    pd.testing.assert_frame_equal(a.positions, b.positions)
    pd.testing.assert_frame_equal(a.equity, b.equity)


def test_no_signals_as_a_frame_without_columns_still_marks_the_day():
    state, acted = step_portfolio(PortfolioState.initial(POLICY), day(21), pd.DataFrame(),
                                  bars("AAA", [100.0] * 30), POLICY)
    assert acted.empty and list(acted.columns) == ["signal_id", "status"]
    assert state.equity[["date", "equity_usd", "open_positions"]].values.tolist() == [
        [day(21), POLICY.initial_capital, 0]]


def test_only_queued_signals_are_acted_on():
    prices = bars("AAA", [100.0] * 30)
    sig = signals(signal("AAA", day(20), status="below_queue_threshold"))
    state, acted = step_portfolio(PortfolioState.initial(POLICY), day(21), sig, prices, POLICY)
    assert acted.empty and state.positions.empty


@pytest.mark.parametrize(("open_positions", "confidence", "expected"), [
    (15, 0.6999, SignalStatus.SKIPPED_RISK),
    (15, 0.70, SignalStatus.FILLED),
    (14, 0.6999, SignalStatus.FILLED),
])
def test_risk_check_boundary(open_positions, confidence, expected):
    state, prices = holding(open_positions)
    _, acted = step_portfolio(state, day(31), signals(signal("X", day(30), confidence=confidence)),
                              prices, POLICY)
    assert status_of(acted) == {"2024-01-31:X": expected}


def test_max_open_positions_counts_fills_of_the_same_day():
    policy = dataclasses.replace(POLICY, max_open_positions=2)
    prices = pd.concat([bars(t, [100.0] * 30) for t in "ABC"])
    state, acted = step_portfolio(
        PortfolioState.initial(policy), day(21),
        signals(signal("A", day(20), confidence=0.9), signal("B", day(20), confidence=0.8),
                signal("C", day(20), confidence=0.85)), prices, policy)
    assert status_of(acted) == {"2024-01-21:A": SignalStatus.FILLED, "2024-01-21:C": SignalStatus.FILLED,
                                "2024-01-21:B": SignalStatus.SKIPPED_MAX_POSITIONS}
    assert sorted(state.positions["ticker"]) == ["A", "C"]


def test_default_max_open_positions():
    state, prices = holding(30)
    _, acted = step_portfolio(state, day(31), signals(signal("X", day(30), confidence=0.95)), prices, POLICY)
    assert status_of(acted) == {"2024-01-31:X": SignalStatus.SKIPPED_MAX_POSITIONS}


def test_already_held_and_no_price_are_skipped():
    state, prices = holding(1)
    prices = prices[~((prices["ticker"] == "X") & (prices["date"] == day(31)))]
    new, acted = step_portfolio(state, day(31), signals(signal("T0", day(30)), signal("X", day(30))),
                                prices, POLICY)
    assert status_of(acted) == {"2024-01-31:T0": SignalStatus.SKIPPED_ALREADY_HELD,
                                "2024-01-31:X": SignalStatus.SKIPPED_NO_PRICE}
    assert len(new.positions) == 1


def test_sell_signal_closes_the_long_at_the_open_and_never_shorts():
    prices = pd.concat([bars("AAA", [100.0] * 21), bars("AAA", [103.0], opens=[101.0], start=21),
                        bars("BBB", [100.0] * 22)])
    state, _ = step_portfolio(PortfolioState.initial(POLICY), day(20), signals(signal("AAA", day(19))),
                              prices, POLICY)
    quantity, cash_before = state.positions.at[0, "quantity"], state.cash_usd
    state, acted = step_portfolio(
        state, day(21),
        signals(signal("AAA", day(20), "sell", 0.8), signal("BBB", day(20), "strong_sell", 0.9)),
        prices, POLICY)
    assert status_of(acted) == {"2024-01-21:AAA": SignalStatus.CLOSED_LONG,
                                "2024-01-21:BBB": SignalStatus.SKIPPED_NO_POSITION}
    position = state.positions.iloc[0]
    assert len(state.positions) == 1 and (state.positions["quantity"] > 0).all()
    assert (position["status"], position["exit_reason"], position["exit_price"], position["exit_date"]) == (
        PositionStatus.CLOSED, ExitReason.SELL_SIGNAL, 101.0, day(21))
    assert state.cash_usd == pytest.approx(cash_before + quantity * 101.0)
    assert state.equity["open_positions"].iloc[-1] == 0


# --- sizing ----------------------------------------------------------------------------

@pytest.mark.parametrize(("base_frac", "confidence", "expected_frac"), [
    (0.02, 0.75, 0.02),
    (0.02, 0.90, 0.024),
    (0.04, 1.00, 0.05),  # 0.0533 capped at max_position_frac
])
def test_position_size_scales_with_confidence_and_is_capped(base_frac, confidence, expected_frac):
    policy = dataclasses.replace(POLICY, base_position_frac=base_frac)
    prices = bars("AAA", [50.0] * 30)
    state, _ = step_portfolio(PortfolioState.initial(policy), day(21),
                              signals(signal("AAA", day(20), confidence=confidence)), prices, policy)
    size_usd = state.positions.at[0, "quantity"] * state.positions.at[0, "entry_price"]
    assert size_usd == pytest.approx(expected_frac * policy.initial_capital)


def test_sizing_uses_previous_close_equity():
    prices = pd.concat([bars("AAA", [100.0] * 21 + [150.0] * 5), bars("BBB", [100.0] * 26)])
    state, _ = step_portfolio(PortfolioState.initial(POLICY), day(20), signals(signal("AAA", day(19))),
                              prices, POLICY)
    state, _ = step_portfolio(state, day(21), NO_SIGNALS, prices, POLICY)
    equity_usd = state.equity["equity_usd"].iloc[-1]
    assert equity_usd > POLICY.initial_capital
    state, _ = step_portfolio(state, day(22), signals(signal("BBB", day(21), confidence=0.75)),
                              prices, POLICY)
    bbb = state.positions.set_index("ticker").loc["BBB"]
    assert bbb["quantity"] * bbb["entry_price"] == pytest.approx(equity_usd * POLICY.base_position_frac)


def test_cash_caps_the_size_and_never_goes_negative():
    policy = dataclasses.replace(POLICY, base_position_frac=0.5, max_position_frac=0.6)
    prices = pd.concat([bars(t, [100.0] * 30) for t in "ABC"])
    state, acted = step_portfolio(
        PortfolioState.initial(policy), day(21),
        signals(*[signal(t, day(20), confidence=c) for t, c in zip("ABC", (0.9, 0.8, 0.76))]),
        prices, policy)
    sizes = (state.positions["quantity"] * state.positions["entry_price"]).tolist()
    assert sizes == pytest.approx([60_000.0, 40_000.0])  # A capped at 60%, B at the remaining cash
    assert status_of(acted)["2024-01-21:C"] == SignalStatus.SKIPPED_RISK
    assert state.cash_usd >= 0 and state.equity["cash_usd"].min() >= 0
    row = state.equity.iloc[-1]
    assert row["equity_usd"] == pytest.approx(row["cash_usd"] + row["invested_usd"])


# --- stops -----------------------------------------------------------------------------

def test_atr_stop_from_twenty_true_ranges_before_entry():
    rng = np.random.default_rng(7)
    closes = 100 + rng.normal(0, 2, 30).cumsum()
    opens = closes + rng.normal(0, 1, 30)
    history = adjusted_ohlc(bars("AAA", closes, opens=opens, spread=0.7))
    before = history.iloc[:25]
    # independent: true ranges of the last 20 bars, each against the previous close
    true_ranges = [
        max(h - lo, abs(h - pc), abs(lo - pc))
        for h, lo, pc in zip(before["adj_high"].iloc[5:], before["adj_low"].iloc[5:], before["adj_close"].iloc[4:24])
    ]
    assert len(true_ranges) == 20
    assert stop_loss_price(before, 101.0, POLICY) == pytest.approx(101.0 - 1.5 * np.mean(true_ranges))


def test_stop_falls_back_to_ten_percent_without_enough_history():
    history = adjusted_ohlc(bars("AAA", [100.0] * 20))  # 20 bars = only 19 true ranges
    assert stop_loss_price(history, 80.0, POLICY) == pytest.approx(72.0)
    no_range = adjusted_ohlc(bars("AAA", [100.0] * 30)).assign(adj_high=np.nan)
    assert stop_loss_price(no_range, 80.0, POLICY) == pytest.approx(72.0)


def test_fill_records_the_atr_stop():
    prices = bars("AAA", [100.0] * 30, spread=1.0)  # true range 2 every day
    state, _ = step_portfolio(PortfolioState.initial(POLICY), day(21), signals(signal("AAA", day(20))),
                              prices, POLICY)
    assert state.positions.at[0, "stop_loss_price"] == pytest.approx(100.0 - 1.5 * 2.0)


# --- exits -----------------------------------------------------------------------------

def run(path, entry_day=21, policy=POLICY, **bars_kwargs):
    """Buy AAA (flat 100, true range 2 → stop 97) at day(entry_day)'s open; then closes `path`."""
    closes = [100.0] * entry_day + list(path)
    prices = bars("AAA", closes, opens=[100.0] * entry_day + list(path), **bars_kwargs)
    state = PortfolioState.initial(policy)
    state, _ = step_portfolio(state, day(entry_day), signals(signal("AAA", day(entry_day - 1))),
                              prices, policy)
    for n in range(entry_day + 1, len(closes)):
        state, _ = step_portfolio(state, day(n), NO_SIGNALS, prices, policy)
    return state.positions.iloc[0], state


TRAILING = dataclasses.replace(POLICY, exit_policy=ExitPolicy.TRAILING_STOP)
ATR = dataclasses.replace(POLICY, exit_policy=ExitPolicy.ATR_STOP)
HOLD_NONE = dataclasses.replace(POLICY, exit_policy=ExitPolicy.NONE)


def test_default_exit_policy_is_the_timeout_at_the_label_horizon():
    assert (POLICY.exit_policy, POLICY.hold_days) == (ExitPolicy.TIMEOUT, HOLD_DAYS)
    assert POLICY.exit_rules() == (ExitReason.TIMEOUT,)
    assert POLICY.describe_exits() == "timeout: timeout at the close of trading day 20; a sell signal closes at the open"


def test_timeout_at_the_close_of_the_hold_days_th_trading_day_counting_the_entry_day():
    position, _ = run([100.0] * 19)  # entry day(21) is trading day 1; day(39) is day 19
    assert position["status"] == PositionStatus.OPEN
    position, _ = run([100.0] * 20)
    assert (position["exit_reason"], position["exit_date"], position["exit_price"]) == (
        ExitReason.TIMEOUT, day(40), 100.0)
    one_day = dataclasses.replace(POLICY, hold_days=1)
    position, _ = run([103.0], policy=one_day)  # exits at the entry day's own close
    assert (position["exit_reason"], position["exit_date"], position["exit_price"]) == (
        ExitReason.TIMEOUT, day(21), 103.0)


#: From entry (day 21, stop 97): below the ATR stop on day 22, a new high on day 23, 110 (< 150 × 0.8) on day 24.
PATH = [100.0, 96.0, 150.0, 110.0] + [110.0] * 21


@pytest.mark.parametrize(("policy", "reason", "exit_day"), [
    (POLICY, ExitReason.TIMEOUT, 40),
    (TRAILING, ExitReason.TRAILING_STOP, 24),
    (ATR, ExitReason.STOP_LOSS, 22),
    (HOLD_NONE, None, None),
])
def test_each_exit_policy_applies_exactly_its_rules(policy, reason, exit_day):
    position, _ = run(PATH, policy=policy)
    if reason is None:  # none: 25 trading days below the stop, below the trailing stop and past the timeout
        assert position["status"] == PositionStatus.OPEN and position["exit_reason"] is None
    else:
        assert (position["exit_reason"], position["exit_date"]) == (reason, day(exit_day))


@pytest.mark.parametrize("policy", [POLICY, TRAILING, ATR, HOLD_NONE])
def test_a_sell_signal_closes_the_long_under_every_exit_policy(policy):
    prices = bars("AAA", [100.0] * 30)
    state, _ = step_portfolio(PortfolioState.initial(policy), day(21), signals(signal("AAA", day(20))), prices, policy)
    state, _ = step_portfolio(state, day(22), signals(signal("AAA", day(21), "sell")), prices, policy)
    assert (state.positions.at[0, "exit_reason"], state.positions.at[0, "exit_date"]) == (
        ExitReason.SELL_SIGNAL, day(22))


def test_trailing_stop_below_highest_close():
    position, _ = run([100.0, 150.0, 125.0, 120.0], policy=TRAILING)  # 120 is not below 150 × 0.8
    assert position["status"] == PositionStatus.OPEN and position["highest_close"] == 150.0
    position, _ = run([100.0, 150.0, 125.0, 119.99], policy=TRAILING)
    assert (position["exit_reason"], position["exit_price"], position["exit_date"]) == (
        ExitReason.TRAILING_STOP, 119.99, day(24))


def test_stop_loss_below_the_entry_stop():
    position, _ = run([100.0, 97.0], policy=ATR)
    assert position["status"] == PositionStatus.OPEN
    position, _ = run([100.0, 96.99], policy=ATR)
    assert (position["exit_reason"], position["exit_price"]) == (ExitReason.STOP_LOSS, 96.99)
    position, _ = run([100.0, 96.99])  # the timeout policy records the stop but never checks it
    assert position["status"] == PositionStatus.OPEN and position["stop_loss_price"] == pytest.approx(97.0)


def test_the_timeout_comes_before_a_stop_hit_on_the_same_close():
    position, _ = run([100.0] + [150.0] * 18 + [90.0], policy=ATR)  # day 40: timeout and stop loss
    assert (position["exit_reason"], position["exit_date"]) == (ExitReason.TIMEOUT, day(40))
    position, _ = run([100.0] + [150.0] * 18 + [90.0], policy=TRAILING)  # timeout and trailing stop
    assert (position["exit_reason"], position["exit_date"]) == (ExitReason.TIMEOUT, day(40))


def test_missing_price_keeps_the_position_open_and_trading_days_are_the_tickers_bars():
    prices = bars("AAA", [100.0] * 45)
    prices = prices[prices["date"] != day(40)]  # the 20th trading day has no price
    state, _ = step_portfolio(PortfolioState.initial(POLICY), day(21), signals(signal("AAA", day(20))),
                              prices, POLICY)
    for n in range(22, 41):
        state, _ = step_portfolio(state, day(n), NO_SIGNALS, prices, POLICY)
    assert state.positions.at[0, "status"] == PositionStatus.OPEN
    assert state.equity["invested_usd"].iloc[-1] == pytest.approx(state.positions.at[0, "quantity"] * 100.0)
    state, _ = step_portfolio(state, day(41), NO_SIGNALS, prices, POLICY)  # its 20th bar
    assert (state.positions.at[0, "exit_reason"], state.positions.at[0, "exit_date"]) == (
        ExitReason.TIMEOUT, day(41))


def test_equity_curve_marks_cash_plus_positions():
    position, state = run([100.0, 110.0, 120.0])
    last = state.equity.iloc[-1]
    assert last["invested_usd"] == pytest.approx(position["quantity"] * 120.0)
    assert last["equity_usd"] == pytest.approx(POLICY.initial_capital + position["quantity"] * 20.0)
    assert list(state.equity["date"]) == [day(21), day(22), day(23)]


def test_same_step_from_same_state_gives_same_result_and_leaves_state_untouched():
    state, prices = holding(3)
    before = copy.deepcopy(state)
    sig = signals(signal("X", day(30)), signal("T1", day(30), "sell"))
    first = step_portfolio(state, day(31), sig, prices, POLICY)
    second = step_portfolio(state, day(31), sig, prices, POLICY)
    pd.testing.assert_frame_equal(first[0].positions, second[0].positions)
    pd.testing.assert_frame_equal(first[0].equity, second[0].equity)
    pd.testing.assert_frame_equal(first[1], second[1])
    assert first[0].cash_usd == second[0].cash_usd
    pd.testing.assert_frame_equal(state.positions, before.positions)
    pd.testing.assert_frame_equal(state.equity, before.equity)
    with pytest.raises(ValueError, match="already marked"):
        step_portfolio(first[0], day(31), NO_SIGNALS, prices, POLICY)


def test_state_read_back_from_the_database_steps_like_the_in_memory_one():
    state, prices = holding(2)
    stored = PortfolioState(
        positions=state.positions.astype({"entry_date": "datetime64[us]", "exit_date": "datetime64[us]"})
        .assign(updated_at=pd.Timestamp("2024-02-01")),
        cash_usd=state.cash_usd,
        equity=state.equity.astype({"date": "datetime64[us]"}),
    )
    sig = signals(signal("X", day(30)), signal("T0", day(30), "sell"))
    expected = step_portfolio(state, day(31), sig, prices, POLICY)
    actual = step_portfolio(stored, day(31), sig, prices, POLICY)
    pd.testing.assert_frame_equal(actual[0].positions, expected[0].positions)
    pd.testing.assert_frame_equal(actual[0].equity, expected[0].equity)
