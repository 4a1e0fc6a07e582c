"""Shared fixtures: a throwaway PostgreSQL cluster per test session, a fresh migrated database per test."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from feedback_loop.lib.store import db
from feedback_loop.lib.store.pgcluster import LocalCluster

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
_counter = itertools.count()


@pytest.fixture(autouse=True)
def isolated_state_dir(tmp_path, monkeypatch):
    """Model artifacts and Dagster's local files of a test go to its tmp dir, never the project's."""
    monkeypatch.setenv(db.STATE_DIR_ENV, str(tmp_path / "state"))


@pytest.fixture(autouse=True)
def no_stale_defs_state_storage():
    """Dagster's `DagsterInstance.__exit__` disposes the instance but never resets the defs-state
    storage its `__enter__` put in a context variable; after `instance_for_test` has deleted its
    folder, the next Definitions load in the same worker would read a dead SQLite file. Each test
    leaves it unset, as a fresh process has it."""
    yield
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)


@pytest.fixture(scope="session")
def pg_cluster() -> LocalCluster:
    # A mode-700 folder: a root-run suite's cluster runs as `postgres`, whose files then live elsewhere.
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="feedback-loop-pg-")))
    cluster.up()
    yield cluster
    cluster.remove()
    shutil.rmtree(cluster.state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def template_url(pg_cluster) -> str:
    """A migrated database used as the template of every per-test database."""
    url = pg_cluster.url("fl_template")
    admin = sa.create_engine(pg_cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("CREATE DATABASE fl_template"))
    admin.dispose()
    engine = sa.create_engine(url)
    db.migrate(engine)
    engine.dispose()
    return url


def _fresh_database(pg_cluster):
    """A fresh database holding the full schema (a copy of the template), dropped afterwards."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    admin = sa.create_engine(pg_cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE fl_template'))
    yield pg_cluster.url(name)
    db.engine_for.cache_clear()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def db_url(pg_cluster, template_url) -> str:
    """URL of a fresh database holding the full schema, dropped after the test."""
    yield from _fresh_database(pg_cluster)


@pytest.fixture
def second_db_url(pg_cluster, template_url) -> str:
    """A second fresh database, for tests that compare two runs of the loop."""
    yield from _fresh_database(pg_cluster)


@pytest.fixture
def dagster_db_url(pg_cluster) -> str:
    """A fresh, empty database for Dagster's own storage (dagster-postgres creates its tables)."""
    name = f"dagster_{os.getpid()}_{next(_counter)}"
    admin = sa.create_engine(pg_cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield pg_cluster.url(name)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def engine(db_url) -> sa.Engine:
    eng = sa.create_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real data folder {SHARED_DATA} is absent; integration tests over it are skipped")
    return SHARED_DATA
