"""The replay report: every arm's metrics, SPY buy-and-hold, models, verdict, files."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from feedback_loop.lib.ingest.synthetic import SyntheticConfig, generate
from feedback_loop.lib.loop.engine import (
    CLOSED_LOOP_ARM,
    HEURISTIC_ARM,
    LoopData,
    LoopEngine,
    LoopState,
)
from feedback_loop.lib.loop.replay_report import (
    ARM_METRIC_KEYS,
    HOLDOUT_METRICS,
    MIN_BUCKET_TRADES,
    SPY_ENTRY,
    SPY_METRIC_KEYS,
    build_report,
    calibration_summary,
    spy_buy_and_hold_equity,
    write_report,
)
from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.portfolio.paper import PortfolioState
from feedback_loop.lib.portfolio.performance import portfolio_metrics

START, END = "2024-03-01", "2024-04-30"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DATA = {"source": "synthetic", "seed": 3}


@pytest.fixture(scope="module")
def replay():
    ds = generate(SyntheticConfig.scale(1500, 60, 1.5, seed=3))
    data = LoopData(ds.disclosures, ds.prices, ds.sectors, ds.politicians)
    heuristic = LoopEngine(data, HEURISTIC_ARM, start=START, end=END)
    states = {HEURISTIC_ARM.name: heuristic.run()}
    states[CLOSED_LOOP_ARM.name] = LoopEngine(data, CLOSED_LOOP_ARM, start=START, end=END,
                                              panel=heuristic.panel).run()
    return states, ds.prices


@pytest.fixture(scope="module")
def report(replay):
    states, prices = replay
    return build_report(states, prices, start=START, end=END, data_description=DATA)


def _spy(prices: pd.DataFrame) -> pd.DataFrame:
    spy = prices[prices["ticker"] == "SPY"].sort_values("date")
    return spy[(spy["date"] >= START) & (spy["date"] <= END)]


def test_report_round_trips_as_strict_json(report):
    assert json.loads(json.dumps(report, allow_nan=False)) == report
    assert report["period"] == {"start": START, "end": END, "trading_days": report[SPY_ENTRY]["days"]}
    assert report["data"] == DATA


def test_every_arm_has_every_metric_and_spy_every_metric(report):
    assert set(report["arms"]) == {HEURISTIC_ARM.name, CLOSED_LOOP_ARM.name}
    for metrics in report["arms"].values():
        assert set(metrics) == set(ARM_METRIC_KEYS)
        assert metrics["calibration"]["min_trades_per_bucket"] == MIN_BUCKET_TRADES
    assert set(report[SPY_ENTRY]) == set(SPY_METRIC_KEYS)


def test_spy_buy_and_hold_is_bought_at_the_first_adjusted_open(report, replay):
    _, prices = replay
    spy = _spy(prices)
    first, last = spy.iloc[0], spy.iloc[-1]
    first_adjusted_open = first["open"] * first["adj_close"] / first["close"]
    expected_pct = (last["adj_close"] / first_adjusted_open - 1) * 100
    assert report[SPY_ENTRY]["total_return_pct"] == pytest.approx(expected_pct)
    assert report[SPY_ENTRY]["days"] == len(spy)
    for metrics in report["arms"].values():
        assert metrics["spy_return_pct"] == pytest.approx(expected_pct)
        assert metrics["excess_return_pct"] == pytest.approx(metrics["total_return_pct"] - expected_pct)


def test_spy_equity_uses_adjusted_prices_and_the_period():
    dates = pd.bdate_range("2024-01-01", periods=5)
    prices = pd.DataFrame({"ticker": "SPY", "date": dates, "open": [10.0, 20, 21, 22, 30],
                           "high": 40.0, "low": 5.0, "close": [10.0, 20, 22, 24, 30],
                           "adj_close": [5.0, 10, 11, 12, 15], "volume": 1})
    equity = spy_buy_and_hold_equity(prices, dates[1], dates[3], initial_usd=100.0)
    # Bought at 20 * 10 / 20 = 10 (adjusted open of the first day in the period).
    assert list(equity["date"]) == list(dates[1:4])
    assert equity["equity_usd"].tolist() == pytest.approx([100.0, 110.0, 120.0])


def test_arm_metrics_are_the_performance_metrics_of_its_state(report, replay):
    states, prices = replay
    for name, state in states.items():
        outcomes = state.all_outcomes()
        expected = portfolio_metrics(state.portfolio.equity, outcomes, prices)
        metrics = report["arms"][name]
        assert metrics["trades"] == len(outcomes) > 0
        assert metrics["trades"] == int((outcomes["outcome"] != "open").sum())
        for key in ("win_rate", "breakeven_share", "avg_return_pct", "sharpe", "sortino",
                    "max_drawdown_frac", "profit_factor", "total_return_pct"):
            assert metrics[key] == pytest.approx(expected[key]), key
        assert metrics["avg_excess_return_pct"] == pytest.approx(outcomes["excess_return_pct"].mean())
        assert metrics["days"] == len(state.portfolio.equity)
        assert sum(b["trades"] for b in metrics["calibration"]["buckets"]) == len(outcomes)


def test_models_only_for_arms_with_models(report, replay):
    states, _ = replay
    assert set(report["models"]) == {CLOSED_LOOP_ARM.name}
    section = report["models"][CLOSED_LOOP_ARM.name]
    state = states[CLOSED_LOOP_ARM.name]
    by_trigger = section["retrains_by_trigger"]
    assert sum(c["requested"] for c in by_trigger.values()) == len(state.retrain_events)
    assert sum(c["skipped"] for c in by_trigger.values()) == len(state.skipped_requests)
    assert sum(c["trained"] for c in by_trigger.values()) == section["models_trained"] == len(state.models)
    assert section["promotions"] == sum(c["promoted"] for c in state.comparisons) > 0
    assert len(section["holdout_metrics"]) == len(state.models)
    assert all(set(HOLDOUT_METRICS) <= set(h) for h in section["holdout_metrics"])
    assert [h["as_of"] for h in section["holdout_metrics"]] == sorted(h["as_of"] for h in section["holdout_metrics"])


def test_blend_weight_path_starts_at_the_initial_weight_and_ends_at_the_final(report, replay):
    states, _ = replay
    state = states[CLOSED_LOOP_ARM.name]
    path = report["models"][CLOSED_LOOP_ARM.name]["blend_weight_path"]
    assert path[0]["as_of"] == START and path[0]["reason"] == "initial weight"
    assert path[0]["weight"] == PortfolioPolicy().ml_blend_weight  # the engine's starting weight
    assert len(path) == len(state.blend_weight_path) + 1
    assert path[-1]["weight"] == pytest.approx(state.blend_weight)
    for before, after in itertools.pairwise(path):
        assert after["old_weight"] == pytest.approx(before["weight"])


def test_verdict_answers_with_the_arms_numbers(report):
    verdict = report["verdict"]
    closed, heuristic = report["arms"][CLOSED_LOOP_ARM.name], report["arms"][HEURISTIC_ARM.name]
    assert verdict["closed_loop_sharpe"] == closed["sharpe"]
    assert verdict["heuristic_only_sharpe"] == heuristic["sharpe"]
    assert verdict["spy_sharpe"] == report[SPY_ENTRY]["sharpe"]
    assert verdict["closed_loop_beats_heuristic_sharpe"] == (closed["sharpe"] > heuristic["sharpe"])
    assert verdict["closed_loop_beats_spy_sharpe"] == (closed["sharpe"] > report[SPY_ENTRY]["sharpe"])
    assert verdict["closed_loop_mean_excess_return_per_trade_positive"] == (closed["avg_excess_return_pct"] > 0)
    assert verdict["closed_loop_win_rate_rises_with_confidence"] == closed["win_rate_rises_with_confidence"]


def _outcomes(win_rates_by_confidence: dict[float, tuple[int, int]]) -> pd.DataFrame:
    """confidence → (wins, trades); the rest are losses."""
    rows = [(c, "win" if i < wins else "loss") for c, (wins, trades) in win_rates_by_confidence.items()
            for i in range(trades)]
    frame = pd.DataFrame(rows, columns=["confidence", "outcome"])
    return frame.assign(return_pct=np.where(frame["outcome"] == "win", 3.0, -3.0), excess_return_pct=0.0)


def test_win_rate_rises_only_over_buckets_with_enough_trades():
    rising = calibration_summary(_outcomes({0.77: (3, 10), 0.82: (5, 10), 0.95: (8, 10)}))
    assert rising["win_rate_rises_with_confidence"] is True and rising["buckets_compared"] == 3
    falling = calibration_summary(_outcomes({0.77: (8, 10), 0.82: (5, 10), 0.95: (3, 10)}))
    assert falling["win_rate_rises_with_confidence"] is False
    # The 0.82 bucket (1 win of 2) is too small to break the rise.
    sparse = calibration_summary(_outcomes({0.77: (3, 10), 0.82: (0, 2), 0.95: (8, 10)}))
    assert sparse["win_rate_rises_with_confidence"] is True and sparse["buckets_compared"] == 2
    assert calibration_summary(_outcomes({0.95: (8, 10)}))["win_rate_rises_with_confidence"] is None


def test_written_report_has_json_markdown_and_valid_pngs(report, replay, tmp_path):
    states, prices = replay
    paths = write_report(report, states, prices, tmp_path / "replay")
    names = {p.name for p in paths}
    assert {"report.json", "report.md", "equity_curves.png", "calibration.png", "blend_weight.png"} == names
    assert json.loads((tmp_path / "replay" / "report.json").read_text()) == report
    markdown = (tmp_path / "replay" / "report.md").read_text()
    for name in [*report["arms"], SPY_ENTRY]:
        assert name in markdown
    for png in (p for p in paths if p.suffix == ".png"):
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, png.name
        assert f"]({png.name})" in markdown
    assert f"{report['verdict']['closed_loop_sharpe']:.2f}" in markdown


def test_an_arm_that_never_traded_has_none_metrics_and_strict_json(replay):
    _, prices = replay
    idle = LoopState(portfolio=PortfolioState.initial(PortfolioPolicy()), blend_weight=0.2)
    report = build_report({"idle": idle}, prices, start=START, end=END, data_description=DATA)
    json.dumps(report, allow_nan=False)
    metrics = report["arms"]["idle"]
    assert metrics["trades"] == 0 and metrics["win_rate"] is None and metrics["sharpe"] is None
    assert metrics["win_rate_rises_with_confidence"] is None
    assert report["models"] == {}
    assert report["verdict"]["closed_loop_sharpe"] is None
    assert report["verdict"]["closed_loop_beats_spy_sharpe"] is None
