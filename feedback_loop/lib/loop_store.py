"""Reads and idempotent writes of the loop's per-day state (features, signals, positions, outcomes).

The Dagster assets rebuild the start-of-day state of any trading day from these tables, so
re-materializing a day reproduces it; the engine writes the same tables in bulk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

from feedback_loop.lib.db import upsert_frame
from feedback_loop.lib.features import FEATURE_NAMES
from feedback_loop.lib.frames import normalize_dates
from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.portfolio import PortfolioState
from feedback_loop.lib.vocab import PositionStatus, SignalStatus

SIGNAL_TABLE_COLUMNS = [
    "signal_id", "as_of", "ticker", "signal_type", "confidence", "heuristic_signal_type",
    "heuristic_confidence", "ml_signal_type", "ml_confidence", "blend_weight", "blend_case",
    "ml_enhanced", "model_id", "model_version", "serving_path", "status", "features",
]
POSITION_COLUMNS = [
    "position_id", "signal_id", "ticker", "status", "trading_mode", "quantity", "entry_date",
    "entry_price", "stop_loss_price", "highest_close", "confidence", "exit_date", "exit_price",
    "exit_reason", "broker_order_id",
]
OUTCOME_COLUMNS = [
    "position_id", "signal_id", "ticker", "signal_type", "confidence", "entry_date", "exit_date",
    "entry_price", "exit_price", "return_pct", "spy_return_pct", "excess_return_pct", "holding_days",
    "outcome", "exit_reason", "features", "model_id", "model_version", "ml_enhanced",
]
SHADOW_COLUMNS = [
    "signal_id", "ticker", "as_of", "entry_date", "exit_date", "horizon_days", "return_pct",
    "spy_return_pct", "heuristic_signal_type", "ml_signal_type", "challenger_signal_type",
    "heuristic_outcome", "ml_outcome", "challenger_outcome", "generated", "model_id",
]
EQUITY_COLUMNS = ["date", "equity_usd", "cash_usd", "invested_usd", "open_positions"]
#: Statuses a signal can only have had if it was queued for the portfolio.
WAS_QUEUED = {s.value for s in SignalStatus} - {
    SignalStatus.BELOW_QUEUE_THRESHOLD.value, SignalStatus.DIRECTION_DISAGREEMENT.value,
}


def _select(conn: sa.Connection, sql: str, **params) -> pd.DataFrame:
    return normalize_dates(pd.read_sql(sa.text(sql), conn, params=params))


def _subset(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return frame[[c for c in columns if c in frame.columns]]


# ------------------------------------------------------------------ features
def write_features(conn: sa.Connection, features: pd.DataFrame) -> int:
    if not len(features):
        return 0
    rows = features[["as_of", "ticker", "trade_count", "buy_count", "sell_count"]].copy()
    values = features[FEATURE_NAMES].astype(float)
    rows["features"] = [
        {k: (None if np.isnan(v) else float(v)) for k, v in zip(FEATURE_NAMES, vec)}
        for vec in values.to_numpy()
    ]
    return upsert_frame(conn, "ticker_features", rows, ["as_of", "ticker"])


def _with_feature_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Add one column per feature from the stored JSON vectors (kept in `features`)."""
    if not len(frame):
        return frame.reindex(columns=[*frame.columns, *FEATURE_NAMES])
    vectors = pd.DataFrame(list(frame["features"]), index=frame.index, columns=FEATURE_NAMES).astype(float)
    return pd.concat([frame, vectors], axis=1)


def read_features(conn: sa.Connection, start, end) -> pd.DataFrame:
    frame = _select(conn, "SELECT * FROM ticker_features WHERE as_of BETWEEN :s AND :e ORDER BY as_of, ticker",
                    s=pd.Timestamp(start).date(), e=pd.Timestamp(end).date())
    return _with_feature_columns(frame)


def write_heuristic(conn: sa.Connection, heuristic: pd.DataFrame) -> int:
    return upsert_frame(conn, "heuristic_signals",
                        heuristic[["as_of", "ticker", "heuristic_signal_type", "heuristic_confidence"]],
                        ["as_of", "ticker"])


