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

from feedback_loop.lib.store.pgcluster import (
    DAGSTER_DATABASE,
    LocalCluster,
    create_database_if_missing,
)

PROJECT_ROOT = Path(__file__).resolve().parents[3]
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
        # An external server is either up or not: no waiting for it as for a just-started cluster.
        create_database_if_missing(app_database_url(), attempts=1)
        create_database_if_missing(dagster_database_url(), attempts=1)
        return app_database_url()
    return local_cluster().up()


@lru_cache(maxsize=8)
def engine_for(url: str) -> sa.Engine:
    return sa.create_engine(normalize_url(url), pool_pre_ping=True, future=True)


def migration_files() -> list[Path]:
    return sorted(SQL_DIR.glob("[0-9]*.sql"))


#: Advisory lock key serializing migrators (two test workers, CLI + Dagster, 24 `db migrate`s).
MIGRATION_LOCK_KEY = 727274


def migrate(engine: sa.Engine) -> list[str]:
    """Apply every not-yet-applied file of sql/ in order; each in its own transaction, all under
    the migration lock (the migrations table is created under it too)."""
    applied_now: list[str] = []
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        conn.execute(sa.text(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " filename TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        ))
    for path in migration_files():
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
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


def column_types(cursor, table: str, columns) -> dict[str, str]:
    """Column name -> SQL type of `table` (resolved through the search_path); ValueError when
    `columns` (the frame's) name one the table lacks."""
    cursor.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (table,),
    )
    types = dict(cursor.fetchall())
    missing = [c for c in columns if c not in types]
    if missing:
        raise ValueError(f"table {table} has no columns {missing}")
    return types


def _as_text(value) -> str:
    """A value of a mixed object column as the database reads it: dict/list -> JSON text."""
    import json

    if isinstance(value, (dict, list)):
        return json.dumps(value, default=float)
    return str(value)


def arrow_column(values, sql_type: str):
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


def copy_arrays(cursor, table: str, columns: list[str], arrays) -> None:
    """COPY Arrow `arrays` (one per column of `columns`) into `table`, streamed as CSV in chunks."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    data = pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(columns))])
    # Strings are always quoted and NULLs never: '' stays '', NULL stays NULL.
    options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
    quoted = ", ".join(f'"{c}"' for c in columns)
    copy = f"COPY {table} ({quoted}) FROM STDIN WITH (FORMAT csv)"
    for start in range(0, data.num_rows, COPY_CHUNK_ROWS):
        buffer = io.BytesIO()
        pa_csv.write_csv(data.slice(start, COPY_CHUNK_ROWS), buffer, options)
        buffer.seek(0)
        cursor.copy_expert(copy, buffer, size=1 << 20)


#: From this many rows, a write into an empty table is a bulk load: COPY straight into the table
#: with its indexes dropped and built after (the bulk-loading advice of PostgreSQL's manual).
BULK_LOAD_MIN_ROWS = 100_000


def _copy_into_empty(cursor, table: str, columns: list[str], arrays) -> bool:
    """COPY straight into `table` when it is empty (no row can conflict); False when it is not.

    Holds an ACCESS EXCLUSIVE lock on `table` until the transaction ends. The table's indexes and
    primary/unique constraints are dropped and created again after the COPY, unless a foreign key
    depends on them."""
    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")
    if cursor.fetchone()[0]:
        return False
    cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")
    if cursor.fetchone()[0]:
        return False
    cursor.execute(
        "SELECT pg_get_indexdef(i.indexrelid), i.indexrelid::regclass::text, c.conname,"
        " pg_get_constraintdef(c.oid) FROM pg_index i"
        " LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid"
        " WHERE i.indrelid = %s::regclass", (table,))
    indexes = cursor.fetchall()
    cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f' AND confrelid = %s::regclass)",
                   (table,))
    if cursor.fetchone()[0]:
        indexes = []
    for _, index, constraint, _ in indexes:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"' if constraint
                       else f"DROP INDEX {index}")
    copy_arrays(cursor, table, columns, arrays)
    for definition, _, constraint, constraint_definition in indexes:
        cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{constraint}" {constraint_definition}' if constraint
                       else definition)
    return True


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
    VALUES pages converted value by value in Python wrote ~25k rows/s.) Into an empty table whose
    column types take the values as they are, a large frame is copied straight in (`_copy_into_empty`).
    """
    if frame is None or len(frame) == 0:
        return 0
    import psycopg2.extensions
    import pyarrow as pa

    columns = list(frame.columns)
    unique = frame[~frame.duplicated(subset=key_columns, keep="last")]
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor:
        types = column_types(cursor, table, columns)
        arrays = [arrow_column(unique[c], types[c]) for c in columns]
        # Floats into integer columns go through numeric, rounded by the INSERT's assignment cast.
        staged = [
            "numeric" if types[c] in _INTEGER_TYPES and not pa.types.is_integer(a.type) else types[c]
            for c, a in zip(columns, arrays, strict=True)
        ]
        bulk = len(unique) >= BULK_LOAD_MIN_ROWS and not raw.autocommit and staged == [types[c] for c in columns]
        if bulk and _copy_into_empty(cursor, table, columns, arrays):
            return len(frame)
        quoted = ", ".join(f'"{c}"' for c in columns)
        stage = f"_upsert_{uuid.uuid4().hex}"
        definitions = ", ".join(f'"{c}" {t}' for c, t in zip(columns, staged, strict=True))
        cursor.execute(
            f"CREATE TEMP TABLE {stage} ({definitions})" + ("" if raw.autocommit else " ON COMMIT DROP")
        )
        try:
            copy_arrays(cursor, stage, columns, arrays)
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


FINGERPRINT_TABLE = "ingest_fingerprints"
#: Set, transaction-locally, while `upsert_changed_parts` writes: the tables' triggers (sql/004) then
#: keep the fingerprints; any other write to a fingerprinted table makes them forget its fingerprints.
FINGERPRINTED_WRITE = "feedback_loop.fingerprinted_write"


def upsert_changed_parts(conn: sa.Connection, table: str, frame, key_columns: list[str], parts) -> int:
    """`upsert_frame` of only the rows of `frame` whose part changed since it was last written here;
    returns the rows written.

    `parts` holds, for each row of `frame` (same length and order), the columns naming the part the
    row belongs to (e.g. ticker and month). A part's fingerprint is the wrapping sum of its rows'
    64-bit hashes (independent of row order) and its row count, kept in ingest_fingerprints; a part
    whose fingerprint is unchanged is skipped, since upserting it again would change nothing. Rows and
    fingerprints are written in the connection's transaction, so they commit together. Any other
    write to `table` (DELETE, TRUNCATE, UPDATE, an INSERT not made here) makes the table's trigger
    forget all its fingerprints, so the next call writes every part again; a table without that
    trigger is refused.
    """
    import numpy as np
    import pandas as pd
    import psycopg2.extensions

    if frame is None or len(frame) == 0:
        return 0
    if len(parts) != len(frame):
        raise ValueError(f"{len(parts)} part rows for {len(frame)} frame rows")
    unique = ~frame.duplicated(subset=key_columns, keep="last").to_numpy()
    frame, parts = frame[unique], parts[unique]
    raw = conn.connection.driver_connection
    with raw.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = %s::regclass"
            " AND tgfoid = 'forget_ingest_fingerprints'::regproc)", (table,))
        if not cursor.fetchone()[0]:
            raise ValueError(f"table {table} has no forget_ingest_fingerprints trigger: its fingerprints "
                             "could outlive writes made elsewhere")
        types = column_types(cursor, table, frame.columns)
    group = parts.groupby(list(parts.columns), sort=False, dropna=False).ngroup().to_numpy()
    names = parts.iloc[np.unique(group, return_index=True)[1]].astype(str)  # each part's first row
    part = names.iloc[:, 0]
    for column in names.columns[1:]:
        part = part + "|" + names[column]
    current = pd.DataFrame({
        "table_name": table,
        "part": part.to_numpy(),
        "fingerprint": pd.Series(_row_hashes(frame, types)).groupby(group).sum().to_numpy().view("int64"),
        "row_count": np.bincount(group),
    })
    stored = read_frame(conn, f"SELECT part, fingerprint, row_count FROM {FINGERPRINT_TABLE}"
                              " WHERE table_name = %(table)s", {"table": table})
    known = current.merge(stored, on=["part", "fingerprint", "row_count"], how="left", indicator=True)
    changed = (known["_merge"] == "left_only").to_numpy()
    if not changed.any():
        return 0
    with raw.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, 'on', true)", (FINGERPRINTED_WRITE,))
    try:
        written = upsert_frame(conn, table, frame[changed[group]], key_columns)
        upsert_frame(conn, FINGERPRINT_TABLE, current[changed], ["table_name", "part"])
    finally:
        if raw.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS:
            with raw.cursor() as cursor:
                cursor.execute("SELECT set_config(%s, '', true)", (FINGERPRINTED_WRITE,))
    return written


