"""The whole Definitions: they load and validate, every asset is documented, every job carries its gates.

`dg check defs` is run as the operator would, from the project root, against the test cluster.
"""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from feedback_loop.definitions import defs as project_defs
from feedback_loop.lib.store import db
from feedback_loop.lib.training.labels import CHECK_DESCRIPTIONS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RETRAIN_JOBS = ("market_retrain_job", "outcome_retrain_job")


@pytest.fixture(scope="module")
def loaded() -> dg.Definitions:
    return project_defs()


def test_the_loop_closes_in_lineage(loaded):
    """The model in service and the blend weight in force are inputs of trading_signals: outcomes feed
    training and the blend weight, which feed the next signals; blend_weight of D-1 feeds signals of D."""
    graph = loaded.resolve_asset_graph()

    def upstream(key: str) -> set[str]:
        return {k.to_user_string() for k in graph.get_ancestor_asset_keys(dg.AssetKey(key))}

    assert {"promotion_decision", "champion_in_service", "blend_weight", "signal_outcomes",
            "outcome_labeled_set", "challenger_model"} <= upstream("trading_signals")
    mapping = graph.get_partition_mapping(dg.AssetKey("trading_signals"), dg.AssetKey("blend_weight"))
    assert isinstance(mapping, dg.TimeWindowPartitionMapping)
    assert (mapping.start_offset, mapping.end_offset) == (-1, -1)
    assert graph.toposorted_asset_keys  # acyclic


def _checks_of_job(job: dg.JobDefinition) -> set[dg.AssetCheckKey]:
    """The asset checks a job executes (its asset graph holds only what the job selects)."""
    return set(job.asset_layer.asset_graph.asset_check_keys)


def test_definitions_load_and_validate(loaded):
    dg.Definitions.validate_loadable(loaded)
    repository = loaded.get_repository_def()  # resolves every job, schedule, sensor and resource binding
    jobs = {job.name for job in repository.get_all_jobs() if not job.name.startswith("__")}
    assert jobs == {"daily_loop_job", "blend_weight_job", "market_retrain_job", "outcome_retrain_job",
                    "loop_history_job"}
    assert {s.name for s in repository.schedule_defs} == {
        "daily_loop_schedule", "blend_weight_schedule", "market_retrain_schedule", "outcome_retrain_schedule"}
    assert {s.name for s in repository.sensor_defs} == {
        "new_outcomes_sensor", "feature_drift_sensor", "degradation_sensor", "run_failure_sensor"}
    # Every schedule and sensor targets a job of these Definitions (the failure sensor targets none).
    for target in [*repository.schedule_defs, *repository.sensor_defs]:
        if target.name != "run_failure_sensor":
            assert target.job_name in jobs, target.name
    # The resources every asset, check and sensor needs are all bound.
    resources = set(repository.get_top_level_resources())
    assert {"database", "disclosure_source", "price_source", "io_manager"} <= resources


def test_every_asset_has_a_description_group_owners_and_kinds(loaded):
    specs = loaded.resolve_all_asset_specs()
    assert len(specs) >= 16
    undocumented = {
        spec.key.to_user_string(): problem
        for spec in specs
        for problem in (
            "description" if not (spec.description or "").strip() else None,
            "group" if spec.group_name in (None, "default") else None,
            "owners" if not spec.owners else None,
            "kinds" if not spec.kinds else None,
        )
        if problem
    }
    assert undocumented == {}
    assert {spec.group_name for spec in specs} == {"ingest", "signals", "portfolio", "training", "monitoring"}


def test_every_job_runs_the_checks_of_the_assets_it_materializes(loaded):
    graph = loaded.resolve_asset_graph()
    all_checks = set(graph.asset_check_keys)
    assert all_checks, "the project defines asset checks"
    for job in loaded.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue
        materialized = job.asset_layer.selected_asset_keys
        expected = {key for key in all_checks if key.asset_key in materialized}
        assert _checks_of_job(job) == expected, job.name


def test_daily_loop_job_runs_every_blocking_ingest_check(loaded):
    graph = loaded.resolve_asset_graph()
    ingest_assets = {spec.key for spec in loaded.resolve_all_asset_specs() if spec.group_name == "ingest"}
    ingest_checks = {key for key in graph.asset_check_keys if key.asset_key in ingest_assets}
    # The ingest gates exist, are blocking, and all run in the daily job.
    assert {key.asset_key.to_user_string() for key in ingest_checks} == {"disclosures", "market_prices"}
    assert all(graph.get_check_spec(key).blocking for key in ingest_checks)
    daily = loaded.resolve_job_def("daily_loop_job")
    assert ingest_checks <= _checks_of_job(daily)
    # They are real steps of the job's execution plan (an op per @asset_check).
    from dagster._core.execution.api import create_execution_plan

    steps = set(create_execution_plan(daily).step_keys_to_execute)
    assert {f"{key.asset_key.to_user_string()}_{key.name}" for key in ingest_checks} <= steps


@pytest.mark.parametrize("job_name", RETRAIN_JOBS)
def test_retrain_jobs_run_the_blocking_training_checks(loaded, job_name):
    job = loaded.resolve_job_def(job_name)
    gate = dg.AssetKey("blended_training_set")
    training_checks = {key for key in _checks_of_job(job) if key.asset_key == gate}
    assert {key.name for key in training_checks} == set(CHECK_DESCRIPTIONS)
    graph = job.asset_layer.asset_graph
    assert all(graph.get_check_spec(key).blocking for key in training_checks)
    # The gate and what it protects are materialized by the same run.
    protected = {gate, dg.AssetKey("challenger_model"), dg.AssetKey("promotion_decision")}
    assert protected <= job.asset_layer.selected_asset_keys


@pytest.mark.slow
def test_dg_check_defs_passes_from_the_project_root(db_url, dagster_db_url, tmp_path, monkeypatch):
    monkeypatch.setenv(db.DATABASE_URL_ENV, db_url)
    monkeypatch.setenv(db.DAGSTER_URL_ENV, dagster_db_url)
    env = db.dagster_environment()
    assert env["DAGSTER_HOME"] == str(PROJECT_ROOT)
    assert env[db.DAGSTER_URL_ENV] == db.normalize_url(dagster_db_url)
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parents[1])
    dg_cli = Path(sys.executable).with_name("dg")
    result = subprocess.run([str(dg_cli), "check", "defs"], check=False, cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout
    # It really used the project's instance: dagster-postgres created its tables in the test database.
    with sa.create_engine(dagster_db_url).connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {"runs", "event_logs"} <= tables