def write_candidate_calls(conn: sa.Connection, calls: pd.DataFrame) -> int:
    """Heuristic candidates with the serving model's call (None without a model)."""
    columns = ["as_of", "ticker", "heuristic_signal_type", "heuristic_confidence", "ml_signal_type", "model_id"]
    return upsert_frame(conn, "heuristic_signals", calls[columns], ["as_of", "ticker"])


def read_candidates(conn: sa.Connection, start, end) -> pd.DataFrame:
    """Heuristic candidates of [start, end] with the model's call, whether each became a signal,
    and a shadow-scoring candidate model's call where one scored it."""
    return _select(
        conn,
        "SELECT h.as_of, h.ticker, h.heuristic_signal_type, h.ml_signal_type, h.model_id,"
        " to_char(h.as_of, 'YYYY-MM-DD') || ':' || h.ticker AS signal_id, s.signal_id IS NOT NULL AS generated,"
        " p.predicted_class AS challenger_signal_type"
        " FROM heuristic_signals h LEFT JOIN trading_signals s ON s.as_of = h.as_of AND s.ticker = h.ticker"
        " LEFT JOIN LATERAL (SELECT predicted_class FROM ml_predictions p WHERE p.signal_id = s.signal_id"
        " AND p.role = 'shadow' ORDER BY p.created_at DESC LIMIT 1) p ON TRUE"
        " WHERE h.as_of BETWEEN :s AND :e ORDER BY h.as_of, h.ticker",
        s=pd.Timestamp(start).date(), e=pd.Timestamp(end).date())


# ------------------------------------------------------------------ signals
def write_signals(conn: sa.Connection, signals: pd.DataFrame) -> int:
    return upsert_frame(conn, "trading_signals", _subset(signals, SIGNAL_TABLE_COLUMNS), ["signal_id"])


def read_signals(conn: sa.Connection, start, end) -> pd.DataFrame:
    """Signals of [start, end] with their feature columns and, where a candidate scored them in
    shadow, its class as `challenger_signal_type`."""
    frame = _select(
        conn,
        "SELECT s.*, p.predicted_class AS challenger_signal_type FROM trading_signals s"
        " LEFT JOIN LATERAL (SELECT predicted_class FROM ml_predictions p WHERE p.signal_id = s.signal_id"
        " AND p.role = 'shadow' ORDER BY p.created_at DESC LIMIT 1) p ON TRUE"
        " WHERE s.as_of BETWEEN :s AND :e ORDER BY s.as_of, s.ticker",
        s=pd.Timestamp(start).date(), e=pd.Timestamp(end).date())
    return _with_feature_columns(frame)


def fallback_rate(conn: sa.Connection, start, end) -> float | None:
    """Share of the signals of [start, end] served by a fallback (previous champion or heuristic
    after a model failed); None without signals."""
    return conn.execute(sa.text(
        "SELECT avg((serving_path IN ('previous_champion', 'heuristic_fallback'))::int) FROM trading_signals"
        " WHERE as_of BETWEEN :s AND :e"), {"s": pd.Timestamp(start).date(), "e": pd.Timestamp(end).date()}).scalar()


def update_signal_status(conn: sa.Connection, updates: pd.DataFrame) -> None:
    if updates is None or not len(updates):
        return
    conn.execute(sa.text("UPDATE trading_signals SET status = :status WHERE signal_id = :signal_id"),
                 updates[["signal_id", "status"]].to_dict("records"))


def queued_for(signals_of_previous_day: pd.DataFrame) -> pd.DataFrame:
    """The signals the portfolio fills at a day's open: those queued at the previous close."""
    if not len(signals_of_previous_day):
        return signals_of_previous_day
    queued = signals_of_previous_day[signals_of_previous_day["status"].isin(WAS_QUEUED)]
    return queued.assign(status=SignalStatus.QUEUED.value)


# ------------------------------------------------------------------ portfolio
def write_portfolio(conn: sa.Connection, state: PortfolioState) -> None:
    upsert_frame(conn, "portfolio_positions", _subset(state.positions, POSITION_COLUMNS), ["position_id"])
    upsert_frame(conn, "portfolio_equity", _subset(state.equity, EQUITY_COLUMNS), ["date"])


