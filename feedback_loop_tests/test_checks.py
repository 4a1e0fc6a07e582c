"""The asset checks of every stage (lib, pass and fail cases), their Dagster form, and the two plots."""

import math
from decimal import Decimal

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from feedback_loop.defs import checks as defs_checks
from feedback_loop.lib import policy
from feedback_loop.lib.checks import CheckOutcome
from feedback_loop.lib.models import checks as model_checks
from feedback_loop.lib.monitoring import checks as monitoring_checks
from feedback_loop.lib.monitoring.blend_weight import BlendWeightDecision, decide_blend_weight
from feedback_loop.lib.monitoring.drift import DriftReport, KsResult
from feedback_loop.lib.plots import HIGHER_IS_BETTER, LOWER_IS_BETTER, comparison_figure
from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.portfolio import checks as portfolio_checks
from feedback_loop.lib.portfolio.outcomes import outcomes_from_positions
from feedback_loop.lib.portfolio.paper import PortfolioState, step_portfolio
from feedback_loop.lib.signals import checks as signal_checks
from feedback_loop.lib.signals.blending import blend_signals
from feedback_loop.lib.training.artifact import artifact_sha256, save_model
from feedback_loop.lib.training.metrics import calibration_buckets, calibration_figure
from feedback_loop.lib.vocab import DriftRecommendation, SignalType
from feedback_loop_tests.harness import small_model

DAY = pd.Timestamp("2024-03-04")


def _by_name(outcomes: list[CheckOutcome]) -> dict[str, bool]:
    return {o.name: o.passed for o in outcomes}


# ------------------------------------------------------------------ signals
def _features(tickers, as_of=DAY) -> pd.DataFrame:
    return pd.DataFrame({"ticker": tickers, "as_of": as_of, "trade_count": 3.0})


def test_ticker_features_checks_pass_on_one_row_per_ticker_of_the_day():
    assert all(_by_name(signal_checks.ticker_features_checks(_features(["AAA", "BBB"]), DAY)).values())
    assert all(_by_name(signal_checks.ticker_features_checks(_features([]), DAY)).values())


def test_ticker_features_checks_fail_on_duplicates_and_other_days():
    frame = pd.concat([_features(["AAA", "BBB"]), _features(["AAA"])], ignore_index=True)
    outcome = _by_name(signal_checks.ticker_features_checks(frame, DAY))
    assert outcome == {"ticker_features_one_row_per_ticker": False, "ticker_features_as_of_the_day": True}
    future = _features(["AAA", "BBB"]).assign(as_of=[DAY, DAY + pd.Timedelta(days=1)])
    result = signal_checks.ticker_features_checks(future, DAY)
    assert _by_name(result)["ticker_features_as_of_the_day"] is False
    assert result[1].metadata["rows_of_other_days"] == 1


def _heuristic(**overrides) -> pd.DataFrame:
    row = {"ticker": "AAA", "as_of": DAY, "trade_count": 3.0, "heuristic_signal_type": "buy",
           "heuristic_confidence": 0.8} | overrides
    return pd.DataFrame([row])


@pytest.mark.parametrize(("overrides", "passed"), [
    ({}, True),
    ({"heuristic_signal_type": "hold"}, False),
    ({"heuristic_confidence": 0.99}, False),
    ({"heuristic_confidence": 0.4}, False),
    ({"trade_count": 1.0}, False),
])
def test_heuristic_signals_check(overrides, passed):
    assert signal_checks.heuristic_signals_checks(_heuristic(**overrides))[0].passed is passed


def _blended(policy_: PortfolioPolicy) -> pd.DataFrame:
    heuristic = pd.DataFrame({
        "ticker": ["AAA", "BBB", "CCC"], "as_of": DAY,
        "heuristic_signal_type": ["buy", "buy", "sell"], "heuristic_confidence": [0.9, 0.6, 0.9]})
    ml = pd.DataFrame({"ticker": ["AAA", "BBB", "CCC"], "as_of": DAY,
                       "ml_signal_type": ["buy", "buy", "buy"], "ml_confidence": [0.9, 0.6, 0.9]})
    return blend_signals(heuristic, ml, 0.2, policy_)


def test_trading_signals_gate_passes_on_what_blending_queues():
    outcomes = signal_checks.trading_signals_checks(_blended(PortfolioPolicy()), PortfolioPolicy(), None, None)
    assert _by_name(outcomes) == {"trading_signals_queue_respects_thresholds": True,
                                  "trading_signals_meet_serving_sla": True}
    assert outcomes[0].metadata["queued"] == 1


