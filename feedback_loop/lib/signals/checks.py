"""Checks of the signal assets: ticker_features, heuristic_signals, trading_signals.

Inputs are the frames both drivers hold for one day: the Dagster assets pass what they computed
and wrote, the engine's history passes its day frames (`FeaturePanel.daily` rows of the day,
`score_heuristic` of them, the day's `build_signals` output before the portfolio acts on it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feedback_loop.lib import policy
from feedback_loop.lib.checks import ERROR, WARN, Check, CheckOutcome
from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.signals import heuristic
from feedback_loop.lib.vocab import SIGNAL_DIRECTION, SignalStatus

_DIRECTION = {signal_type.value: direction for signal_type, direction in SIGNAL_DIRECTION.items()}

FEATURES_ONE_ROW_PER_TICKER = Check(
    "ticker_features_one_row_per_ticker", ERROR, "Each ticker has exactly one feature row for the day.")
FEATURES_AS_OF_THE_DAY = Check(
    "ticker_features_as_of_the_day", ERROR,
    "Every feature row is dated the partition day (no row from another day, none from the future).")
HEURISTIC_CALLS_VALID = Check(
    "heuristic_signals_are_directional_calls", ERROR,
    f"Every heuristic row is a buy- or sell-side call on at least {policy.HEURISTIC_MIN_TRADES} trades, with a "
    f"confidence in [{policy.HEURISTIC_BASE_CONFIDENCE}, {heuristic.STRONG_SIGNAL_CAP}] (holds dropped).")
QUEUE_RESPECTS_THRESHOLDS = Check(
    "trading_signals_queue_respects_thresholds", ERROR,
    f"Nothing is queued under min_queue_confidence (and never under {policy.QUEUE_CONFIDENCE_FLOOR}) nor on a "
    "direction disagreement between heuristic and model; nothing is generated under min_signal_confidence.")
SERVING_SLA = Check(
    "trading_signals_meet_serving_sla", WARN,
    f"Serving SLA (seed 004): mean scoring latency < {policy.SERVING_MAX_MEAN_LATENCY_MS:g} ms and "
    f"{policy.SERVING_FALLBACK_WINDOW_DAYS}-day fallback rate < {policy.SERVING_MAX_FALLBACK_RATE_FRAC:.0%} "
    "(warning only).")
CHECKS = {
    "ticker_features": [FEATURES_ONE_ROW_PER_TICKER, FEATURES_AS_OF_THE_DAY],
    "heuristic_signals": [HEURISTIC_CALLS_VALID],
    "trading_signals": [QUEUE_RESPECTS_THRESHOLDS, SERVING_SLA],
}


def ticker_features_checks(features: pd.DataFrame, day) -> list[CheckOutcome]:
    """`features`: the day's `compute_ticker_features` rows (ticker, as_of, ...), possibly empty."""
    day = pd.Timestamp(day).normalize()
    if not len(features):
        return [FEATURES_ONE_ROW_PER_TICKER.outcome(True, rows=0), FEATURES_AS_OF_THE_DAY.outcome(True, rows=0)]
    duplicated = features.loc[features["ticker"].duplicated(keep=False), "ticker"]
    as_of = pd.to_datetime(features["as_of"]).dt.normalize()
    other = as_of[as_of != day]
    return [
        FEATURES_ONE_ROW_PER_TICKER.outcome(
            duplicated.empty, rows=len(features), tickers=int(features["ticker"].nunique()),
            duplicated_tickers=sorted(map(str, duplicated.unique()))[:20]),
        FEATURES_AS_OF_THE_DAY.outcome(
            other.empty, rows=len(features), day=day.date().isoformat(), rows_of_other_days=len(other),
            latest_as_of=as_of.max().date().isoformat()),
    ]


