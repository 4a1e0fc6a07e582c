"""Portfolio performance: trade statistics, risk-adjusted returns, drawdown, calibration, plots.

Conventions (the old system got each of these wrong, DESIGN.md §3.6):
- win_rate = wins / trades; breakevens are reported apart (breakeven_share) and are not
  losses; win_rate_decided = wins / (wins + losses).
- Sharpe and Sortino come from DAILY equity returns, annualized by sqrt(252), with a zero
  risk-free rate; Sortino's downside deviation is sqrt(mean(min(r, 0)²)) over all days.
- max drawdown is measured on the equity curve in date order.
- profit_factor = Σ positive trade return_pct / |Σ negative trade return_pct| (percent
  points per trade, equal weight per trade; outcome rows carry no USD amounts).
Undefined values (no trades, no losses, flat equity) are None, never inf or NaN.
"""

from __future__ import annotations

import io
import itertools

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from feedback_loop.lib.frames import MARKET_TICKER
from feedback_loop.lib.vocab import ExitReason, Outcome

TRADING_DAYS_PER_YEAR = 252
CONFIDENCE_BINS = (0.65, 0.75, 0.80, 0.85, 0.90, 1.0)
CALIBRATION_COLUMNS = [
    "bucket", "confidence_low", "confidence_high", "trades", "wins", "losses", "breakevens",
    "win_rate", "avg_confidence", "avg_return_pct",
]
RESOLVED_OUTCOMES = (Outcome.WIN, Outcome.LOSS, Outcome.BREAKEVEN)
#: The outcome columns read here (signal_outcomes rows carry them).
OUTCOME_INPUT_COLUMNS = ["outcome", "confidence", "return_pct", "excess_return_pct"]


def _number(value) -> float | None:
    """A finite float, or None for NaN/inf (JSON-safe metrics)."""
    value = float(value)
    return value if np.isfinite(value) else None


def _ratio(numerator: float, denominator: float) -> float | None:
    return _number(numerator / denominator) if denominator > 0 else None


def _spy_close(prices: pd.DataFrame) -> pd.Series:
    spy = prices[prices["ticker"] == MARKET_TICKER]
    return spy.set_index(pd.to_datetime(spy["date"]))["adj_close"].astype("float64").sort_index()


def equity_metrics(equity: pd.DataFrame, prices: pd.DataFrame) -> dict:
    """Sharpe, Sortino, max drawdown and total return of an equity curve, and SPY over its dates."""
    curve = equity.assign(date=pd.to_datetime(equity["date"])).sort_values("date")
    values = curve["equity_usd"].astype("float64").to_numpy()
    returns = np.diff(values) / values[:-1] if len(values) > 1 else np.array([])
    annualize = np.sqrt(TRADING_DAYS_PER_YEAR)
    volatility = returns.std(ddof=1) if len(returns) > 1 else 0.0
    downside = np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)) if len(returns) else 0.0
    metrics = {
        "days": len(values),
        "sharpe": _ratio(returns.mean() * annualize, volatility) if len(returns) else None,
        "sortino": _ratio(returns.mean() * annualize, downside) if len(returns) else None,
        "max_drawdown_frac": _number((1.0 - values / np.maximum.accumulate(values)).max()) if len(values) else None,
        "total_return_pct": _number((values[-1] / values[0] - 1.0) * 100.0) if len(values) else None,
        "spy_return_pct": None,
        "excess_return_pct": None,
    }
    spy = _spy_close(prices)
    if len(values) and len(spy):
        start, end = spy.asof(curve["date"].iloc[0]), spy.asof(curve["date"].iloc[-1])
        metrics["spy_return_pct"] = _number((end / start - 1.0) * 100.0)
        if metrics["spy_return_pct"] is not None and metrics["total_return_pct"] is not None:
            metrics["excess_return_pct"] = metrics["total_return_pct"] - metrics["spy_return_pct"]
    return metrics


