"""Time splits with purge and embargo, keyed on each row's t0 (knowable) and t1 (label end).

Every function takes arrays of dates aligned with the rows and returns positional index
arrays (sorted ascending). Common guarantee: a training row never overlaps the evaluation
span [first t0, last t1] of its test rows, and a training row that precedes the test rows
has t1 < (test's first t0 - embargo_days); a training row that follows them (purged k-fold
only) has t0 > (test's last t1 + embargo_days).
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pandas as pd

Split = tuple[np.ndarray, np.ndarray]


def _dates(values) -> np.ndarray:
    return pd.to_datetime(pd.Series(values)).dt.normalize().to_numpy("datetime64[ns]")


def _check(t0: np.ndarray, t1: np.ndarray, embargo_days: int) -> None:
    if len(t0) != len(t1):
        raise ValueError(f"t0 and t1 differ in length: {len(t0)} != {len(t1)}")
    if embargo_days < 0:
        raise ValueError(f"embargo_days must be >= 0, got {embargo_days}")
    if (t1 < t0).any():
        raise ValueError("every row needs t1 >= t0 (a label cannot resolve before it is knowable)")


def _blocks(t0: np.ndarray, n_blocks: int) -> list[np.ndarray]:
    """Masks of `n_blocks` contiguous blocks of (about) equal row count in t0 order.

    Rows sharing a t0 stay in one block, so there may be fewer blocks than asked for.
    """
    ordered = np.sort(t0)
    starts = np.unique(ordered[(np.arange(n_blocks) * len(ordered)) // n_blocks])
    ends = np.append(starts[1:], ordered[-1] + np.timedelta64(1, "D"))
    return [(t0 >= start) & (t0 < end) for start, end in zip(starts, ends)]


def _train_before(t1: np.ndarray, test_start: np.datetime64, embargo: np.timedelta64) -> np.ndarray:
    return t1 < test_start - embargo


def holdout_split(t0, t1, holdout_frac: float, embargo_days: int) -> Split:
    """(train_idx, holdout_idx): the most recent `holdout_frac` of rows by t0 are the holdout;
    training rows are those whose label resolved before (holdout's first t0 - embargo)."""
    t0, t1 = _dates(t0), _dates(t1)
    _check(t0, t1, embargo_days)
    if not 0.0 < holdout_frac < 1.0:
        raise ValueError(f"holdout_frac must be in (0, 1), got {holdout_frac}")
    n_holdout = math.ceil(len(t0) * holdout_frac)
    if len(t0) == 0 or n_holdout >= len(t0):
        raise ValueError(f"cannot cut a holdout of {holdout_frac:.0%} from {len(t0)} rows")
    start = np.sort(t0)[len(t0) - n_holdout]
    holdout = t0 >= start
    train = _train_before(t1, start, np.timedelta64(embargo_days, "D"))
    return np.flatnonzero(train), np.flatnonzero(holdout)


def walk_forward_splits(
    t0, t1, n_folds: int, mode: str = "expanding", embargo_days: int = 0
) -> list[Split]:
    """Rows cut by t0 into n_folds + 1 contiguous blocks; fold k tests on block k + 1.

    expanding: train on every earlier row whose label resolved before the test start minus
    the embargo. rolling: the same, restricted to rows with t0 in block k (a window of one
    block). Folds whose train or test side is empty are left out.
    """
    if mode not in ("expanding", "rolling"):
        raise ValueError(f"mode must be 'expanding' or 'rolling', got {mode!r}")
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    t0, t1 = _dates(t0), _dates(t1)
    _check(t0, t1, embargo_days)
    embargo = np.timedelta64(embargo_days, "D")
    blocks = _blocks(t0, n_folds + 1)
    splits = []
    for window, test in pairwise(blocks):
        train = _train_before(t1, t0[test].min(), embargo)
        if mode == "rolling":
            train &= t0 >= t0[window].min()
        if train.any() and test.any():
            splits.append((np.flatnonzero(train), np.flatnonzero(test)))
    return splits


def purged_kfold_splits(t0, t1, n_folds: int, embargo_days: int) -> list[Split]:
    """López de Prado's purged k-fold: each test fold is a contiguous block of t0.

    Training rows whose [t0, t1] overlaps the test span [first t0, last t1] are purged;
    rows before the test also need t1 < test start - embargo, rows after it t0 > test
    span end + embargo.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    t0, t1 = _dates(t0), _dates(t1)
    _check(t0, t1, embargo_days)
    embargo = np.timedelta64(embargo_days, "D")
    splits = []
    for test in _blocks(t0, n_folds):
        before = _train_before(t1, t0[test].min(), embargo)
        after = t0 > t1[test].max() + embargo
        train = (before | after) & ~test
        if train.any():
            splits.append((np.flatnonzero(train), np.flatnonzero(test)))
    return splits