def heuristic_signals_checks(scored: pd.DataFrame) -> list[CheckOutcome]:
    """`scored`: the day's `score_heuristic` output (features + heuristic_signal_type, heuristic_confidence)."""
    if not len(scored):
        return [HEURISTIC_CALLS_VALID.outcome(True, rows=0)]
    direction = scored["heuristic_signal_type"].map(_DIRECTION)
    confidence = scored["heuristic_confidence"].astype(float)
    bad = ((direction.isna() | (direction == 0))
           | ~confidence.between(policy.HEURISTIC_BASE_CONFIDENCE, heuristic.STRONG_SIGNAL_CAP)
           | (scored["trade_count"].astype(float) < policy.HEURISTIC_MIN_TRADES))
    return [HEURISTIC_CALLS_VALID.outcome(
        not bad.any(), rows=len(scored), invalid_rows=int(bad.sum()),
        invalid_tickers=sorted(map(str, scored.loc[bad, "ticker"]))[:20])]


def trading_signals_checks(signals: pd.DataFrame, portfolio_policy: PortfolioPolicy,
                           predictions: pd.DataFrame | None,
                           fallback_rate_frac: float | None) -> list[CheckOutcome]:
    """The queue gate and the serving SLA of one day.

    `signals`: the day's `build_signals` output with the statuses it set (before the portfolio
    acts on them); `portfolio_policy`: the policy the signals were built with; `predictions`: the
    day's prediction log (`serving.score_with_logging`, column latency_ms), None or empty when
    nothing was scored by a model (the engine logs no latencies); `fallback_rate_frac`: the share
    of signals of the last SERVING_FALLBACK_WINDOW_DAYS days served by a fallback, None without signals.
    """
    floor = max(portfolio_policy.min_queue_confidence, policy.QUEUE_CONFIDENCE_FLOOR)
    if len(signals):
        queued = signals[signals["status"] == SignalStatus.QUEUED.value]
        confidence = queued["confidence"].astype(float)
        # No model call (heuristic only, ML switched off) is direction 0: never a disagreement.
        heuristic_side = queued["signal_type"].astype(object).map(_DIRECTION).astype(float).fillna(0.0)
        model_side = queued["ml_signal_type"].astype(object).map(_DIRECTION).astype(float).fillna(0.0)
        opposed = (heuristic_side * model_side) < 0
        under_generation = signals["confidence"].astype(float) < portfolio_policy.min_signal_confidence
        gate = QUEUE_RESPECTS_THRESHOLDS.outcome(
            not ((confidence < floor).any() or opposed.any() or under_generation.any()),
            signals=len(signals), queued=len(queued), min_queue_confidence=floor,
            min_queued_confidence=float(confidence.min()) if len(queued) else None,
            queued_under_threshold=int((confidence < floor).sum()), queued_on_disagreement=int(opposed.sum()),
            generated_under_min_signal_confidence=int(under_generation.sum()))
    else:
        gate = QUEUE_RESPECTS_THRESHOLDS.outcome(True, signals=0, queued=0, min_queue_confidence=floor)
    latencies = (predictions["latency_ms"].astype(float)
                 if predictions is not None and len(predictions) else pd.Series(dtype=float))
    mean_latency = float(latencies.mean()) if len(latencies) else None
    slow = mean_latency is not None and not mean_latency < policy.SERVING_MAX_MEAN_LATENCY_MS
    if fallback_rate_frac is not None:
        fallback_rate_frac = float(fallback_rate_frac)  # SQL's avg() is a Decimal
    falling_back = fallback_rate_frac is not None and not (
        np.isfinite(fallback_rate_frac) and fallback_rate_frac < policy.SERVING_MAX_FALLBACK_RATE_FRAC)
    sla = SERVING_SLA.outcome(
        not (slow or falling_back), mean_latency_ms=mean_latency, predictions=len(latencies),
        max_mean_latency_ms=policy.SERVING_MAX_MEAN_LATENCY_MS,
        fallback_rate_frac=fallback_rate_frac, max_fallback_rate_frac=policy.SERVING_MAX_FALLBACK_RATE_FRAC,
        fallback_window_days=policy.SERVING_FALLBACK_WINDOW_DAYS)
    return [gate, sla]