#: Arrow type a column's values are hashed as, by SQL type, so that the same values hash the same
#: whatever their dtype (int or float volumes, str or object text).
_HASHED_AS = {
    "double precision": "double", "real": "double", "smallint": "int64", "integer": "int64",
    "bigint": "int64", "text": "large_string",
}


def _row_hashes(frame, types: dict[str, str]):
    """A 64-bit hash of each row of `frame` as `upsert_frame` writes it into columns of `types`
    (every missing value is NULL; a NULL hashes apart from any value, the text 'None' included)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    values, nulls = {}, np.zeros(len(frame), dtype="uint64")
    for position, column in enumerate(frame.columns):
        array = arrow_column(frame[column], types[column])
        if types[column] in _HASHED_AS:
            try:
                array = array.cast(_HASHED_AS[types[column]])
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass  # e.g. fractional values for an integer column: hashed as they are
        values[position] = array.to_pandas(date_as_object=False)
        is_null = array.is_null().to_numpy(zero_copy_only=False).astype("uint64")
        nulls |= is_null << np.uint64(position % 64)
    values["nulls"] = nulls
    return pd.util.hash_pandas_object(pd.DataFrame(values), index=False).to_numpy()


#: Result column types `read_frame` parses (pg_type OID -> Arrow type); json/jsonb are parsed after.
_ARROW_TYPE_OF_OID = {
    16: "bool", 20: "int64", 21: "int64", 23: "int64", 700: "double", 701: "double", 1082: "date32",
    25: "string", 1042: "string", 1043: "string", 114: "string", 3802: "string",
}
_JSON_OIDS = frozenset({114, 3802})


def read_frame(conn: sa.Connection, sql: str, params: dict | None = None):
    """The rows of query `sql` (psycopg2 `%(name)s` parameters) as a DataFrame.

    The rows travel as CSV through `COPY (query) TO STDOUT` and pyarrow parses them (2.6M price
    rows: 2-4 s, against ~18 s fetched row by row through SQLAlchemy), typed by the result's SQL
    types: DATE -> datetime64[ns]; smallint/integer/bigint -> int64; real/double -> float64 (integers
    with NULLs -> float64 with NaN); boolean -> bool (with NULLs -> object with None); text ->
    str with NaN for NULL, '' staying ''; json/jsonb -> the parsed values (dicts, lists), None
    for NULL. A column of any other SQL type raises ValueError rather than be guessed. Runs on
    the connection's own transaction.
    """
    import json

    import pandas as pd
    import psycopg2.extensions
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    raw = conn.connection.driver_connection
    encoding = psycopg2.extensions.encodings[raw.encoding]
    with raw.cursor() as cursor:
        query = cursor.mogrify(sql, params).decode(encoding)
        cursor.execute(f"SELECT * FROM ({query}) AS q LIMIT 0")
        names = [column.name for column in cursor.description]
        oids = [column.type_code for column in cursor.description]
        unknown = [(n, oid) for n, oid in zip(names, oids, strict=True) if oid not in _ARROW_TYPE_OF_OID]
        if unknown:
            raise ValueError(f"read_frame has no conversion for columns (name, type oid) {unknown}")
        buffer = io.BytesIO()
        cursor.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)", buffer, size=1 << 20)
    aliases = [f"c{i}" for i in range(len(names))]
    types = {a: pa.type_for_alias(_ARROW_TYPE_OF_OID[oid]) for a, oid in zip(aliases, oids, strict=True)}
    if buffer.tell() == 0:
        table = pa.table({a: pa.array([], type=t) for a, t in types.items()})
    else:
        buffer.seek(0)
        table = pa_csv.read_csv(
            buffer,
            read_options=pa_csv.ReadOptions(column_names=aliases, encoding=encoding),
            # Text may hold newlines (inside quotes). NULL is an unquoted empty field, '' a quoted one.
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=types, null_values=[""], strings_can_be_null=True,
                quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"]),
        )
    frame = table.to_pandas(date_as_object=False)
    frame.columns = names
    for position, oid in enumerate(oids):
        column = frame.iloc[:, position]
        if oid == 1082:
            frame.isetitem(position, column.astype("datetime64[ns]"))
        elif oid in _JSON_OIDS:
            values = [None if pd.isna(v) else json.loads(v) for v in column]
            frame.isetitem(position, pd.Series(values, index=frame.index, dtype=object))
    return frame


def has_unique_index(conn: sa.Connection, table: str, columns: list[str]) -> bool:
    """Whether a valid unique index of `table` (its primary key included) on plain columns, all among
    `columns` and without a predicate, makes the database itself keep one row per `columns`."""
    return bool(conn.execute(sa.text(
        "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = CAST(:t AS regclass) AND i.indisunique"
        " AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL"
        " AND (SELECT array_agg(a.attname::text) FROM pg_attribute a WHERE a.attrelid = i.indrelid"
        " AND a.attnum = ANY((i.indkey::int2[])[0:i.indnkeyatts - 1])) <@ CAST(:c AS text[]))"),
        {"t": table, "c": list(columns)}).scalar())


def has_check_constraint(conn: sa.Connection, table: str, name: str) -> bool:
    """Whether `table` has the validated CHECK constraint `name` (so no row breaks it)."""
    return bool(conn.execute(sa.text(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) AND conname = :n"
        " AND contype = 'c' AND convalidated)"), {"t": table, "n": name}).scalar())


def schema_engine(url: str, schema: str) -> sa.Engine:
    """An engine whose tables live in `schema` (created if missing): migrations and queries
    with unqualified names land there. Used to keep each replay apart from the operating tables."""
    if not schema.replace("_", "").isalnum():
        raise ValueError(f"invalid schema name {schema!r}")
    with engine_for(url).begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    return sa.create_engine(normalize_url(url), connect_args={"options": f"-csearch_path={schema}"})


def dagster_environment() -> dict[str, str]:
    """Environment for Dagster processes: DAGSTER_HOME is the project root (dagster.yaml)."""
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(PROJECT_ROOT)
    env[DAGSTER_URL_ENV] = dagster_database_url()
    env.setdefault(STATE_DIR_ENV, str(state_dir()))
    return env
