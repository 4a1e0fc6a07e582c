import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.lib.store import db

AWKWARD_TEXT = [
    "tab\there", "new\nline", "carriage\r\nreturn", "back\\slash", 'double "quote"', "single 'quote'",
    "comma, here", "unicode: é ü 中文 🚀", "", "\\N", "\\.", "NULL", " padded ",
]


def _upsert(engine, table, frame, keys):
    with engine.begin() as conn:
        return db.upsert_frame(conn, table, frame, keys)


def _rows(engine, sql):
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).all()


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()


def test_upsert_twice_keeps_one_row_per_key_and_updates_values(engine):
    frame = pd.DataFrame({
        "ticker": ["AAA", "AAA"], "date": pd.to_datetime(["2020-01-02", "2020-01-03"]),
        "close": [10.0, float("nan")], "adj_close": [10.0, 11.0], "open": [None, 1.0],
    })
    frame.loc[1, "close"] = 11.0
    with engine.begin() as conn:
        db.upsert_frame(conn, "prices", frame, ["ticker", "date"])
        frame.loc[0, "close"] = 12.0
        db.upsert_frame(conn, "prices", frame, ["ticker", "date"])
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT date, close FROM prices ORDER BY date")).all()
    assert [r.close for r in rows] == [12.0, 11.0]


def test_awkward_text_survives_and_empty_string_is_not_null(engine):
    # Awkward text in the key and in a value column; a single-column frame (all keys) too.
    frame = pd.DataFrame({
        "ticker": [f"T{i}:{text}" for i, text in enumerate(AWKWARD_TEXT)] + ["T-null"],
        "sector": [*AWKWARD_TEXT, None],
    })
    assert _upsert(engine, "ticker_sectors", frame.iloc[:-1], ["ticker"]) == len(AWKWARD_TEXT)
    rows = dict(_rows(engine, "SELECT ticker, sector FROM ticker_sectors"))
    assert rows == dict(zip(frame["ticker"].iloc[:-1], AWKWARD_TEXT, strict=True))

    bare = pd.DataFrame({"ticker": ["\\.", "", "x\ny", "last"]})
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE one_column (ticker TEXT PRIMARY KEY)"))
    _upsert(engine, "one_column", bare, ["ticker"])
    _upsert(engine, "one_column", bare, ["ticker"])  # all keys: DO NOTHING
    assert sorted(r.ticker for r in _rows(engine, "SELECT ticker FROM one_column")) == sorted(bare["ticker"])

    # Empty string and NULL stay apart in a nullable text column.
    text_frame = pd.DataFrame({
        "politician_id": ["P1", "P2", "P3"], "full_name": ["A", "B", "C"],
        "first_name": ["", None, "x\ty"], "last_name": pd.Series(["", np.nan, "O'Brien"], dtype=object),
        "source": "test",
    })
    _upsert(engine, "politicians", text_frame, ["politician_id"])
    stored = _rows(engine, "SELECT politician_id, first_name, last_name FROM politicians ORDER BY 1")
    assert [tuple(r) for r in stored] == [("P1", "", ""), ("P2", None, None), ("P3", "x\ty", "O'Brien")]


def test_missing_values_become_null_in_float_object_and_date_columns(engine):
    frame = pd.DataFrame({
        "position_id": ["A", "B", "C"],
        "signal_id": ["A", "B", "C"],
        "ticker": ["AAA", "BBB", "CCC"],
        "signal_type": "buy",
        "confidence": [0.7, np.float64(0.8), 0.9],
        "entry_date": pd.to_datetime(["2021-03-01", "2021-03-02", "2021-03-03"]),
        "exit_date": pd.to_datetime(["2021-03-10", None, None]),  # NaT
        "entry_price": [10.0, 20.0, 30.0],
        "exit_price": [11.0, np.nan, None],  # float column
        "return_pct": pd.Series([0.1, None, np.nan], dtype=object),  # object column
        "holding_days": [9.0, np.nan, np.nan],  # floats (NaN) into an INTEGER column
        "outcome": ["win", "open", "open"],
        "exit_reason": pd.Series(["timeout", np.nan, pd.NaT], dtype=object),
        "features": [{"a": 1.5, "b": None}, {"nested": {"x": [1, 2]}}, {}],
        "ml_enhanced": [np.bool_(True), False, True],
    })
    with engine.begin() as conn:
        conn.execute(sa.text(
            "ALTER TABLE signal_outcomes DROP CONSTRAINT signal_outcomes_position_id_fkey, "
            "DROP CONSTRAINT signal_outcomes_signal_id_fkey"))
    _upsert(engine, "signal_outcomes", frame, ["position_id"])
    rows = {r.position_id: r for r in _rows(engine, "SELECT * FROM signal_outcomes")}
    assert rows["A"].exit_date == dt.date(2021, 3, 10) and rows["A"].holding_days == 9
    assert rows["A"].return_pct == 0.1 and rows["A"].exit_reason == "timeout"
    assert rows["A"].ml_enhanced is True and rows["B"].ml_enhanced is False
    for key in ["B", "C"]:
        row = rows[key]
        assert row.exit_date is None and row.exit_price is None and row.return_pct is None
        assert row.holding_days is None and row.exit_reason is None
    assert rows["B"].confidence == 0.8 and rows["B"].entry_date == dt.date(2021, 3, 2)