def test_trading_signals_gate_fails_when_the_queue_threshold_is_set_under_the_floor():
    lowered = PortfolioPolicy(min_signal_confidence=0.5, min_queue_confidence=0.6)
    signals = _blended(lowered)
    gate = signal_checks.trading_signals_checks(signals, lowered, None, None)[0]
    assert not gate.passed and gate.metadata["queued_under_threshold"] >= 1
    assert gate.metadata["min_queue_confidence"] == policy.QUEUE_CONFIDENCE_FLOOR


def test_trading_signals_gate_fails_on_a_queued_direction_disagreement():
    signals = _blended(PortfolioPolicy())
    signals.loc[signals["ticker"] == "AAA", "ml_signal_type"] = "strong_sell"
    gate = signal_checks.trading_signals_checks(signals, PortfolioPolicy(), None, None)[0]
    assert not gate.passed and gate.metadata["queued_on_disagreement"] == 1


@pytest.mark.parametrize(("latency_ms", "fallback", "passed"), [
    ([10.0, 20.0], 0.0, True),
    ([70.0, 90.0], 0.0, False),  # mean 80 ms
    ([10.0], 0.10, False),
    ([10.0], 0.09, True),
    ([], None, True),
    ([10.0], Decimal("0.2"), False),  # what SQL avg() returns
])
def test_serving_sla_is_a_warning(latency_ms, fallback, passed):
    predictions = pd.DataFrame({"latency_ms": latency_ms})
    sla = signal_checks.trading_signals_checks(pd.DataFrame(), PortfolioPolicy(), predictions, fallback)[1]
    assert sla.passed is passed and sla.severity == "WARN"


# ------------------------------------------------------------------ portfolio
def _prices(tickers=("AAA", "SPY"), start="2024-02-01", days=30) -> pd.DataFrame:
    dates = pd.bdate_range(start, periods=days)
    return pd.DataFrame([{"ticker": t, "date": d, "open": 100.0 + i, "high": 102.0 + i, "low": 99.0 + i,
                          "close": 101.0 + i, "adj_close": 101.0 + i, "volume": 1e6}
                         for t in tickers for i, d in enumerate(dates)])


def _queued(day_before) -> pd.DataFrame:
    return pd.DataFrame([{"signal_id": f"{day_before.date()}:AAA", "ticker": "AAA", "as_of": day_before,
                          "signal_type": "buy", "confidence": 0.8, "status": "queued"}])


def test_portfolio_checks_pass_after_a_real_step():
    prices = _prices()
    day = pd.Timestamp("2024-02-06")
    queued = _queued(day - pd.Timedelta(days=1))
    state, _ = step_portfolio(PortfolioState.initial(PortfolioPolicy()), day, queued, prices, PortfolioPolicy())
    assert len(state.positions) == 1
    assert all(_by_name(portfolio_checks.portfolio_positions_checks(state, queued, day)).values())


def test_portfolio_checks_fail_on_negative_cash_unbalanced_equity_and_unqueued_fills():
    prices = _prices()
    day = pd.Timestamp("2024-02-06")
    queued = _queued(day - pd.Timedelta(days=1))
    state, _ = step_portfolio(PortfolioState.initial(PortfolioPolicy()), day, queued, prices, PortfolioPolicy())
    broken = PortfolioState(state.positions, state.cash_usd, state.equity.assign(
        cash_usd=-5.0, equity_usd=state.equity["equity_usd"] + 100.0))
    outcome = _by_name(portfolio_checks.portfolio_positions_checks(broken, pd.DataFrame(), day))
    assert outcome == {"portfolio_positions_cash_never_negative": False,
                       "portfolio_positions_equity_is_cash_plus_positions": False,
                       "portfolio_positions_open_only_queued_signals": False}


def _closed_and_outcomes():
    prices = _prices()
    closed = pd.DataFrame([
        {"position_id": p, "signal_id": p, "ticker": "AAA", "status": "closed", "quantity": 1.0,
         "entry_date": pd.Timestamp("2024-02-05"), "entry_price": 100.0, "exit_date": pd.Timestamp("2024-02-20"),
         "exit_price": exit_price, "exit_reason": "timeout", "confidence": 0.8}
        for p, exit_price in (("p1", 110.0), ("p2", 100.3), ("p3", 90.0))])
    signals = pd.DataFrame({"signal_id": ["p1", "p2", "p3"], "signal_type": "buy", "features": [{}] * 3,
                            "model_id": None, "model_version": None, "ml_enhanced": False})
    return closed, outcomes_from_positions(closed, signals, prices)


def test_signal_outcome_checks_pass_on_computed_outcomes():
    closed, outcomes = _closed_and_outcomes()
    assert list(outcomes["outcome"]) == ["win", "breakeven", "loss"]
    assert all(_by_name(portfolio_checks.signal_outcomes_checks(outcomes, closed)).values())
    assert all(_by_name(portfolio_checks.signal_outcomes_checks(outcomes.iloc[:0], closed.iloc[:0])).values())


