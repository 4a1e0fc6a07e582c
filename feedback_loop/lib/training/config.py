"""`TrainingConfig`: every knob of a training run, persisted as JSON in `ml_models.config`."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from feedback_loop.lib.policy import HOLD_DAYS, OUTCOME_WINDOW_DAYS, PortfolioPolicy
from feedback_loop.lib.vocab import SignalType

#: The longest training lookback: ten years (leap days included).
MAX_LOOKBACK_DAYS = 3653

#: Holidays a 20-trading-day window can contain on top of its weekends (NYSE calendar).
_HOLIDAY_ALLOWANCE_DAYS = 3


def horizon_calendar_days(horizon_days: int) -> int:
    """Calendar days that `horizon_days` trading days can span: 7/5 per trading day plus holidays."""
    return math.ceil(horizon_days * 7 / 5) + _HOLIDAY_ALLOWANCE_DAYS


class Hyperparameters(BaseModel):
    """XGBoost hyperparameters (objective multi:softprob, tree_method hist)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_estimators: int = Field(default=200, ge=1, le=5000)
    max_depth: int = Field(default=4, ge=1, le=16)
    learning_rate: float = Field(default=0.05, gt=0.0, le=1.0)
    subsample: float = Field(default=0.8, gt=0.0, le=1.0)
    colsample_bytree: float = Field(default=0.8, gt=0.0, le=1.0)
    min_child_weight: float = Field(default=1.0, ge=0.0)
    #: Histogram bins per feature: 64 halves the fit time of 256 at a few thousand rows.
    max_bin: int = Field(default=64, ge=2, le=1024)
    seed: int = 42
    #: One tree per round whose leaves hold all the classes' scores ("multi_output_tree"), instead
    #: of one tree per class and round: a 5-class model of 200 rounds walks 200 trees, not 1,000,
    #: so 10,000 rows score in 29 ms instead of 109 ms (demo data, depth 4, one thread). Paired on
    #: the same purged walk-forward rows (5 expanding folds), its out-of-sample log loss is lower:
    #: real 2019-2020 filings -0.097 [-0.112, -0.082] (2,928 rows), demo data -0.060 at edge 0 and
    #: -0.059 at edge 1; ROC AUC is at chance for both (real 0.499 vs 0.508, difference
    #: [-0.017, -0.001]; demo no difference). XGBoost's documentation calls the strategy work in
    #: progress; "one_output_per_tree" is the recipe before issue 16.
    multi_strategy: Literal["one_output_per_tree", "multi_output_tree"] = "multi_output_tree"
    #: Threads per booster. 1 by default: on the 2-core shared machine, nthread=2 made one
    #: validated training of 3,000 rows take 505 s instead of 7 s (OpenMP threads spinning
    #: at barriers while other processes hold the cores).
    nthread: int = Field(default=1, ge=1)


#: What a stored config written before the field existed was trained with (XGBoost's default:
#: one tree per class and round), so an older model reports the recipe it was built with.
HYPERPARAMETERS_BEFORE_THEIR_FIELD: dict[str, Any] = {"multi_strategy": "one_output_per_tree"}


class TrainingConfig(BaseModel):
    """What a challenger is trained on and how it is validated.

    Label thresholds are in percent points of the (excess) forward return. 5 classes:
    > +strong_threshold_pct strong_buy, > +threshold_pct buy, < -threshold_pct sell,
    < -strong_threshold_pct strong_sell, else hold. 3 classes: ±threshold_pct.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Calendar days of filings a training set reaches back; up to ten years of history.
    lookback_days: int = Field(default=365, ge=30, le=MAX_LOOKBACK_DAYS)
    #: Trading days of the forward-return label: the portfolio's hold_days (`training_config_for`).
    horizon_days: int = Field(default=HOLD_DAYS, ge=1, le=120)
    num_classes: Literal[3, 5] = 5
    threshold_pct: float = Field(default=2.0, gt=0.0)
    strong_threshold_pct: float = Field(default=5.0, gt=0.0)
    excess_over_spy: bool = True
    use_outcomes: bool = False
    outcome_weight: float = 2.0
    outcome_window_days: int = Field(default=OUTCOME_WINDOW_DAYS, ge=1)
    holdout_frac: float = Field(default=0.2, gt=0.0, lt=0.5)
    #: Time-later slice before the holdout on which probabilities are calibrated.
    calibration_frac: float = Field(default=0.15, gt=0.0, lt=0.5)
    #: Calendar days between a training label's end and the next evaluation slice;
    #: None → horizon_calendar_days(horizon_days).
    embargo_days: int | None = None
    walk_forward_folds: int = Field(default=4, ge=2, le=20)
    purged_kfold_folds: int = Field(default=5, ge=2, le=20)
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)

    @field_validator("outcome_weight")
    @classmethod
    def _outcome_weight_in_range(cls, value: float) -> float:
        if not 0.1 <= value <= 10.0:
            raise ValueError(
                f"outcome_weight must be within [0.1, 10] (weight of an outcome-labeled row "
                f"relative to a market-labeled row of 1.0); got {value}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        if self.strong_threshold_pct <= self.threshold_pct:
            raise ValueError(
                f"strong_threshold_pct ({self.strong_threshold_pct}) must exceed "
                f"threshold_pct ({self.threshold_pct})"
            )
        if self.holdout_frac + self.calibration_frac >= 0.6:
            raise ValueError(
                f"holdout_frac + calibration_frac must stay below 0.6 to leave rows to fit on; "
                f"got {self.holdout_frac} + {self.calibration_frac}"
            )
        minimum = horizon_calendar_days(self.horizon_days)
        if self.embargo_days is None:
            object.__setattr__(self, "embargo_days", minimum)
        elif self.embargo_days < minimum:
            raise ValueError(
                f"embargo_days ({self.embargo_days}) must cover the label horizon: "
                f"{self.horizon_days} trading days = up to {minimum} calendar days"
            )
        return self

    def classes(self) -> list[SignalType]:
        """Class index → signal type, from the most bearish to the most bullish."""
        if self.num_classes == 5:
            return list(SignalType)
        return [SignalType.SELL, SignalType.HOLD, SignalType.BUY]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict stored in ml_models.config."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        """Inverse of `to_dict` for a stored config. Fields an older record lacks take their
        defaults, except hyperparameters added with a default that trains differently from
        before (`HYPERPARAMETERS_BEFORE_THEIR_FIELD`): the record was trained the old way."""
        hyperparameters = {**HYPERPARAMETERS_BEFORE_THEIR_FIELD, **data.get("hyperparameters", {})}
        return cls.model_validate({**data, "hyperparameters": hyperparameters})


def training_config_for(policy: PortfolioPolicy, **knobs: Any) -> TrainingConfig:
    """The TrainingConfig every driver trains with: its label horizon is the portfolio's hold_days
    (the exit timeout and the shadow horizon), so the label is the return of the trade its row
    would make under the timeout exit policy."""
    if "horizon_days" in knobs:
        raise ValueError("the label horizon is the portfolio's hold_days; set it in reference_portfolio_config")
    return TrainingConfig(horizon_days=policy.hold_days, **knobs)


def check_label_matches_exits(config: TrainingConfig, policy: PortfolioPolicy) -> None:
    """ValueError when a training config's label horizon is not the portfolio's hold_days."""
    if config.horizon_days != policy.hold_days:
        raise ValueError(f"label horizon {config.horizon_days} trading days != the portfolio's hold_days "
                         f"{policy.hold_days}: build the config with training_config_for(policy)")
