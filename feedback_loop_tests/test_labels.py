"""Labeled sets: forward excess returns from adjusted opens, outcome labels, blend, checks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from feedback_loop.lib.loop.engine import HEURISTIC_ARM, LoopData, LoopEngine
from feedback_loop.lib.policy import HOLD_DAYS, PortfolioPolicy
from feedback_loop.lib.portfolio.outcomes import outcomes_from_positions, shadow_outcomes
from feedback_loop.lib.portfolio.paper import PortfolioState, step_portfolio
from feedback_loop.lib.signals.features import FEATURE_NAMES
from feedback_loop.lib.training.config import TrainingConfig, training_config_for
from feedback_loop.lib.training.labels import (
    LABELED_COLUMNS,
    LabeledSet,
    blended_training_set,
    label_from_return,
    market_labeled_set,
    outcome_labeled_set,
    training_set_checks,
)

DAYS = pd.bdate_range("2025-01-02", "2025-06-30")
AS_OF = pd.Timestamp("2025-06-30")


def _prices() -> pd.DataFrame:
    """AAA rises 0.5%/day with a 2:1 split adjustment (adj_close = close / 2); SPY 0.1%/day;
    BBB has no row on 2025-03-03."""
    n = np.arange(len(DAYS))
    frames = []
    for ticker, growth, factor in [("AAA", 1.005, 0.5), ("SPY", 1.001, 1.0), ("BBB", 1.0, 1.0)]:
        close = 100 * growth**n
        frames.append(pd.DataFrame({
            "ticker": ticker, "date": DAYS, "open": close * 0.99, "high": close * 1.01,
            "low": close * 0.98, "close": close, "adj_close": close * factor, "volume": 1e6,
        }))
    prices = pd.concat(frames, ignore_index=True)
    return prices[~((prices["ticker"] == "BBB") & (prices["date"] == "2025-03-03"))]


def _features(rows: list[tuple[str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["ticker", "as_of"])
    frame["as_of"] = pd.to_datetime(frame["as_of"])
    for i, name in enumerate(FEATURE_NAMES):
        frame[name] = float(i)
    return frame


def test_label_thresholds_are_strict_for_5_and_3_classes():
    returns = [-5.01, -5.0, -2.01, -2.0, 0.0, 2.0, 2.01, 5.0, 5.01]
    assert label_from_return(returns, TrainingConfig()).tolist() == [0, 1, 1, 2, 2, 2, 3, 3, 4]
    assert label_from_return(returns, TrainingConfig(num_classes=3)).tolist() == [
        0, 0, 0, 1, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError, match="finite"):
        label_from_return([np.nan], TrainingConfig())


def test_market_label_is_excess_return_from_next_adjusted_open_over_the_horizon():
    prices = _prices()
    # Filed on Friday 2025-01-10: entry Monday 01-13 (day 7), exit 20 trading days on (day 26).
    labeled = market_labeled_set(_features([("AAA", "2025-01-10")]), prices, AS_OF, TrainingConfig())
    row = labeled.frame.iloc[0]
    entry, exit_ = DAYS[7], DAYS[26]
    assert row["t0"] == pd.Timestamp("2025-01-10") and row["t1"] == exit_
    a = prices[prices["ticker"] == "AAA"].set_index("date")
    s = prices[prices["ticker"] == "SPY"].set_index("date")
    adj_open = a["open"] * a["adj_close"] / a["close"]
    stock = a["adj_close"][exit_] / adj_open[entry] - 1
    spy = s["adj_close"][exit_] / s["open"][entry] - 1
    assert row["forward_return_pct"] == pytest.approx((stock - spy) * 100)
    # 1.005^19 / 0.99 - 1.001^19 / 0.99 ≈ 8.8% excess → strong_buy
    assert row["label"] == 4 and row["source"] == "market" and row["weight"] == 1.0
    assert list(labeled.frame.columns) == LABELED_COLUMNS

    raw = market_labeled_set(_features([("AAA", "2025-01-10")]), prices, AS_OF,
                             TrainingConfig(excess_over_spy=False))
    assert raw.frame["forward_return_pct"].iloc[0] == pytest.approx(stock * 100)


def test_unusable_market_rows_are_counted_by_reason():
    features = _features([
        ("AAA", "2025-03-03"),  # kept
        ("AAA", "2025-06-10"),  # exit after as_of → unresolved
        ("AAA", "2024-01-05"),  # outside the 365-day lookback
        ("BBB", "2025-02-28"),  # no BBB price on the entry day 2025-03-03
        ("ZZZ", "2025-03-03"),  # no prices at all
        ("AAA", "2025-07-15"),  # after the cutoff
    ])
    labeled = market_labeled_set(features, _prices(), AS_OF, TrainingConfig())
    assert len(labeled.frame) == 1
    assert {k: v for k, v in labeled.dropped.items() if v} == {
        "label_unresolved": 1, "outside_lookback": 1, "missing_entry_price": 2,
        "after_cutoff": 1,
    }
    assert len(labeled.frame) + sum(labeled.dropped.values()) == len(features)
    prices = _prices()
    with pytest.raises(ValueError, match="no SPY rows"):
        market_labeled_set(features, prices[prices["ticker"] != "SPY"], AS_OF, TrainingConfig())


def test_prices_after_as_of_are_not_used():
    features = _features([("AAA", "2025-03-03")])
    cutoff = DAYS[DAYS.get_loc("2025-03-03") + 19]  # the exit day is one later
    labeled = market_labeled_set(features, _prices(), cutoff, TrainingConfig())
    assert labeled.frame.empty and labeled.dropped["label_unresolved"] == 1
    kept = market_labeled_set(features, _prices(), cutoff + pd.offsets.BDay(1), TrainingConfig())
    assert (kept.frame["t1"] <= cutoff + pd.offsets.BDay(1)).all() and len(kept.frame) == 1


def _outcomes() -> pd.DataFrame:
    full = {name: 1.0 for name in FEATURE_NAMES} | {FEATURE_NAMES[0]: None}
    rows = [
        ("A", "win", 7.0, "2025-05-01", "2025-06-01", full),
        ("B", "win", 3.0, "2025-05-01", "2025-06-02", full),
        ("C", "loss", -8.0, "2025-05-01", "2025-06-03", full),
        ("D", "loss", -1.0, "2025-05-01", "2025-06-04", full),
        ("E", "breakeven", 0.2, "2025-05-01", "2025-06-05", full),
        ("F", "open", None, "2025-05-01", None, full),
        ("G", "win", 4.0, "2025-05-01", "2025-07-05", full),  # exits after the cutoff
        ("H", "win", 4.0, "2025-01-01", "2025-02-01", full),  # outside the 90-day window
        ("I", "win", 4.0, "2025-05-01", "2025-06-06", None),
        ("J", "win", 4.0, "2025-05-01", "2025-06-06", {"politician_count": 1.0}),
    ]
    frame = pd.DataFrame(rows, columns=["ticker", "outcome", "return_pct", "entry_date",
                                        "exit_date", "features"])
    frame["signal_type"] = "buy"
    return frame


@pytest.mark.parametrize("num_classes, expected", [(5, [4, 3, 0, 1, 2]), (3, [2, 2, 0, 0, 1])])
def test_outcome_labels_and_drop_reasons(num_classes, expected):
    config = TrainingConfig(num_classes=num_classes, outcome_weight=3.0)
    labeled = outcome_labeled_set(_outcomes(), AS_OF, config)
    frame = labeled.frame
    assert frame["ticker"].tolist() == ["A", "B", "C", "D", "E"]
    assert frame["label"].tolist() == expected
    assert (frame["t0"] == pd.Timestamp("2025-05-01")).all()
    assert frame["t1"].iloc[0] == pd.Timestamp("2025-06-01")
    assert frame[FEATURE_NAMES[0]].isna().all() and (frame[FEATURE_NAMES[1]] == 1.0).all()
    assert (frame["source"] == "outcome").all() and (frame["weight"] == 3.0).all()
    assert labeled.dropped == {"open": 1, "exit_after_cutoff": 1, "outside_window": 1,
                               "missing_features": 1, "incomplete_features": 1}


def _labeled_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2024-06-03") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    frame = pd.DataFrame({"ticker": "AAA", "t0": t0, "t1": t0 + pd.Timedelta(days=28)})
    for name in FEATURE_NAMES:
        frame[name] = rng.normal(size=n)
    return frame.assign(forward_return_pct=0.0, label=np.arange(n) % 5, source="market",
                        weight=1.0)[LABELED_COLUMNS]


def test_blend_weights_outcome_rows_only_when_enabled():
    market = LabeledSet(_labeled_frame(50, seed=1))
    outcome = LabeledSet(_labeled_frame(10, seed=2).assign(source="outcome"))
    alone = blended_training_set(market, outcome, TrainingConfig())
    assert len(alone) == 50 and (alone["source"] == "market").all()
    both = blended_training_set(market, outcome, TrainingConfig(use_outcomes=True,
                                                                outcome_weight=2.5))
    assert len(both) == 60
    assert both.groupby("source")["weight"].unique().map(list).to_dict() == {
        "market": [1.0], "outcome": [2.5]}
    assert both["t0"].is_monotonic_increasing
    with pytest.raises(ValueError, match="use_outcomes"):
        blended_training_set(market, None, TrainingConfig(use_outcomes=True))


def _check_results(frame, cutoff=AS_OF) -> dict[str, bool]:
    return {c.name: c.passed for c in training_set_checks(frame, TrainingConfig(), cutoff)}


def test_a_clean_training_set_passes_every_check():
    frame = _labeled_frame(500)
    frame[FEATURE_NAMES[3]] = (np.arange(500) % 10 == 0).astype(float)  # a 10% flag is no outlier
    assert all(_check_results(frame).values())


def test_each_check_fails_on_its_defect():
    good = _labeled_frame(500)
    assert not _check_results(good.head(99))["training_set_has_enough_rows"]
    assert not _check_results(good, cutoff=good["t1"].max() - pd.Timedelta(days=1))[
        "training_set_has_no_leakage"]
    assert not _check_results(good[good["label"] != 4])["training_set_has_every_class"]
    sparse = good.copy()
    missing = int(0.06 * 500 * len(FEATURE_NAMES))  # 6% of the feature cells
    sparse.loc[sparse.index[:missing // 2], FEATURE_NAMES[0]] = np.nan
    sparse.loc[sparse.index[:missing - missing // 2], FEATURE_NAMES[1]] = np.nan
    assert not _check_results(sparse)["training_set_features_complete"]
    outliers = good.copy()
    outliers.loc[outliers.index[:30], FEATURE_NAMES[2]] = 1e6
    checks = {c.name: c for c in training_set_checks(outliers, TrainingConfig(), AS_OF)}
    assert not checks["training_set_outliers_flagged"].passed
    assert checks["training_set_outliers_flagged"].severity == "WARN"


def test_outcome_set_before_any_trade_closed_is_empty_not_an_error():
    config = TrainingConfig(use_outcomes=True)
    for no_outcomes in (pd.DataFrame(), pd.DataFrame(columns=["outcome", "features", "entry_date", "exit_date"])):
        labeled = outcome_labeled_set(no_outcomes, "2019-02-01", config)
        assert labeled.frame.empty and list(labeled.frame.columns) == LABELED_COLUMNS
        assert labeled.dropped == {}


# --- the label is the trade: one horizon for the label, the exit timeout and the shadow outcomes ---

@pytest.mark.parametrize("hold_days", [HOLD_DAYS, 5])
def test_the_label_is_the_return_of_the_trade_under_the_timeout_policy_and_its_shadow_outcome(hold_days):
    policy = dataclasses.replace(PortfolioPolicy(), hold_days=hold_days)
    config = training_config_for(policy)
    assert config.horizon_days == policy.hold_days and config.embargo_days >= hold_days
    prices = _prices()
    filed = pd.Timestamp("2025-01-10")
    label = market_labeled_set(_features([("AAA", "2025-01-10")]), prices, AS_OF, config).frame.iloc[0]

    signal = {"signal_id": "s", "ticker": "AAA", "as_of": filed, "signal_type": "buy", "confidence": 0.8,
              "status": "queued", "features": {}, "model_id": None, "model_version": None, "ml_enhanced": False,
              "heuristic_signal_type": "buy", "ml_signal_type": None}
    state, queued = PortfolioState.initial(policy), pd.DataFrame([signal])
    for today in DAYS[(DAYS > filed) & (DAYS <= label["t1"] + pd.Timedelta(days=7))]:
        state, _ = step_portfolio(state, today, queued, prices, policy)
        queued = pd.DataFrame()
    trade = outcomes_from_positions(state.positions, pd.DataFrame([signal]), prices).iloc[0]
    assert (trade["exit_reason"], trade["exit_date"]) == ("timeout", label["t1"])
    assert trade["excess_return_pct"] == pytest.approx(label["forward_return_pct"])

    shadow = shadow_outcomes(pd.DataFrame([signal]), prices, AS_OF, policy.hold_days).iloc[0]
    assert (shadow["entry_date"], shadow["exit_date"]) == (trade["entry_date"], label["t1"])
    assert shadow["return_pct"] == pytest.approx(trade["return_pct"])


def test_no_driver_can_train_on_a_horizon_other_than_the_portfolios():
    policy = dataclasses.replace(PortfolioPolicy(), hold_days=10)
    with pytest.raises(ValueError, match="hold_days"):
        training_config_for(policy, horizon_days=20)
    with pytest.raises(ValueError, match="label horizon 20 trading days != the portfolio's hold_days 10"):
        LoopEngine(LoopData(pd.DataFrame(), _prices(), pd.DataFrame()), HEURISTIC_ARM, start=DAYS[0],
                   end=DAYS[-1], portfolio_policy=policy, training_config=TrainingConfig())
