"""Database location, engine and ordered SQL migrations.

The application database is `FEEDBACK_LOOP_DATABASE_URL` when set; otherwise the project's
own local cluster (see `pgcluster`). Dagster's storage lives in a separate database of the
same server.
"""

from __future__ import annotations

import io
import os
import uuid
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


#: Rows per COPY statement: bounds the CSV text held in memory at once.
COPY_CHUNK_ROWS = 200_000
_INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})
#: Column types without an equality operator: their rows are rewritten even when unchanged.
_NO_EQUALITY_TYPES = frozenset({"json", "xml", "point"})
#: Object-column kinds (`pandas.api.types.infer_dtype`) pyarrow converts as they are; other
#: kinds (dicts, lists, mixtures) are written value by value as text, dicts/lists as JSON.
_ARROW_KINDS = frozenset({
    "empty", "string", "boolean", "integer", "floating", "mixed-integer-float", "date", "datetime",
    "datetime64",
})


def _column_types(cursor, table: str) -> dict[str, str]:
    """Column name -> SQL type of `table` (resolved through the search_path)."""
    cursor.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (table,),
    )
    return dict(cursor.fetchall())


def _as_text(value) -> str:
    """A value of a mixed object column as the database reads it: dict/list -> JSON text."""
    import json

    if isinstance(value, (dict, list)):
        return json.dumps(value, default=float)
    return str(value)


def _arrow_column(values, sql_type: str):
    """One frame column as a pyarrow array; every missing value (None/NaN/NaT) becomes null."""
    import pandas as pd
    import pyarrow as pa

    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    if sql_type == "date" and pd.api.types.is_datetime64_any_dtype(values.dtype):
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            values = values.dt.tz_localize(None)  # the wall-clock date, as Timestamp.date()
        return pa.array(values.to_numpy().astype("datetime64[D]"), from_pandas=True)
    if values.dtype != object:
        return pa.array(values, from_pandas=True)
    values = values.where(values.notna(), None)
    if pd.api.types.infer_dtype(values, skipna=True) in _ARROW_KINDS:
        try:
            return pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # e.g. integers beyond int64, mixed time zones: fall back to text
    return pa.array([None if v is None else _as_text(v) for v in values], type=pa.large_string())


def _conflict_action(columns: list[str], key_columns: list[str], types: dict[str, str]) -> str:
    """DO UPDATE of the non-key columns, skipping rows whose values are unchanged (an idempotent
    re-run rewrites nothing); DO NOTHING when every column is a key."""
    updates = [c for c in columns if c not in key_columns]
    if not updates:
        return "DO NOTHING"
    action = "DO UPDATE SET " + ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in updates)
    if any(types[c] in _NO_EQUALITY_TYPES for c in updates):
        return action
    current = ", ".join(f't."{c}"' for c in updates)
    incoming = ", ".join(f'EXCLUDED."{c}"' for c in updates)
    return f"{action} WHERE ({current}) IS DISTINCT FROM ({incoming})"


def upsert_frame(conn: sa.Connection, table: str, frame, key_columns: list[str]) -> int:
    """INSERT ... ON CONFLICT (key) DO UPDATE every row of `frame`; returns rows written (len(frame)).

    Re-running with the same frame leaves the table unchanged (idempotent materializations);
    rows whose values are unchanged are not even rewritten. Rows sharing a key within `frame`
    collapse to the last of them (one statement cannot update a row twice). Missing values
    (None, NaN, NaT) are written as NULL, dicts and lists as JSON text (jsonb columns),
    Timestamps into DATE columns as their date; empty strings stay empty strings.

    The frame is converted column by column to Arrow, streamed as CSV with `COPY ... FROM STDIN`
    into a temporary table holding the frame's columns, and merged from there with one
    INSERT ... SELECT ... ON CONFLICT, all on the connection's own transaction. (Multi-row
    VALUES pages converted value by value in Python wrote ~25k rows/s.)
    """
    if frame is None or len(frame) == 0:
        return 0
    import psycopg2.extensions
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    columns = list(frame.columns)
    unique = frame[~frame.duplicated(subset=key_columns, keep="last")]
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor:
        types = _column_types(cursor, table)
        missing = [c for c in columns if c not in types]
        if missing:
            raise ValueError(f"table {table} has no columns {missing}")
        arrays = [_arrow_column(unique[c], types[c]) for c in columns]
        # Floats into integer columns go through numeric, rounded by the INSERT's assignment cast.
        staged = [
            "numeric" if types[c] in _INTEGER_TYPES and not pa.types.is_integer(a.type) else types[c]
            for c, a in zip(columns, arrays, strict=True)
        ]
        quoted = ", ".join(f'"{c}"' for c in columns)
        stage = f"_upsert_{uuid.uuid4().hex}"
        definitions = ", ".join(f'"{c}" {t}' for c, t in zip(columns, staged, strict=True))
        cursor.execute(
            f"CREATE TEMP TABLE {stage} ({definitions})" + ("" if raw.autocommit else " ON COMMIT DROP")
        )
        try:
            data = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(columns))])
            # Strings are always quoted and NULLs never: '' stays '', NULL stays NULL.
            options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
            copy = f"COPY {stage} ({quoted}) FROM STDIN WITH (FORMAT csv)"
            for start in range(0, data.num_rows, COPY_CHUNK_ROWS):
                buffer = io.BytesIO()
                pa_csv.write_csv(data.slice(start, COPY_CHUNK_ROWS), buffer, options)
                buffer.seek(0)
                cursor.copy_expert(copy, buffer, size=1 << 20)
            keys = ", ".join(f'"{c}"' for c in key_columns)
            cursor.execute(
                f"INSERT INTO {table} AS t ({quoted}) SELECT {quoted} FROM {stage} "
                f"ON CONFLICT ({keys}) {_conflict_action(columns, key_columns, types)}"
            )
        finally:
            # After a database error the transaction is aborted and its rollback drops the table.
            if raw.get_transaction_status() in (
                psycopg2.extensions.TRANSACTION_STATUS_IDLE, psycopg2.extensions.TRANSACTION_STATUS_INTRANS
            ):
                cursor.execute(f"DROP TABLE IF EXISTS {stage}")
    return len(frame)


def schema_engine(url: str, schema: str) -> sa.Engine:
    """An engine whose tables live in `schema` (created if missing): migrations and queries
    with unqualified names land there. Used to keep each replay apart from the operating tables."""
    if not schema.replace("_", "").isalnum():
        raise ValueError(f"invalid schema name {schema!r}")
    with engine_for(url).begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    return sa.create_engine(normalize_url(url), connect_args={"options": f"-csearch_path={schema}"})
