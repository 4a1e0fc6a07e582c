"""Operations: the local cluster under a private folder with a password, concurrent migrations, run monitoring."""

import os
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from feedback_loop.cli import main
from feedback_loop.lib.store import db


def _refused(**connect_args) -> str:
    with pytest.raises(psycopg2.OperationalError) as refused:
        psycopg2.connect(**connect_args).close()
    return str(refused.value)


def test_cluster_in_a_mode_700_folder_comes_up_and_asks_for_its_password(monkeypatch):
    private = Path(tempfile.mkdtemp(prefix="feedback-loop-private-"))
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    monkeypatch.setenv(db.STATE_DIR_ENV, str(private / "state"))
    monkeypatch.delenv(db.DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(db.DAGSTER_URL_ENV, raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(private / "no-pgpass"))
    cluster = db.local_cluster()
    try:
        up = CliRunner().invoke(main, ["db", "up"])
        assert up.exit_code == 0, up.output
        password = cluster.password
        assert password and stat.S_IMODE(cluster.password_file.stat().st_mode) == 0o600
        if os.geteuid() == 0:  # the server's user cannot reach the private folder: its files are elsewhere
            assert not cluster.data_dir.is_relative_to(private)
            runtime = cluster.runtime_dir.stat()
            assert runtime.st_uid != 0 and stat.S_IMODE(runtime.st_mode) == 0o700

        exported = CliRunner().invoke(main, ["env"]).output
        urls = [db.app_database_url(), db.dagster_database_url(), cluster.url("postgres")]
        assert f":{password}@" in exported and all(f":{password}@" in url for url in urls)
        for url in urls:
            with sa.create_engine(url).connect() as conn:
                assert conn.execute(sa.text("SELECT current_user")).scalar() == cluster.user

        plain = {"user": cluster.user, "dbname": "feedback_loop", "port": cluster.port}
        assert "password" in _refused(host="127.0.0.1", **plain)
        assert "password" in _refused(host=str(cluster.socket_dir), **plain)
        assert "password authentication failed" in _refused(host="127.0.0.1", password="guess", **plain)
        assert "replication" in _refused(host="127.0.0.1", password=password, replication="true", **plain)
    finally:
        cluster.remove()
    assert not cluster.data_dir.exists()


def test_24_concurrent_migrations_of_a_fresh_database_all_succeed(pg_cluster, monkeypatch):
    url = pg_cluster.url(f"fresh_{os.getpid()}")
    monkeypatch.setenv(db.DATABASE_URL_ENV, url)

    def migrate_like_the_cli(_):
        engine = sa.create_engine(db.ensure_databases())
        try:
            return db.migrate(engine)
        finally:
            engine.dispose()

    try:
        with ThreadPoolExecutor(max_workers=24) as pool:
            applied = list(pool.map(migrate_like_the_cli, range(24)))
        assert sorted(name for names in applied for name in names) == [p.name for p in db.migration_files()], \
            "each migration applied exactly once"
    finally:
        admin = sa.create_engine(pg_cluster.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in (sa.engine.make_url(url).database, sa.engine.make_url(db.dagster_database_url()).database):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_the_project_instance_monitors_runs_so_a_dead_run_is_failed(dagster_db_url, tmp_path, monkeypatch):
    monkeypatch.setenv(db.DAGSTER_URL_ENV, dagster_db_url)
    monkeypatch.setenv(db.STATE_DIR_ENV, str(tmp_path))
    instance = dg.DagsterInstance.from_config(str(db.PROJECT_ROOT))
    try:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_resume_run_attempts == 0, "the default launcher cannot resume a run"
        assert 0 < instance.run_monitoring_start_timeout_seconds <= 300
        assert 0 < instance.run_monitoring_cancel_timeout_seconds <= 300
    finally:
        instance.dispose()
