"""The replay as a product feature: its own schemas, every arm, a report; the same command on real files."""

import json

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from feedback_loop.cli import main
from feedback_loop.lib.ingest.synthetic import SyntheticConfig, SyntheticDisclosureSource, generate
from feedback_loop.lib.loop.engine import CLOSED_LOOP_ARM, HEURISTIC_ARM, LoopData
from feedback_loop.lib.loop.replay import ReplayInputs, ReplayTarget, run_arms


def test_replay_writes_each_arm_into_its_own_schema_never_the_operating_tables(db_url, tmp_path):
    config = SyntheticConfig.scale(1500, 60, 1.5, seed=3)
    ds = generate(config)
    inputs = ReplayInputs(LoopData(ds.disclosures, ds.prices, ds.sectors, ds.politicians),
                          SyntheticDisclosureSource(config).load_disclosures(), {})
    states = run_arms(inputs, "2024-03-01", "2024-03-29", arms=(HEURISTIC_ARM, CLOSED_LOOP_ARM),
                      processes=2, persist_to=ReplayTarget(db_url, "t1", tmp_path / "models"))
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        def count(table):
            return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
        assert count("public.trading_signals") == 0 and count("public.disclosures") == 0
        assert count("replay_t1_heuristic_only.trading_signals") == len(states["heuristic_only"].signals)
        assert count("replay_t1_heuristic_only.ml_models") == 0
        assert count("replay_t1_closed_loop.ml_models") == len(states["closed_loop"].models)
        assert count("replay_t1_closed_loop.ml_models WHERE status = 'active'") == 1
        assert count("replay_t1_closed_loop.disclosures") == len(ds.disclosures)
    engine.dispose()


def test_arms_in_worker_processes_report_every_day_and_end_in_the_same_state():
    config = SyntheticConfig.scale(1500, 60, 1.5, seed=3)
    ds = generate(config)
    inputs = ReplayInputs(LoopData(ds.disclosures, ds.prices, ds.sectors, ds.politicians), None, {})
    seen: dict[str, list] = {}

    def progress(arm, days):
        seen[arm] = []
        return lambda day, figures: seen[arm].append((day, figures["trades"]))

    arms = (HEURISTIC_ARM, CLOSED_LOOP_ARM)
    parallel = run_arms(inputs, "2024-03-01", "2024-03-29", arms=arms, processes=2, progress=progress)
    alone = run_arms(inputs, "2024-03-01", "2024-03-29", arms=arms)
    assert list(parallel) == ["heuristic_only", "closed_loop"]
    for arm in ("heuristic_only", "closed_loop"):
        days = [day for day, _ in seen[arm]]
        assert days == sorted(days) and len(days) == len(parallel[arm].portfolio.equity) > 15
        pd.testing.assert_frame_equal(parallel[arm].signals, alone[arm].signals)
        pd.testing.assert_frame_equal(parallel[arm].portfolio.equity, alone[arm].portfolio.equity)
    assert parallel["closed_loop"].deployments == alone["closed_loop"].deployments


@pytest.mark.realdata
@pytest.mark.slow
def test_replay_command_runs_on_the_real_files(shared_data, tmp_path):
    congress = shared_data / "congress"
    args = ["replay", "--start", "2020-03-02", "--end", "2020-04-17", "--report", str(tmp_path), "--no-persist",
            "--disclosures", str(congress / "house_ptr_transactions.csv.gz"),
            "--disclosures", str(congress / "senate_ptr_transactions.csv.gz"),
            "--legislators", str(congress / "legislators-current.csv.gz"),
            "--legislators", str(congress / "legislators-historical.csv.gz"),
            "--prices", str(shared_data / "prices" / "daily_prices.csv.gz")]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["arms"]) == {"heuristic_only", "fixed_model", "closed_loop"}
    assert report["spy_buy_and_hold"]["total_return_pct"] is not None
    assert all(report["arms"][arm]["sharpe"] is not None for arm in report["arms"])
    assert (tmp_path / "report.md").read_text().count("closed_loop") >= 1
    assert (tmp_path / "equity_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
