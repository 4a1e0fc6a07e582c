"""The project as an operator runs it: dagster-webserver and dagster-daemon on workspace.yaml, the project's
dagster.yaml (Postgres storage, queued runs), driven through the GraphQL API.

Both servers listen on loopback only, are bounded in time, and are always stopped by the test.
"""

import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from feedback_loop.definitions import defs as project_defs
from feedback_loop.lib.store import db
from feedback_loop_tests.processes import free_port, stop_process_group

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAY = "2024-03-01"
SERVER_START_TIMEOUT = 90
RUN_TIMEOUT = 180

WORKSPACE_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
REPOSITORIES_QUERY = """
{ repositoriesOrError { __typename
    ... on PythonError { message }
    ... on RepositoryConnection { nodes {
        name location { name }
        jobs { name }
        schedules { name cronSchedule executionTimezone scheduleState { status } }
        sensors { name sensorState { status } }
        assetNodes { assetKey { path } assetChecksOrError { __typename ... on AssetChecks { checks { name } } } }
    } } } }
"""
LAUNCH_MUTATION = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message } } }
"""
RUN_QUERY = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename
    ... on Run { status stats { __typename ... on RunStatsSnapshot { materializations stepsFailed } } } } }
"""


class Servers:
    """dagster-webserver + dagster-daemon, started from the project root, logs under tmp_path."""

    def __init__(self, env: dict, tmp_path: Path):
        self.env, self.tmp_path, self.port = env, tmp_path, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str]) -> None:
        with open(self.tmp_path / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
            self.processes[name] = subprocess.Popen(
                [str(BIN / name), *args], cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)

    def stop(self) -> None:
        for process in self.processes.values():
            stop_process_group(process)

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n" + (self.tmp_path / f"{name}.log").read_text(errors="replace")[-4000:]
                         for name in self.processes)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}},
                                 timeout=60)
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                assert process.poll() is None, f"{name} exited with {process.returncode}\n{self.logs()}"
            try:
                if requests.get(f"{self.url}/server_info", timeout=5).ok:
                    entries = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
                    if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                        errors = [e["locationOrLoadError"] for e in entries
                                  if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
                        assert not errors, errors
                        return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise AssertionError(f"the webserver did not load the workspace within {SERVER_START_TIMEOUT}s\n{self.logs()}")


def test_webserver_serves_the_project_and_runs_a_loop_day(db_url, dagster_db_url, tmp_path, monkeypatch):
    monkeypatch.setenv(db.DATABASE_URL_ENV, db_url)
    monkeypatch.setenv(db.DAGSTER_URL_ENV, dagster_db_url)
    monkeypatch.setenv("FEEDBACK_LOOP_SYNTHETIC_SCALE", "1500,60,1.5")
    env = db.dagster_environment()
    assert env["DAGSTER_HOME"] == str(PROJECT_ROOT)

    loaded = project_defs()
    repository_def = loaded.get_repository_def()
    expected_assets = {spec.key.to_user_string() for spec in loaded.resolve_all_asset_specs()}
    expected_checks = {key.to_user_string() for key in loaded.resolve_asset_graph().asset_check_keys}
    expected_jobs = {job.name for job in repository_def.get_all_jobs() if not job.name.startswith("__")}
    daily_assets = loaded.resolve_job_def("daily_loop_job").asset_layer.selected_asset_keys

    servers = Servers(env, tmp_path)
    try:
        servers.start("dagster-webserver", ["-h", "127.0.0.1", "-p", str(servers.port), "-w", "workspace.yaml"])
        # The project's dagster.yaml queues runs: the daemon's run coordinator starts them.
        servers.start("dagster-daemon", ["run", "-w", "workspace.yaml"])
        servers.wait_until_up()

        repositories = servers.graphql(REPOSITORIES_QUERY)["repositoriesOrError"]
        assert repositories["__typename"] == "RepositoryConnection", repositories
        (repo,) = repositories["nodes"]
        served_assets = {"/".join(node["assetKey"]["path"]) for node in repo["assetNodes"]}
        served_checks = {f"{'/'.join(node['assetKey']['path'])}:{check['name']}"
                         for node in repo["assetNodes"]
                         if node["assetChecksOrError"]["__typename"] == "AssetChecks"
                         for check in node["assetChecksOrError"]["checks"]}
        assert served_assets == expected_assets
        assert served_checks == expected_checks
        assert {job["name"] for job in repo["jobs"] if not job["name"].startswith("__")} == expected_jobs
        schedules = {s["name"]: s for s in repo["schedules"]}
        assert set(schedules) == {s.name for s in repository_def.schedule_defs}
        for schedule in repository_def.schedule_defs:
            served = schedules[schedule.name]
            assert (served["cronSchedule"], served["executionTimezone"]) == (
                schedule.cron_schedule, schedule.execution_timezone)
            assert served["scheduleState"]["status"] == "RUNNING", schedule.name
        sensors = {s["name"]: s for s in repo["sensors"]}
        assert set(sensors) == {s.name for s in repository_def.sensor_defs}
        assert all(s["sensorState"]["status"] == "RUNNING" for s in sensors.values()), sensors

        # One loop day, launched as from the UI's partition picker (in one process: 2 cores).
        launched = servers.graphql(LAUNCH_MUTATION, {"params": {
            "selector": {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"],
                         "jobName": "daily_loop_job"},
            "runConfigData": {"execution": {"config": {"in_process": {}}}},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": DAY}]},
        }})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]

        deadline = time.monotonic() + RUN_TIMEOUT
        seen = set()
        while True:
            run = servers.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]
            seen.add(run["status"])
            if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                break
            assert time.monotonic() < deadline, f"run still {run['status']} after {RUN_TIMEOUT}s\n{servers.logs()}"
            time.sleep(1)
        assert run["status"] == "SUCCESS", f"{run}\n{servers.logs()}"
        assert "QUEUED" in seen or "STARTING" in seen or "STARTED" in seen
        assert run["stats"]["stepsFailed"] == 0
        assert run["stats"]["materializations"] == len(daily_assets)
    finally:
        servers.stop()

    for name, process in servers.processes.items():
        assert process.poll() is not None, f"{name} still running"
    # The run wrote the loop's state into the test database and its record into Dagster's.
    with sa.create_engine(db_url).connect() as conn:
        disclosures = conn.execute(sa.text("SELECT count(*) FROM disclosures")).scalar()
        signals = conn.execute(sa.text("SELECT count(*) FROM trading_signals WHERE as_of = :d"), {"d": DAY}).scalar()
    assert disclosures > 0 and signals > 0
    with dg.DagsterInstance.from_config(str(PROJECT_ROOT)) as instance:
        record = instance.get_run_by_id(run_id)
        assert record.status == dg.DagsterRunStatus.SUCCESS
        assert record.tags["dagster/partition"] == DAY
