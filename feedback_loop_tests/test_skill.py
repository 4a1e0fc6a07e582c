"""Skill with its uncertainty: bootstrap intervals of every model's holdout metrics and the verdict."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from feedback_loop.lib import policy
from feedback_loop.lib.training.config import TrainingConfig
from feedback_loop.lib.training.metrics import (
    RESAMPLE_BLOCK,
    bootstrap_weights,
    percentile_interval,
    rank_ic_draws,
    roc_auc_draws,
    skill_intervals,
    skill_verdict,
)
from feedback_loop.lib.training.model import train_challenger
from feedback_loop_tests.test_model import AS_OF, SMALL, planted_frame

CLASSES = TrainingConfig().classes()
#: More resamples than two blocks, and not a whole number of them: every block boundary is crossed.
RESAMPLES = 2 * RESAMPLE_BLOCK + 7


def test_vectorized_resample_auc_is_sklearns_auc_of_each_resample_with_ties():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 300), rng.dirichlet(np.ones(5), 300)
    p[:60] = p[0]  # tree models give many rows the same probabilities
    idx = rng.integers(0, 300, (RESAMPLES, 300))
    expected = [roc_auc_score(y[i], p[i], multi_class="ovr", labels=list(range(5))) for i in idx]
    assert roc_auc_draws(y, p, _weights(idx)) == pytest.approx(expected, abs=1e-6)


def _weights(idx: np.ndarray) -> np.ndarray:
    """Resamples given as drawn row positions, as the weights `bootstrap_weights` returns."""
    return np.stack([np.bincount(i, minlength=idx.shape[1]) for i in idx]).astype(np.float32)


def test_vectorized_resample_rank_ic_is_scipys_spearman_of_each_resample_with_ties():
    rng = np.random.default_rng(5)
    score, returns = rng.random(300), rng.normal(size=300)
    score[:80] = score[0]  # tied scores, as a tree model gives
    returns[100:120] = 0.0
    idx = rng.integers(0, 300, (RESAMPLES, 300))
    expected = [stats.spearmanr(score[i], returns[i]).statistic for i in idx]
    assert rank_ic_draws(score, returns, _weights(idx)) == pytest.approx(expected, abs=1e-9)


def test_a_cluster_resample_draws_whole_tickers():
    tickers = np.array(["AAA", "BBB", "AAA", "CCC", "BBB"])
    weights = bootstrap_weights(tickers)
    assert weights.shape == (policy.EVIDENCE_BOOTSTRAP_DRAWS, 5)
    assert (weights[:, 0] == weights[:, 2]).all() and (weights[:, 1] == weights[:, 4]).all()
    assert (weights[:, [0, 1, 3]].sum(axis=1) == 3).all()  # three tickers drawn per resample
    assert (bootstrap_weights(tickers) == weights).all()  # seeded: the same resamples every time


def test_rows_that_move_together_within_a_ticker_get_an_interval_that_says_so():
    """Forty tickers of 25 rows each, each ticker's rows sharing one score and one return (one
    price path, a cluster of members), score and return unrelated: the row bootstrap's interval
    of the rank IC excludes 0 for most seeds, the ticker bootstrap's for few (its level)."""
    tickers = np.arange(1000) % 40
    excluded = {"rows": 0, "tickers": 0}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        score = rng.random(40)[tickers] + rng.normal(scale=0.01, size=len(tickers))
        returns = rng.normal(size=40)[tickers] + rng.normal(scale=0.1, size=len(tickers))
        for name, clusters in {"rows": np.arange(len(tickers)), "tickers": tickers}.items():
            low, high = percentile_interval(rank_ic_draws(score, returns, bootstrap_weights(clusters)))
            excluded[name] += not low <= 0 <= high
    assert excluded["rows"] >= 12 and excluded["tickers"] <= 3, excluded


@pytest.fixture(scope="module")
def planted_model():
    return train_challenger(planted_frame(), TrainingConfig(hyperparameters=SMALL), AS_OF, validate=False)


