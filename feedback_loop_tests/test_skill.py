"""Skill with its uncertainty: bootstrap intervals of every model's holdout metrics and the verdict."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from feedback_loop.lib.training.config import TrainingConfig
from feedback_loop.lib.training.metrics import roc_auc_draws, skill_intervals, skill_verdict
from feedback_loop.lib.training.model import train_challenger
from feedback_loop_tests.test_model import AS_OF, SMALL, planted_frame

CLASSES = TrainingConfig().classes()


def test_vectorized_resample_auc_is_sklearns_auc_of_each_resample_with_ties():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 300), rng.dirichlet(np.ones(5), 300)
    p[:60] = p[0]  # tree models give many rows the same probabilities
    idx = rng.integers(0, 300, (50, 300))
    expected = [roc_auc_score(y[i], p[i], multi_class="ovr", labels=list(range(5))) for i in idx]
    assert roc_auc_draws(y, p, idx) == pytest.approx(expected, abs=1e-6)


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
    assert m["skill_verdict"].startswith("edge detected")
    assert planted_model.model_card["metrics"]["roc_auc_ovr_ci"] == m["roc_auc_ovr_ci"]
    assert planted_model.evaluate(planted_model.holdout)["roc_auc_ovr_ci"] == m["roc_auc_ovr_ci"]


def test_a_model_of_noise_says_no_edge_detected(noise_model):
    m = noise_model.metrics
    assert m["roc_auc_ovr_ci"][0] <= 0.5 <= m["roc_auc_ovr_ci"][1]
    assert m["skill_verdict"].startswith("no edge detected") and "includes or is below 0.5" in m["skill_verdict"]


def test_top_confidence_rows_are_the_highest_buy_side_probability():
    rng = np.random.default_rng(4)
    rows = 200
    p = rng.dirichlet(np.ones(5), rows)
    forward = p[:, 3] + p[:, 4]  # the return is the buy-side probability itself
    skill = skill_intervals(rng.integers(0, 5, rows), p, forward, CLASSES)
    assert skill["top_confidence_rows"] == 40
    assert skill["top_confidence_excess_pct"] == pytest.approx(np.sort(forward)[-40:].mean())


def test_verdict_without_intervals_is_no_edge():
    assert skill_verdict({}).startswith("no edge detected")
    verdict = skill_verdict({"roc_auc_ovr_ci": [0.51, 0.6], "top_confidence_excess_pct_ci": [-0.1, 0.4]})
    assert verdict.startswith("no edge detected") and "includes or is below 0" in verdict
