"""Benchmark: does the loop stay put on noise and move on a planted edge? (issue 15, item 3)

    .venv/bin/python benchmarks/null_and_power.py                 # edges 0 (pure noise) and 1, 2
    .venv/bin/python benchmarks/null_and_power.py --edges 0 --seed 11
    .venv/bin/python benchmarks/null_and_power.py --edges 0,1 --oracle-seeds 1,2,3   # the edge's size only
    .venv/bin/python benchmarks/null_and_power.py --edges 0,1,2,3 --extraction-seeds 1,2,3,4,5,6,7,8

For each planted-edge scale (`SyntheticConfig.edge`; 0 = no disclosure predicts a return)
runs the closed loop and the heuristic arm over a year of the demo's synthetic data (weekly
and monthly retrains, daily blend-weight evaluation) and prints: promotions after the first
model over the challengers compared (the false-promotion rate on the null, the power on an
edge), the share of days at the starting blend weight, the models' holdout skill (rank IC,
ROC AUC interval, verdict), both arms' total return, the wall time, and the size of the
planted edge itself: the rank IC of an oracle no feature has (the informed members' net
side filed in the 20 days before each labeled row) with the rows' 20-day excess return.
"""

import argparse
import json
import time

import numpy as np
import pandas as pd
from feature_ablation import labeled_rows
from scipy import stats

from feedback_loop.lib.ingest.synthetic import SyntheticConfig, generate
from feedback_loop.lib.loop.engine import CLOSED_LOOP_ARM, HEURISTIC_ARM, LoopData, LoopEngine
from feedback_loop.lib.loop.replay_report import loop_stability
from feedback_loop.lib.training import metrics
from feedback_loop.lib.training.config import TrainingConfig
from feedback_loop.lib.training.model import fold_proba

ORACLE_WINDOW_DAYS = 20


def oracle_rank_ic(ds, start: str, end: str) -> float:
    """Spearman IC of the informed members' net side (purchases - sales filed in the
    ORACLE_WINDOW_DAYS calendar days up to each row's as_of) with the row's excess return."""
    rows = labeled_rows(ds.disclosures, ds.prices, ds.sectors, start, end, TrainingConfig())
    d = ds.disclosures[ds.disclosures["politician_id"].isin(ds.informed_politician_ids)]
    kind = d["transaction_type"].astype(str)
    informed = pd.DataFrame({"ticker": d["ticker"], "filed": pd.to_datetime(d["disclosure_date"]),
                             "side": np.where(kind == "purchase", 1, np.where(kind.str.startswith("sale"), -1, 0))})
    pairs = rows[["ticker", "t0"]].reset_index().merge(informed, on="ticker")
    inside = (pairs["filed"] <= pairs["t0"]) & (pairs["filed"] > pairs["t0"] - pd.Timedelta(days=ORACLE_WINDOW_DAYS))
    net_side = pairs[inside].groupby("index")["side"].sum().reindex(rows.index, fill_value=0)
    return float(stats.spearmanr(net_side, rows["forward_return_pct"]).statistic)


def pooled_walk_forward_rank_ic(ds, start: str, end: str) -> dict:
    """Rank IC of the loop's model recipe and of `member_record` on monthly out-of-sample blocks
    of [start, end] (module docstring), and the pooled rows' count."""
    config = TrainingConfig()
    first = pd.Timestamp(start) - pd.Timedelta(days=config.lookback_days)
    rows = labeled_rows(ds.disclosures, ds.prices, ds.sectors, first.date().isoformat(), end, config)
    scores, records, returns = [], [], []
    for month in pd.date_range(pd.Timestamp(start).to_period("M").to_timestamp(), end, freq="MS"):
        test = rows[(rows["t0"] >= month) & (rows["t0"] < month + pd.offsets.MonthBegin(1))]
        train = rows[(rows["t0"] >= month - pd.Timedelta(days=config.lookback_days))
                     & (rows["t1"] < month - pd.Timedelta(days=config.embargo_days))]
        if test.empty or train.empty:
            continue
        scores.append(metrics.buy_side_probability(fold_proba(train, test, config), config.classes()))
        records.append(test["member_record"].fillna(0.0).to_numpy())
        returns.append(test["forward_return_pct"].to_numpy())
    returns = np.concatenate(returns)
    return {"rows": len(returns),
            "loop_model_rank_ic": round(float(stats.spearmanr(np.concatenate(scores), returns).statistic), 4),
            "member_record_rank_ic": round(float(stats.spearmanr(np.concatenate(records), returns).statistic), 4)}


