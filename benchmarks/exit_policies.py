"""Benchmark: the exit policies side by side on the same replay (issue 15, item 5).

    .venv/bin/python benchmarks/exit_policies.py                          # real 2019-2020, heuristic arm
    .venv/bin/python benchmarks/exit_policies.py --arms heuristic_only,closed_loop --json out.json
    .venv/bin/python benchmarks/exit_policies.py --synthetic --start 2024-01-02 --end 2024-12-30

Runs the replay engine's arms under each named exit policy (lib/policy.EXIT_RULES; every other
rule as PortfolioPolicy()) on one data set and one causal feature panel, and prints one row per
(policy, arm): closed trades, win rate, mean return and excess over SPY per trade, the share of
exits by reason, annualized Sharpe, max drawdown, total return and positions still open at the end.
The real data are the files of the README's replay (`--data` is the folder holding congress/ and prices/).
"""

import argparse
import json
import os
import time
from pathlib import Path

from feedback_loop.lib.loop import replay as replay_lib
from feedback_loop.lib.loop.engine import ARMS
from feedback_loop.lib.loop.replay_report import exit_policy_table
from feedback_loop.lib.vocab import ExitPolicy

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load(args) -> replay_lib.ReplayInputs:
    if args.synthetic:
        return replay_lib.load_inputs(args.start, args.end)
    congress = args.data / "congress"
    return replay_lib.load_inputs(
        args.start, args.end,
        disclosure_files=[congress / "house_ptr_transactions.csv.gz", congress / "senate_ptr_transactions.csv.gz"],
        legislator_files=[congress / "legislators-current.csv.gz", congress / "legislators-historical.csv.gz"],
        price_file=args.data / "prices" / "daily_prices.csv.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", default="2019-01-01")
    parser.add_argument("--end", default="2020-12-31")
    parser.add_argument("--policies", default=",".join(p.value for p in ExitPolicy))
    parser.add_argument("--arms", default="heuristic_only", help=f"comma-separated of {[a.name for a in ARMS]}")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--synthetic", action="store_true", help="the demo's synthetic data instead of the real files")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    args = parser.parse_args()
    arms = [arm for arm in ARMS if arm.name in args.arms.split(",")]
    started = time.perf_counter()
    inputs = load(args)
    loaded = time.perf_counter() - started

    def progress(name: str, days: int):
        print(f"{time.perf_counter() - started:7.1f} s  {name}: {days} days", flush=True)

    results = replay_lib.compare_exit_policies(inputs, args.start, args.end, args.policies.split(","), arms=arms,
                                               progress=progress)
    table = exit_policy_table(results, inputs.data.prices, args.start, args.end)
    seconds = time.perf_counter() - started
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"{seconds:.1f} s wall ({loaded:.1f} s loading), load average {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"start": args.start, "end": args.end, "seconds": round(seconds, 1),
                                         "rows": table.to_dict("records")}, indent=1, default=str))


if __name__ == "__main__":
    main()
