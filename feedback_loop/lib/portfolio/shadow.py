"""Candidate calls and shadow outcomes: every heuristic candidate with the models' calls, and its realized outcome.

The blend weight compares the model with the heuristic on these rows (the same pool of
signals, traded or not); both drivers build and resolve them with these functions.
"""

from __future__ import annotations

import pandas as pd

from feedback_loop.lib.portfolio import outcomes as outcomes_lib

#: Candidates older than this many calendar days per trading day of the horizon are no longer
#: retried for a shadow outcome (60 days for 20 trading days, which resolve within about 30
#: unless the ticker has no prices).
SHADOW_RETRY_DAYS_PER_TRADING_DAY = 3


def shadow_resolution_window(day: pd.Timestamp, horizon_days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(oldest, youngest): the candidates whose shadow outcome can resolve on `day` are dated after
    oldest and on or before youngest, and read no price dated on or before oldest.

    The exit is the N-th trading day after the candidate's date (N = horizon_days, the entry day
    being the first), at least N + 2 × (N // 5) calendar days later (a weekend per five trading
    days), so younger candidates cannot have resolved; candidates older than
    SHADOW_RETRY_DAYS_PER_TRADING_DAY × N never will (no prices for their ticker) and stop being retried.
    """
    return (day - pd.Timedelta(days=SHADOW_RETRY_DAYS_PER_TRADING_DAY * horizon_days),
            day - pd.Timedelta(days=horizon_days + 2 * (horizon_days // 5)))


def candidate_calls(heuristic: pd.DataFrame, ml: pd.DataFrame | None, model_id: str | None,
                    challenger: pd.DataFrame | None, signals: pd.DataFrame) -> pd.DataFrame:
    """The day's heuristic candidates with the serving model's call, and a shadow candidate's call on
    those that became signals."""
    keys = ["ticker", "as_of"]
    calls = heuristic[[*keys, "heuristic_signal_type", "heuristic_confidence"]].reset_index(drop=True)
    calls["signal_id"] = calls["as_of"].dt.strftime("%Y-%m-%d") + ":" + calls["ticker"].astype(str)
    for frame, column in ((ml, "ml_signal_type"), (challenger, "challenger_signal_type")):
        if frame is None:
            calls[column] = None
        else:
            calls = calls.merge(frame[[*keys, "ml_signal_type"]].rename(columns={"ml_signal_type": column}),
                                on=keys, how="left", validate="one_to_one")
    calls["model_id"] = model_id if ml is not None else None
    calls["generated"] = calls["signal_id"].isin(signals["signal_id"]) if len(signals) else False
    # A shadow candidate's call is kept where it is logged: with the signal it scored (ml_predictions
    # references trading_signals; heuristic_signals has no column for it).
    calls.loc[~calls["generated"], "challenger_signal_type"] = None
    return calls


def shadow_outcomes_of_candidates(candidates: pd.DataFrame, prices: pd.DataFrame, as_of, horizon_days: int) -> pd.DataFrame:
    """Shadow outcomes of candidates, keeping whether each was generated and which model called it."""
    resolved = outcomes_lib.shadow_outcomes(candidates, prices, as_of, horizon_days)
    return resolved.merge(candidates[["signal_id", "generated", "model_id"]], on="signal_id", how="left")
