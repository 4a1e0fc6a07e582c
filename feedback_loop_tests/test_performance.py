import itertools
import math
import statistics

import numpy as np
import pandas as pd
import pytest

from feedback_loop.lib.portfolio.performance import (
    CALIBRATION_COLUMNS,
    calibration_png,
    equity_curve_png,
    exit_reason_shares,
    portfolio_metrics,
    win_rate_by_confidence,
)

DATES = pd.date_range("2024-01-01", periods=6, freq="B")
EQUITY_USD = [100.0, 110.0, 99.0, 108.9, 120.0, 114.0]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def equity(values=EQUITY_USD, dates=DATES) -> pd.DataFrame:
    return pd.DataFrame({"date": dates, "equity_usd": values})


def spy(closes=(400.0, 404.0, 402.0, 410.0, 420.0, 440.0), dates=DATES) -> pd.DataFrame:
    return pd.DataFrame({"ticker": "SPY", "date": dates, "open": closes, "high": closes, "low": closes,
                         "close": closes, "adj_close": closes, "volume": 1.0})


def outcomes(rows) -> pd.DataFrame:
    """rows: (outcome, return_pct, excess_return_pct, confidence)."""
    return pd.DataFrame(rows, columns=["outcome", "return_pct", "excess_return_pct", "confidence"])


NO_TRADES = outcomes([])


def test_risk_metrics_match_independent_daily_computation():
    returns = [b / a - 1 for a, b in itertools.pairwise(EQUITY_USD)]
    downside = math.sqrt(sum(min(r, 0) ** 2 for r in returns) / len(returns))
    m = portfolio_metrics(equity(), NO_TRADES, spy())
    assert m["sharpe"] == pytest.approx(statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(252))
    assert m["sortino"] == pytest.approx(statistics.mean(returns) / downside * math.sqrt(252))
    assert m["max_drawdown_frac"] == pytest.approx(0.1)  # 110 → 99
    assert m["total_return_pct"] == pytest.approx(14.0)
    assert m["spy_return_pct"] == pytest.approx(10.0)
    assert m["excess_return_pct"] == pytest.approx(4.0)


def test_drawdown_and_returns_use_time_order_not_row_order():
    shuffled = equity().sample(frac=1.0, random_state=3)
    assert list(shuffled["equity_usd"]) != EQUITY_USD
    assert portfolio_metrics(shuffled, NO_TRADES, spy().sample(frac=1.0, random_state=4)) == \
        portfolio_metrics(equity(), NO_TRADES, spy())


def test_flat_equity_and_no_trades():
    m = portfolio_metrics(equity([100.0] * 6), NO_TRADES, spy())
    assert (m["sharpe"], m["sortino"], m["max_drawdown_frac"], m["total_return_pct"]) == (None, None, 0.0, 0.0)
    assert m["excess_return_pct"] == pytest.approx(-10.0)
    assert (m["trades"], m["wins"], m["win_rate"], m["profit_factor"], m["avg_return_pct"]) == (0, 0, None, None, None)
    assert portfolio_metrics(equity([], []), NO_TRADES, spy())["sharpe"] is None
    without_columns = portfolio_metrics(equity(), pd.DataFrame(), spy())
    assert (without_columns["trades"], without_columns["win_rate"]) == (0, None)
    assert win_rate_by_confidence(pd.DataFrame())["trades"].tolist() == [0] * 5


def test_spy_missing_leaves_market_comparison_empty():
    m = portfolio_metrics(equity(), NO_TRADES, spy().iloc[0:0])
    assert m["spy_return_pct"] is None and m["excess_return_pct"] is None


def test_breakevens_are_reported_apart_and_not_counted_as_losses():
    m = portfolio_metrics(equity(), outcomes([
        ("win", 4.0, 3.0, 0.8), ("breakeven", 0.2, -1.0, 0.8), ("breakeven", -0.4, 0.0, 0.8),
        ("loss", -2.0, -4.0, 0.8), ("open", np.nan, np.nan, 0.8),
    ]), spy())
    assert (m["trades"], m["wins"], m["losses"], m["breakevens"]) == (4, 1, 1, 2)
    assert m["win_rate"] == 0.25 and m["win_rate_decided"] == 0.5 and m["breakeven_share"] == 0.5
    assert m["avg_return_pct"] == pytest.approx((4.0 + 0.2 - 0.4 - 2.0) / 4)
    assert m["avg_excess_return_pct"] == pytest.approx(-0.5)
    assert m["profit_factor"] == pytest.approx(4.2 / 2.4)  # return_pct points


def test_profit_factor_without_losses_is_none():
    m = portfolio_metrics(equity(), outcomes([("win", 3.0, 1.0, 0.8), ("breakeven", 0.0, 0.0, 0.9)]), spy())
    assert m["profit_factor"] is None and m["win_rate"] == 0.5 and m["win_rate_decided"] == 1.0


def test_win_rate_by_confidence_buckets_are_left_closed_with_the_top_included():
    table = win_rate_by_confidence(outcomes([
        ("win", 2.0, 0, 0.60),  # below the first bucket: left out
        ("win", 2.0, 0, 0.65), ("loss", -2.0, 0, 0.7499),
        ("win", 1.0, 0, 0.75), ("breakeven", 0.1, 0, 0.79),
        ("loss", -1.0, 0, 1.0), ("open", np.nan, 0, 0.95),
    ]))
    assert list(table.columns) == CALIBRATION_COLUMNS
    assert list(table["bucket"]) == ["0.65–0.75", "0.75–0.80", "0.80–0.85", "0.85–0.90", "0.90–1.00"]
    assert list(table["trades"]) == [2, 2, 0, 0, 1]
    assert list(table["wins"]) == [1, 1, 0, 0, 0]
    assert list(table["breakevens"]) == [0, 1, 0, 0, 0]
    assert table["win_rate"].tolist()[:2] == [0.5, 0.5] and np.isnan(table["win_rate"][2])
    assert table["win_rate"][4] == 0.0
    assert table["avg_return_pct"][1] == pytest.approx(0.55)


def test_plots_are_png():
    curves = {"portfolio": equity(), "heuristic arm": equity([100, 101, 102, 103, 104, 105])}
    assert equity_curve_png(curves, spy()).startswith(PNG_MAGIC)
    buckets = win_rate_by_confidence(outcomes([("win", 1.0, 0, 0.8), ("loss", -1.0, 0, 0.9)]))
    assert calibration_png(buckets).startswith(PNG_MAGIC)


def test_exit_reason_shares_of_resolved_trades_only():
    trades = outcomes([("win", 3.0, 1.0, 0.8), ("loss", -4.0, -5.0, 0.8), ("loss", -2.0, -1.0, 0.9),
                       ("breakeven", 0.1, 0.0, 0.9), ("open", None, None, 0.9)])
    trades["exit_reason"] = ["timeout", "stop_loss", "stop_loss", "sell_signal", None]
    shares = exit_reason_shares(trades)
    assert shares == {"timeout": 0.25, "trailing_stop": 0.0, "stop_loss": 0.5, "sell_signal": 0.25, "manual": 0.0}
    assert set(exit_reason_shares(NO_TRADES).values()) == {None}
