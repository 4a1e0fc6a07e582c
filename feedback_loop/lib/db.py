"""Database location, engine and ordered SQL migrations.

The application database is `FEEDBACK_LOOP_DATABASE_URL` when set; otherwise the project's
own local cluster (see `pgcluster`). Dagster's storage lives in a separate database of the
same server.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa

from feedback_loop.lib.pgcluster import DAGSTER_DATABASE, LocalCluster, create_database_if_missing

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = PROJECT_ROOT / "sql"
DATABASE_URL_ENV = "FEEDBACK_LOOP_DATABASE_URL"
DAGSTER_URL_ENV = "FEEDBACK_LOOP_DAGSTER_DATABASE_URL"
STATE_DIR_ENV = "FEEDBACK_LOOP_STATE_DIR"


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV, PROJECT_ROOT / ".feedback_loop")).resolve()


def local_cluster() -> LocalCluster:
    return LocalCluster(state_dir())


def uses_external_database() -> bool:
    return bool(os.environ.get(DATABASE_URL_ENV))


def normalize_url(url: str) -> str:
    """Use the psycopg2 driver explicitly (SQLAlchemy 2.1 no longer defaults to it)."""
    parsed = sa.engine.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def app_database_url() -> str:
    if uses_external_database():
        return normalize_url(os.environ[DATABASE_URL_ENV])
    return local_cluster().url()


def dagster_database_url() -> str:
    if os.environ.get(DAGSTER_URL_ENV):
        return normalize_url(os.environ[DAGSTER_URL_ENV])
    if uses_external_database():
        app = sa.engine.make_url(app_database_url())
        return app.set(database=f"{app.database}_dagster").render_as_string(hide_password=False)
    return local_cluster().url(DAGSTER_DATABASE)


def ensure_databases() -> str:
    """Start the local cluster unless an external database is configured; return the app URL."""
    if uses_external_database():
        create_database_if_missing(app_database_url())
        create_database_if_missing(dagster_database_url())
        return app_database_url()
    return local_cluster().up()


@lru_cache(maxsize=8)
def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(normalize_url(url), pool_pre_ping=True, future=True)


def migration_files() -> list[Path]:
    return sorted(SQL_DIR.glob("[0-9]*.sql"))


def migrate(engine: sa.Engine) -> list[str]:
    """Apply every not-yet-applied file of sql/ in order; each in its own transaction."""
    applied_now: list[str] = []
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " filename TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ))
    for path in migration_files():
        with engine.begin() as conn:
            # Serialize concurrent migrators (two test workers, CLI + Dagster).
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(727274)"))
            done = conn.execute(
                sa.text("SELECT 1 FROM schema_migrations WHERE filename = :f"), {"f": path.name}
            ).scalar()
            if done:
                continue
            conn.exec_driver_sql(path.read_text())
            conn.execute(sa.text("INSERT INTO schema_migrations (filename) VALUES (:f)"), {"f": path.name})
            applied_now.append(path.name)
    return applied_now


def _db_value(value):
    """Convert pandas/numpy scalars to what psycopg2 adapts (NaN/NaT -> NULL, dict/list -> JSON)."""
    import json

    import numpy as np
    import pandas as pd

    if isinstance(value, (dict, list)):
        return json.dumps(value, default=float)
    if value is None or (not isinstance(value, (str, bytes)) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, np.generic):
        return value.item()
    return value


def upsert_frame(conn: sa.Connection, table: str, frame, key_columns: list[str]) -> int:
    """INSERT ... ON CONFLICT (key) DO UPDATE every row of `frame`; returns rows written.

    Re-running with the same frame leaves the table unchanged (idempotent materializations).
    Rows go in multi-row VALUES pages (psycopg2's execute_values) on the connection's own
    transaction: row-by-row executemany made bulk writes (a replay's prices) take minutes.
    """
    from psycopg2.extras import execute_values

    if frame is None or len(frame) == 0:
        return 0
    columns = list(frame.columns)
    updates = [c for c in columns if c not in key_columns]
    set_clause = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in updates)
    conflict = "DO UPDATE SET " + set_clause if updates else "DO NOTHING"
    statement = (
        f'INSERT INTO {table} ({", ".join(chr(34) + c + chr(34) for c in columns)}) VALUES %s '
        f'ON CONFLICT ({", ".join(key_columns)}) {conflict}'
    )
    rows = [tuple(_db_value(v) for v in record) for record in frame.itertuples(index=False, name=None)]
    with conn.connection.driver_connection.cursor() as cursor:
        execute_values(cursor, statement, rows, page_size=2000)
    return len(rows)


def schema_engine(url: str, schema: str) -> sa.Engine:
    """An engine whose tables live in `schema` (created if missing): migrations and queries
    with unqualified names land there. Used to keep each replay apart from the operating tables."""
    if not schema.replace("_", "").isalnum():
        raise ValueError(f"invalid schema name {schema!r}")
    with engine_for(url).begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    return sa.create_engine(normalize_url(url), connect_args={"options": f"-csearch_path={schema}"})
