import itertools

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.lib import frames
from feedback_loop.lib.policy import WIN_THRESHOLD_PCT, PortfolioPolicy
from feedback_loop.lib.portfolio.outcomes import (
    SHADOW_OUTCOME_COLUMNS,
    SIGNAL_OUTCOME_COLUMNS,
    classify_return,
    classify_returns,
    outcomes_from_positions,
    shadow_outcomes,
)
from feedback_loop.lib.portfolio.paper import PortfolioState, step_portfolio
from feedback_loop.lib.vocab import Outcome

D = pd.Timestamp("2024-03-01")


def day(n: int) -> pd.Timestamp:
    return D + pd.Timedelta(days=n)


def price_rows(ticker, rows, adj_factor=1.0):
    """rows: {day number: (open, close)} → PRICE_COLUMNS with adj_close = close × adj_factor."""
    return pd.DataFrame([
        {"ticker": ticker, "date": day(n), "open": o, "high": max(o, c) + 1, "low": min(o, c) - 1,
         "close": c, "adj_close": c * adj_factor, "volume": 1.0}
        for n, (o, c) in rows.items()
    ], columns=frames.PRICE_COLUMNS)


@pytest.mark.parametrize(("return_pct", "expected"), [
    (WIN_THRESHOLD_PCT, Outcome.BREAKEVEN),
    (-WIN_THRESHOLD_PCT, Outcome.BREAKEVEN),
    (0.0, Outcome.BREAKEVEN),
    (0.5001, Outcome.WIN),
    (-0.5001, Outcome.LOSS),
    (12.0, Outcome.WIN),
    (-12.0, Outcome.LOSS),
])
def test_classify_return_boundaries(return_pct, expected):
    assert classify_return(return_pct) == expected
    assert classify_returns(pd.Series([return_pct]))[0] == expected


def test_classify_returns_vectorized_keeps_index_and_missing():
    out = classify_returns(pd.Series([1.0, np.nan, -1.0], index=[10, 11, 12]))
    assert out.to_dict() == {10: "win", 11: None, 12: "loss"}
    with pytest.raises(ValueError):
        classify_return(float("nan"))


def _signal(ticker, as_of, **extra):
    base = {"signal_id": f"{as_of.date()}:{ticker}", "ticker": ticker, "as_of": as_of,
            "signal_type": "buy", "confidence": 0.8, "status": "queued",
            "heuristic_signal_type": "buy", "ml_signal_type": None,
            "features": {"f1": 1.0, "f2": None}, "model_id": None, "model_version": None,
            "ml_enhanced": False}
    return base | extra


def test_outcomes_of_closed_positions_through_the_executor():
    policy = PortfolioPolicy()
    aaa = price_rows("AAA", {0: (100, 100), 1: (100, 100), 2: (101, 104), 3: (110, 111), 4: (112, 112)},
                     adj_factor=0.5)
    spy = price_rows("SPY", {n: (400 + n, 402 + n) for n in range(5)})
    prices = pd.concat([aaa, spy], ignore_index=True)
    signals = pd.DataFrame([
        _signal("AAA", day(1), model_id="m1", model_version="v1", ml_enhanced=True, confidence=0.9),
        _signal("AAA", day(2), signal_type="sell", heuristic_signal_type="sell"),
    ])
    state = PortfolioState.initial(policy)
    state, _ = step_portfolio(state, day(2), signals.iloc[[0]], prices, policy)
    state, _ = step_portfolio(state, day(3), signals.iloc[[1]], prices, policy)
    still_open, _ = step_portfolio(PortfolioState.initial(policy), day(2), signals.iloc[[0]], prices, policy)
    assert outcomes_from_positions(still_open.positions, signals, prices).empty

    out = outcomes_from_positions(state.positions, signals, prices)
    assert list(out.columns) == SIGNAL_OUTCOME_COLUMNS and len(out) == 1
    row = out.iloc[0]
    # entry at day 2 adjusted open 101 × 0.5, exit at day 3 adjusted open (sell signal) 110 × 0.5
    assert row["return_pct"] == pytest.approx((110 / 101 - 1) * 100)
    assert row["spy_return_pct"] == pytest.approx((405 / 402 - 1) * 100)  # open day 2 → close day 3
    assert row["excess_return_pct"] == pytest.approx(row["return_pct"] - row["spy_return_pct"])
    assert (row["holding_days"], row["outcome"], row["exit_reason"]) == (1, "win", "sell_signal")
    assert row["features"] == {"f1": 1.0, "f2": None}
    assert (row["model_id"], row["model_version"], row["ml_enhanced"], row["signal_type"],
            row["confidence"]) == ("m1", "v1", True, "buy", 0.9)