def _resolved(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Win/loss/breakeven rows; an empty frame (even without columns) means no trades."""
    if outcomes.empty:
        outcomes = pd.DataFrame(columns=OUTCOME_INPUT_COLUMNS)
    return outcomes[outcomes["outcome"].isin(RESOLVED_OUTCOMES)]


def trade_metrics(outcomes: pd.DataFrame) -> dict:
    """Counts, win rates, average (excess) returns and profit factor of resolved trades."""
    resolved = _resolved(outcomes)
    counts = resolved["outcome"].value_counts()
    wins, losses, breakevens = (int(counts.get(o, 0)) for o in RESOLVED_OUTCOMES)
    trades = len(resolved)
    returns = resolved["return_pct"].astype("float64")
    gross_gain_pct = returns[returns > 0].sum()
    gross_loss_pct = -returns[returns < 0].sum()
    return {
        "trades": trades,
        "wins": wins,
        "losses": losses,
        "breakevens": breakevens,
        "win_rate": _ratio(wins, trades),
        "win_rate_decided": _ratio(wins, wins + losses),
        "breakeven_share": _ratio(breakevens, trades),
        "avg_return_pct": _number(returns.mean()) if trades else None,
        "avg_excess_return_pct": _number(resolved["excess_return_pct"].astype("float64").mean()) if trades else None,
        "profit_factor": _ratio(gross_gain_pct, gross_loss_pct),
    }


def exit_reason_shares(outcomes: pd.DataFrame) -> dict[str, float | None]:
    """Share of the resolved trades closed by each exit reason (every ExitReason; None without trades)."""
    reasons = _resolved(outcomes).get("exit_reason", pd.Series(dtype=object))
    counts = reasons.value_counts()
    return {reason.value: _ratio(int(counts.get(reason.value, 0)), len(reasons)) for reason in ExitReason}


def portfolio_metrics(equity: pd.DataFrame, outcomes: pd.DataFrame, prices: pd.DataFrame) -> dict:
    """Trade metrics of `outcomes` (signal_outcomes rows) and risk metrics of `equity` (date, equity_usd)."""
    return trade_metrics(outcomes) | equity_metrics(equity, prices)


def win_rate_by_confidence(outcomes: pd.DataFrame, bins=CONFIDENCE_BINS) -> pd.DataFrame:
    """CALIBRATION_COLUMNS per confidence bucket [low, high) — the last bucket includes its top.

    Every bucket is listed (trades 0 when empty); confidences outside the bins are left out.
    """
    edges = np.asarray(bins, dtype=float)
    resolved = _resolved(outcomes)
    confidence = resolved["confidence"].astype("float64").to_numpy()
    bucket = np.searchsorted(edges, confidence, side="right") - 1
    bucket[confidence == edges[-1]] = len(edges) - 2
    inside = (bucket >= 0) & (bucket < len(edges) - 1)
    frame = resolved[inside].assign(
        bucket_no=bucket[inside],
        is_win=resolved["outcome"][inside] == Outcome.WIN,
        is_loss=resolved["outcome"][inside] == Outcome.LOSS,
        is_breakeven=resolved["outcome"][inside] == Outcome.BREAKEVEN,
    )
    table = frame.groupby("bucket_no").agg(
        trades=("outcome", "size"),
        wins=("is_win", "sum"),
        losses=("is_loss", "sum"),
        breakevens=("is_breakeven", "sum"),
        avg_confidence=("confidence", "mean"),
        avg_return_pct=("return_pct", "mean"),
    ).reindex(range(len(edges) - 1))
    counts = ["trades", "wins", "losses", "breakevens"]
    table[counts] = table[counts].fillna(0).astype("int64")
    table["win_rate"] = (table["wins"] / table["trades"]).where(table["trades"] > 0)
    table["confidence_low"] = edges[:-1]
    table["confidence_high"] = edges[1:]
    table["bucket"] = [f"{lo:.2f}–{hi:.2f}" for lo, hi in itertools.pairwise(edges)]
    return table[CALIBRATION_COLUMNS].reset_index(drop=True)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_figure(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def equity_curve_png(equity_curves: dict[str, pd.DataFrame], spy_prices: pd.DataFrame) -> bytes:
    """Each equity curve and buy-and-hold SPY over the same dates, all normalized to 1.0 at the start."""
    figure = Figure(figsize=(8, 4))
    axes = figure.add_subplot()
    starts, ends = [], []
    for name, equity in equity_curves.items():
        curve = equity.assign(date=pd.to_datetime(equity["date"])).sort_values("date")
        if curve.empty:
            continue
        axes.plot(curve["date"], curve["equity_usd"] / curve["equity_usd"].iloc[0], label=name)
        starts.append(curve["date"].iloc[0])
        ends.append(curve["date"].iloc[-1])
    spy = _spy_close(spy_prices)
    if starts:
        spy = spy[(spy.index >= min(starts)) & (spy.index <= max(ends))]
    if len(spy):
        axes.plot(spy.index, spy / spy.iloc[0], label=MARKET_TICKER, color="grey", linestyle="--")
    axes.set_ylabel("growth of 1")
    axes.set_title("Equity vs SPY (normalized)")
    axes.legend(loc="best")
    figure.autofmt_xdate()
    return _png(figure)


def calibration_png(buckets: pd.DataFrame) -> bytes:
    """Win rate per confidence bucket (a `win_rate_by_confidence` frame), trade counts on the bars."""
    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    bars = axes.bar(buckets["bucket"], buckets["win_rate"].fillna(0.0))
    axes.bar_label(bars, labels=[f"n={n}" for n in buckets["trades"]])
    axes.set_ylim(0, 1.1)
    axes.set_xlabel("confidence")
    axes.set_ylabel("win rate (breakevens not counted as wins)")
    axes.set_title("Win rate by confidence")
    return _png(figure)
