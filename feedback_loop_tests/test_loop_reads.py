"""The daily assets read only what a day can change, and get what reading the whole history gave.

A heuristic-only loop runs for four months in the engine and is written into the tables; then,
day by day, the portfolio step, the outcomes and the shadow outcomes computed from the
restricted reads the assets make are compared with the same functions fed every stored row.
"""

from itertools import pairwise

import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.ingest.synthetic import SyntheticConfig, generate
from feedback_loop.lib.loop.engine import (
    HEURISTIC_ARM,
    LoopData,
    LoopEngine,
)
from feedback_loop.lib.loop.history import persist_history
from feedback_loop.lib.portfolio import loop_store
from feedback_loop.lib.portfolio.broker import read_policy
from feedback_loop.lib.portfolio.outcomes import outcomes_from_positions
from feedback_loop.lib.portfolio.paper import step_portfolio
from feedback_loop.lib.portfolio.shadow import (
    shadow_outcomes_of_candidates,
    shadow_resolution_window,
)

START, END = "2024-01-02", "2024-04-30"
CHECKED_DAYS = 30


@pytest.fixture(scope="module")
def loop():
    ds = generate(SyntheticConfig.scale(1500, 60, 1.5, seed=3))
    engine = LoopEngine(LoopData(ds.disclosures, ds.prices, ds.sectors, ds.politicians), HEURISTIC_ARM,
                        start=START, end=END)
    return ds, engine.run(), engine.days


@pytest.fixture
def stored(loop, engine, tmp_path):
    ds, state, _ = loop
    with engine.begin() as conn:
        ingest.write_prices(conn, ds.prices[ds.prices["date"] <= END])
    persist_history(engine, state, tmp_path / "models")
    return engine


