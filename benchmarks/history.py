"""Benchmark: simulate 12 months of daily loop history on synthetic data, as `make demo` does.

    .venv/bin/python benchmarks/history.py                      # the demo's data and year
    .venv/bin/python benchmarks/history.py --scale 20000,600,2  # disclosures,tickers,years

Prints wall time of the feature panel and of the day-by-day loop, and what it produced.
"""

import argparse
import time

from feedback_loop.defs.resources import synthetic_config
from feedback_loop.lib.ingest.synthetic import generate
from feedback_loop.lib.loop.engine import CLOSED_LOOP_ARM, LoopData, LoopEngine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="", help="disclosures,tickers,years (default: the demo's data)")
    parser.add_argument("--start", default="2024-01-02")
    parser.add_argument("--end", default="2024-12-30")
    args = parser.parse_args()

    started = time.perf_counter()
    ds = generate(synthetic_config(7, args.scale))
    generated = time.perf_counter()
    engine = LoopEngine(LoopData(ds.disclosures, ds.prices, ds.sectors, ds.politicians), CLOSED_LOOP_ARM,
                        start=args.start, end=args.end)
    panel = time.perf_counter()
    state = engine.run()
    finished = time.perf_counter()
    print(f"data: {len(ds.disclosures)} disclosures, {ds.prices['ticker'].nunique()} tickers "
          f"({generated - started:.1f}s to generate)")
    print(f"feature panel: {len(engine.panel.daily)} daily rows, {len(engine.panel.filings)} filing rows "
          f"({panel - generated:.1f}s)")
    print(f"history: {len(engine.days)} trading days in {finished - panel:.1f}s "
          f"({(finished - panel) / len(engine.days) * 1000:.0f} ms/day)")
    print(f"produced: {len(state.signals)} signals, {len(state.portfolio.positions)} positions, "
          f"{len(state.all_outcomes())} outcomes, {len(state.models)} models, {len(state.deployments)} promotions")


if __name__ == "__main__":
    main()
