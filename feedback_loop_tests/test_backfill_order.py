"""A multi-day backfill of the daily loop, launched as the UI launches it, runs its days in date order.

The backfill goes through Dagster's own machinery end to end: the `launchPartitionBackfill` GraphQL
mutation with the parameters the UI's "Materialize" dialog sends for an asset selection over a
range of partitions, the asset backfill daemon's iterations, the project's queued run coordinator
(dagster.yaml: up to 4 runs at once) and its default run launcher, which starts each run as its own
process from a code server of the project. The rows it leaves must equal those of materializing
the same days one by one, in date order, in a second database.
"""

import itertools
import logging
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.definitions import defs as project_defs
from feedback_loop.lib.store import db
from feedback_loop_tests.harness import SCALE, SYNTHETIC_SEED, definitions_for
from feedback_loop_tests.processes import project_code_server

PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: Wednesday to Monday: four trading days around a weekend (weekend days are partitions too).
DAYS = [d.strftime("%Y-%m-%d") for d in pd.date_range("2023-06-07", "2023-06-12")]
#: Short holdings and shadow horizon, so that a few days close positions and resolve shadow outcomes.
SHORT_POLICY = "UPDATE reference_portfolio_config SET hold_days = 2"
PRODUCT_TABLES = {  # table: the columns that order its rows
    "trading_signals": ["signal_id"],
    "portfolio_positions": ["position_id"],
    "portfolio_equity": ["date"],
    "signal_outcomes": ["position_id"],
    "shadow_outcomes": ["signal_id"],
}
#: When a row was written and how long scoring took differ between any two runs of the same day.
VOLATILE_COLUMNS = {"created_at", "updated_at"}
#: A liveness bound, not a speed target: the suite runs the slow tests two at a time on two cores.
BACKFILL_TIMEOUT_SECONDS = 600


@pytest.fixture
def backfill_instance(db_url, dagster_db_url, monkeypatch):
    """The project's dagster.yaml on test databases; the project's own resources read the same
    environment in the code server and in every run worker: the test database, the harness's data."""
    monkeypatch.setenv(db.DATABASE_URL_ENV, db_url)
    monkeypatch.setenv(db.DAGSTER_URL_ENV, dagster_db_url)
    monkeypatch.setenv("FEEDBACK_LOOP_SOURCE", "synthetic")
    monkeypatch.setenv("FEEDBACK_LOOP_SYNTHETIC_SEED", str(SYNTHETIC_SEED))
    monkeypatch.setenv("FEEDBACK_LOOP_SYNTHETIC_SCALE", SCALE)
    instance = dg.DagsterInstance.from_config(str(PROJECT_ROOT))
    yield instance
    instance.dispose()


def _short_policy(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(SHORT_POLICY))
    engine.dispose()


def _daily_loop_asset_keys() -> list[dg.AssetKey]:
    return sorted(project_defs().resolve_job_def("daily_loop_job").asset_layer.executable_asset_keys)


def _launch_ui_backfill(workspace, asset_keys: list[dg.AssetKey]) -> str:
    """The mutation the UI's Materialize dialog sends for an asset selection over a partition range
    (run config as the dialog's config editor would add it: one process per run, not per step)."""
    from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION
    from dagster_graphql.test.utils import execute_dagster_graphql

    result = execute_dagster_graphql(workspace.create_request_context(), LAUNCH_PARTITION_BACKFILL_MUTATION, {
        "backfillParams": {
            "assetSelection": [key.to_graphql_input() for key in asset_keys],
            "partitionNames": DAYS,
            "fromFailure": False,
            "tags": [],
            "runConfigData": {"execution": {"config": {"in_process": {}}}},
        }})
    launched = result.data["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    return launched["backfillId"]


def _run_daemons_until_done(workspace, instance, backfill_id: str) -> None:
    """The backfill daemon and the run queue daemon, tick after tick, as `dagster-daemon run` does."""
    from dagster._core.execution.backfill import BulkActionStatus
    from dagster._daemon.backfill import execute_backfill_iteration
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    logger = logging.getLogger("test_backfill_order")
    deadline = time.monotonic() + BACKFILL_TIMEOUT_SECONDS
    with QueuedRunCoordinatorDaemon(interval_seconds=1) as queue:
        while time.monotonic() < deadline:
            list(execute_backfill_iteration(workspace, logger))
            list(queue.run_iteration(workspace))
            status = instance.get_backfill(backfill_id).status
            if status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING):
                assert status == BulkActionStatus.COMPLETED_SUCCESS, status
                return
            time.sleep(1)
    raise AssertionError(f"backfill {backfill_id} not done in {BACKFILL_TIMEOUT_SECONDS}s")


def _backfill_runs(instance, backfill_id: str) -> list:
    return instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))


def _product_rows(url: str) -> dict[str, pd.DataFrame]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = {}
        for table, keys in PRODUCT_TABLES.items():
            frame = pd.read_sql(sa.text(f"SELECT * FROM {table} ORDER BY {', '.join(keys)}"), conn)
            rows[table] = frame.drop(columns=[c for c in frame.columns if c in VOLATILE_COLUMNS])
    engine.dispose()
    return rows


@pytest.mark.slow
def test_ui_backfill_of_the_daily_loop_runs_days_in_date_order(backfill_instance, db_url, second_db_url,
                                                                 tmp_path):
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    instance = backfill_instance
    asset_keys = _daily_loop_asset_keys()
    assert dg.AssetKey("portfolio_positions") in asset_keys and dg.AssetKey("feature_drift") in asset_keys
    _short_policy(db_url)
    _short_policy(second_db_url)

    # The same days one by one, in date order, in the reference database.
    definitions = definitions_for(second_db_url, tmp_path / "reference")
    with dg.instance_for_test() as reference_instance:
        for day in DAYS:
            assert definitions.resolve_job_def("daily_loop_job").execute_in_process(
                instance=reference_instance, partition_key=day).success, day

    with project_code_server(PROJECT_ROOT, tmp_path) as workspace_file, \
            WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace_file)])) as workspace:
        backfill_id = _launch_ui_backfill(workspace, asset_keys)
        _run_daemons_until_done(workspace, instance, backfill_id)

    # (a) portfolio_positions materialized day after day, in date order.
    materializations = instance.fetch_materializations(dg.AssetKey("portfolio_positions"), limit=100,
                                                       ascending=True).records
    assert [m.partition_key for m in materializations] == DAYS

    # (b) no two runs holding portfolio_positions overlapped in time.
    runs = [r for r in _backfill_runs(instance, backfill_id)
            if dg.AssetKey("portfolio_positions") in (r.dagster_run.asset_selection or set())]
    assert len(runs) == len(DAYS), [r.dagster_run.asset_selection for r in runs]
    spans = sorted((r.start_time, r.end_time, r.dagster_run.tags["dagster/partition"]) for r in runs)
    assert [day for _, _, day in spans] == DAYS
    for (_, end, day), (start, _, next_day) in itertools.pairwise(spans):
        assert start >= end, f"the run of {next_day} started before the run of {day} ended"

    # (c) the same rows as the days materialized one by one.
    backfilled, reference = _product_rows(db_url), _product_rows(second_db_url)
    for table in PRODUCT_TABLES:
        assert len(reference[table]), f"{table}: the days wrote no rows, nothing is compared"
        pd.testing.assert_frame_equal(backfilled[table], reference[table], obj=table)