def test_signal_outcome_checks_fail_on_a_wrong_label_a_missing_and_a_duplicate_outcome():
    closed, outcomes = _closed_and_outcomes()
    mislabeled = outcomes.assign(outcome=["win", "loss", "loss"])  # +0.3% is a breakeven
    result = portfolio_checks.signal_outcomes_checks(mislabeled, closed)
    assert not result[0].passed and result[0].metadata["mismatched_positions"] == ["p2"]
    wrong_return = outcomes.assign(return_pct=outcomes["return_pct"] + [0.0, 0.0, 1.0])
    assert not portfolio_checks.signal_outcomes_checks(wrong_return, closed)[0].passed
    doubled = pd.concat([outcomes.iloc[[0, 0]], outcomes.iloc[[2]]], ignore_index=True)
    one = portfolio_checks.signal_outcomes_checks(doubled, closed)[1]
    assert not one.passed
    assert one.metadata["positions_without_outcome"] == ["p2"] and one.metadata["positions_with_several"] == ["p1"]


def test_performance_check():
    good = {"trades": 3, "wins": 1, "losses": 1, "breakevens": 1, "win_rate": 1 / 3, "max_drawdown_frac": 0.1,
            "sharpe": None, "profit_factor": 2.0}
    assert portfolio_checks.portfolio_performance_checks(good)[0].passed
    for broken in ({"wins": 2}, {"win_rate": 1.5}, {"sharpe": float("nan")}, {"profit_factor": float("inf")}):
        assert not portfolio_checks.portfolio_performance_checks(good | broken)[0].passed, broken


# ------------------------------------------------------------------ models
def test_challenger_checks_on_a_saved_artifact(tmp_path):
    model, _ = small_model("2023-01-02", "2023-12-29", pd.Timestamp("2024-03-01"))
    path, sha = save_model(model, tmp_path)
    assert all(_by_name(model_checks.challenger_model_checks(
        sha, artifact_sha256(path), len(model.holdout), model.metrics)).values())
    (path / "holdout.parquet").write_bytes(b"tampered")
    outcome = _by_name(model_checks.challenger_model_checks(sha, artifact_sha256(path), 5,
                                                           {**model.metrics, "brier": float("nan")}))
    assert outcome == dict.fromkeys(["challenger_model_artifact_verified", "challenger_model_holdout_has_enough_rows",
                                     "challenger_model_metrics_finite"], False)
    undefined_auc = {**model.metrics, "roc_auc_ovr": None}
    assert model_checks.challenger_model_checks(sha, sha, policy.MIN_HOLDOUT_ROWS, undefined_auc)[2].passed


def _comparison(new_rows, current_rows, holdout_rows=50):
    return {"holdout_rows": holdout_rows, "details": {
        "new": {"rows": new_rows}, "current": None if current_rows is None else {"rows": current_rows}}}


@pytest.mark.parametrize(("comparison", "passed"), [
    (_comparison(50, 50), True), (_comparison(50, None), True), (None, True),
    (_comparison(50, 40), False), (_comparison(40, 40), False), (_comparison(0, None, 0), False),
])
def test_promotion_compared_on_the_same_holdout(comparison, passed):
    result = model_checks.promotion_decision_checks(comparison, {"m1": "active"}, "m1", True)
    assert result[0].passed is passed


@pytest.mark.parametrize(("statuses", "promoted", "passed"), [
    ({"m1": "archived", "m2": "active"}, True, True),
    ({"m1": "active", "m2": "candidate"}, False, True),
    ({"m1": "active", "m2": "active"}, True, False),
    ({"m1": "archived", "m2": "candidate"}, False, False),
    ({"m1": "active", "m2": "archived"}, True, False),  # promoted, yet the old champion is in service
])
def test_promotion_leaves_one_champion(statuses, promoted, passed):
    assert model_checks.promotion_decision_checks(_comparison(50, 50), statuses, "m2", promoted)[1].passed is passed


# ------------------------------------------------------------------ monitoring
def test_blend_weight_checks_pass_on_every_rule_decision():
    for current, ml_wins in ((0.2, 30), (0.2, 10), (0.7, 30), (0.1, 10), (0.4, 20)):
        shadow = pd.DataFrame({"ticker": [f"T{i}" for i in range(40)], "heuristic_outcome": ["win", "loss"] * 20,
                               "ml_outcome": ["win"] * ml_wins + ["loss"] * (40 - ml_wins),
                               "exit_date": pd.Timestamp("2025-06-30") - pd.to_timedelta(np.arange(40) % 29, unit="D")})
        decision, _ = decide_blend_weight(shadow, "2025-06-30", current, None)
        assert all(_by_name(monitoring_checks.blend_weight_checks(decision)).values()), decision


