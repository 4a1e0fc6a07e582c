"""Checks of the portfolio assets: portfolio_positions, signal_outcomes, portfolio_performance.

Inputs are frames both drivers hold after a day: the `PortfolioState` that `step_portfolio`
returned and the signals it filled from; the outcome rows computed that day and the closed
positions they came from; the `portfolio_metrics` of the day.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from feedback_loop.lib.checks import ERROR, Check, CheckOutcome
from feedback_loop.lib.portfolio.outcomes import LABEL_RULE, classify_returns
from feedback_loop.lib.portfolio.paper import PortfolioState
from feedback_loop.lib.vocab import PositionStatus

#: Money is compared to the cent.
USD_TOLERANCE = 0.01
#: A stored return_pct and the one its prices give agree to this many percent points.
RETURN_TOLERANCE_PCT = 1e-6

CASH_NEVER_NEGATIVE = Check("portfolio_positions_cash_never_negative", ERROR,
                            "Cash is never negative on any day of the equity curve.")
EQUITY_IS_CASH_PLUS_POSITIONS = Check(
    "portfolio_positions_equity_is_cash_plus_positions", ERROR,
    "Each day's equity is its cash plus its marked open positions, and the day's open-position count "
    "matches the open positions.")
OPENED_ONLY_QUEUED = Check("portfolio_positions_open_only_queued_signals", ERROR,
                           "Every position opened on the day comes from a signal queued at the previous close.")
LABELS_MATCH_RETURNS = Check(
    "signal_outcomes_labels_match_returns", ERROR,
    f"Each outcome's return is its exit over its entry price and its label follows the rule ({LABEL_RULE}).")
ONE_OUTCOME_PER_POSITION = Check("signal_outcomes_one_per_closed_position", ERROR,
                                 "Each closed position of the day has exactly one outcome, and no outcome "
                                 "belongs to a position that is not closed.")
PERFORMANCE_CONSISTENT = Check(
    "portfolio_performance_metrics_consistent", ERROR,
    "Wins, losses and breakevens add up to the trades; rates and drawdown are fractions in [0, 1]; "
    "every metric is a finite number or undefined (None), never NaN or inf.")
CHECKS = {
    "portfolio_positions": [CASH_NEVER_NEGATIVE, EQUITY_IS_CASH_PLUS_POSITIONS, OPENED_ONLY_QUEUED],
    "signal_outcomes": [LABELS_MATCH_RETURNS, ONE_OUTCOME_PER_POSITION],
    "portfolio_performance": [PERFORMANCE_CONSISTENT],
}


def _dates(values) -> list[str]:
    return sorted({pd.Timestamp(v).date().isoformat() for v in values})[:20]


def portfolio_positions_checks(state: PortfolioState, queued: pd.DataFrame, day) -> list[CheckOutcome]:
    """`state`: the portfolio after `day` (positions, equity curve up to `day`); `queued`: the signals
    queued at the previous close that `step_portfolio` was given (signal_id), possibly empty."""
    day = pd.Timestamp(day).normalize()
    equity, positions = state.equity, state.positions
    negative = equity[equity["cash_usd"] < -USD_TOLERANCE]
    gap = (equity["equity_usd"] - equity["cash_usd"] - equity["invested_usd"]).abs()
    unbalanced = equity[gap > USD_TOLERANCE]
    today = equity[pd.to_datetime(equity["date"]) == day]
    open_now = int((positions["status"] == PositionStatus.OPEN.value).sum())
    counted = int(today["open_positions"].iloc[-1]) if len(today) else None
    opened = positions[pd.to_datetime(positions["entry_date"]) == day]
    queued_ids = set(queued["signal_id"]) if len(queued) else set()
    unqueued = opened.loc[~opened["signal_id"].isin(queued_ids), "signal_id"]
    return [
        CASH_NEVER_NEGATIVE.outcome(negative.empty, days=len(equity), min_cash_usd=float(equity["cash_usd"].min())
                                    if len(equity) else None, negative_days=_dates(negative["date"])),
        EQUITY_IS_CASH_PLUS_POSITIONS.outcome(
            unbalanced.empty and counted in (None, open_now), days=len(equity),
            max_gap_usd=float(gap.max()) if len(equity) else 0.0, unbalanced_days=_dates(unbalanced["date"]),
            open_positions=open_now, open_positions_in_equity=counted),
        OPENED_ONLY_QUEUED.outcome(unqueued.empty, opened=len(opened), queued=len(queued_ids),
                                   opened_without_queued_signal=sorted(map(str, unqueued))[:20]),
    ]


def signal_outcomes_checks(outcomes: pd.DataFrame, closed: pd.DataFrame) -> list[CheckOutcome]:
    """`outcomes`: the outcome rows computed on the day (`outcomes_from_positions`); `closed`: the
    positions they were computed from (POSITION_COLUMNS, the closed ones due an outcome that day)."""
    if len(outcomes):
        expected = (outcomes["exit_price"].astype(float) / outcomes["entry_price"].astype(float) - 1.0) * 100.0
        off_return = ~np.isclose(outcomes["return_pct"].astype(float), expected, rtol=0, atol=RETURN_TOLERANCE_PCT)
        mislabeled = outcomes["outcome"] != classify_returns(outcomes["return_pct"])
        wrong = outcomes.loc[off_return | mislabeled, "position_id"]
    else:
        wrong = pd.Series(dtype=object)
    closed_ids = (closed.loc[closed["status"] == PositionStatus.CLOSED.value, "position_id"]
                  if len(closed) else pd.Series(dtype=object))
    counts = (outcomes["position_id"].value_counts() if len(outcomes) else pd.Series(dtype=int))
    without = sorted(set(closed_ids) - set(counts.index))
    duplicated = sorted(counts.index[counts > 1])
    stray = sorted(set(counts.index) - set(closed_ids))
    return [
        LABELS_MATCH_RETURNS.outcome(wrong.empty, outcomes=len(outcomes), label_rule=LABEL_RULE,
                                     mismatched_positions=sorted(map(str, wrong))[:20]),
        ONE_OUTCOME_PER_POSITION.outcome(
            not (without or duplicated or stray), closed_positions=len(closed_ids), outcomes=len(outcomes),
            positions_without_outcome=without[:20], positions_with_several=duplicated[:20],
            outcomes_of_positions_not_closed=stray[:20]),
    ]


def portfolio_performance_checks(metrics: dict) -> list[CheckOutcome]:
    """`metrics`: `performance.portfolio_metrics` of the day (None marks an undefined metric)."""
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    not_finite = sorted(k for k, v in numbers.items() if not math.isfinite(v))
    fractions = ("win_rate", "win_rate_decided", "breakeven_share", "max_drawdown_frac")
    out_of_range = sorted(k for k in fractions if metrics.get(k) is not None and not 0.0 <= metrics[k] <= 1.0)
    counted = sum(int(metrics.get(k) or 0) for k in ("wins", "losses", "breakevens"))
    trades = int(metrics.get("trades") or 0)
    return [PERFORMANCE_CONSISTENT.outcome(
        not (not_finite or out_of_range or counted != trades), trades=trades, wins_losses_breakevens=counted,
        not_finite=not_finite, out_of_range=out_of_range)]
