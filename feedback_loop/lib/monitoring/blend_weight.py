"""The self-tuning blend weight: the ML share of the blended confidence.

Once per evaluation the model and the heuristic are compared on the SAME signals — the
shadow outcomes (realized return of every signal, traded or not) resolved in the window
on which both sides made a call — and the weight moves one step toward the side that
wins more often, within [BLEND_WEIGHT_MIN, BLEND_WEIGHT_MAX], when the lead exceeds the seeds'
margin AND is significant for its sample (`paired_win_rate_test`, p < BLEND_WEIGHT_ALPHA).
Breakevens are not wins.

The outcomes of one window are not independent draws: the signals of one ticker on
consecutive days share one price path, and the signals exiting in one week share the
market's and their sectors' moves. Counted as independent (a two-proportion test), a month
in which one side happened to be longer than the other looked like thousands of wins: on
the synthetic null the weight left its start within five weeks and spent 70% of the year
elsewhere. The test therefore pairs the two calls of each signal and clusters the paired
differences two ways, by ticker and by exit week.

A weight decided on `as_of` is logged as a `feature_importance_history` row
('_ml_blend_weight', analysis_date = as_of) and takes effect the next day: the signals of
`as_of` already used the old weight, and `blend_weight_as_of` reproduces the weight that
any past date's signals were built with. Before the first decision the weight is the
starting weight of `reference_portfolio_config.ml_blend_weight` (an operator's setting; the
engine starts from the same `PortfolioPolicy.ml_blend_weight`). The rule itself is
`loop_rules.blend_weight_in_force`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TypedDict

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy import stats

from feedback_loop.lib import policy, rules
from feedback_loop.lib.vocab import Outcome

BLEND_WEIGHT_FEATURE = "_ml_blend_weight"
#: Shadow outcomes resolved in the last this many days are the evidence of one evaluation.
WINDOW_DAYS = policy.BLEND_WEIGHT_WINDOW_DAYS
_RESOLVED = {Outcome.WIN.value, Outcome.LOSS.value, Outcome.BREAKEVEN.value}


class ShadowWinCounts(TypedDict):
    """Resolved shadow outcomes of the window on which both sides made a call.

    A mapping, so `next_blend_weight(current, **counts)` takes it as it is. Both sides count
    the same signals, so `ml_n == heuristic_n`.
    """

    ml_wins: int
    ml_n: int
    ml_breakevens: int
    heuristic_wins: int
    heuristic_n: int
    heuristic_breakevens: int


TEST_NAME = "paired win-rate test, clustered by ticker and exit week"

RULE_DESCRIPTION = (
    f"Compares the ML side's win rate with the heuristic's on the same signals (shadow outcomes, "
    f"{policy.BLEND_WEIGHT_WINDOW_DAYS} days): ML ahead by > {policy.BLEND_WEIGHT_WIN_RATE_MARGIN_FRAC:.0%} "
    f"and significant ({TEST_NAME}, p < {policy.BLEND_WEIGHT_ALPHA:.4f}: 5% over the year's "
    f"{policy.BLEND_WEIGHT_WINDOWS_PER_YEAR} windows) → "
    f"+{policy.BLEND_WEIGHT_STEP:.2f} (cap {policy.BLEND_WEIGHT_MAX:.2f}), behind by more → "
    f"−{policy.BLEND_WEIGHT_STEP:.2f} (floor {policy.BLEND_WEIGHT_MIN:.2f}), else unchanged; no move under "
    f"{policy.BLEND_WEIGHT_MIN_OUTCOMES_PER_SIDE} outcomes per side nor within {policy.BLEND_WEIGHT_COOLDOWN_DAYS} "
    "days of the last move. The new weight serves from the next day."
)


@dataclass(frozen=True)
class PairedWinRateTest:
    """The paired comparison of one window: ML wins minus heuristic wins per signal."""

    difference: float
    #: Two-sided interval at 1 - BLEND_WEIGHT_ALPHA, so it excludes 0 exactly when p < BLEND_WEIGHT_ALPHA.
    interval: tuple[float, float]
    p_value: float
    tickers: int
    weeks: int


@dataclass(frozen=True)
class BlendWeightDecision:
    old_weight: float
    new_weight: float
    changed: bool
    reason: str
    ml_win_rate: float | None
    heuristic_win_rate: float | None
    #: Resolved outcomes compared (both sides are measured on the same signals).
    sample_size: int
    #: The test of the win-rate difference (ML minus heuristic), its interval and p-value;
    #: None while no signal is resolved on both sides.
    test: str | None = None
    difference_ci: tuple[float, float] | None = None
    p_value: float | None = None


def paired_win_rate_test(ml_win, heuristic_win, ticker, exit_week) -> PairedWinRateTest | None:
    """Test of mean(ml_win - heuristic_win) = 0 over signals, robust to both dependences of a window.

    The variance of the mean difference is two-way cluster-robust (Cameron, Gelbach and
    Miller 2011: by ticker + by exit week - by their intersection), never below either one-way
    variance (with a handful of weeks the week term is itself noisy and can cancel the ticker
    term), and the t statistic has min(tickers, weeks) - 1 degrees of freedom. None without at
    least two clusters each way.
    """
    frame = pd.DataFrame({"d": np.asarray(ml_win, float) - np.asarray(heuristic_win, float),
                          "ticker": np.asarray(ticker), "week": np.asarray(exit_week)})
    tickers, weeks = frame["ticker"].nunique(), frame["week"].nunique()
    if min(tickers, weeks) < 2:
        return None
    n, difference = len(frame), float(frame["d"].mean())
    residual = frame["d"] - difference

    def clustered_sum(*keys) -> float:
        return float((residual.groupby([frame[k] for k in keys]).sum() ** 2).sum())

    by_ticker, by_week = clustered_sum("ticker"), clustered_sum("week")
    variance = max(by_ticker + by_week - clustered_sum("ticker", "week"), by_ticker, by_week)
    dof = min(tickers, weeks) - 1
    se = np.sqrt(variance) / n
    p_value = float(2 * stats.t.sf(abs(difference) / se, dof)) if se > 0 else (1.0 if difference == 0 else 0.0)
    half = float(stats.t.ppf(1 - policy.BLEND_WEIGHT_ALPHA / 2, dof) * se)
    return PairedWinRateTest(difference, (difference - half, difference + half), p_value, tickers, weeks)


def _paired_window(shadow_outcomes: pd.DataFrame, as_of, window_days: int) -> pd.DataFrame:
    """Shadow outcomes resolved (exit_date) in (as_of - window_days, as_of] on both sides."""
    end = pd.Timestamp(as_of).normalize()
    start = end - pd.Timedelta(days=window_days)
    if not len(shadow_outcomes):
        return shadow_outcomes
    exit_date = pd.to_datetime(shadow_outcomes["exit_date"]).dt.normalize()
    return shadow_outcomes[(exit_date > start) & (exit_date <= end)
                           & shadow_outcomes["heuristic_outcome"].isin(_RESOLVED)
                           & shadow_outcomes["ml_outcome"].isin(_RESOLVED)]


def win_rates_from_shadow(shadow_outcomes: pd.DataFrame, as_of, window_days: int) -> ShadowWinCounts:
    """Count wins over shadow outcomes resolved in (as_of - window_days, as_of] on both sides.

    Both sides are measured on the same signals: those the heuristic called (every shadow
    outcome) and the model backed with a direction (`ml_outcome` resolved). Where both call
    the same direction the outcomes coincide; what differs is the calls where they disagree
    or one is stronger, which is what the weight should reward. Breakevens count as
    not-wins and are reported separately.
    """
    window = _paired_window(shadow_outcomes, as_of, window_days)
    if not len(window):
        return ShadowWinCounts(ml_wins=0, ml_n=0, ml_breakevens=0,
                               heuristic_wins=0, heuristic_n=0, heuristic_breakevens=0)
    ml, heuristic = window["ml_outcome"], window["heuristic_outcome"]
    return ShadowWinCounts(
        ml_wins=int((ml == Outcome.WIN).sum()), ml_n=len(ml), ml_breakevens=int((ml == Outcome.BREAKEVEN).sum()),
        heuristic_wins=int((heuristic == Outcome.WIN).sum()), heuristic_n=len(heuristic),
        heuristic_breakevens=int((heuristic == Outcome.BREAKEVEN).sum()),
    )


def window_test(shadow_outcomes: pd.DataFrame, as_of, window_days: int) -> PairedWinRateTest | None:
    """`paired_win_rate_test` over the window's signals resolved on both sides."""
    window = _paired_window(shadow_outcomes, as_of, window_days)
    if not len(window):
        return None
    exit_week = pd.to_datetime(window["exit_date"]).dt.to_period("W").astype(str)
    return paired_win_rate_test(window["ml_outcome"] == Outcome.WIN, window["heuristic_outcome"] == Outcome.WIN,
                                window["ticker"], exit_week)


