"""Reads and idempotent writes of the loop's per-day state (features, signals, positions, outcomes).

The Dagster assets rebuild the start-of-day state of any trading day from these tables, so
re-materializing a day reproduces it; the engine writes the same tables in bulk. Each asset
*replaces* the rows its day wrote (`replace_*`: delete the day's rows, then insert, in the
caller's transaction), so a re-run never leaves rows of an earlier run beside its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

from feedback_loop.lib.frames import MARKET_TICKER, normalize_dates
from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.portfolio.paper import PortfolioState
from feedback_loop.lib.signals.features import FEATURE_NAMES
from feedback_loop.lib.store.db import upsert_frame
from feedback_loop.lib.vocab import PositionStatus, ServingPath, SignalStatus

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


def _delete_day(conn: sa.Connection, table: str, column: str, day) -> None:
    conn.execute(sa.text(f"DELETE FROM {table} WHERE {column} = :d"), {"d": pd.Timestamp(day).date()})


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


def replace_features(conn: sa.Connection, day, features: pd.DataFrame) -> int:
    """The features of `day` become `features`."""
    _delete_day(conn, "ticker_features", "as_of", day)
    return write_features(conn, features)


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


def replace_heuristic(conn: sa.Connection, day, heuristic: pd.DataFrame) -> int:
    """The heuristic candidates of `day` become `heuristic` (their model calls are written with the signals)."""
    _delete_day(conn, "heuristic_signals", "as_of", day)
    return write_heuristic(conn, heuristic) if len(heuristic) else 0


def write_candidate_calls(conn: sa.Connection, calls: pd.DataFrame) -> int:
    """Heuristic candidates with the serving model's call (None without a model)."""
    columns = ["as_of", "ticker", "heuristic_signal_type", "heuristic_confidence", "ml_signal_type", "model_id"]
    return upsert_frame(conn, "heuristic_signals", calls[columns], ["as_of", "ticker"])


def unresolved_candidates(conn: sa.Connection, after, until) -> pd.DataFrame:
    """Heuristic candidates dated after `after` and on or before `until` that have no shadow outcome
    yet, with the model's call, whether each became a signal, and a shadow-scoring candidate model's
    call where one scored it."""
    return _select(
        conn,
        "SELECT h.as_of, h.ticker, h.heuristic_signal_type, h.ml_signal_type, h.model_id,"
        " to_char(h.as_of, 'YYYY-MM-DD') || ':' || h.ticker AS signal_id, s.signal_id IS NOT NULL AS generated,"
        " p.predicted_class AS challenger_signal_type"
        " FROM heuristic_signals h LEFT JOIN trading_signals s ON s.as_of = h.as_of AND s.ticker = h.ticker"
        " LEFT JOIN LATERAL (SELECT predicted_class FROM ml_predictions p WHERE p.signal_id = s.signal_id"
        " AND p.role = 'shadow' ORDER BY p.created_at DESC LIMIT 1) p ON TRUE"
        " WHERE h.as_of > :a AND h.as_of <= :u AND NOT EXISTS (SELECT 1 FROM shadow_outcomes o"
        " WHERE o.signal_id = to_char(h.as_of, 'YYYY-MM-DD') || ':' || h.ticker) ORDER BY h.as_of, h.ticker",
        a=pd.Timestamp(after).date(), u=pd.Timestamp(until).date())


# ------------------------------------------------------------------ signals
def write_signals(conn: sa.Connection, signals: pd.DataFrame) -> int:
    return upsert_frame(conn, "trading_signals", _subset(signals, SIGNAL_TABLE_COLUMNS), ["signal_id"])


def replace_signals(conn: sa.Connection, day, calls: pd.DataFrame, signals: pd.DataFrame) -> None:
    """The candidate calls and signals of `day` become these; its prediction log is emptied for the
    caller to write the new one in the same transaction.

    What was derived from the day's previous signals goes with them: their shadow outcomes (the
    calls they judged may have changed; later days resolve them again) and paper positions opened
    from them on later days, with their outcomes (those days are to be re-run after this one). A
    position the broker holds is never deleted: replacing its signal is refused.
    """
    d = pd.Timestamp(day).date()
    held = conn.execute(sa.text(
        "SELECT p.position_id FROM portfolio_positions p JOIN trading_signals s ON s.signal_id = p.signal_id"
        " WHERE s.as_of = :d AND p.broker_order_id IS NOT NULL ORDER BY p.position_id"), {"d": d}).scalars().all()
    if held:
        raise ValueError(f"the signals of {d} opened broker-held positions {held}; they cannot be replaced")
    opened_from_day = "SELECT signal_id FROM trading_signals WHERE as_of = :d"
    conn.execute(sa.text(f"DELETE FROM signal_outcomes WHERE signal_id IN ({opened_from_day})"), {"d": d})
    conn.execute(sa.text(f"DELETE FROM portfolio_positions WHERE signal_id IN ({opened_from_day})"), {"d": d})
    for table in ("ml_predictions", "shadow_outcomes", "trading_signals", "heuristic_signals"):
        _delete_day(conn, table, "as_of", day)
    if len(calls):
        write_candidate_calls(conn, calls)
    if len(signals):
        write_signals(conn, signals)