@pytest.fixture(scope="module")
def noise_model():
    frame = planted_frame(seed=1)
    rng = np.random.default_rng(1)
    shuffled = rng.permutation(len(frame))  # labels and returns no longer belong to the features
    frame[["forward_return_pct", "label"]] = frame[["forward_return_pct", "label"]].to_numpy()[shuffled]
    return train_challenger(frame, TrainingConfig(hyperparameters=SMALL), AS_OF, validate=False)


def test_a_model_with_an_edge_has_intervals_above_chance(planted_model):
    m = planted_model.metrics
    assert m["roc_auc_ovr_ci"][0] < m["roc_auc_ovr"] < m["roc_auc_ovr_ci"][1]
    assert m["accuracy_ci"][0] < m["accuracy"] < m["accuracy_ci"][1]
    assert m["roc_auc_ovr_ci"][0] > 0.5 and m["top_confidence_excess_pct_ci"][0] > 0
    assert m["rank_ic_ci"][0] < m["rank_ic"] < m["rank_ic_ci"][1] and m["rank_ic_ci"][0] > 0
    assert m["skill_verdict"].startswith("edge detected")
    assert planted_model.model_card["metrics"]["roc_auc_ovr_ci"] == m["roc_auc_ovr_ci"]
    assert planted_model.evaluate(planted_model.holdout)["roc_auc_ovr_ci"] == m["roc_auc_ovr_ci"]


def test_a_model_of_noise_says_no_edge_detected(noise_model):
    m = noise_model.metrics
    assert m["roc_auc_ovr_ci"][0] <= 0.5 <= m["roc_auc_ovr_ci"][1]
    assert m["rank_ic_ci"][0] <= 0  # not above chance (this seed's noise happens to rank inversely)
    assert m["skill_verdict"].startswith("no edge detected") and "rank IC 95% interval" in m["skill_verdict"]


def test_top_confidence_rows_are_the_highest_buy_side_probability():
    rng = np.random.default_rng(4)
    rows = 200
    p = rng.dirichlet(np.ones(5), rows)
    forward = p[:, 3] + p[:, 4]  # the return is the buy-side probability itself
    skill = skill_intervals(rng.integers(0, 5, rows), p, forward, CLASSES, np.arange(rows) % 50)
    assert skill["top_confidence_rows"] == 40
    assert skill["top_confidence_excess_pct"] == pytest.approx(np.sort(forward)[-40:].mean())
    assert skill["rank_ic"] == pytest.approx(1.0) and skill["rank_ic_ci"][0] > 0.99
    assert skill["skill_verdict"].startswith("edge detected")


def test_verdict_without_intervals_is_no_edge():
    assert skill_verdict({}).startswith("no edge detected")
    verdict = skill_verdict({"roc_auc_ovr_ci": [0.51, 0.6], "rank_ic_ci": [0.01, 0.1],
                             "top_confidence_excess_pct_ci": [-0.1, 0.4]})
    assert verdict.startswith("no edge detected") and "excess return 95% interval [-0.10%, +0.40%] includes" in verdict


def test_verdict_rests_on_the_buy_side_ranking_and_states_the_auc_beside_it():
    """A buy-side edge the 5-class AUC dilutes is detected, and the verdict says the AUC includes chance."""
    verdict = skill_verdict({"roc_auc_ovr_ci": [0.49, 0.53], "rank_ic_ci": [0.02, 0.11],
                             "top_confidence_excess_pct_ci": [0.1, 1.2]})
    assert verdict.startswith("edge detected") and "ROC AUC 95% interval [0.490, 0.530] includes or is below 0.5" in verdict
    no_ranking = skill_verdict({"roc_auc_ovr_ci": [0.52, 0.58], "rank_ic_ci": [-0.01, 0.09],
                                "top_confidence_excess_pct_ci": [0.1, 1.2]})
    assert no_ranking.startswith("no edge detected") and "rank IC 95% interval [-0.010, +0.090] includes" in no_ranking
