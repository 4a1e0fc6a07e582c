"""Purged walk-forward feature ablation: which feature groups carry out-of-sample skill? (issue 15, item 6)

    .venv/bin/python benchmarks/feature_ablation.py --real          # 2019-2020 filings in ../shared/data
    .venv/bin/python benchmarks/feature_ablation.py --synthetic     # the demo's data, planted edge 1
    .venv/bin/python benchmarks/feature_ablation.py --synthetic --edge 0 --json out.json

Rows are the training rows of the loop: one per (ticker, filing date) of the period, its
features from `compute_ticker_features` (every group of `FEATURE_GROUPS`), its label the
default `TrainingConfig`'s (5 classes of the 20-trading-day excess return over SPY,
`market_labeled_set`). Folds are `walk_forward_splits` (expanding, purged: a training
row's label ends before the test block's first filing minus the embargo of the label
horizon). Every feature set gets the same folds and the validation folds' model
(`model.fold_proba`, default hyperparameters); its skill is the one-vs-rest macro ROC AUC
of the pooled out-of-sample rows with a percentile bootstrap 95% interval over tickers
(`metrics.bootstrap_weights`, as every model's holdout), and the gain of a group is the
paired bootstrap interval of AUC(all) - AUC(all without the group) on the same resampled
tickers. Beside it, the
long-only view: the ROC AUC of the buy-side probability for "the excess return is above
0" (`beats_spy_auc`), with its interval. `member_record` is a signed expectation by
definition, so it is also scored as it is, without a model, on the same rows: the check
that the feature sees an edge when there is one (its value on a row uses only what was
public on the row's filing date, so no fold is needed).

Feature sets: `baseline` (the 14 features before issue 15), per group `<group> alone`,
`baseline + <group>` (the group's features added), `all` and `all - <group>`.

The rule, fixed before the first run (README "Feature ablation"): a group stays in
`FEATURE_NAMES` unless its gain interval on the real 2019-2020 rows lies entirely below 0
(it measurably hurts). It *earns* its place when that interval lies entirely above 0. An
out-of-sample AUC above `LEAK_AUC` on real data is treated as a leak until shown otherwise.
Tickers, not rows, are resampled: the rows of one ticker share its price path, so a row
bootstrap's intervals would be too narrow (lib/training/metrics).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from feedback_loop.lib.signals.features import (
    CANDIDATE_FEATURES,
    FEATURE_GROUPS,
    compute_ticker_features,
)
from feedback_loop.lib.training import metrics
from feedback_loop.lib.training.config import TrainingConfig
from feedback_loop.lib.training.labels import market_labeled_set, training_pairs
from feedback_loop.lib.training.model import fold_proba
from feedback_loop.lib.training.splits import walk_forward_splits

#: The features before issue 15 (the baseline of the ablation).
BASELINE_FEATURES = [
    "politician_count", "buy_sell_ratio", "recent_activity_30d", "bipartisan", "net_volume",
    "volume_magnitude", "party_alignment", "disclosure_delay", "market_momentum", "committee_relevance",
    "sector_performance", "vix_level", "market_return_20d", "market_breadth",
]
#: Out-of-sample ROC AUC above this on the real filings is a leak until shown otherwise (issue 15).
LEAK_AUC = 0.56
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_rows(start: str, end: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from feedback_loop.lib.loop.replay import load_inputs

    congress = DATA / "congress"
    # Prices run to 2021-03-31: the labels of the last filings resolve inside the file.
    inputs = load_inputs(start, "2021-03-31",
                         disclosure_files=[congress / "house_ptr_transactions.csv.gz",
                                           congress / "senate_ptr_transactions.csv.gz"],
                         legislator_files=[congress / "legislators-current.csv.gz",
                                           congress / "legislators-historical.csv.gz"],
                         price_file=DATA / "prices" / "daily_prices.csv.gz")
    return inputs.data.disclosures, inputs.data.prices, inputs.data.sectors


def synthetic_rows(edge: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from feedback_loop.lib.ingest.synthetic import SyntheticConfig, generate

    data = generate(SyntheticConfig(seed=seed, edge=edge))
    return data.disclosures, data.prices, data.sectors


def labeled_rows(disclosures, prices, sectors, start, end, config: TrainingConfig) -> pd.DataFrame:
    """Every filing row of [start, end] with all candidate features and its label (unlabelable rows dropped)."""
    pairs = training_pairs(disclosures, start, end)
    features = compute_ticker_features(disclosures, prices, pairs=pairs, sectors=sectors)
    label_day = pd.to_datetime(prices["date"]).max()
    # Labeled as of the last price, with a lookback reaching the first filing of the period.
    reach = TrainingConfig.from_dict({**config.to_dict(), "lookback_days": (label_day - pd.Timestamp(start)).days + 1})
    labeled = market_labeled_set(features, prices, label_day, reach).frame
    return (labeled[["ticker", "t0", "t1", "forward_return_pct", "label", "weight"]]
            .merge(features[["ticker", "as_of", *CANDIDATE_FEATURES]], left_on=["ticker", "t0"],
                   right_on=["ticker", "as_of"], validate="one_to_one")
            .sort_values(["t0", "ticker"], kind="stable").reset_index(drop=True))


def feature_sets() -> dict[str, list[str]]:
    everything = list(CANDIDATE_FEATURES)
    sets = {"baseline": BASELINE_FEATURES, "all": everything}
    for group, names in FEATURE_GROUPS.items():
        sets[f"{group} alone"] = names
        sets[f"baseline + {group}"] = BASELINE_FEATURES + [n for n in names if n not in BASELINE_FEATURES]
        sets[f"all - {group}"] = [n for n in everything if n not in names]
    return sets


def ablation(rows: pd.DataFrame, config: TrainingConfig, folds: int) -> dict:
    splits = walk_forward_splits(rows["t0"], rows["t1"], folds, "expanding", config.embargo_days)
    tested = np.concatenate([test for _, test in splits])
    y = rows["label"].to_numpy(dtype=int)[tested]
    proba = {}
    for name, names in feature_sets().items():
        proba[name] = np.concatenate([fold_proba(rows.iloc[train], rows.iloc[test], config, names)
                                      for train, test in splits])
    returns = rows["forward_return_pct"].to_numpy()[tested]
    beats_spy = (returns > 0).astype(int)
    everything = np.ones((1, len(y)), dtype=np.float32)
    weights = metrics.bootstrap_weights(rows["ticker"].to_numpy()[tested])

    def auc(p: np.ndarray, w: np.ndarray) -> np.ndarray:
        return metrics.roc_auc_draws(y, p, w)

    def beats_spy_auc(p: np.ndarray, w: np.ndarray) -> np.ndarray:
        # Two columns (not buy side, buy side): the macro AUC of both is the binary AUC.
        buy = metrics.buy_side_probability(p, config.classes())
        return metrics.roc_auc_draws(beats_spy, np.column_stack([1 - buy, buy]), w)

    skill = {}
    for name, p in proba.items():
        buy = metrics.buy_side_probability(p, config.classes())
        skill[name] = {"auc": float(auc(p, everything)[0]), "ci": metrics.percentile_interval(auc(p, weights)),
                       "beats_spy_auc": float(beats_spy_auc(p, everything)[0]),
                       "beats_spy_ci": metrics.percentile_interval(beats_spy_auc(p, weights)),
                       "rank_ic": float(stats.spearmanr(buy, returns).statistic),
                       "rank_ic_ci": metrics.percentile_interval(metrics.rank_ic_draws(buy, returns, weights))}
    record = rows["member_record"].to_numpy()[tested]
    known = np.isfinite(record)
    scored = np.column_stack([-record[known], record[known]])
    member_record_score = {
        "rows": int(known.sum()),
        "beats_spy_auc": float(metrics.roc_auc_draws(beats_spy[known], scored, everything[:, known])[0]),
        "beats_spy_ci": metrics.percentile_interval(metrics.roc_auc_draws(beats_spy[known], scored, weights[:, known])),
        "rank_ic": float(stats.spearmanr(record[known], returns[known]).statistic),
    }
    gains = {}
    for group in FEATURE_GROUPS:
        with_group, without = proba["all"], proba[f"all - {group}"]
        low, high = metrics.percentile_interval(auc(with_group, weights) - auc(without, weights))
        gains[group] = {"gain": float(auc(with_group, everything)[0] - auc(without, everything)[0]),
                        "ci": [low, high], "verdict": "earns" if low > 0 else ("hurts" if high < 0 else "no effect")}
    return {"rows": len(rows), "tested_rows": len(y), "folds": [
        {"train_rows": len(train), "test_rows": len(test), "test_start": str(rows["t0"].iloc[test].min().date()),
         "test_end": str(rows["t0"].iloc[test].max().date())} for train, test in splits],
        "skill": skill, "gains": gains, "member_record_score": member_record_score}


def markdown(result: dict) -> str:
    lines = [("| feature set | features | out-of-sample ROC AUC (5 classes) [95% CI] | beats-SPY AUC [95% CI] "
             "| rank IC [95% CI] |"), "|---|---|---|---|---|"]
    for name, row in result["skill"].items():
        lines.append(f"| {name} | {len(feature_sets()[name])} | {row['auc']:.3f} "
                     f"[{row['ci'][0]:.3f}, {row['ci'][1]:.3f}] | {row['beats_spy_auc']:.3f} "
                     f"[{row['beats_spy_ci'][0]:.3f}, {row['beats_spy_ci'][1]:.3f}] | {row['rank_ic']:+.3f} "
                     f"[{row['rank_ic_ci'][0]:+.3f}, {row['rank_ic_ci'][1]:+.3f}] |")
    raw = result["member_record_score"]
    lines += ["", (f"member_record as a score (no model), {raw['rows']} rows: beats-SPY AUC {raw['beats_spy_auc']:.3f} "
              f"[{raw['beats_spy_ci'][0]:.3f}, {raw['beats_spy_ci'][1]:.3f}], rank IC {raw['rank_ic']:+.3f}")]
    lines += ["", "| group | AUC(all) - AUC(all - group) [95% CI] | verdict |", "|---|---|---|"]
    for group, row in result["gains"].items():
        lines.append(f"| {group} | {row['gain']:+.4f} [{row['ci'][0]:+.4f}, {row['ci'][1]:+.4f}] | {row['verdict']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--real", action="store_true", help="the 2019-2020 filings of ../shared/data")
    source.add_argument("--synthetic", action="store_true", help="the demo's synthetic data")
    parser.add_argument("--edge", type=float, default=1.0, help="SyntheticConfig.edge (synthetic only)")
    parser.add_argument("--seed", type=int, default=7, help="SyntheticConfig.seed (synthetic only)")
    parser.add_argument("--start", default=None, help="first filing date (real: 2019-01-01)")
    parser.add_argument("--end", default=None, help="last filing date (real: 2020-12-31)")
    parser.add_argument("--folds", type=int, default=4, help="walk-forward folds")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    started = time.perf_counter()
    config = TrainingConfig()
    if args.real:
        start, end = args.start or "2019-01-01", args.end or "2020-12-31"
        disclosures, prices, sectors = real_rows(start, end)
    else:
        disclosures, prices, sectors = synthetic_rows(args.edge, args.seed)
        start = args.start or str(disclosures["disclosure_date"].min().date())
        end = args.end or str(disclosures["disclosure_date"].max().date())
    rows = labeled_rows(disclosures, prices, sectors, start, end, config)
    result = {"data": "real" if args.real else f"synthetic edge {args.edge} seed {args.seed}",
              "start": start, "end": end, **ablation(rows, config, args.folds)}
    result["seconds"] = round(time.perf_counter() - started, 1)
    leaks = [name for name, row in result["skill"].items() if max(row["auc"], row["beats_spy_auc"]) > LEAK_AUC]
    if args.real and leaks:
        print(f"LEAK SUSPECTED: out-of-sample AUC above {LEAK_AUC} for {leaks}")
    print(markdown(result))
    print(json.dumps({k: result[k] for k in ("data", "start", "end", "rows", "tested_rows", "folds", "seconds")}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