def next_blend_weight(
    current: float,
    ml_wins: int,
    ml_n: int,
    heuristic_wins: int,
    heuristic_n: int,
    *,
    ml_breakevens: int = 0,
    heuristic_breakevens: int = 0,
    days_since_change: int | None = None,
    test: PairedWinRateTest | None = None,
) -> BlendWeightDecision:
    """One step of BLEND_WEIGHT_STEP toward the side whose win rate leads by MORE than
    BLEND_WEIGHT_WIN_RATE_MARGIN_FRAC with a `paired_win_rate_test` p-value under
    BLEND_WEIGHT_ALPHA, within [BLEND_WEIGHT_MIN, BLEND_WEIGHT_MAX]. Without a test (fewer
    than two tickers or weeks) there is no evidence and the weight stays.

    No move when either side has fewer than BLEND_WEIGHT_MIN_OUTCOMES_PER_SIDE resolved
    outcomes, nor within BLEND_WEIGHT_COOLDOWN_DAYS of the last move (`days_since_change`).
    Weights are rounded to 2 decimals. Breakevens (already counted in the n's as not-wins)
    are stated in the reason.
    """
    current = round(current, 2)
    ml_rate = ml_wins / ml_n if ml_n else None
    heuristic_rate = heuristic_wins / heuristic_n if heuristic_n else None
    sample_size = min(ml_n, heuristic_n)

    breakevens = (
        f"; breakevens counted as not-wins: ML {ml_breakevens}, heuristic {heuristic_breakevens}"
        if ml_breakevens or heuristic_breakevens else ""
    )

    p_value, interval = (test.p_value, test.interval) if test is not None else (None, None)

    def decision(new_weight: float, reason: str) -> BlendWeightDecision:
        return BlendWeightDecision(
            current, new_weight, new_weight != current, reason + breakevens, ml_rate,
            heuristic_rate, sample_size, TEST_NAME if p_value is not None else None, interval, p_value,
        )

    if days_since_change is not None and days_since_change < policy.BLEND_WEIGHT_COOLDOWN_DAYS:
        return decision(current, f"cooldown: last move {days_since_change} days ago, "
                                 f"next after {policy.BLEND_WEIGHT_COOLDOWN_DAYS}; weight stays {current:.2f}")
    minimum = policy.BLEND_WEIGHT_MIN_OUTCOMES_PER_SIDE
    if ml_n < minimum or heuristic_n < minimum:
        return decision(
            current,
            f"insufficient outcomes: ML n={ml_n}, heuristic n={heuristic_n}, "
            f"need {minimum} per side; weight stays {current:.2f}",
        )

    margin = policy.BLEND_WEIGHT_WIN_RATE_MARGIN_FRAC
    difference = round(ml_rate - heuristic_rate, policy.THRESHOLD_DECIMALS)
    alpha = round(policy.BLEND_WEIGHT_ALPHA, policy.THRESHOLD_DECIMALS)
    if test is None:
        return decision(current, f"ML win rate {ml_rate:.4f} vs heuristic {heuristic_rate:.4f}: no test "
                                 f"(the outcomes span fewer than two tickers or weeks); weight stays {current:.2f}")
    rates = (f"ML win rate {ml_rate:.4f} vs heuristic {heuristic_rate:.4f} ({difference:+.4f}, "
             f"{1 - alpha:.2%} interval [{interval[0]:+.4f}, {interval[1]:+.4f}], {TEST_NAME} "
             f"over {test.tickers} tickers and {test.weeks} weeks, p={p_value:.4f})")
    if abs(difference) > margin and p_value >= alpha:
        return decision(current, f"{rates}: beyond ±{margin} but not significant (p >= {alpha:.4f}); "
                                 f"weight stays {current:.2f}")
    if difference > margin:
        new_weight = round(min(policy.BLEND_WEIGHT_MAX, current + policy.BLEND_WEIGHT_STEP), 2)
        bound = f", capped at {policy.BLEND_WEIGHT_MAX:.2f}" if new_weight == policy.BLEND_WEIGHT_MAX else ""
        return decision(new_weight, f"{rates} > +{margin}: weight {current:.2f} -> {new_weight:.2f}{bound}")
    if difference < -margin:
        new_weight = round(max(policy.BLEND_WEIGHT_MIN, current - policy.BLEND_WEIGHT_STEP), 2)
        bound = f", floored at {policy.BLEND_WEIGHT_MIN:.2f}" if new_weight == policy.BLEND_WEIGHT_MIN else ""
        return decision(new_weight, f"{rates} < -{margin}: weight {current:.2f} -> {new_weight:.2f}{bound}")
    return decision(current, f"{rates} within ±{margin}: weight stays {current:.2f}")