_SIGNALS = (
    "SELECT s.*, p.predicted_class AS challenger_signal_type FROM trading_signals s"
    " LEFT JOIN LATERAL (SELECT predicted_class FROM ml_predictions p WHERE p.signal_id = s.signal_id"
    " AND p.role = 'shadow' ORDER BY p.created_at DESC LIMIT 1) p ON TRUE"
)


def read_signals(conn: sa.Connection, start, end) -> pd.DataFrame:
    """Signals of [start, end] with their feature columns and, where a candidate scored them in
    shadow, its class as `challenger_signal_type`."""
    frame = _select(conn, f"{_SIGNALS} WHERE s.as_of BETWEEN :s AND :e ORDER BY s.as_of, s.ticker",
                    s=pd.Timestamp(start).date(), e=pd.Timestamp(end).date())
    return _with_feature_columns(frame)


def read_signals_by_id(conn: sa.Connection, signal_ids) -> pd.DataFrame:
    """The signals of `signal_ids`, as `read_signals` gives them."""
    frame = _select(conn, f"{_SIGNALS} WHERE s.signal_id = ANY(:ids) ORDER BY s.as_of, s.ticker",
                    ids=[str(i) for i in signal_ids])
    return _with_feature_columns(frame)


#: Serving paths that mean the champion was not the one serving although one was in force.
FALLBACK_PATHS = (ServingPath.PREVIOUS_CHAMPION.value, ServingPath.HEURISTIC_FALLBACK.value)


def fallback_share(serving_paths: pd.Series) -> float | None:
    """Share of signals served by a fallback (previous champion, or heuristic after a model failed);
    None without signals. Both drivers report the serving SLA with it."""
    return float(serving_paths.isin(FALLBACK_PATHS).mean()) if len(serving_paths) else None


def fallback_rate(conn: sa.Connection, start, end) -> float | None:
    """`fallback_share` of the signals of [start, end]."""
    paths = conn.execute(sa.text("SELECT serving_path FROM trading_signals WHERE as_of BETWEEN :s AND :e"),
                         {"s": pd.Timestamp(start).date(), "e": pd.Timestamp(end).date()}).scalars().all()
    return fallback_share(pd.Series(paths, dtype=object))


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


def replace_portfolio_day(conn: sa.Connection, day, previous, state: PortfolioState,
                          updates: pd.DataFrame) -> None:
    """Write the portfolio after `day`, replacing what an earlier run of `day` wrote: the positions
    it opened (and their outcomes), its equity row, and the statuses it gave the signals of
    `previous` (the trading day before, whose queued signals it filled)."""
    opened_on_day = "SELECT position_id FROM portfolio_positions WHERE entry_date = :d"
    d = pd.Timestamp(day).date()
    conn.execute(sa.text(f"DELETE FROM signal_outcomes WHERE position_id IN ({opened_on_day})"), {"d": d})
    _delete_day(conn, "portfolio_positions", "entry_date", day)
    _delete_day(conn, "portfolio_equity", "date", day)
    if previous is not None:
        conn.execute(sa.text("UPDATE trading_signals SET status = :queued WHERE as_of = :p AND status = ANY(:was)"),
                     {"queued": SignalStatus.QUEUED.value, "p": pd.Timestamp(previous).date(),
                      "was": sorted(WAS_QUEUED)})
    write_portfolio(conn, state)
    update_signal_status(conn, updates)


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