def test_outcome_without_spy_prices_has_missing_market_return_and_missing_signal_is_an_error():
    positions = pd.DataFrame([{
        "position_id": "s1", "signal_id": "s1", "ticker": "AAA", "status": "closed",
        "entry_date": day(1), "entry_price": 100.0, "exit_date": day(11), "exit_price": 99.6,
        "exit_reason": "stop_loss", "confidence": 0.8,
    }])
    signals = pd.DataFrame([_signal("AAA", day(0)) | {"signal_id": "s1"}])
    out = outcomes_from_positions(positions, signals, price_rows("AAA", {1: (100, 100)}))
    row = out.iloc[0]
    assert row["outcome"] == "breakeven" and row["holding_days"] == 10  # −0.4 % is not a loss
    assert np.isnan(row["spy_return_pct"]) and np.isnan(row["excess_return_pct"])
    with pytest.raises(ValueError, match="without their opening signal"):
        outcomes_from_positions(positions, signals.assign(signal_id="other"), price_rows("AAA", {}))


def _shadow_prices():
    # trading days: 0..6 for AAA except day 3 (no row: not a trading day for AAA); SPY every day
    aaa = price_rows("AAA", {0: (100, 100), 1: (100, 100), 2: (50, 60), 4: (70, 80), 5: (90, 40), 6: (45, 45)})
    spy = price_rows("SPY", {n: (200.0, 210.0) for n in range(7)})
    return pd.concat([aaa, spy], ignore_index=True)


def test_shadow_outcome_entry_next_open_exit_at_the_horizon_th_trading_day_counting_the_entry():
    signals = pd.DataFrame([
        _signal("AAA", day(1), heuristic_signal_type="sell", ml_signal_type="buy",
                challenger_signal_type="hold"),
        _signal("AAA", day(0), heuristic_signal_type="buy", ml_signal_type="hold",
                challenger_signal_type="strong_sell"),
    ])
    out = shadow_outcomes(signals, _shadow_prices(), as_of=day(6), horizon_days=3)
    assert list(out.columns) == SHADOW_OUTCOME_COLUMNS
    first = out.set_index("signal_id").loc["2024-03-01:AAA"]  # entry day 1 open 100, exit day 4 close 80
    assert (first["entry_date"], first["exit_date"]) == (day(1), day(4))
    assert first["return_pct"] == pytest.approx(-20.0)
    assert (first["heuristic_outcome"], first["ml_outcome"], first["challenger_outcome"]) == ("loss", None, "win")
    second = out.set_index("signal_id").loc["2024-03-02:AAA"]  # entry day 2 open 50, exit day 5 close 40
    assert (second["entry_date"], second["exit_date"], second["horizon_days"]) == (day(2), day(5), 3)
    assert second["return_pct"] == pytest.approx(-20.0)
    assert second["spy_return_pct"] == pytest.approx(5.0)
    assert (second["heuristic_outcome"], second["ml_outcome"], second["challenger_outcome"]) == (
        "win", "loss", None)  # the sell call wins when the price falls


def test_shadow_outcomes_wait_for_the_horizon_and_ignore_later_prices():
    signals = pd.DataFrame([_signal("AAA", day(1)), _signal("BBB", day(1)),
                            _signal("AAA", day(2), heuristic_signal_type="hold")])
    prices = _shadow_prices()
    assert shadow_outcomes(signals, prices, as_of=day(4), horizon_days=3).empty  # exit is day 5
    resolved = shadow_outcomes(signals, prices, as_of=day(5), horizon_days=3)
    assert list(resolved["signal_id"]) == ["2024-03-02:AAA"]  # BBB has no prices; hold makes no call
    assert resolved["challenger_outcome"].isna().all() and resolved["challenger_signal_type"].isna().all()
    later = shadow_outcomes(signals, prices.assign(adj_close=prices["adj_close"].where(
        prices["date"] <= day(5), 1e6)), as_of=day(5), horizon_days=3)
    pd.testing.assert_frame_equal(resolved, later)


