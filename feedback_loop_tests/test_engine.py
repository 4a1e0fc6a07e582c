"""The day-by-day engine: the loop's products exist, thresholds hold, and nothing sees the future."""

import numpy as np
import pandas as pd
import pytest

from feedback_loop.lib.engine import CLOSED_LOOP_ARM, HEURISTIC_ARM, LoopData, LoopEngine
from feedback_loop.lib.synthetic import SyntheticConfig, generate
from feedback_loop.lib.loop_store import WAS_QUEUED

START, END, CUT = "2024-03-01", "2024-05-17", pd.Timestamp("2024-04-12")


@pytest.fixture(scope="module")
def dataset():
    return generate(SyntheticConfig.scale(1500, 60, 1.5, seed=3))


def _data(ds) -> LoopData:
    return LoopData(ds.disclosures, ds.prices, ds.sectors, ds.politicians)


@pytest.fixture(scope="module")
def closed_loop(dataset):
    engine = LoopEngine(_data(dataset), CLOSED_LOOP_ARM, start=START, end=END)
    return engine, engine.run()


def test_closed_loop_produces_signals_positions_outcomes_and_models(closed_loop):
    _, state = closed_loop
    signals = state.signals
    assert len(signals) and len(state.portfolio.positions) and len(state.all_outcomes())
    assert state.deployments, "the first model was never promoted"
    assert (signals["confidence"] >= 0.65).all()
    queued_ever = signals["status"].isin(WAS_QUEUED)
    assert queued_ever.any()
    assert (signals.loc[queued_ever, "confidence"] >= 0.75).all()
    assert (signals.loc[signals["status"] == "below_queue_threshold", "confidence"] < 0.75).all()
    assert signals["model_id"].notna().any(), "no signal was shaped by the champion"


def test_weekly_and_monthly_schedules_fire_as_the_cron_would(closed_loop):
    _, state = closed_loop
    scheduled = [e for e in state.retrain_events if e["trigger"] == "scheduled"]
    as_of = {pd.Timestamp(e["as_of"]) for e in scheduled}
    # Sunday 02:00 runs train as of Saturday; the 1st-of-month 03:00 runs as of the month's last day.
    assert pd.Timestamp("2024-03-09") in as_of and pd.Timestamp("2024-03-31") in as_of
    monthly = [e for e in scheduled if pd.Timestamp(e["as_of"]) == pd.Timestamp("2024-03-31")]
    assert monthly and monthly[0]["use_outcomes"]


def test_heuristic_arm_never_uses_a_model(dataset):
    state = LoopEngine(_data(dataset), HEURISTIC_ARM, start=START, end="2024-03-29").run()
    assert not state.models
    assert state.signals["model_id"].isna().all()
    assert (state.signals["serving_path"] == "heuristic_arm").all()


def _perturb_after(ds, cut: pd.Timestamp) -> LoopData:
    rng = np.random.default_rng(0)
    disclosures = ds.disclosures.copy()
    late = disclosures["disclosure_date"] > cut
    disclosures.loc[late, "transaction_type"] = rng.choice(["purchase", "sale_full"], late.sum())
    disclosures.loc[late, "amount_min_usd"] = disclosures.loc[late, "amount_min_usd"] * 7
    prices = ds.prices.copy()
    future = prices["date"] > cut
    factor = rng.uniform(0.5, 1.5, future.sum())
    for column in ("open", "high", "low", "close", "adj_close"):
        prices.loc[future, column] = prices.loc[future, column] * factor
    return LoopData(disclosures, prices, ds.sectors, ds.politicians)


def test_no_decision_up_to_a_day_changes_when_everything_after_it_changes(dataset, closed_loop):
    """Replay, perturb every record dated after CUT, replay: every decision up to CUT is identical."""
    _, original = closed_loop
    perturbed = LoopEngine(_perturb_after(dataset, CUT), CLOSED_LOOP_ARM, start=START, end=END).run()

    def signals_until(state):
        s = state.signals[state.signals["as_of"] <= CUT].drop(columns=["features"])
        return s.sort_values("signal_id").reset_index(drop=True)

    def events_until(state):
        return [(e["as_of"], e["trigger"], e.get("new_model_id"), e["deployed"], e["reason"])
                for e in state.retrain_events if pd.Timestamp(e["as_of"]) <= CUT]

    def equity_until(state):
        return state.portfolio.equity[state.portfolio.equity["date"] <= CUT].reset_index(drop=True)

    def outcomes_until(state):
        o = state.all_outcomes()
        return o[o["exit_date"] <= CUT].drop(columns=["features"]).sort_values("position_id").reset_index(drop=True)

    def statuses_until(state):
        # Statuses of signals known by CUT as they stood at CUT: those filled later may differ.
        s = state.signals[state.signals["as_of"] < CUT]
        return s.set_index("signal_id")["status"].sort_index()

    pd.testing.assert_frame_equal(signals_until(original).drop(columns=["status"]),
                                  signals_until(perturbed).drop(columns=["status"]))
    pd.testing.assert_series_equal(statuses_until(original), statuses_until(perturbed))
    assert events_until(original) == events_until(perturbed)
    assert [d for d in original.deployments if d[0] <= CUT] == [d for d in perturbed.deployments if d[0] <= CUT]
    pd.testing.assert_frame_equal(equity_until(original), equity_until(perturbed))
    pd.testing.assert_frame_equal(outcomes_until(original), outcomes_until(perturbed))
    assert [m for m in original.blend_weight_path if m["as_of"] <= CUT] == \
        [m for m in perturbed.blend_weight_path if m["as_of"] <= CUT]
    # ...and the perturbation did change what came after, so the test can fail.
    assert not signals_until(original).equals(
        perturbed.signals.drop(columns=["features"]).sort_values("signal_id").reset_index(drop=True))