def portfolio_prices(conn: sa.Connection, day, queued: pd.DataFrame, policy: PortfolioPolicy) -> pd.DataFrame:
    """The price rows `portfolio_at_start_of` and `step_portfolio` read for `day`, not the whole history.

    For every ticker held at the start of `day` (the highest close since entry, the last known
    close that marks it) or queued for its open: its prices from the earliest entry date among
    its held positions (`day` when only queued) through `day`, and the atr_window_days + 1 rows
    before that (the stop loss at entry; the last close of a ticker without recent prices).
    """
    day = pd.Timestamp(day)
    held = _select(conn, "SELECT ticker, min(entry_date) AS since FROM portfolio_positions"
                         " WHERE entry_date < :d AND (exit_date IS NULL OR exit_date >= :d) GROUP BY ticker",
                   d=day.date())
    starts = dict(zip(held["ticker"], held["since"], strict=True))
    for ticker in (queued["ticker"] if len(queued) else []):
        starts.setdefault(ticker, day)
    return ingest.read_prices_since(conn, starts, day, bars_before=policy.atr_window_days + 1)


def positions_due_outcomes(conn: sa.Connection, day) -> pd.DataFrame:
    """Positions closed on or before `day` whose outcome is to be (re)computed: those closed on `day`,
    and those whose stored outcome is missing, lacks its SPY return, or no longer matches the
    position or its opening signal (a day that failed or was re-materialized)."""
    return _select(
        conn,
        "SELECT p.* FROM portfolio_positions p LEFT JOIN trading_signals s ON s.signal_id = p.signal_id"
        " LEFT JOIN signal_outcomes o ON o.position_id = p.position_id"
        # Without a stored outcome every o.* is NULL, hence distinct from the position's values.
        " WHERE p.status = 'closed' AND p.exit_date <= :d AND (p.exit_date = :d OR o.spy_return_pct IS NULL"
        " OR (o.signal_id, o.ticker, o.confidence, o.entry_date, o.exit_date, o.entry_price, o.exit_price,"
        " o.exit_reason) IS DISTINCT FROM (p.signal_id, p.ticker, p.confidence, p.entry_date, p.exit_date,"
        " p.entry_price, p.exit_price, p.exit_reason)"
        " OR (o.signal_type, o.features, o.model_id, o.model_version, o.ml_enhanced) IS DISTINCT FROM"
        " (s.signal_type, s.features, s.model_id, s.model_version, s.ml_enhanced))"
        " ORDER BY p.entry_date, p.position_id",
        d=pd.Timestamp(day).date())[POSITION_COLUMNS]


def outcome_prices(conn: sa.Connection, day, closed: pd.DataFrame, candidates: pd.DataFrame,
                   candidates_after) -> pd.DataFrame:
    """The price rows the outcomes of `closed` and the shadow outcomes of `candidates` (all dated
    after `candidates_after`) read on `day`: SPY from the earliest entry (the market return over
    each holding), and every candidate's ticker and SPY dated after `candidates_after`."""
    starts = {}
    if len(candidates):
        first = pd.Timestamp(candidates_after) + pd.Timedelta(days=1)
        starts = dict.fromkeys([*candidates["ticker"].unique(), MARKET_TICKER], first)
    if len(closed):
        earliest = pd.Timestamp(closed["entry_date"].min())
        starts[MARKET_TICKER] = min(starts.get(MARKET_TICKER, earliest), earliest)
    return ingest.read_prices_since(conn, starts, day)


def outcome_totals(conn: sa.Connection, day) -> dict:
    """Outcomes closed and shadow outcomes resolved on or before `day`: counts by outcome, totals."""
    d = pd.Timestamp(day).date()
    by_outcome = dict(conn.execute(sa.text(
        "SELECT outcome, count(*) FROM signal_outcomes WHERE exit_date <= :d GROUP BY outcome ORDER BY outcome"),
        {"d": d}).all())
    shadow, generated = conn.execute(sa.text(
        "SELECT count(*), count(*) FILTER (WHERE generated) FROM shadow_outcomes WHERE exit_date <= :d"),
        {"d": d}).one()
    return {"outcomes": int(sum(by_outcome.values())), "by_outcome": {k: int(v) for k, v in by_outcome.items()},
            "shadow_outcomes": int(shadow), "shadow_outcomes_of_generated_signals": int(generated)}


# ------------------------------------------------------------------ outcomes
def clear_outcomes_of(conn: sa.Connection, day) -> None:
    """Forget the outcomes and shadow outcomes that exited on `day`, before `day` computes them again
    (a position an earlier run closed on `day` may be open now)."""
    _delete_day(conn, "signal_outcomes", "exit_date", day)
    _delete_day(conn, "shadow_outcomes", "exit_date", day)


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

