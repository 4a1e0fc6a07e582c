"""TrainingConfig: defaults from the reference plan, validation, JSON round trip."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from feedback_loop.lib.training.config import Hyperparameters, TrainingConfig, horizon_calendar_days
from feedback_loop.lib.vocab import SignalType


def test_defaults_match_the_reference_plan():
    config = TrainingConfig()
    assert config.use_outcomes is False
    assert config.outcome_weight == 2.0
    assert config.outcome_window_days == 90
    assert config.num_classes == 5
    assert config.horizon_days == 20
    assert config.embargo_days == horizon_calendar_days(20) >= 28


@pytest.mark.parametrize("weight", [0.0, 0.09, 10.5, 11.0])
def test_outcome_weight_outside_range_is_rejected_with_a_clear_message(weight):
    with pytest.raises(ValidationError, match=r"outcome_weight must be within \[0.1, 10\]"):
        TrainingConfig(outcome_weight=weight)


@pytest.mark.parametrize("weight", [0.1, 10.0])
def test_outcome_weight_bounds_are_inclusive(weight):
    assert TrainingConfig(outcome_weight=weight).outcome_weight == weight


@pytest.mark.parametrize("days", [29, 3654])
def test_lookback_days_bounds(days):
    with pytest.raises(ValidationError):
        TrainingConfig(lookback_days=days)


def test_num_classes_must_be_3_or_5():
    with pytest.raises(ValidationError):
        TrainingConfig(num_classes=4)


def test_embargo_shorter_than_the_label_horizon_is_rejected():
    with pytest.raises(ValidationError, match="embargo_days"):
        TrainingConfig(horizon_days=20, embargo_days=10)
    assert TrainingConfig(horizon_days=5, embargo_days=10).embargo_days == 10


def test_round_trip_through_json():
    config = TrainingConfig(use_outcomes=True, outcome_weight=3.0, num_classes=3, embargo_days=40)
    stored = json.loads(json.dumps(config.to_dict()))
    restored = TrainingConfig.from_dict(stored)
    assert restored == config
    assert stored["use_outcomes"] is True and stored["outcome_weight"] == 3.0


def test_old_dict_without_outcome_fields_loads_with_defaults():
    old = TrainingConfig().to_dict()
    for key in ("use_outcomes", "outcome_weight", "outcome_window_days"):
        old.pop(key)
    restored = TrainingConfig.from_dict(old)
    assert restored.use_outcomes is False
    assert restored.outcome_weight == 2.0
    assert restored.outcome_window_days == 90
    assert TrainingConfig.from_dict({}) == TrainingConfig(
        hyperparameters=Hyperparameters(multi_strategy="one_output_per_tree"))


def test_a_stored_config_from_before_multi_output_trees_reports_the_recipe_it_was_trained_with():
    old = TrainingConfig().to_dict()
    old["hyperparameters"].pop("multi_strategy")
    assert TrainingConfig.from_dict(old).hyperparameters.multi_strategy == "one_output_per_tree"
    assert TrainingConfig.from_dict(TrainingConfig().to_dict()).hyperparameters.multi_strategy == "multi_output_tree"


def test_classes_are_ordered_bearish_to_bullish():
    assert TrainingConfig(num_classes=5).classes() == [
        SignalType.STRONG_SELL, SignalType.SELL, SignalType.HOLD, SignalType.BUY,
        SignalType.STRONG_BUY,
    ]
    assert TrainingConfig(num_classes=3).classes() == [
        SignalType.SELL, SignalType.HOLD, SignalType.BUY,
    ]
