"""`feedback-loop bench` at a tiny scale: every stage runs, reports its figures, and leaves the app database alone."""

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from feedback_loop import bench
from feedback_loop.cli import main
from feedback_loop.lib.store import db
from feedback_loop.lib.store.pgcluster import create_database_if_missing

STAGES = [
    "generate", "parse", "ingest_disclosures", "ingest_prices",
    "ingest_prices_reference", "features", "features_reference", "labels",
    "training", "promotion", "batch_scoring", "batch_signals", "single_scoring", "daily_loop_step", "replay_day",
]


@pytest.fixture(scope="module")
def result(tmp_path_factory, pg_cluster):
    """One tiny bench run with a fresh app database on the test cluster (the bench makes its own next to it)."""
    app_url = pg_cluster.url("bench_app")
    create_database_if_missing(app_url)
    db.migrate(db.engine_for(app_url))
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(db.DATABASE_URL_ENV, app_url)
        patch.setenv(db.STATE_DIR_ENV, str(out.parent / "state"))
        run = CliRunner().invoke(main, ["bench", "--disclosures", "3000", "--tickers", "40", "--years", "2",
                                        "--repeats", "1", "--json", str(out)])
    assert run.exit_code == 0, run.output
    return json.loads(out.read_text()), run.output, app_url


def test_every_stage_reports_time_and_rows(result):
    report, output, _ = result
    assert list(report["stages"]) == STAGES
    for name in STAGES:
        entry = report["stages"][name]
        assert entry["rows"] > 0, name
        if name == "single_scoring":
            assert 0 < entry["p50_ms"] <= entry["p99_ms"]
        else:
            assert entry["seconds"] > 0 and entry["runs_s"]
            assert entry["peak_rss_mb"] > 0
    assert report["scale"] == {"disclosures": 3000, "tickers": 40, "years": 2.0, "seed": 7,
                               "start": "2024-01-01", "end": "2025-12-31"}
    assert report["peak_memory_mb"] >= max(e.get("peak_rss_mb", 0) for e in report["stages"].values())
    assert set(report["targets"]) == set(bench.TARGETS) - {"max_growth_1m_over_100k"}
    assert "features" in output and "target" in output


def test_the_figures_describe_the_same_data(result):
    stages = result[0]["stages"]
    parse = stages["parse"]
    assert parse["rows"] == parse["accepted"] + parse["rejected"] and parse["accepted"] > 2500
    assert stages["ingest_disclosures"]["by_table"]["disclosures"] == parse["accepted"]
    assert stages["ingest_prices"]["rows"] >= stages["generate"]["price_rows"]
    reference = stages["ingest_prices_reference"]
    assert reference["rows"] == stages["ingest_prices"]["rows"]
    assert reference["ingest_ratio"] == pytest.approx(stages["ingest_prices"]["seconds"] / reference["seconds"], rel=0.01)
    assert stages["features_reference"]["rows"] == stages["features"]["rows"] == stages["labels"]["rows"]
    assert stages["features_reference"]["agreement"]["equal"], stages["features_reference"]["agreement"]
    assert stages["batch_scoring"]["rows"] == bench.BATCH_SIGNALS
    assert sum(stages["batch_scoring"]["calls"].values()) == bench.BATCH_SIGNALS
    assert 0 < stages["batch_signals"]["signals_generated"] <= stages["batch_signals"]["heuristic_candidates"]
    assert stages["training"]["boosters"] > 1, "the challenger was validated on folds, as the training job does"
    steps = stages["daily_loop_step"]["step_seconds"]
    assert {"disclosures", "market_prices", "ticker_features", "trading_signals", "portfolio_positions"} <= set(steps)


def test_the_app_database_is_untouched(result):
    _, _, app_url = result
    engine = sa.create_engine(app_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM disclosures")).scalar() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM ml_models")).scalar() == 0
    engine.dispose()


def test_scaling_summary_reports_growth_per_stage():
    def run(n, seconds, p50):
        return {"scale": {"disclosures": n}, "stages": {"features": {"seconds": seconds, "rows": n},
                                                         "single_scoring": {"p50_ms": p50, "rows": 1000}}}

    summary = bench.scaling_summary([run(10, 1.0, 2.0), run(100, 4.0, 2.0), run(1000, 60.0, 3.0)])
    assert summary["sizes"] == [10, 100, 1000]
    assert summary["growth"]["features"]["ratios"] == [4.0, 15.0]
    assert summary["growth"]["single_scoring"] == {"metric": "p50_ms", "values": [2.0, 2.0, 3.0],
                                                   "ratios": [1.0, 1.5], "rows": [1000, 1000, 1000]}