def decide_blend_weight(shadow_outcomes: pd.DataFrame, as_of, current: float,
                        days_since_change: int | None) -> tuple[BlendWeightDecision, ShadowWinCounts]:
    """The evaluation of `as_of` on both drivers: counts and the paired test over the window, then
    `next_blend_weight`."""
    counts = win_rates_from_shadow(shadow_outcomes, as_of, WINDOW_DAYS)
    test = window_test(shadow_outcomes, as_of, WINDOW_DAYS)
    return next_blend_weight(current, **counts, days_since_change=days_since_change, test=test), counts


def apply_blend_weight(
    conn: sa.Connection, decision: BlendWeightDecision, as_of, window_days: int = policy.BLEND_WEIGHT_WINDOW_DAYS
) -> None:
    """Log the decision of `as_of` (one row per analysis_date: re-running replaces it).

    The caller takes `decision.old_weight` from `blend_weight_as_of(conn, as_of)`, so a
    re-run of the same day reaches the same decision instead of stepping twice.
    """
    rates_known = decision.ml_win_rate is not None and decision.heuristic_win_rate is not None
    conn.execute(
        sa.text(
            "INSERT INTO feature_importance_history (analysis_date, analysis_window_days,"
            " feature_name, model_id, median_value, avg_return_when_high, avg_return_when_low,"
            " lift_pct, sample_size_total, details)"
            " VALUES (:analysis_date, :window, :feature, NULL, :weight, :ml_rate, :heuristic_rate,"
            " :lift_pct, :sample_size, CAST(:details AS JSONB))"
            " ON CONFLICT (analysis_date, feature_name, COALESCE(model_id, '')) DO UPDATE SET"
            " analysis_window_days = EXCLUDED.analysis_window_days,"
            " median_value = EXCLUDED.median_value,"
            " avg_return_when_high = EXCLUDED.avg_return_when_high,"
            " avg_return_when_low = EXCLUDED.avg_return_when_low,"
            " lift_pct = EXCLUDED.lift_pct, sample_size_total = EXCLUDED.sample_size_total,"
            " details = EXCLUDED.details, created_at = now()"
        ),
        {
            "analysis_date": pd.Timestamp(as_of).date(),
            "window": window_days,
            "feature": BLEND_WEIGHT_FEATURE,
            "weight": decision.new_weight,
            "ml_rate": decision.ml_win_rate,
            "heuristic_rate": decision.heuristic_win_rate,
            # Percent points, like every `_pct` column.
            "lift_pct": (
                round((decision.ml_win_rate - decision.heuristic_win_rate) * 100, policy.THRESHOLD_DECIMALS)
                if rates_known else None
            ),
            "sample_size": decision.sample_size,
            "details": json.dumps(asdict(decision)),
        },
    )


