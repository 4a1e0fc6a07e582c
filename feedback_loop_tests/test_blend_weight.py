import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.lib import policy
from feedback_loop.lib.monitoring.blend_weight import (
    apply_blend_weight,
    blend_weight_as_of,
    days_since_last_move,
    next_blend_weight,
    win_rates_from_shadow,
)

D = dt.date(2025, 6, 30)


def test_exactly_five_points_ahead_or_behind_does_not_move():
    # 11/20 - 10/20 is 0.050000000000000044 in floats.
    ahead = next_blend_weight(0.20, 11, 20, 10, 20)
    behind = next_blend_weight(0.20, 10, 20, 11, 20)
    for decision in (ahead, behind):
        assert decision.new_weight == 0.20 and not decision.changed
        assert "within" in decision.reason


def test_just_beyond_five_points_and_significant_moves_one_step():
    up = next_blend_weight(0.20, 560, 1000, 500, 1000)
    down = next_blend_weight(0.20, 500, 1000, 560, 1000)
    assert up.new_weight == 0.30 and up.changed  # not 0.30000000000000004
    assert down.new_weight == 0.10 and down.changed
    assert up.ml_win_rate == 0.56 and up.heuristic_win_rate == 0.50 and up.sample_size == 1000
    assert "0.20 -> 0.30" in up.reason
    assert up.test == "two-proportion z-test" and up.p_value < 0.05
    assert up.difference_ci[0] > 0 > down.difference_ci[1]
    assert up.difference_ci[0] < 0.06 < up.difference_ci[1]


def test_a_lead_beyond_the_margin_that_is_not_significant_does_not_move():
    """Six points on 100 outcomes a side is under one standard error: noise, not evidence."""
    for decision in (next_blend_weight(0.20, 56, 100, 50, 100), next_blend_weight(0.20, 50, 100, 56, 100)):
        assert not decision.changed and decision.new_weight == 0.20
        assert "not significant" in decision.reason and decision.p_value > 0.05
        assert decision.difference_ci[0] < 0 < decision.difference_ci[1]


def test_the_test_matches_a_two_by_two_chi_square():
    from scipy import stats

    from feedback_loop.lib.monitoring.blend_weight import two_proportion_test
    p_value, _ = two_proportion_test(60, 150, 40, 160)
    table = [[60, 90], [40, 120]]
    assert p_value == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue)


def test_caps_and_floor():
    assert next_blend_weight(0.65, 30, 40, 10, 40).new_weight == 0.70
    at_cap = next_blend_weight(0.70, 30, 40, 10, 40)
    assert at_cap.new_weight == 0.70 and not at_cap.changed and "capped at 0.70" in at_cap.reason
    at_floor = next_blend_weight(0.10, 10, 40, 30, 40)
    assert at_floor.new_weight == 0.10 and not at_floor.changed and "floored at 0.10" in at_floor.reason
    # Repeated steps stay on the 2-decimal grid.
    weight = 0.10
    for _ in range(6):
        weight = next_blend_weight(weight, 30, 40, 10, 40).new_weight
    assert weight == 0.70


def test_below_minimum_sample_size_never_moves():
    n = policy.BLEND_WEIGHT_MIN_OUTCOMES_PER_SIDE
    decision = next_blend_weight(0.20, n - 1, n - 1, 0, n)
    assert decision.new_weight == 0.20 and not decision.changed
    assert "insufficient outcomes" in decision.reason and f"ML n={n - 1}" in decision.reason
    assert next_blend_weight(0.20, 0, 0, 0, 0).ml_win_rate is None
    assert next_blend_weight(0.20, n, n, 0, n).changed


def _shadow(rows):
    return pd.DataFrame(rows, columns=["signal_id", "exit_date", "heuristic_outcome", "ml_outcome"]).assign(
        exit_date=lambda f: pd.to_datetime(f["exit_date"])
    )


