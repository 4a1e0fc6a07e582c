"""The day-by-day engine: the loop's products exist, thresholds hold, and nothing sees the future."""

import numpy as np
import pandas as pd
import pytest

from feedback_loop.lib.ingest.synthetic import SyntheticConfig, generate
from feedback_loop.lib.loop.engine import ARMS, CLOSED_LOOP_ARM, HEURISTIC_ARM, LoopData, LoopEngine
from feedback_loop.lib.loop.replay import ReplayInputs, run_arms
from feedback_loop.lib.portfolio.loop_store import WAS_QUEUED

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


def test_shadow_outcomes_cover_the_whole_candidate_pool_where_the_two_sides_can_disagree(closed_loop):
    """The blend weight compares model and heuristic on every candidate: generated signals alone
    never disagree in direction, so on them the comparison could never move the weight."""
    _, state = closed_loop
    shadow = state.shadow
    assert shadow["generated"].any() and (~shadow["generated"]).any()
    assert set(shadow["signal_id"]) <= set(state.candidates["signal_id"])
    on_signals = shadow[shadow["generated"] & shadow["ml_outcome"].notna()]
    assert (on_signals["ml_outcome"] == on_signals["heuristic_outcome"]).all()
    called = shadow[shadow["ml_outcome"].notna()]
    assert (called["ml_outcome"] != called["heuristic_outcome"]).any(), "the pool holds no disagreement"


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


def _signals_until(state):
    s = state.signals[state.signals["as_of"] <= CUT].drop(columns=["features", "status"])
    return s.sort_values("signal_id").reset_index(drop=True)


def _statuses_until(state):
    # Signals known before CUT were filled or skipped by CUT's open: their statuses are final.
    s = state.signals[state.signals["as_of"] < CUT]
    return s.set_index("signal_id")["status"].sort_index()


def _events_until(state):
    return [(e["as_of"], e["trigger"], e.get("new_model_id"), e["deployed"], e["reason"])
            for e in state.retrain_events if pd.Timestamp(e["as_of"]) <= CUT]


def _equity_until(state):
    return state.portfolio.equity[state.portfolio.equity["date"] <= CUT].reset_index(drop=True)


def _outcomes_until(state):
    o = state.all_outcomes()
    if not len(o):
        return o
    return o[o["exit_date"] <= CUT].drop(columns=["features"]).sort_values("position_id").reset_index(drop=True)


def test_no_decision_up_to_a_day_changes_when_everything_after_it_changes(dataset):
    """Replay every arm, perturb every record dated after CUT, replay: every decision up to CUT is identical."""
    original = run_arms(ReplayInputs(_data(dataset), None, {}), START, END)
    perturbed = run_arms(ReplayInputs(_perturb_after(dataset, CUT), None, {}), START, END)
    assert set(original) == {arm.name for arm in ARMS}
    for name in original:
        before, after = original[name], perturbed[name]
        pd.testing.assert_frame_equal(_signals_until(before), _signals_until(after))
        pd.testing.assert_series_equal(_statuses_until(before), _statuses_until(after))
        assert _events_until(before) == _events_until(after)
        assert [d for d in before.deployments if d[0] <= CUT] == [d for d in after.deployments if d[0] <= CUT]
        pd.testing.assert_frame_equal(_equity_until(before), _equity_until(after))
        pd.testing.assert_frame_equal(_outcomes_until(before), _outcomes_until(after))
        assert [m for m in before.blend_weight_path if m["as_of"] <= CUT] == \
            [m for m in after.blend_weight_path if m["as_of"] <= CUT]
        # ...and the perturbation did change what came after CUT, so the comparison can fail.
        assert not before.signals.drop(columns=["features"]).equals(after.signals.drop(columns=["features"]))