def _random_market(seed=0, n_tickers=8, n_days=70):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2023-01-02", periods=n_days)
    tickers = [f"T{i}" for i in range(n_tickers)] + ["SPY"]
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, (len(tickers), n_days)), axis=1))
    opens = closes * np.exp(rng.normal(0, 0.01, closes.shape))
    prices = pd.DataFrame({
        "ticker": np.repeat(tickers, n_days), "date": np.tile(dates, len(tickers)),
        "open": opens.ravel(), "high": np.maximum(opens, closes).ravel() * 1.01,
        "low": np.minimum(opens, closes).ravel() * 0.99, "close": closes.ravel(),
        "adj_close": closes.ravel() * 0.8, "volume": 1.0,
    })
    signals = pd.DataFrame({"as_of": rng.choice(dates[:-1], 60), "ticker": rng.choice(tickers[:-1], 60)})
    signals = signals.drop_duplicates().reset_index(drop=True)
    n = len(signals)
    signals["signal_id"] = signals["as_of"].dt.strftime("%Y-%m-%d") + ":" + signals["ticker"]
    signals["signal_type"] = rng.choice(["buy", "strong_buy", "sell", "strong_sell"], n)
    signals["confidence"] = rng.uniform(0.65, 1.0, n)
    signals["heuristic_signal_type"] = signals["signal_type"]
    signals["heuristic_confidence"] = signals["confidence"]
    signals["ml_signal_type"] = rng.choice(["buy", "sell", "hold", None], n)
    signals["ml_confidence"] = 0.6
    signals["blend_weight"] = 0.2
    signals["blend_case"] = "heuristic_only"
    signals["ml_enhanced"] = False
    signals["model_id"] = None
    signals["model_version"] = None
    signals["serving_path"] = "no_champion"
    signals["status"] = "queued"
    signals["features"] = [{"f1": float(i), "f2": None} for i in range(n)]
    return dates, prices, signals


def test_executor_outcome_and_shadow_rows_are_accepted_by_the_schema(engine):
    from feedback_loop.lib.store import db

    policy = PortfolioPolicy(base_position_frac=0.3, max_position_frac=0.4, exit_policy="atr_stop")
    dates, prices, signals = _random_market()
    state, acted = PortfolioState.initial(policy), []
    for previous, today in itertools.pairwise(dates):
        state, statuses = step_portfolio(state, today, signals[signals["as_of"] == previous], prices, policy)
        acted.append(statuses)
        assert state.cash_usd >= 0
        assert state.open_positions()["ticker"].is_unique
    equity = state.equity
    np.testing.assert_allclose(equity["equity_usd"], equity["cash_usd"] + equity["invested_usd"])
    status = pd.concat(acted).set_index("signal_id")["status"]
    signals["status"] = signals["signal_id"].map(status).fillna(signals["status"])
    assert {"filled", "closed_long", "skipped_no_position"} <= set(signals["status"])
    assert (signals["status"] == "skipped_risk").any()  # cash ran out
    assert {"stop_loss", "timeout"} <= set(state.positions["exit_reason"].dropna())

    outcomes = outcomes_from_positions(state.positions, signals, prices)
    shadows = shadow_outcomes(signals, prices, dates[-1], policy.hold_days)
    assert len(shadows) > 0 and len(outcomes) > 0
    with engine.begin() as conn:
        db.upsert_frame(conn, "trading_signals", signals, ["signal_id"])
        db.upsert_frame(conn, "portfolio_positions", state.positions, ["position_id"])
        db.upsert_frame(conn, "signal_outcomes", outcomes, ["position_id"])
        db.upsert_frame(conn, "shadow_outcomes", shadows, ["signal_id"])
        stored = conn.execute(sa.text("SELECT features FROM signal_outcomes")).scalars().all()
    assert all(set(f) == {"f1", "f2"} for f in stored)
