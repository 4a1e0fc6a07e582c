import datetime as dt

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.lib import policy
from feedback_loop.lib.monitoring.blend_weight import (
    apply_blend_weight,
    blend_weight_as_of,
    days_since_last_move,
    decide_blend_weight,
    paired_win_rate_test,
    win_rates_from_shadow,
)

D = dt.date(2025, 6, 30)


def _window(ml_wins: int, heuristic_wins: int, n: int) -> pd.DataFrame:
    """n shadow outcomes resolved in the 30 days up to D, one ticker each, each side's wins spread
    evenly over the rows (so over the exit weeks)."""
    def spread(wins: int, offset: int) -> np.ndarray:
        won = np.zeros(n, bool)
        won[(np.arange(wins) * n // max(wins, 1) + offset) % n] = True
        return won
    rows = np.arange(n)
    return pd.DataFrame({
        "signal_id": [f"s{i}" for i in rows],
        "ticker": [f"T{i}" for i in rows],
        "exit_date": pd.Timestamp(D) - pd.to_timedelta(rows % 29, unit="D"),
        "ml_outcome": np.where(spread(ml_wins, 0), "win", "loss"),
        "heuristic_outcome": np.where(spread(heuristic_wins, n // (2 * max(heuristic_wins, 1))), "win", "loss"),
    })


def _decide(current, ml_wins, heuristic_wins, n=200, *, days_since_change=None):
    return decide_blend_weight(_window(ml_wins, heuristic_wins, n), D, current, days_since_change)[0]


def test_exactly_five_points_ahead_or_behind_does_not_move():
    # 11/20 - 10/20 is 0.050000000000000044 in floats.
    for decision in (_decide(0.20, 11, 10, 20), _decide(0.20, 10, 11, 20)):
        assert decision.new_weight == 0.20 and not decision.changed
        assert "within" in decision.reason


def test_a_lead_consistent_over_tickers_and_weeks_moves_one_step():
    up, down = _decide(0.20, 150, 50), _decide(0.20, 50, 150)
    assert up.new_weight == 0.30 and up.changed  # not 0.30000000000000004
    assert down.new_weight == 0.10 and down.changed
    assert up.ml_win_rate == 0.75 and up.heuristic_win_rate == 0.25 and up.sample_size == 200
    assert "0.20 -> 0.30" in up.reason and "200 tickers and 5 weeks" in up.reason
    assert up.test == "paired win-rate test, clustered by ticker and exit week"
    assert up.p_value < policy.BLEND_WEIGHT_ALPHA
    assert up.difference_ci[0] > 0 > down.difference_ci[1]
    assert up.difference_ci[0] < 0.5 < up.difference_ci[1]


def test_a_lead_beyond_the_margin_that_is_not_significant_does_not_move():
    """Six points on 100 signals is under one standard error: noise, not evidence."""
    for decision in (_decide(0.20, 56, 50, 100), _decide(0.20, 50, 56, 100)):
        assert not decision.changed and decision.new_weight == 0.20
        assert "not significant" in decision.reason and decision.p_value > policy.BLEND_WEIGHT_ALPHA
        assert decision.difference_ci[0] < 0 < decision.difference_ci[1]


def test_the_same_lead_on_a_few_tickers_is_weaker_evidence():
    """Signals of one ticker share one price path: 200 signals on 8 tickers are not 200 draws."""
    many = _decide(0.20, 150, 50)
    few_tickers = _window(150, 50, 200).assign(ticker=lambda f: [f"T{i // 25}" for i in range(200)])
    # Each ticker's 25 signals resolve alike: the model wins on 6 tickers, the heuristic on 2.
    ml_won = few_tickers["ticker"].isin([f"T{i}" for i in range(6)])
    few_tickers["ml_outcome"] = np.where(ml_won, "win", "loss")
    few_tickers["heuristic_outcome"] = np.where(ml_won, "loss", "win")
    few, _ = decide_blend_weight(few_tickers, D, 0.20, None)
    assert few.ml_win_rate == many.ml_win_rate and few.sample_size == many.sample_size
    assert many.changed and not few.changed and few.p_value > 100 * many.p_value
    assert "8 tickers" in few.reason


def test_the_test_is_paired_and_clustered_both_ways():
    from scipy import stats
    rng = np.random.default_rng(3)
    ticker, week = rng.integers(0, 30, 600), rng.integers(0, 5, 600)
    ml, heuristic = rng.random(600) < 0.55, rng.random(600) < 0.5
    test = paired_win_rate_test(ml, heuristic, ticker, week)
    d = ml.astype(float) - heuristic
    residual = pd.Series(d - d.mean())
    one_way = {k: float((residual.groupby(key).sum() ** 2).sum()) for k, key in (("t", ticker), ("w", week))}
    both = float((residual.groupby([ticker, week]).sum() ** 2).sum())
    se = np.sqrt(max(one_way["t"] + one_way["w"] - both, *one_way.values())) / 600
    assert test.difference == pytest.approx(d.mean())
    assert test.p_value == pytest.approx(2 * stats.t.sf(abs(d.mean()) / se, 4))
    assert (test.tickers, test.weeks) == (30, 5)
    assert paired_win_rate_test(ml, heuristic, ticker, np.zeros(600)) is None  # one week: no evidence


def test_caps_and_floor():
    assert _decide(0.65, 150, 50).new_weight == 0.70
    at_cap = _decide(0.70, 150, 50)
    assert at_cap.new_weight == 0.70 and not at_cap.changed and "capped at 0.70" in at_cap.reason
    at_floor = _decide(0.10, 50, 150)
    assert at_floor.new_weight == 0.10 and not at_floor.changed and "floored at 0.10" in at_floor.reason
    # Repeated steps stay on the 2-decimal grid.
    weight = 0.10
    for _ in range(6):
        weight = _decide(weight, 150, 50).new_weight
    assert weight == 0.70


def test_below_minimum_sample_size_never_moves():
    n = policy.BLEND_WEIGHT_MIN_OUTCOMES_PER_SIDE
    decision = _decide(0.20, n - 1, 0, n - 1)
    assert decision.new_weight == 0.20 and not decision.changed
    assert "insufficient outcomes" in decision.reason and f"ML n={n - 1}" in decision.reason
    assert decide_blend_weight(_window(0, 0, 0), D, 0.20, None)[0].ml_win_rate is None
    assert _decide(0.20, n, 0, n).changed


def _shadow(rows):
    return pd.DataFrame(rows, columns=["signal_id", "exit_date", "heuristic_outcome", "ml_outcome"]).assign(
        exit_date=lambda f: pd.to_datetime(f["exit_date"]), ticker=lambda f: f["signal_id"],
    )


def test_win_rates_compare_both_sides_on_the_signals_both_called_in_window():
    shadow = _shadow([
        ("s1", "2025-06-30", "win", "win"),
        ("s2", "2025-06-15", "loss", "win"),
        ("s3", "2025-06-01", "breakeven", "breakeven"),  # inside (as_of - 30, as_of]
        ("s4", "2025-05-31", "win", "win"),              # exactly as_of - 30: outside
        ("s5", "2025-07-01", "win", "win"),              # after as_of: outside
        ("s6", "2025-06-20", "win", None),               # model had no direction: not compared
        ("s7", "2025-06-20", "open", "open"),            # not resolved: neither side
        ("s8", "2025-06-21", "loss", "loss"),
        ("s9", "2025-06-22", "loss", "win"),
    ])
    counts = win_rates_from_shadow(shadow, D, 30)
    assert counts == {
        "ml_wins": 3, "ml_n": 5, "ml_breakevens": 1,
        "heuristic_wins": 1, "heuristic_n": 5, "heuristic_breakevens": 1,
    }
    decision, _ = decide_blend_weight(shadow, D, 0.20, None)
    assert decision.ml_win_rate == 0.6 and decision.heuristic_win_rate == 0.2
    assert "breakevens counted as not-wins: ML 1, heuristic 1" in decision.reason


def test_apply_is_idempotent_and_weights_are_point_in_time(engine):
    window = policy.BLEND_WEIGHT_WINDOW_DAYS
    with engine.begin() as conn:
        assert blend_weight_as_of(conn, D) == policy.BLEND_WEIGHT_DEFAULT
        decision = _decide(blend_weight_as_of(conn, D), 150, 50)
        apply_blend_weight(conn, decision, D, window)
        # Re-running the same day reads the same weight in force and writes the same row.
        again = _decide(blend_weight_as_of(conn, D), 150, 50)
        apply_blend_weight(conn, again, D, window)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT * FROM feature_importance_history WHERE feature_name = '_ml_blend_weight'"
        )).all()
        config_weight = conn.execute(sa.text("SELECT ml_blend_weight FROM reference_portfolio_config")).scalar()
        row = rows[0]._mapping
        assert blend_weight_as_of(conn, D) == policy.BLEND_WEIGHT_DEFAULT
        assert blend_weight_as_of(conn, D + dt.timedelta(days=1)) == 0.30
    assert len(rows) == 1
    # The config column is the starting weight: decisions do not overwrite it.
    assert row["median_value"] == 0.30 and config_weight == policy.BLEND_WEIGHT_DEFAULT
    assert row["avg_return_when_high"] == 0.75 and row["avg_return_when_low"] == 0.25
    assert row["lift_pct"] == pytest.approx(50.0)
    assert row["sample_size_total"] == 200 and row["analysis_window_days"] == window
    assert row["details"]["old_weight"] == 0.20 and row["details"]["new_weight"] == 0.30


def test_an_operator_edit_of_the_config_sets_the_weight_before_the_first_decision(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE reference_portfolio_config SET ml_blend_weight = 0.40"))
        assert blend_weight_as_of(conn, D) == 0.40
        apply_blend_weight(conn, _decide(blend_weight_as_of(conn, D), 50, 150), D, 30)
        assert blend_weight_as_of(conn, D) == 0.40
        assert blend_weight_as_of(conn, D + dt.timedelta(days=1)) == 0.30


def test_rerunning_an_older_day_replaces_its_decision_only(engine):
    with engine.begin() as conn:
        apply_blend_weight(conn, _decide(0.20, 150, 50), D, 30)
        apply_blend_weight(
            conn, _decide(0.30, 150, 50), D + dt.timedelta(days=7), 30
        )
        apply_blend_weight(conn, _decide(0.20, 50, 150), D, 30)
        assert blend_weight_as_of(conn, D + dt.timedelta(days=1)) == 0.10
        assert blend_weight_as_of(conn, D + dt.timedelta(days=8)) == 0.40


def test_no_second_move_within_the_cooldown():
    """Evaluated daily over a 30-day window, the same evidence must not step the weight to a bound."""
    cooling = _decide(0.30, 150, 50, days_since_change=policy.BLEND_WEIGHT_COOLDOWN_DAYS - 1)
    assert cooling.new_weight == 0.30 and not cooling.changed and "cooldown" in cooling.reason
    ready = _decide(0.30, 150, 50, days_since_change=policy.BLEND_WEIGHT_COOLDOWN_DAYS)
    assert ready.new_weight == 0.40 and ready.changed


def test_days_since_last_move_reads_only_moves_decided_before_the_day(engine):
    with engine.begin() as conn:
        assert days_since_last_move(conn, D) is None
        apply_blend_weight(conn, _decide(0.20, 150, 50), D, 30)  # a move
        later = D + dt.timedelta(days=5)
        apply_blend_weight(conn, _decide(0.30, 100, 100), later, 30)  # logged, no move
        assert days_since_last_move(conn, D) is None
        assert days_since_last_move(conn, D + dt.timedelta(days=12)) == 12
