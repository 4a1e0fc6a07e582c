"""A short replay decides exactly what it decided before the speed work (issue 16).

`replay_parity_expected.json.gz` was written by the code before any optimisation of the engine,
training or scoring (`python -m feedback_loop_tests.test_replay_parity --write`); every arm's
signals, candidate calls, positions, equity, outcomes, shadow outcomes, retrains, promotions
and blend-weight moves must match it row for row (floats within 1e-9 relative).

The model recipe changed once since, on its own evidence (`Hyperparameters.multi_strategy`:
one multi-output tree per round instead of one tree per class): the replay here trains with the
recipe the expectation was written with, so the test isolates what the speed work may not
change. A model id ends in a digest of its booster and its config, and the config gained the
field: ids are compared by what they identify (`_numbered_ids`), the booster by its predictions.

The expectation was re-written once, by the code that had passed this test, when a rule of the
loop changed on purpose (issue 15: the promotion gate's and the skill intervals' bootstrap
resamples the tickers of the holdout rows instead of single rows, and the verdict rests on the
buy-side rank IC): the gate's reasons and intervals are decisions this test pins.
"""

import gzip
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feedback_loop.lib.ingest.synthetic import SyntheticConfig, SyntheticDisclosureSource, generate
from feedback_loop.lib.loop.engine import LoopData
from feedback_loop.lib.loop.replay import ReplayInputs, run_arms
from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.training.config import Hyperparameters, training_config_for

EXPECTED = Path(__file__).parent / "data" / "replay_parity_expected.json.gz"
CONFIG = SyntheticConfig.scale(2500, 80, 2.0, seed=11)
START, END = "2024-03-01", "2024-05-31"
#: The recipe `EXPECTED` was written with: one tree per class and round.
RECORDED_RECIPE = training_config_for(PortfolioPolicy(),
                                      hyperparameters=Hyperparameters(multi_strategy="one_output_per_tree"))
RETRAIN_KEYS = ("as_of", "trigger", "use_outcomes", "rows", "new_model_id", "old_model_id", "deployed", "reason")


def _records(frame: pd.DataFrame | None) -> list[dict]:
    if frame is None or not len(frame):
        return []
    frame = frame.reset_index(drop=True)
    return json.loads(frame[sorted(frame.columns)].to_json(orient="records", date_format="iso", double_precision=15))


def _plain(value):
    return json.loads(json.dumps(value, default=str))


#: A model version (in a model id too): the as-of date and the digest.
MODEL_VERSION = re.compile(r"\b(\d{8})-([0-9a-f]{8})\b")


def _numbered_ids(value, seen: dict[str, int]):
    """`value` with every model version's digest replaced by the order it was first seen in."""
    if isinstance(value, dict):
        return {key: _numbered_ids(value[key], seen) for key in sorted(value)}
    if isinstance(value, list):
        return [_numbered_ids(item, seen) for item in value]
    if isinstance(value, str):
        return MODEL_VERSION.sub(lambda m: f"{m[1]}-#{seen.setdefault(m[2], len(seen))}", value)
    return value


def replay_decisions() -> dict:
    """Every decision of every arm of the short replay, as JSON-ready records."""
    ds = generate(CONFIG)
    inputs = ReplayInputs(LoopData(ds.disclosures, ds.prices, ds.sectors, ds.politicians),
                          SyntheticDisclosureSource(CONFIG).load_disclosures(), {})
    # In two worker processes, as the CLI runs a replay on two cores.
    states = run_arms(inputs, START, END, training_config=RECORDED_RECIPE, processes=2)
    out = {}
    for arm, state in states.items():
        out[arm] = {
            "signals": _records(state.signals),
            "candidates": _records(state.candidates),
            "positions": _records(state.portfolio.positions),
            "equity": _records(state.portfolio.equity),
            "outcomes": _records(state.all_outcomes()),
            "shadow": _records(state.shadow),
            "retrains": _plain([{k: e.get(k) for k in RETRAIN_KEYS} for e in state.retrain_events]),
            "deployments": _plain(state.deployments),
            "blend_weights": _plain([(m["as_of"], m["decision"].new_weight) for m in state.blend_weight_path]),
            "skipped": _plain(state.skipped_requests),
            "drift": _plain([(r["as_of"], r["model_id"], r["report"].recommendation.value)
                             for r in state.drift_reports]),
        }
    return out


def _assert_same(actual, expected, where: str) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), where
        for key in expected:
            _assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _assert_same(a, e, f"{where}[{i}]")
    elif isinstance(expected, float) and isinstance(actual, (int, float)):
        assert np.isclose(actual, expected, rtol=1e-9, atol=1e-12), f"{where}: {actual} != {expected}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


@pytest.mark.slow
def test_short_replay_makes_the_decisions_it_made_before_the_speed_work():
    expected = _numbered_ids(json.loads(gzip.decompress(EXPECTED.read_bytes())), {})
    actual = _numbered_ids(replay_decisions(), {})
    # The expectation is not trivial: trades, retrains and promotions all happened.
    closed = expected["closed_loop"]
    assert closed["positions"] and closed["signals"] and any(r["deployed"] for r in closed["retrains"])
    _assert_same(actual, expected, "replay")


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    EXPECTED.parent.mkdir(exist_ok=True)
    EXPECTED.write_bytes(gzip.compress(json.dumps(replay_decisions(), sort_keys=True).encode(), mtime=0))
    print(f"wrote {EXPECTED}")