@pytest.mark.parametrize(("old", "new", "changed", "expected"), [
    (0.2, 0.4, True, {"blend_weight_within_bounds": True, "blend_weight_moves_at_most_one_step": False}),
    (0.7, 0.8, True, {"blend_weight_within_bounds": False, "blend_weight_moves_at_most_one_step": True}),
    (0.2, 0.3, False, {"blend_weight_within_bounds": True, "blend_weight_moves_at_most_one_step": False}),
])
def test_blend_weight_checks_fail(old, new, changed, expected):
    decision = BlendWeightDecision(old, new, changed, "", None, None, 0)
    assert _by_name(monitoring_checks.blend_weight_checks(decision)) == expected


def _report(recommendation=DriftRecommendation.NO_ACTION, statistic=0.05, psi=0.01, drifting=()):
    return DriftReport(recommendation, "", {"f1": KsResult(statistic, 0.5, 200, 80), "f2": KsResult(None, None, 200, 0)},
                       list(drifting), psi, None, None, 80, 200, 0)


def test_feature_drift_checks():
    assert all(_by_name(monitoring_checks.feature_drift_checks(_report())).values())
    retrain = monitoring_checks.feature_drift_checks(_report(DriftRecommendation.SCHEDULE_RETRAIN, 0.3, drifting=["f1"]))
    assert _by_name(retrain) == {"feature_drift_report_complete": True, "feature_drift_recommends_no_retrain": False}
    assert retrain[1].severity == "WARN"
    for broken in (_report(statistic=float("nan")), _report(psi=None), _report(drifting=["f2"])):
        assert not monitoring_checks.feature_drift_checks(broken)[0].passed
    assert all(_by_name(monitoring_checks.feature_drift_checks(None, "no champion")).values())
    unverified = monitoring_checks.feature_drift_checks(None, "bad artifact", DriftRecommendation.EMERGENCY_RETRAIN)
    assert [o.passed for o in unverified] == [True, False]


# ------------------------------------------------------------------ Dagster form
def test_specs_are_blocking_exactly_for_error_checks():
    for asset_name, defined in defs_checks.ASSET_CHECKS.items():
        specs = defs_checks.specs(asset_name)
        assert [s.name for s in specs] == [c.name for c in defined]
        assert [s.blocking for s in specs] == [c.severity == "ERROR" for c in defined]
    assert not {s.name: s.blocking for s in defs_checks.specs("trading_signals")}["trading_signals_meet_serving_sla"]
    with pytest.raises(KeyError, match="no checks defined"):
        defs_checks.specs("nonexistent")


def test_results_are_readable():
    [result] = defs_checks.results([CheckOutcome("c", np.bool_(False), "WARN", {
        "rate": 0.123456789, "missing": float("nan"), "none": None, "count": np.int64(3),
        "shares": {"buy": 0.333333333}, "names": ["a", "b"], "note": "text"})])
    assert result.passed is False and result.severity == dg.AssetCheckSeverity.WARN
    meta = result.metadata
    assert meta["rate"].value == 0.1235 and meta["count"].value == 3
    assert meta["missing"] == dg.MetadataValue.null() and meta["none"] == dg.MetadataValue.null()
    assert "| buy | 0.3333 |" in meta["shares"].value and meta["names"].value == "a, b"


# ------------------------------------------------------------------ plots
def test_calibration_counts_every_row_of_every_class_in_one_bucket():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(5), size=400)
    labels = rng.integers(0, 5, 400)
    buckets = calibration_buckets(labels, proba, list(SignalType))
    assert (buckets.groupby("signal_class")["rows"].sum() == 400).all()
    first = buckets[buckets["signal_class"] == "strong_sell"].iloc[0]
    in_bucket = (proba[:, 0] >= first["low"]) & (proba[:, 0] <= first["high"])
    assert first["rows"] == in_bucket.sum()
    assert first["observed_frequency"] == pytest.approx((labels[in_bucket] == 0).mean())
    figure = calibration_figure(labels, proba, list(SignalType))
    counts_axis = figure.axes[1]
    assert counts_axis.get_ylabel() == "rows per bucket"
    assert sorted(p.get_height() for p in counts_axis.patches) == sorted(buckets["rows"])


def test_comparison_plot_keeps_higher_and_lower_is_better_apart():
    model, _ = small_model("2023-01-02", "2023-12-29", pd.Timestamp("2024-03-01"))
    metrics = model.evaluate(model.holdout)
    figure = comparison_figure(metrics, {**metrics, "roc_auc_ovr": None}, model.holdout, model, model)
    higher, lower = ([t.get_text() for t in axis.get_xticklabels()] for axis in figure.axes[:2])
    assert higher == list(HIGHER_IS_BETTER) and lower == list(LOWER_IS_BETTER)
    heights = [p.get_height() for p in figure.axes[0].patches]
    assert sum(math.isnan(h) for h in heights) == 1  # the undefined champion AUC draws no bar
