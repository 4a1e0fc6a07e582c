"""db.read_frame (COPY ... TO STDOUT as CSV, parsed by pyarrow) returns what row-by-row fetching returned."""

import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.lib.store import db
from feedback_loop_tests.test_upsert import AWKWARD_TEXT

FLOATS = ["0.1", "-0", "1e-300", "1.7976931348623157e308", "NaN", "Infinity", "-Infinity", "123456.789012345"]


@pytest.fixture
def kinds(engine):
    """One row per awkward value: text, floats, NULLs in every column type read_frame converts."""
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE kinds (id INTEGER PRIMARY KEY, t TEXT, v VARCHAR(20), c CHAR(3), f DOUBLE PRECISION,"
            " r REAL, i INTEGER, s SMALLINT, big BIGINT, b BOOLEAN, d DATE, j JSONB, js JSON)"))
        texts = [*AWKWARD_TEXT, None, 'line\nwith, comma and "quote"']
        rows = [
            {"id": n, "t": text, "v": None if text is None else text[:20], "c": None if text is None else text[:3],
             "f": float(FLOATS[n]) if n < len(FLOATS) else n / 7, "r": 1.5 * n, "i": n if n % 3 else None,
             "s": n, "big": 2**40 + n, "b": None if n % 4 == 0 else n % 2 == 0,
             "d": None if n % 5 == 0 else pd.Timestamp("2020-01-01") + pd.Timedelta(days=n),
             "j": None if n == 1 else json.dumps({"text": text, "n": [1, 2.5, None]}),
             "js": None if n == 2 else '{"a": 1.0}'}
            for n, text in enumerate(texts)
        ]
        conn.execute(sa.text(
            "INSERT INTO kinds VALUES (:id, :t, :v, :c, :f, :r, :i, :s, :big, :b, :d, CAST(:j AS JSONB),"
            " CAST(:js AS JSON))"), rows)
    return engine


def _fetched_row_by_row(conn, sql: str) -> pd.DataFrame:
    result = conn.execute(sa.text(sql))
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def _canonical(value):
    """A value as comparable across both readers: floats by repr (NaN, -0.0), NULL/NaT as None."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, (float, np.floating)):
        return ("float", repr(float(value)))
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


def test_every_value_comes_back_as_row_by_row_fetching_gave_it(kinds):
    sql = "SELECT * FROM kinds ORDER BY id"
    with kinds.connect() as conn:
        fast = db.read_frame(conn, sql)
        reference = _fetched_row_by_row(conn, sql)
    assert list(fast.columns) == list(reference.columns) and len(fast) == len(reference) == len(AWKWARD_TEXT) + 2
    for column in fast.columns:
        assert [_canonical(v) for v in fast[column].astype(object)] == \
            [_canonical(v) for v in reference[column].astype(object)], column
    assert fast.loc[fast["t"] == "", "id"].tolist() == [AWKWARD_TEXT.index("")], "'' must not become NULL"
    assert fast["t"].isna().sum() == 1 and fast["f"].isna().sum() == 1  # the NULL text, the float NaN
    assert fast["j"].map(type).value_counts().to_dict() == {dict: len(fast) - 1, type(None): 1}


def test_columns_are_typed_by_their_sql_type(kinds):
    with kinds.connect() as conn:
        fast = db.read_frame(conn, "SELECT * FROM kinds ORDER BY id")
        without_nulls = db.read_frame(conn, "SELECT i, b FROM kinds WHERE i IS NOT NULL AND b IS NOT NULL")
    dtypes = {c: str(t) for c, t in fast.dtypes.items()}
    assert dtypes["id"] == "int64" and dtypes["big"] == "int64" and dtypes["s"] == "int64"
    assert dtypes["i"] == "float64", "integers with NULLs become float64 with NaN"
    assert dtypes["f"] == "float64" and dtypes["r"] == "float64"
    assert dtypes["d"] == "datetime64[ns]"
    assert dtypes["b"] == "object" and fast["b"].isna().any()
    assert pd.api.types.is_string_dtype(fast["t"]) and dtypes["j"] == "object"
    assert str(without_nulls["i"].dtype) == "int64" and str(without_nulls["b"].dtype) == "bool"


def test_parameters_are_bound_and_an_empty_result_keeps_its_types(kinds):
    with kinds.connect() as conn:
        quoted = db.read_frame(conn, "SELECT id FROM kinds WHERE t = %(t)s OR t = ANY(%(many)s)",
                               {"t": "single 'quote'", "many": ["comma, here", "nothing"]})
        empty = db.read_frame(conn, "SELECT id, f, d, t, b FROM kinds WHERE id < %(n)s", {"n": -1})
    assert sorted(quoted["id"]) == sorted(AWKWARD_TEXT.index(t) for t in ("single 'quote'", "comma, here"))
    assert empty.empty and list(empty.columns) == ["id", "f", "d", "t", "b"]
    assert {c: str(t) for c, t in empty.dtypes.items() if c != "t"} == {
        "id": "int64", "f": "float64", "d": "datetime64[ns]", "b": "bool"}


def test_a_column_type_without_a_conversion_is_refused(engine):
    with engine.connect() as conn:
        for sql in ("SELECT now() AS at", "SELECT 1.5::numeric AS amount"):
            with pytest.raises(ValueError, match="no conversion"):
                db.read_frame(conn, sql)


def test_reads_see_the_connections_own_uncommitted_writes(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO ticker_sectors VALUES ('AAA', 'Tech')"))
        assert db.read_frame(conn, "SELECT ticker FROM ticker_sectors")["ticker"].tolist() == ["AAA"]
        conn.rollback()
    with engine.connect() as conn:
        assert db.read_frame(conn, "SELECT ticker FROM ticker_sectors").empty
