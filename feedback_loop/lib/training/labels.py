"""Labeled training sets: market labels (forward excess returns), outcome labels, the blend.

Every labeled frame has `LABELED_COLUMNS`: ticker, t0 (when the row's features became
knowable), t1 (when its label resolved), the FEATURE_NAMES, forward_return_pct, label
(class index into `TrainingConfig.classes()`), source (vocab.LabelSource) and weight.
Rows that cannot be labeled are never dropped silently: each `LabeledSet` counts them by
reason, and kept + dropped always equals the rows given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from feedback_loop.lib.checks import CheckOutcome
from feedback_loop.lib.frames import MARKET_TICKER, normalize_dates
from feedback_loop.lib.signals.features import FEATURE_NAMES, features_frame_from_vectors
from feedback_loop.lib.training.config import TrainingConfig
from feedback_loop.lib.vocab import SIGNAL_ASSET_TYPES, LabelSource, Outcome, SignalType

LABELED_COLUMNS = [
    "ticker", "t0", "t1", *FEATURE_NAMES, "forward_return_pct", "label", "source", "weight",
]

# --- training-set checks --------------------------------------------------------------
MIN_TRAINING_ROWS = 100
MIN_FEATURE_COMPLETENESS_FRAC = 0.95
#: Every class needs at least this share of the rows.
MIN_CLASS_SHARE_FRAC = 0.02
#: Outliers: values beyond Tukey's far-out fences [p25 - 3 IQR, p75 + 3 IQR] (for a
#: feature with IQR 0, e.g. a mostly-constant flag, the width is p99 - p1 instead). Fences
#: on p1/p99 alone would be contaminated as soon as more than 1% of rows are outliers.
OUTLIER_IQR_MULTIPLE = 3.0
MAX_OUTLIER_SHARE_FRAC = 0.05
#: The Dagster asset-check name and description of each training-set gate.
CHECK_DESCRIPTIONS = {
    "training_set_features_complete": (f"Feature completeness is at least {MIN_FEATURE_COMPLETENESS_FRAC:.0%} "
                                       "(features the source lacks entirely are listed, not counted)."),
    "training_set_has_every_class": f"Every class is present with at least a {MIN_CLASS_SHARE_FRAC:.0%} share.",
    "training_set_has_enough_rows": f"At least {MIN_TRAINING_ROWS} rows.",
    "training_set_has_no_leakage": "No row's label resolved (t1) after the training cutoff.",
    "training_set_outliers_flagged": (f"Under {MAX_OUTLIER_SHARE_FRAC:.0%} of rows beyond the far-out fences "
                                      "for every feature (warning only)."),
}


@dataclass
class LabeledSet:
    """Labeled rows (`LABELED_COLUMNS`) plus the count of unusable input rows per reason."""

    frame: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)


def label_from_return(return_pct, config: TrainingConfig) -> np.ndarray:
    """Class index of each return (percent points); thresholds are strict inequalities."""
    r = np.asarray(return_pct, dtype=float)
    if np.isnan(r).any():
        raise ValueError("label_from_return needs finite returns; drop rows without a return first")
    up, down = r > config.threshold_pct, r < -config.threshold_pct
    if config.num_classes == 3:
        return np.select([down, up], [0, 2], default=1).astype(int)
    strong_up, strong_down = r > config.strong_threshold_pct, r < -config.strong_threshold_pct
    return np.select([strong_down, down, strong_up, up], [0, 1, 4, 3], default=2).astype(int)


def _class_index(config: TrainingConfig, signal_type: SignalType) -> int:
    return config.classes().index(signal_type)


def _split_by_reason(frame: pd.DataFrame, reasons: list[tuple[str, pd.Series]]):
    """Remove rows by the first matching reason, in order; return (kept, counts)."""
    dropped: dict[str, int] = {}
    remaining = pd.Series(True, index=frame.index)
    for reason, mask in reasons:
        hit = remaining & mask.reindex(frame.index, fill_value=False)
        dropped[reason] = int(hit.sum())
        remaining &= ~hit
    return frame[remaining], dropped


def _adjusted_prices(prices: pd.DataFrame, start: pd.Timestamp, as_of: pd.Timestamp) -> pd.DataFrame:
    dates = pd.to_datetime(prices["date"]).dt.normalize()
    p = normalize_dates(prices[(dates >= start) & (dates <= as_of)])
    adj_open = p["open"] * p["adj_close"] / p["close"]
    out = pd.DataFrame({
        "ticker": p["ticker"], "date": p["date"],
        "adj_open": adj_open.where(adj_open > 0), "adj_close": p["adj_close"].where(p["adj_close"] > 0),
    })
    return out.drop_duplicates(["ticker", "date"], keep="last")


def market_labeled_set(
    features: pd.DataFrame, prices: pd.DataFrame, as_of, config: TrainingConfig
) -> LabeledSet:
    """Label feature rows (ticker, as_of = filing date) with their forward return.

    Trading days are SPY's dates up to `as_of`. Entry: adjusted open (open × adj_close / close)
    of the first trading day after the row's as_of; exit: adjusted close of the
    `horizon_days`-th trading day counting the entry day (t1). The return is minus SPY's over
    the same entry/exit when `excess_over_spy`. Kept: t0 within `lookback_days` of `as_of`
    and t1 <= as_of. Drop reasons: outside_lookback, after_cutoff, label_unresolved (exit
    beyond the last trading day <= as_of), missing_entry_price, missing_exit_price,
    missing_market_price.
    """
    as_of = pd.Timestamp(as_of).normalize()
    rows = normalize_dates(features).reset_index(drop=True)
    lookback_start = as_of - pd.Timedelta(days=config.lookback_days)
    # Kept rows have t0 >= lookback_start and enter after t0: earlier prices are never read.
    adjusted = _adjusted_prices(prices, lookback_start, as_of)
    market = adjusted[adjusted["ticker"] == MARKET_TICKER].set_index("date").sort_index()
    calendar = market.index.to_numpy("datetime64[ns]")
    if len(calendar) == 0:
        raise ValueError(
            f"prices hold no {MARKET_TICKER} rows up to {as_of:%Y-%m-%d}: no trading calendar"
        )
    t0 = rows["as_of"].to_numpy("datetime64[ns]")
    entry_pos = np.searchsorted(calendar, t0, side="right")
    exit_pos = entry_pos + config.horizon_days - 1
    resolved = exit_pos < len(calendar)
    last = len(calendar) - 1
    entry_date = pd.Series(calendar[np.minimum(entry_pos, last)])
    exit_date = pd.Series(calendar[np.minimum(exit_pos, last)])

    keyed = adjusted.set_index(["ticker", "date"])
    entry_idx = pd.MultiIndex.from_arrays([rows["ticker"], entry_date])
    exit_idx = pd.MultiIndex.from_arrays([rows["ticker"], exit_date])
    entry_open = pd.Series(keyed["adj_open"].reindex(entry_idx).to_numpy(), index=rows.index)
    exit_close = pd.Series(keyed["adj_close"].reindex(exit_idx).to_numpy(), index=rows.index)
    spy_return = pd.Series(
        (market["adj_close"].reindex(exit_date).to_numpy()
         / market["adj_open"].reindex(entry_date).to_numpy() - 1.0) * 100.0,
        index=rows.index,
    )

    kept, dropped = _split_by_reason(rows, [
        ("after_cutoff", rows["as_of"] > as_of),
        ("outside_lookback", rows["as_of"] < lookback_start),
        ("label_unresolved", pd.Series(~resolved, index=rows.index)),
        ("missing_entry_price", entry_open.isna()),
        ("missing_exit_price", exit_close.isna()),
        ("missing_market_price", spy_return.isna() & config.excess_over_spy),
    ])
    idx = kept.index
    forward = (exit_close[idx] / entry_open[idx] - 1.0) * 100.0
    if config.excess_over_spy:
        forward = forward - spy_return[idx]
    frame = kept.assign(
        t0=kept["as_of"], t1=exit_date[idx].to_numpy(), forward_return_pct=forward.to_numpy(),
        label=label_from_return(forward.to_numpy(), config), source=LabelSource.MARKET.value,
        weight=1.0,
    )
    return LabeledSet(frame[LABELED_COLUMNS].reset_index(drop=True), dropped)


def outcome_labeled_set(outcomes: pd.DataFrame, as_of, config: TrainingConfig) -> LabeledSet:
    """Label the stored feature vectors of closed trades with their outcome.

    win → strong_buy if return_pct > strong_threshold_pct (5 classes) else buy; loss →
    strong_sell if return_pct < -strong_threshold_pct (5 classes) else sell; breakeven → hold.
    t0 = entry_date (the first day the trade existed; its signal's features were public the
    trading day before, so t0 is conservative for the ordering of splits), t1 = exit_date.
    Kept: closed with exit_date in [as_of - outcome_window_days, as_of] and a feature vector
    holding every FEATURE_NAME (None values are allowed and become NaN). Drop reasons: open,
    exit_after_cutoff, outside_window, missing_features, incomplete_features.
    """
    as_of = pd.Timestamp(as_of).normalize()
    if outcomes.empty:
        return LabeledSet(pd.DataFrame(columns=LABELED_COLUMNS), {})
    rows = normalize_dates(outcomes).reset_index(drop=True)
    vectors = rows["features"]
    is_dict = vectors.map(lambda v: isinstance(v, dict))
    complete = vectors.map(lambda v: isinstance(v, dict) and set(FEATURE_NAMES) <= v.keys())
    window_start = as_of - pd.Timedelta(days=config.outcome_window_days)
    kept, dropped = _split_by_reason(rows, [
        ("open", (rows["outcome"] == Outcome.OPEN.value) | rows["exit_date"].isna()),
        ("exit_after_cutoff", rows["exit_date"] > as_of),
        ("outside_window", rows["exit_date"] < window_start),
        ("missing_features", ~is_dict),
        ("incomplete_features", ~complete),
    ])
    return_pct = kept["return_pct"].astype(float)
    win, loss = kept["outcome"] == Outcome.WIN.value, kept["outcome"] == Outcome.LOSS.value
    cases = [(win, SignalType.BUY), (loss, SignalType.SELL)]
    if config.num_classes == 5:
        strong = config.strong_threshold_pct
        cases = [
            (win & (return_pct > strong), SignalType.STRONG_BUY),
            (loss & (return_pct < -strong), SignalType.STRONG_SELL),
            *cases,
        ]
    label = np.select(
        [mask for mask, _ in cases],
        [_class_index(config, signal) for _, signal in cases],
        default=_class_index(config, SignalType.HOLD),
    )
    vectors_frame = features_frame_from_vectors(list(kept["features"]))
    frame = pd.DataFrame({
        "ticker": kept["ticker"].to_numpy(), "t0": kept["entry_date"].to_numpy(),
        "t1": kept["exit_date"].to_numpy(),
    })
    frame[FEATURE_NAMES] = vectors_frame[FEATURE_NAMES].to_numpy(dtype=float)
    frame = frame.assign(
        forward_return_pct=return_pct.to_numpy(), label=label.astype(int),
        source=LabelSource.OUTCOME.value, weight=config.outcome_weight,
    )
    return LabeledSet(frame[LABELED_COLUMNS], dropped)


def blended_training_set(
    market: LabeledSet, outcome: LabeledSet | None, config: TrainingConfig
) -> pd.DataFrame:
    """Market rows (weight 1.0) plus, when `use_outcomes`, outcome rows (weight
    `outcome_weight`); sorted by t0 (then ticker, source) for a deterministic order."""
    parts = [market.frame.assign(weight=1.0)]
    if config.use_outcomes:
        if outcome is None:
            raise ValueError("use_outcomes=True needs an outcome LabeledSet (possibly empty)")
        parts.append(outcome.frame.assign(weight=config.outcome_weight))
    blended = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
    return blended.sort_values(["t0", "ticker", "source"], kind="stable").reset_index(drop=True)


def training_set_checks(
    frame: pd.DataFrame, config: TrainingConfig, cutoff
) -> list[CheckOutcome]:
    """Quality gates of a training set (names are the Dagster asset-check names)."""
    cutoff = pd.Timestamp(cutoff).normalize()
    values = frame[FEATURE_NAMES].astype(float)
    completeness = values.notna().mean()
    # A feature with no value at all is unavailable from the source (sectors unknown for
    # real price files): it is reported, and completeness is measured over the others.
    unavailable = [name for name in FEATURE_NAMES if len(frame) and completeness[name] == 0]
    available = values.drop(columns=unavailable)
    overall = float(available.notna().to_numpy().mean()) if len(frame) and available.shape[1] else 0.0

    counts = frame["label"].value_counts().reindex(range(config.num_classes), fill_value=0)
    shares = counts / max(len(frame), 1)
    class_shares = {c.value: float(s) for c, s in zip(config.classes(), shares)}

    leaked = frame["t1"] > cutoff

    q = values.quantile([0.01, 0.25, 0.75, 0.99])
    iqr = q.loc[0.75] - q.loc[0.25]
    width = (OUTLIER_IQR_MULTIPLE * iqr).where(iqr > 0, q.loc[0.99] - q.loc[0.01])
    beyond = values.lt(q.loc[0.25] - width, axis=1) | values.gt(q.loc[0.75] + width, axis=1)
    outlier_share = beyond.mean().fillna(0.0)
    return [
        CheckOutcome("training_set_has_enough_rows", len(frame) >= MIN_TRAINING_ROWS, "ERROR",
                     {"rows": len(frame), "min_rows": MIN_TRAINING_ROWS}),
        CheckOutcome("training_set_features_complete", overall >= MIN_FEATURE_COMPLETENESS_FRAC,
                     "ERROR", {"completeness_frac": overall,
                               "min_completeness_frac": MIN_FEATURE_COMPLETENESS_FRAC,
                               "by_feature": completeness.round(4).to_dict(),
                               "unavailable_features": unavailable}),
        CheckOutcome("training_set_has_every_class", bool((shares >= MIN_CLASS_SHARE_FRAC).all()),
                     "ERROR", {"class_share_frac": class_shares,
                               "min_class_share_frac": MIN_CLASS_SHARE_FRAC}),
        CheckOutcome("training_set_has_no_leakage", not leaked.any(), "ERROR",
                     {"rows_after_cutoff": int(leaked.sum()), "cutoff": cutoff.date().isoformat(),
                      "max_t1": None if frame.empty else frame["t1"].max().date().isoformat()}),
        CheckOutcome("training_set_outliers_flagged",
                     bool((outlier_share < MAX_OUTLIER_SHARE_FRAC).all()), "WARN",
                     {"outlier_share_frac": outlier_share.round(4).to_dict(),
                      "max_outlier_share_frac": MAX_OUTLIER_SHARE_FRAC}),
    ]


def training_pairs(disclosures: pd.DataFrame, start, end) -> pd.DataFrame:
    """(ticker, as_of = filing date) of every signal-eligible filing in [start, end]: the training rows."""
    eligible = disclosures[
        disclosures["ticker"].notna()
        & disclosures["asset_type"].isin([t.value for t in SIGNAL_ASSET_TYPES])
        & (disclosures["disclosure_date"] >= pd.Timestamp(start))
        & (disclosures["disclosure_date"] <= pd.Timestamp(end))
    ]
    return (eligible[["ticker", "disclosure_date"]].rename(columns={"disclosure_date": "as_of"})
            .drop_duplicates().sort_values(["as_of", "ticker"]).reset_index(drop=True))