def extraction(edges: list[float], seeds: list[int], start: str, end: str) -> None:
    """Print `pooled_walk_forward_rank_ic` and the oracle's rank IC per seed and edge, then their
    mean and standard deviation over the seeds per edge."""
    measured = []
    for seed in seeds:
        for edge in edges:
            ds = generate(SyntheticConfig(seed=seed, edge=edge))
            row = {"seed": seed, "edge": edge, "oracle_rank_ic": round(oracle_rank_ic(ds, start, end), 4),
                   **pooled_walk_forward_rank_ic(ds, start, end)}
            measured.append(row)
            print(json.dumps(row), flush=True)
    table = pd.DataFrame(measured).groupby("edge")[["oracle_rank_ic", "loop_model_rank_ic", "member_record_rank_ic"]]
    summary = table.agg(["mean", "std"]).round(4)
    summary.columns = [f"{name}_{stat}" for name, stat in summary.columns]
    print(json.dumps({"over_seeds": seeds, "by_edge": summary.reset_index().to_dict("records")}), flush=True)


def blend_weight_evidence(decisions: list[dict]) -> dict:
    """How the blend weight's test saw the two sides: the ML side's win-rate lead (points, ML minus
    heuristic, on the same signals) over the days with a test, and the smallest p-value."""
    tested = [d["decision"] for d in decisions if d["decision"].p_value is not None]
    if not tested:
        return {"days_tested": 0}
    lead = np.array([(t.ml_win_rate - t.heuristic_win_rate) * 100 for t in tested])
    return {"days_tested": len(tested), "ml_lead_points_min_median_max": np.round(np.percentile(lead, [0, 50, 100]), 1).tolist(),
            "min_p_value": round(min(t.p_value for t in tested), 4)}


def run_edge(edge: float, seed: int, start: str, end: str) -> dict:
    started = time.perf_counter()
    ds = generate(SyntheticConfig(seed=seed, edge=edge))
    data = LoopData(ds.disclosures, ds.prices, ds.sectors, ds.politicians)
    out = {"edge": edge, "seed": seed, "oracle_rank_ic": round(oracle_rank_ic(ds, start, end), 4)}
    for arm in (CLOSED_LOOP_ARM, HEURISTIC_ARM):
        engine = LoopEngine(data, arm, start=start, end=end, validate_models=False)
        state = engine.run()
        equity = state.portfolio.equity["equity_usd"]
        out[f"{arm.name}_total_return_pct"] = round(float(equity.iloc[-1] / equity.iloc[0] - 1) * 100, 2)
        if arm.use_model:
            metrics = [m.model.metrics for m in state.models.values()]
            out["stability"] = loop_stability(state)
            out["models"] = len(metrics)
            out["median_rank_ic"] = round(float(np.median([m["rank_ic"] for m in metrics])), 4)
            out["median_roc_auc"] = round(float(np.median([m["roc_auc_ovr"] for m in metrics])), 4)
            out["models_with_edge"] = sum(m["skill_verdict"].startswith("edge detected") for m in metrics)
            out["blend_weight_test"] = blend_weight_evidence(state.blend_weight_decisions)
            out["blend_weight_moves"] = [(str(p["as_of"].date()), p["decision"].new_weight)
                                         for p in state.blend_weight_path]
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edges", default="0,1,2", help="comma-separated SyntheticConfig.edge values")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", default="2024-01-02")
    parser.add_argument("--end", default="2024-12-30")
    parser.add_argument("--oracle-seeds", help="comma-separated seeds: print only the oracle rank IC of each "
                                               "seed and edge (no loop), to see the edge's size against chance")
    parser.add_argument("--extraction-seeds", help="comma-separated seeds: print only how much of the edge the "
                                                   "model recipe extracts out of sample (no loop)")
    args = parser.parse_args()
    edges = [float(e) for e in args.edges.split(",")]
    if args.extraction_seeds:
        extraction(edges, [int(s) for s in args.extraction_seeds.split(",")], args.start, args.end)
        return
    if args.oracle_seeds:
        for seed in (int(s) for s in args.oracle_seeds.split(",")):
            ics = {edge: round(oracle_rank_ic(generate(SyntheticConfig(seed=seed, edge=edge)), args.start, args.end), 4)
                   for edge in edges}
            print(json.dumps({"seed": seed, "oracle_rank_ic": ics}), flush=True)
        return
    for edge in edges:
        print(json.dumps(run_edge(edge, args.seed, args.start, args.end), default=str), flush=True)


if __name__ == "__main__":
    main()