def _sorted(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    return frame.sort_values(key).reset_index(drop=True)


def test_the_portfolio_steps_as_with_every_price_from_a_small_part_of_them(loop, stored):
    _, _, days = loop
    # Two weeks without prices for every stock: stop losses at entry must reach past the gap.
    _remove_stock_prices(stored, days[-CHECKED_DAYS - 12], days[-CHECKED_DAYS])
    fills = exits = 0
    with stored.connect() as conn:
        policy = read_policy(conn)
        for previous, day in pairwise(days[-CHECKED_DAYS - 1:]):
            queued = loop_store.queued_for(loop_store.read_signals(conn, previous, previous))
            needed = loop_store.portfolio_prices(conn, day, queued, policy)
            every = ingest.read_prices(conn, end=day)
            assert len(needed) < len(every) / 10
            full, full_updates = step_portfolio(loop_store.portfolio_at_start_of(conn, day, every, policy), day,
                                                queued, every, policy)
            restricted, updates = step_portfolio(loop_store.portfolio_at_start_of(conn, day, needed, policy), day,
                                                 queued, needed, policy)
            pd.testing.assert_frame_equal(restricted.positions, full.positions)
            pd.testing.assert_frame_equal(restricted.equity, full.equity)
            pd.testing.assert_frame_equal(updates, full_updates)
            fills += int((updates["status"] == "filled").sum())
            exits += int((full.positions["exit_date"] == day).sum())
    assert fills and exits, "the compared days neither opened nor closed a position"


def _asset_reads(conn, day: pd.Timestamp, horizon: int = 20):
    """What signal_outcomes reads on `day`, the shadow outcomes resolved on or after it removed first
    (as they stood before `day`): positions due an outcome, their signals, unresolved candidates, prices."""
    conn.execute(sa.text("DELETE FROM shadow_outcomes WHERE exit_date >= :d"), {"d": day.date()})
    due = loop_store.positions_due_outcomes(conn, day)
    oldest, youngest = shadow_resolution_window(day, horizon)
    candidates = loop_store.unresolved_candidates(conn, oldest, youngest)
    prices = loop_store.outcome_prices(conn, day, due, candidates, oldest)
    return due, loop_store.read_signals_by_id(conn, due["signal_id"]), candidates, prices


def test_outcomes_are_computed_for_what_changed_as_from_the_whole_history(loop, stored):
    _, _, days = loop
    checked = days[-CHECKED_DAYS:]
    with stored.begin() as conn:
        old = conn.execute(sa.text("SELECT position_id FROM signal_outcomes WHERE exit_date < :d ORDER BY position_id"),
                           {"d": checked[0].date()}).scalars().all()
        assert len(old) >= 3
        # A day that failed (an outcome never written), one re-run with other results (a stale outcome),
        # and one that had no SPY price yet.
        conn.execute(sa.text("DELETE FROM signal_outcomes WHERE position_id = :p"), {"p": old[0]})
        conn.execute(sa.text("UPDATE signal_outcomes SET exit_price = exit_price + 1 WHERE position_id = :p"),
                     {"p": old[1]})
        conn.execute(sa.text("UPDATE signal_outcomes SET spy_return_pct = NULL WHERE position_id = :p"),
                     {"p": old[2]})
    computed = 0
    with stored.connect() as conn:
        positions = pd.read_sql(sa.text("SELECT * FROM portfolio_positions"), conn)
        positions[["entry_date", "exit_date"]] = positions[["entry_date", "exit_date"]].apply(pd.to_datetime)
        every_signal = loop_store.read_signals(conn, "1900-01-01", END)
        for day in checked:
            due, signals, _, prices = _asset_reads(conn, day)
            conn.rollback()
            closed_by_day = positions[(positions["status"] == "closed") & (positions["exit_date"] <= day)]
            assert set(due["position_id"]) == set(closed_by_day.loc[closed_by_day["exit_date"] == day, "position_id"]) \
                | set(old[:3])
            got = outcomes_from_positions(due, signals, prices)
            everything = outcomes_from_positions(closed_by_day, every_signal, ingest.read_prices(conn, end=day))
            expected = everything[everything["position_id"].isin(due["position_id"])]
            pd.testing.assert_frame_equal(_sorted(got, "position_id"), _sorted(expected, "position_id"),
                                          check_dtype=False)
            assert got["spy_return_pct"].notna().all()
            computed += len(got)
    assert computed > 3 * len(checked), "hardly any outcome was compared"


def _remove_stock_prices(engine, first: pd.Timestamp, last: pd.Timestamp) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM prices WHERE ticker <> 'SPY' AND date BETWEEN :a AND :b"),
                     {"a": first.date(), "b": last.date()})


@pytest.mark.parametrize("price_gap", [False, True])
def test_shadow_outcomes_resolve_from_the_window_as_from_the_whole_history(loop, stored, price_gap):
    """Without a gap the engine resolved the same outcomes on the same days; across a gap in the
    stock prices, candidates resolve later from entries further back."""
    _, state, days = loop
    checked = days[-CHECKED_DAYS:]
    if price_gap:
        _remove_stock_prices(stored, days[-CHECKED_DAYS - 12], days[-CHECKED_DAYS + 2])
    resolved = 0
    with stored.connect() as conn:
        for day in checked:
            every_price = ingest.read_prices(conn, end=day)
            everything = shadow_outcomes_of_candidates(state.candidates[state.candidates["as_of"] <= day],
                                                       every_price, day, 20)
            # The table as it stood before `day`: what the whole history had resolved by then.
            conn.execute(sa.text("DELETE FROM shadow_outcomes"))
            loop_store.write_shadow(conn, everything[everything["exit_date"] < day])
            _, _, candidates, prices = _asset_reads(conn, day)
            conn.rollback()
            got = shadow_outcomes_of_candidates(candidates, prices, day, 20)
            assert len(prices) < len(every_price) / 4
            expected = [everything[everything["exit_date"] == day]]
            if not price_gap:
                expected.append(state.shadow[state.shadow["exit_date"] == day])
            for frame in expected:
                pd.testing.assert_frame_equal(_sorted(got, "signal_id"), _sorted(frame[got.columns], "signal_id"),
                                              check_dtype=False)
            resolved += len(got)
    assert resolved > len(checked), "hardly any shadow outcome was compared"