def portfolio_at_start_of(conn: sa.Connection, day, prices: pd.DataFrame,
                          policy: PortfolioPolicy) -> PortfolioState:
    """The portfolio as it stood before `day`'s open, rebuilt from the stored history."""
    day = pd.Timestamp(day)
    positions = _select(conn, "SELECT * FROM portfolio_positions WHERE entry_date < :d", d=day.date())
    equity = _select(conn, "SELECT * FROM portfolio_equity WHERE date < :d ORDER BY date", d=day.date())
    state = PortfolioState.initial(policy)
    if not len(equity):
        return state
    reopened = positions["exit_date"].notna() & (positions["exit_date"] >= day)
    positions.loc[reopened, ["exit_date", "exit_price", "exit_reason"]] = None
    positions.loc[reopened, "status"] = PositionStatus.OPEN.value
    open_rows = positions["status"] == PositionStatus.OPEN.value
    if open_rows.any():
        closes = prices[(prices["date"] < day)][["ticker", "date", "adj_close"]]
        held = positions.loc[open_rows, ["position_id", "ticker", "entry_date"]].merge(closes, on="ticker")
        highest = held[held["date"] >= held["entry_date"]].groupby("position_id")["adj_close"].max()
        positions.loc[open_rows, "highest_close"] = (
            positions.loc[open_rows, "position_id"].map(highest).fillna(positions.loc[open_rows, "entry_price"])
        )
    state.positions = positions[POSITION_COLUMNS].reset_index(drop=True)
    state.cash_usd = float(equity["cash_usd"].iloc[-1])
    state.equity = equity[EQUITY_COLUMNS].reset_index(drop=True)
    return state


def read_positions(conn: sa.Connection, until) -> pd.DataFrame:
    """Positions opened on or before `until`, as stored (the latest state)."""
    return _select(conn, "SELECT * FROM portfolio_positions WHERE entry_date <= :d ORDER BY entry_date, position_id",
                   d=pd.Timestamp(until).date())[POSITION_COLUMNS]


# ------------------------------------------------------------------ outcomes
def write_outcomes(conn: sa.Connection, outcomes: pd.DataFrame) -> int:
    return upsert_frame(conn, "signal_outcomes", _subset(outcomes, OUTCOME_COLUMNS), ["position_id"])


def write_shadow(conn: sa.Connection, shadow: pd.DataFrame) -> int:
    return upsert_frame(conn, "shadow_outcomes", _subset(shadow, SHADOW_COLUMNS), ["signal_id"])


def read_outcomes(conn: sa.Connection, until) -> pd.DataFrame:
    return _select(conn, "SELECT * FROM signal_outcomes WHERE exit_date <= :d ORDER BY exit_date, position_id",
                   d=pd.Timestamp(until).date())


def read_shadow(conn: sa.Connection, until) -> pd.DataFrame:
    return _select(conn, "SELECT * FROM shadow_outcomes WHERE exit_date <= :d ORDER BY exit_date, signal_id",
                   d=pd.Timestamp(until).date())


def read_equity(conn: sa.Connection, until) -> pd.DataFrame:
    return _select(conn, "SELECT * FROM portfolio_equity WHERE date <= :d ORDER BY date", d=pd.Timestamp(until).date())


PERFORMANCE_COLUMNS = [
    "trades", "wins", "losses", "breakevens", "win_rate", "avg_return_pct", "sharpe", "sortino",
    "max_drawdown_frac", "profit_factor", "excess_return_pct",
]


def write_performance_history(conn: sa.Connection, as_of, scope: str, metrics: dict, model_id: str | None) -> None:
    row = {"as_of": pd.Timestamp(as_of), "scope": scope, "model_id": model_id,
           **{k: metrics.get(k) for k in PERFORMANCE_COLUMNS},
           "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None}}
    upsert_frame(conn, "model_performance_history", pd.DataFrame([row]), ["as_of", "scope"])
