"""Proof in a real browser: a short history recorded through Dagster, then `feedback-loop dev` on it and
the lineage, the partitions page and the checks page in headless Chromium (`ui_proof.capture`), each
held to what the history recorded and what the project defines."""

import dagster as dg
import pytest
import sqlalchemy as sa

from feedback_loop.definitions import defs as project_defs
from feedback_loop.lib.frames import MARKET_TICKER
from feedback_loop.lib.store import db
from feedback_loop_tests import ui_proof
from feedback_loop_tests.harness import SCALE, SYNTHETIC_SEED

pytestmark = pytest.mark.slow

START, END = "2024-03-01", "2024-03-08"
INGEST = [dg.AssetKey(k) for k in ("politicians", "disclosures", "market_prices")]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_the_ui_shows_the_recorded_history(db_url, dagster_db_url, tmp_path, monkeypatch):
    monkeypatch.setenv(db.DATABASE_URL_ENV, db_url)
    monkeypatch.setenv(db.DAGSTER_URL_ENV, dagster_db_url)
    monkeypatch.setenv("FEEDBACK_LOOP_SYNTHETIC_SCALE", SCALE)
    monkeypatch.setenv("FEEDBACK_LOOP_SYNTHETIC_SEED", str(SYNTHETIC_SEED))
    loaded = project_defs()
    with dg.DagsterInstance.from_config(str(db.PROJECT_ROOT)) as instance:
        assert loaded.resolve_job_def("daily_loop_job").execute_in_process(
            instance=instance, partition_key=END, asset_selection=INGEST).success
        assert loaded.resolve_job_def("loop_history_job").execute_in_process(
            instance=instance, run_config={"ops": {"step_history_days": {"config": {"start": START, "end": END}}}},
        ).success
        recorded = instance.get_materialized_partitions(dg.AssetKey(ui_proof.ASSET))
    with sa.create_engine(db_url).connect() as conn:
        trading_days = conn.execute(sa.text(
            "SELECT count(*) FROM prices WHERE ticker = :t AND date BETWEEN :s AND :e"),
            {"t": MARKET_TICKER, "s": START, "e": END}).scalar()
    asset_key = dg.AssetKey(ui_proof.ASSET)
    defined_checks = sorted(k.name for k in loaded.resolve_asset_graph().asset_check_keys if k.asset_key == asset_key)
    assert defined_checks, f"{ui_proof.ASSET} defines no asset checks"

    with ui_proof.dev_server(db.dagster_environment(), tmp_path / "dev.log") as url:
        proof = ui_proof.capture(url, tmp_path / "screenshots")

    # The partitions page counts every recorded trading day (the ending day's ingest has no signals).
    assert trading_days >= 5
    assert proof.ui_materialized == proof.materialized == len(recorded) == proof.materialized_in_year
    assert len(recorded) == trading_days
    assert proof.checks == defined_checks
    assert proof.assets == sorted(spec.key.to_user_string() for spec in loaded.resolve_all_asset_specs())
    assert proof.loop_inputs_upstream == sorted(ui_proof.LOOP_INPUTS)
    assert [p.name for p in proof.screenshots] == ["lineage.png", "partitions.png", "checks.png"]
    for png in proof.screenshots:
        data = png.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000, png