def test_json_round_trip(engine):
    features = {"score": 0.25, "missing": None, "count": np.int64(3), "text": 'say "hi",\tok\n',
                "list": [1, 2.5, "x"], "nested": {"deep": True}}
    frame = pd.DataFrame({
        "as_of": [pd.Timestamp("2022-05-02"), pd.Timestamp("2022-05-02")],
        "ticker": ["AAA", "BBB"], "trade_count": [3, 1], "buy_count": [2, 1], "sell_count": [1, 0],
        "features": [features, {}],
    })
    _upsert(engine, "ticker_features", frame, ["as_of", "ticker"])
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("SELECT ticker, features FROM ticker_features")).all())
    assert stored["AAA"] == json.loads(json.dumps(features, default=float))
    assert stored["BBB"] == {}


def test_duplicate_keys_within_one_frame_keep_the_last(engine):
    frame = pd.DataFrame({
        "ticker": ["AAA", "BBB", "AAA", "AAA"],
        "date": pd.to_datetime(["2020-01-02", "2020-01-02", "2020-01-02", "2020-01-03"]),
        "close": [1.0, 2.0, 3.0, 4.0], "adj_close": [1.0, 2.0, 3.0, 4.0],
    })
    assert _upsert(engine, "prices", frame, ["ticker", "date"]) == len(frame)
    rows = _rows(engine, "SELECT ticker, date, close FROM prices ORDER BY ticker, date")
    assert [(r.ticker, str(r.date), r.close) for r in rows] == [
        ("AAA", "2020-01-02", 3.0), ("AAA", "2020-01-03", 4.0), ("BBB", "2020-01-02", 2.0),
    ]


def test_reupserting_leaves_row_counts_and_values_unchanged(engine):
    days = pd.bdate_range("2021-01-04", periods=300)
    frame = pd.DataFrame({
        "ticker": np.repeat(["AAA", "BBB", "CCC"], len(days)),
        "date": np.tile(days.to_numpy(), 3),
        "open": np.linspace(1, 2, 3 * len(days)), "high": np.nan, "low": None,
        "close": (np.arange(3 * len(days)) + 1) / 7.0, "adj_close": (np.arange(3 * len(days)) + 1) / 3.0,
        "volume": np.arange(3 * len(days)),
    })
    _upsert(engine, "prices", frame, ["ticker", "date"])
    first = _rows(engine, "SELECT * FROM prices ORDER BY ticker, date")
    for _ in range(2):
        _upsert(engine, "prices", frame, ["ticker", "date"])
        assert _count(engine, "prices") == len(frame)
    assert _rows(engine, "SELECT * FROM prices ORDER BY ticker, date") == first
    # Floats survive exactly (shortest round-trip text).
    assert [r.close for r in first] == list(frame["close"])
    # A changed value is still applied on a re-run.
    changed = frame.assign(close=frame["close"] + 1.0)
    _upsert(engine, "prices", changed, ["ticker", "date"])
    assert [r.close for r in _rows(engine, "SELECT close FROM prices ORDER BY ticker, date")] == list(
        changed["close"])


def test_upsert_rolls_back_with_the_callers_transaction(engine):
    frame = pd.DataFrame({"ticker": ["AAA"], "sector": ["Energy"]})
    with pytest.raises(RuntimeError), engine.begin() as conn:
        db.upsert_frame(conn, "ticker_sectors", frame, ["ticker"])
        db.upsert_frame(conn, "ticker_sectors", frame, ["ticker"])  # same transaction twice
        raise RuntimeError("caller fails after the upsert")
    assert _count(engine, "ticker_sectors") == 0
    assert _upsert(engine, "ticker_sectors", frame.iloc[:0], ["ticker"]) == 0
    with pytest.raises(ValueError, match="no columns"):
        _upsert(engine, "ticker_sectors", frame.assign(nope=1), ["ticker"])


def _indexes(engine, table):
    return _rows(engine, f"SELECT indexname, indexdef FROM pg_indexes WHERE tablename = '{table}' ORDER BY 1")


@pytest.mark.parametrize("bulk_rows", [1, 10**9], ids=["bulk-load", "staged"])
def test_a_large_write_into_an_empty_table_gives_the_staged_upserts_rows_and_keeps_its_indexes(
        engine, monkeypatch, bulk_rows):
    """A frame of BULK_LOAD_MIN_ROWS or more into an empty table is copied straight in with the indexes
    built after; the rows, the constraints and a re-run are as with the staged INSERT ... ON CONFLICT."""
    monkeypatch.setattr(db, "BULK_LOAD_MIN_ROWS", bulk_rows)
    indexes = _indexes(engine, "prices")
    frame = pd.DataFrame({
        "ticker": ["AAA", "BBB", "AAA", "AAA"], "date": pd.to_datetime(["2020-01-02"] * 2 + ["2020-01-03"] * 2),
        "close": [10.0, 20.0, 11.0, 12.0], "adj_close": [10.0, 20.0, 11.0, 12.0], "open": [None, np.nan, 1.0, 2.0],
    })
    assert _upsert(engine, "prices", frame, ["ticker", "date"]) == 4
    assert _rows(engine, "SELECT ticker, date, close, open FROM prices ORDER BY 1, 2") == [
        ("AAA", dt.date(2020, 1, 2), 10.0, None), ("AAA", dt.date(2020, 1, 3), 12.0, 2.0),
        ("BBB", dt.date(2020, 1, 2), 20.0, None)]
    assert _indexes(engine, "prices") == indexes
    assert _upsert(engine, "prices", frame.assign(close=frame["close"] + 1), ["ticker", "date"]) == 4
    assert _rows(engine, "SELECT close FROM prices ORDER BY ticker, date") == [(11.0,), (13.0,), (21.0,)]
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO prices (ticker, date, close, adj_close) VALUES ('AAA', '2020-01-02', 1, 1)"))