def _logged_weights(conn: sa.Connection, before) -> list:
    return conn.execute(
        sa.text(
            "SELECT analysis_date, median_value, (details->>'changed')::boolean FROM feature_importance_history"
            " WHERE feature_name = :feature AND model_id IS NULL AND analysis_date < :before ORDER BY analysis_date"
        ),
        {"feature": BLEND_WEIGHT_FEATURE, "before": pd.Timestamp(before).date()},
    ).all()


def starting_blend_weight(conn: sa.Connection) -> float:
    """The weight before any decision: `reference_portfolio_config.ml_blend_weight`, which operators may set."""
    return float(conn.execute(sa.text("SELECT ml_blend_weight FROM reference_portfolio_config")).scalar())


def blend_weight_as_of(conn: sa.Connection, as_of) -> float:
    """The weight in force on `as_of` (`loop_rules.blend_weight_in_force` over the logged decisions)."""
    decisions = [(day, weight) for day, weight, _ in _logged_weights(conn, as_of)]
    return rules.blend_weight_in_force(decisions, as_of, starting_blend_weight(conn))


def days_since_last_move(conn: sa.Connection, as_of) -> int | None:
    """Days from the last logged weight move (decided before `as_of`) to `as_of`; None if never moved."""
    return rules.days_since_blend_move((day for day, _, moved in _logged_weights(conn, as_of) if moved), as_of)


def blend_weight_moves(conn: sa.Connection, through) -> list[dict]:
    """The logged decisions that moved the weight, decided on or before `through`, oldest first:
    decided (serving from the next day), old and new weight, reason."""
    rows = conn.execute(
        sa.text(
            "SELECT analysis_date, details FROM feature_importance_history WHERE feature_name = :feature"
            " AND model_id IS NULL AND (details->>'changed')::boolean AND analysis_date <= :through"
            " ORDER BY analysis_date"
        ),
        {"feature": BLEND_WEIGHT_FEATURE, "through": pd.Timestamp(through).date()},
    ).all()
    return [{"decided": day, "old_weight": details["old_weight"], "new_weight": details["new_weight"],
             "reason": details["reason"]} for day, details in rows]