def test_win_rates_compare_the_models_selection_with_the_whole_pool_in_window():
    shadow = _shadow([
        ("s1", "2025-06-30", "win", "win"),
        ("s2", "2025-06-15", "loss", "win"),
        ("s3", "2025-06-01", "breakeven", "breakeven"),  # inside (as_of - 30, as_of]
        ("s4", "2025-05-31", "win", "win"),              # exactly as_of - 30: outside
        ("s5", "2025-07-01", "win", "win"),              # after as_of: outside
        ("s6", "2025-06-20", "win", None),               # model had no direction: heuristic side only
        ("s7", "2025-06-20", "open", "open"),            # not resolved: neither side
        ("s8", "2025-06-21", "loss", "loss"),
        ("s9", "2025-06-22", "loss", None),              # heuristic side only
    ])
    counts = win_rates_from_shadow(shadow, D, 30)
    assert counts == {
        "ml_wins": 2, "ml_n": 4, "ml_breakevens": 1,
        "heuristic_wins": 2, "heuristic_n": 6, "heuristic_breakevens": 1,
    }
    decision = next_blend_weight(0.20, **counts)
    assert decision.ml_win_rate == 0.5 and decision.heuristic_win_rate == pytest.approx(2 / 6)
    assert "breakevens counted as not-wins: ML 1, heuristic 1" in decision.reason


def test_apply_is_idempotent_and_weights_are_point_in_time(engine):
    window = policy.BLEND_WEIGHT_WINDOW_DAYS
    with engine.begin() as conn:
        assert blend_weight_as_of(conn, D) == policy.BLEND_WEIGHT_DEFAULT
        decision = next_blend_weight(blend_weight_as_of(conn, D), 30, 40, 10, 40)
        apply_blend_weight(conn, decision, D, window)
        # Re-running the same day reads the same weight in force and writes the same row.
        again = next_blend_weight(blend_weight_as_of(conn, D), 30, 40, 10, 40)
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
    assert row["sample_size_total"] == 40 and row["analysis_window_days"] == window
    assert row["details"]["old_weight"] == 0.20 and row["details"]["new_weight"] == 0.30


def test_an_operator_edit_of_the_config_sets_the_weight_before_the_first_decision(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE reference_portfolio_config SET ml_blend_weight = 0.40"))
        assert blend_weight_as_of(conn, D) == 0.40
        apply_blend_weight(conn, next_blend_weight(blend_weight_as_of(conn, D), 10, 40, 30, 40), D, 30)
        assert blend_weight_as_of(conn, D) == 0.40
        assert blend_weight_as_of(conn, D + dt.timedelta(days=1)) == 0.30


def test_rerunning_an_older_day_replaces_its_decision_only(engine):
    with engine.begin() as conn:
        apply_blend_weight(conn, next_blend_weight(0.20, 30, 40, 10, 40), D, 30)
        apply_blend_weight(
            conn, next_blend_weight(0.30, 30, 40, 10, 40), D + dt.timedelta(days=7), 30
        )
        apply_blend_weight(conn, next_blend_weight(0.20, 10, 40, 30, 40), D, 30)
        assert blend_weight_as_of(conn, D + dt.timedelta(days=1)) == 0.10
        assert blend_weight_as_of(conn, D + dt.timedelta(days=8)) == 0.40


def test_no_second_move_within_the_cooldown():
    """Evaluated daily over a 30-day window, the same evidence must not step the weight to a bound."""
    cooling = next_blend_weight(0.30, 30, 40, 10, 40, days_since_change=policy.BLEND_WEIGHT_COOLDOWN_DAYS - 1)
    assert cooling.new_weight == 0.30 and not cooling.changed and "cooldown" in cooling.reason
    ready = next_blend_weight(0.30, 30, 40, 10, 40, days_since_change=policy.BLEND_WEIGHT_COOLDOWN_DAYS)
    assert ready.new_weight == 0.40 and ready.changed


def test_days_since_last_move_reads_only_moves_decided_before_the_day(engine):
    with engine.begin() as conn:
        assert days_since_last_move(conn, D) is None
        apply_blend_weight(conn, next_blend_weight(0.20, 30, 40, 10, 40), D, 30)  # a move
        later = D + dt.timedelta(days=5)
        apply_blend_weight(conn, next_blend_weight(0.30, 20, 40, 20, 40), later, 30)  # logged, no move
        assert days_since_last_move(conn, D) is None
        assert days_since_last_move(conn, D + dt.timedelta(days=12)) == 12
