"""The loop stays put on noise and moves on a planted edge: a year of weekly retrains each.

The figures are issue 15's: on pure noise (SyntheticConfig.edge = 0) promotions after the
first model are at most 5% of the challengers compared and the blend weight is at its
starting value on at least 90% of days; on the default planted edge (edge = 1: informed
members' purchases beat SPY by about 2.2% over 20 trading days) the loop deploys a model
whose holdout skill interval is above chance. `benchmarks/null_and_power.py` prints the
same figures for several edges (the README gives the measured ones).
"""

from __future__ import annotations

import pytest

from feedback_loop.lib.ingest.synthetic import SyntheticConfig, generate
from feedback_loop.lib.loop.engine import CLOSED_LOOP_ARM, LoopData, LoopEngine
from feedback_loop.lib.loop.replay_report import loop_stability

START, END = "2024-01-02", "2024-12-30"


def closed_loop_year(edge: float):
    ds = generate(SyntheticConfig(seed=7, edge=edge))
    engine = LoopEngine(LoopData(ds.disclosures, ds.prices, ds.sectors, ds.politicians), CLOSED_LOOP_ARM,
                        start=START, end=END, validate_models=False)
    return engine.run()


@pytest.fixture(scope="module")
def null_year():
    state = closed_loop_year(edge=0.0)
    print("null:", loop_stability(state))
    return state


@pytest.mark.slow
def test_on_pure_noise_the_gate_does_not_promote(null_year):
    stability = loop_stability(null_year)
    assert stability["retrains_after_first"] >= 40  # a year of weekly retrains, and more
    assert stability["promotions_after_first"] <= 0.05 * stability["retrains_after_first"]
    models = [m.model.metrics for m in null_year.models.values()]
    assert sum(m["skill_verdict"].startswith("no edge detected") for m in models) >= 0.9 * len(models)


@pytest.mark.slow
def test_on_pure_noise_the_blend_weight_stays_at_its_start(null_year):
    """Every trading day is evaluated, with its test; the weight stays at its start on 90% of them."""
    assert len(null_year.blend_weight_decisions) == loop_stability(null_year)["days"]
    assert sum(d["decision"].p_value is not None for d in null_year.blend_weight_decisions) >= 200
    assert loop_stability(null_year)["days_at_starting_weight_frac"] >= 0.90


@pytest.fixture(scope="module")
def edge_year():
    state = closed_loop_year(edge=1.0)
    print("edge 1:", loop_stability(state))
    return state


def deployed_with_edge(state) -> list[str]:
    """Deployed models whose holdout says "edge detected" (buy-side rank IC and top-confidence excess intervals above 0)."""
    deployed = {model_id for _, model_id, *_ in state.deployments}
    return [m for m in deployed if state.models[m].model.metrics["skill_verdict"].startswith("edge detected")]


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured 2026-12-04: 2 of 70 models with an edge detected, as on the null, "
                                       "none deployed (median holdout rank IC 0.007); pooled over 2024's monthly "
                                       "out-of-sample blocks the recipe's rank IC at edge 1 is +0.024 (sd 0.022 over "
                                       "seeds 1-8) against +0.003 (sd 0.024) at edge 0, a fifth of the oracle's +0.110 "
                                       "(README, Evidence; issue 15 blocked on item 3)")
def test_on_a_planted_edge_the_loop_deploys_a_model_that_captures_it(edge_year):
    assert deployed_with_edge(edge_year)
