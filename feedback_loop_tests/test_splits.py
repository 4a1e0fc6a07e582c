"""Time splits: no training label reaches into the embargo before, or overlaps, a test span."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feedback_loop.lib.training.splits import (
    holdout_split,
    purged_kfold_splits,
    walk_forward_splits,
)

EMBARGO_DAYS = 31


@pytest.fixture
def times() -> tuple[pd.Series, pd.Series]:
    """600 rows over two years, several per filing day, shuffled; labels end 28-40 days later."""
    rng = np.random.default_rng(7)
    days = pd.bdate_range("2024-01-02", "2025-12-31")
    t0 = pd.Series(rng.choice(days, size=600)).dt.normalize()
    t1 = t0 + pd.to_timedelta(rng.integers(28, 41, size=600), unit="D")
    return t0, t1


def assert_no_leakage(t0, t1, train_idx, test_idx, embargo_days=EMBARGO_DAYS):
    t0, t1 = t0.to_numpy(), t1.to_numpy()
    assert len(train_idx) > 0 and len(test_idx) > 0
    assert not set(train_idx) & set(test_idx)
    start, end = t0[test_idx].min(), t1[test_idx].max()
    embargo = np.timedelta64(embargo_days, "D")
    tr0, tr1 = t0[train_idx], t1[train_idx]
    in_embargo_before = (tr1 >= start - embargo) & (tr1 < start)
    overlaps_test_span = (tr0 <= end) & (tr1 >= start)
    in_embargo_after = (tr0 > end) & (tr0 <= end + embargo)
    assert not in_embargo_before.any()
    assert not overlaps_test_span.any()
    assert not in_embargo_after.any()


def test_holdout_is_the_most_recent_rows_and_training_is_purged(times):
    t0, t1 = times
    train, holdout = holdout_split(t0, t1, holdout_frac=0.2, embargo_days=EMBARGO_DAYS)
    assert_no_leakage(t0, t1, train, holdout)
    assert len(holdout) >= 120
    rest = np.setdiff1d(np.arange(len(t0)), holdout)
    assert t0.iloc[holdout].min() > t0.iloc[rest].max()
    # Rows between the training set and the holdout are purged, not trained on.
    assert len(train) + len(holdout) < len(t0)


def test_a_longer_embargo_purges_more_training_rows(times):
    t0, t1 = times
    short, _ = holdout_split(t0, t1, 0.2, embargo_days=0)
    long, _ = holdout_split(t0, t1, 0.2, embargo_days=EMBARGO_DAYS)
    assert set(long) < set(short)


@pytest.mark.parametrize("mode", ["expanding", "rolling"])
def test_walk_forward_folds_train_only_on_resolved_past_labels(times, mode):
    t0, t1 = times
    folds = walk_forward_splits(t0, t1, n_folds=4, mode=mode, embargo_days=EMBARGO_DAYS)
    assert len(folds) == 4
    for train, test in folds:
        assert_no_leakage(t0, t1, train, test)
        assert t0.iloc[train].max() < t0.iloc[test].min()
    test_starts = [t0.iloc[test].min() for _, test in folds]
    assert test_starts == sorted(test_starts)


def test_rolling_window_is_a_subset_of_expanding(times):
    t0, t1 = times
    expanding = walk_forward_splits(t0, t1, 4, "expanding", EMBARGO_DAYS)
    rolling = walk_forward_splits(t0, t1, 4, "rolling", EMBARGO_DAYS)
    sizes = [len(train) for train, _ in expanding]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    for (e_train, e_test), (r_train, r_test) in zip(expanding, rolling):
        assert np.array_equal(e_test, r_test)
        assert set(r_train) <= set(e_train)
    assert len(rolling[-1][0]) < len(expanding[-1][0])


def test_purged_kfold_tests_every_row_once_and_purges_both_sides(times):
    t0, t1 = times
    folds = purged_kfold_splits(t0, t1, n_folds=5, embargo_days=EMBARGO_DAYS)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert np.array_equal(np.sort(tested), np.arange(len(t0)))
    for train, test in folds:
        assert_no_leakage(t0, t1, train, test)
    # A middle fold trains on rows from both sides of its test span.
    train, test = folds[2]
    assert (t0.iloc[train] < t0.iloc[test].min()).any()
    assert (t0.iloc[train] > t0.iloc[test].max()).any()


def test_rows_sharing_a_filing_date_stay_on_one_side():
    t0 = pd.Series(pd.to_datetime(["2025-01-02"] * 5 + ["2025-03-03"] * 5 + ["2025-06-02"] * 5))
    t1 = t0 + pd.Timedelta(days=28)
    train, holdout = holdout_split(t0, t1, holdout_frac=0.2, embargo_days=31)
    assert list(holdout) == [10, 11, 12, 13, 14]
    assert list(train) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_a_label_ending_before_it_starts_is_rejected():
    t0 = pd.Series(pd.to_datetime(["2025-01-10", "2025-01-11"]))
    with pytest.raises(ValueError, match="t1 >= t0"):
        holdout_split(t0, t0 - pd.Timedelta(days=1), 0.5, 0)
