"""Idempotent writes of the ingest tables and their read-backs as frames.py frames.

Writing the same batch twice leaves every table unchanged: products upsert on their
primary key, rejects are kept once per (source, row_hash). Disclosures (per filing date)
and prices (per ticker and month) are written by `db.upsert_changed_parts`: only the parts
whose content changed since they were last written travel to the database.
"""

from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa

from feedback_loop.lib import frames
from feedback_loop.lib.store.db import read_frame, upsert_changed_parts, upsert_frame


def write_politicians(conn: sa.Connection, politicians: pd.DataFrame) -> int:
    return upsert_frame(conn, "politicians", politicians[frames.POLITICIAN_COLUMNS], ["politician_id"])


def write_disclosures(
    conn: sa.Connection, disclosures: pd.DataFrame, politicians: pd.DataFrame | None = None
) -> int:
    """Upsert the disclosures of every filing date whose disclosures changed; returns rows written.
    `politicians` (when given) are written first for the foreign key."""
    if politicians is not None:
        write_politicians(conn, politicians)
    filed = pd.to_datetime(disclosures["disclosure_date"])
    parts = pd.DataFrame({"filed": filed.dt.year * 10000 + filed.dt.month * 100 + filed.dt.day})
    return upsert_changed_parts(conn, "disclosures", disclosures[frames.DISCLOSURE_COLUMNS], ["disclosure_id"],
                                parts)


_INSERT_REJECT = sa.text(
    "INSERT INTO disclosure_rejects (source, row_hash, raw_row, reason) "
    "VALUES (:source, :row_hash, CAST(:raw_row AS JSONB), :reason) "
    "ON CONFLICT (source, row_hash) DO NOTHING"
)


def write_rejects(conn: sa.Connection, rejects: pd.DataFrame) -> int:
    """Insert rejects not yet quarantined; returns rows inserted."""
    if len(rejects) == 0:
        return 0
    rows = [
        {"source": r.source, "row_hash": r.row_hash, "raw_row": json.dumps(r.raw_row), "reason": r.reason}
        for r in rejects[frames.REJECT_COLUMNS].itertuples(index=False)
    ]
    return conn.execute(_INSERT_REJECT, rows).rowcount


_INSERT_PRICE_REJECT = sa.text(
    "INSERT INTO price_rejects (row_hash, raw_row, reason) VALUES (:row_hash, CAST(:raw_row AS JSONB), :reason) "
    "ON CONFLICT (row_hash) DO NOTHING"
)


def write_price_rejects(conn: sa.Connection, rejects: pd.DataFrame) -> int:
    """Insert quarantined price rows not yet quarantined; returns rows inserted."""
    if len(rejects) == 0:
        return 0
    rows = [{"row_hash": r.row_hash, "raw_row": json.dumps(r.raw_row), "reason": r.reason}
            for r in rejects[frames.PRICE_REJECT_COLUMNS].itertuples(index=False)]
    return conn.execute(_INSERT_PRICE_REJECT, rows).rowcount


def read_price_rejects(conn: sa.Connection) -> pd.DataFrame:
    return _read(conn, f"SELECT {_select(frames.PRICE_REJECT_COLUMNS)} FROM price_rejects ORDER BY reject_id",
                 frames.PRICE_REJECT_COLUMNS)


def write_prices(conn: sa.Connection, prices: pd.DataFrame) -> int:
    """Upsert the prices of every (ticker, month) whose prices changed; returns rows written."""
    dates = pd.to_datetime(prices["date"])
    parts = pd.DataFrame({"ticker": prices["ticker"], "month": dates.dt.year * 100 + dates.dt.month})
    return upsert_changed_parts(conn, "prices", prices[frames.PRICE_COLUMNS], ["ticker", "date"], parts)


def price_watermarks(conn: sa.Connection, source_fingerprint: str | None) -> pd.Series:
    """Ticker -> the date through which every price row of the source content `source_fingerprint`
    is in prices (empty for a new or changed source, or one without a fingerprint: ingest it whole)."""
    if source_fingerprint is None:
        return pd.Series(dtype="datetime64[ns]")
    frame = read_frame(conn, "SELECT ticker, written_through FROM ingest_watermarks"
                             " WHERE table_name = 'prices' AND source_fingerprint = %(f)s", {"f": source_fingerprint})
    if frame.empty:
        return pd.Series(dtype="datetime64[ns]")
    return pd.Series(pd.to_datetime(frame["written_through"]).astype("datetime64[ns]").to_numpy(),
                     index=frame["ticker"].to_numpy())


def write_price_watermarks(conn: sa.Connection, source_fingerprint: str | None, tickers, through,
                           prices: pd.DataFrame) -> int:
    """After the source's rows of `tickers` dated through `through` were written (`prices`: the
    rows written this time), record how far each ticker is in; a source without a fingerprint
    records nothing. Another source content's watermarks are dropped: they no longer hold."""
    if source_fingerprint is None:
        return 0
    through = pd.Timestamp(through).normalize()
    conn.execute(sa.text("DELETE FROM ingest_watermarks WHERE table_name = 'prices' AND source_fingerprint <> :f"),
                 {"f": source_fingerprint})
    known = read_frame(conn, "SELECT ticker, written_through, last_price_date FROM ingest_watermarks"
                             " WHERE table_name = 'prices'")
    latest = (pd.DataFrame({"ticker": prices["ticker"], "new_last": pd.to_datetime(prices["date"])})
              .groupby("ticker", as_index=False)["new_last"].max())
    frame = pd.DataFrame({"ticker": sorted(set(tickers) | set(latest["ticker"]))})
    frame = frame.merge(known, on="ticker", how="left").merge(latest, on="ticker", how="left")
    stored_through = pd.to_datetime(frame["written_through"]).astype("datetime64[ns]")
    frame["written_through"] = stored_through.where(stored_through > through, through)
    stored_last = pd.to_datetime(frame["last_price_date"]).astype("datetime64[ns]")
    new_last = frame["new_last"].astype("datetime64[ns]")
    frame["last_price_date"] = new_last.where(new_last.notna() & ~(stored_last > new_last), stored_last)
    frame["table_name"], frame["source_fingerprint"] = "prices", source_fingerprint
    return upsert_frame(conn, "ingest_watermarks", frame[["table_name", "ticker", "source_fingerprint",
                                                         "written_through", "last_price_date"]],
                        ["table_name", "ticker"])


def priced_tickers(conn: sa.Connection) -> set[str]:
    """Tickers with at least one price row, as the watermarks record them (cheaper than a scan of prices)."""
    return set(conn.execute(sa.text("SELECT ticker FROM ingest_watermarks WHERE table_name = 'prices'"
                                    " AND last_price_date IS NOT NULL")).scalars())


NATURAL_KEY_CHECK = "disclosures_have_unique_natural_keys"
_NATURAL_KEY = ("source, filer_name, transaction_date, disclosure_date, COALESCE(ticker, asset_description), "
                "transaction_type, amount_min_usd, amount_max_usd, owner, ptr_link")


def natural_key_duplicates(conn: sa.Connection) -> dict[str, int]:
    """Natural keys shared by two or more disclosures, counted over the filing dates not verified
    since they last changed (the key holds the filing date, so a duplicate lies within one date).

    A filing date is verified while its ingest fingerprint equals the one recorded when it was
    last found free of duplicates; a write behind the ingest drops every fingerprint, so all dates
    are counted again. When none is found, every filing date's fingerprint is recorded as verified.
    Run it on a REPEATABLE READ transaction: the count and the record then see the same rows.
    """
    trusted = ("SELECT to_date(f.part, 'YYYYMMDD') FROM ingest_fingerprints f JOIN verified_parts v"
               " ON v.check_name = :check AND v.table_name = f.table_name AND v.part = f.part"
               " AND v.fingerprint = f.fingerprint AND v.row_count = f.row_count WHERE f.table_name = 'disclosures'")
    found = conn.execute(sa.text(
        "SELECT count(*) FILTER (WHERE n > 1) AS keys, count(DISTINCT disclosure_date) FILTER (WHERE n > 1) AS dates,"
        " count(DISTINCT disclosure_date) AS checked FROM ("
        f" SELECT disclosure_date, count(*) AS n FROM disclosures WHERE disclosure_date NOT IN ({trusted})"
        f" GROUP BY {_NATURAL_KEY}) k"), {"check": NATURAL_KEY_CHECK}).one()
    if found.keys == 0:
        conn.execute(sa.text(
            "INSERT INTO verified_parts (check_name, table_name, part, fingerprint, row_count)"
            " SELECT :check, table_name, part, fingerprint, row_count FROM ingest_fingerprints"
            " WHERE table_name = 'disclosures' ON CONFLICT (check_name, table_name, part)"
            " DO UPDATE SET fingerprint = EXCLUDED.fingerprint, row_count = EXCLUDED.row_count"),
            {"check": NATURAL_KEY_CHECK})
    return {"duplicate_keys": int(found.keys), "filing_dates_with_duplicates": int(found.dates),
            "filing_dates_checked": int(found.checked)}


def write_sectors(conn: sa.Connection, sectors: pd.DataFrame) -> int:
    return upsert_frame(conn, "ticker_sectors", sectors[frames.SECTOR_COLUMNS], ["ticker"])


def write_batch(conn: sa.Connection, batch: frames.DisclosureBatch) -> dict[str, int]:
    """Politicians, then disclosures, then rejects of one DisclosureBatch."""
    return {
        "politicians": write_politicians(conn, batch.politicians),
        "disclosures": write_disclosures(conn, batch.disclosures),
        "rejects": write_rejects(conn, batch.rejects),
    }


def _read(conn: sa.Connection, sql: str, columns: list[str], params: dict | None = None) -> pd.DataFrame:
    """`sql` (psycopg2 `%(name)s` parameters) read by `db.read_frame`, as the frames.py frame of `columns`."""
    frame = read_frame(conn, sql, params)
    if frame.empty:
        return frames.empty(columns)
    out = frames.normalize_dates(frame[columns])
    for column in out.columns:
        if column in frames.DATE_COLUMNS:
            out[column] = out[column].astype("datetime64[ns]")
        elif out[column].isna().any():  # NULL -> None, as the parsers produce
            out[column] = out[column].astype("object").where(out[column].notna(), None)
    return out


def _select(columns: list[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _day(value):
    """A bound as a date, None (no bound) kept."""
    return None if value is None else pd.Timestamp(value).date()


def _where(*conditions: tuple[str, str, object]) -> tuple[str, dict]:
    """The WHERE clause of the (sql, parameter name, value) conditions whose value is not None, and its parameters."""
    given = [(sql, name, value) for sql, name, value in conditions if value is not None]
    where = ("WHERE " + " AND ".join(sql for sql, _, _ in given)) if given else ""
    return where, {name: value for _, name, value in given}


def read_politicians(conn: sa.Connection) -> pd.DataFrame:
    return _read(
        conn, f"SELECT {_select(frames.POLITICIAN_COLUMNS)} FROM politicians ORDER BY politician_id",
        frames.POLITICIAN_COLUMNS,
    )


def read_disclosures(conn: sa.Connection, as_of=None, filed_after=None) -> pd.DataFrame:
    """Disclosures filed after `filed_after` and on or before `as_of` (open bounds when None), by filing date."""
    where, params = _where(("disclosure_date <= %(as_of)s", "as_of", _day(as_of)),
                           ("disclosure_date > %(filed_after)s", "filed_after", _day(filed_after)))
    return _read(
        conn,
        f"SELECT {_select(frames.DISCLOSURE_COLUMNS)} FROM disclosures {where} "
        "ORDER BY disclosure_date, disclosure_id",
        frames.DISCLOSURE_COLUMNS, params,
    )


def read_rejects(conn: sa.Connection) -> pd.DataFrame:
    return _read(
        conn, f"SELECT {_select(frames.REJECT_COLUMNS)} FROM disclosure_rejects ORDER BY reject_id",
        frames.REJECT_COLUMNS,
    )


def read_prices(conn: sa.Connection, tickers=None, start=None, end=None,
                columns: list[str] = frames.PRICE_COLUMNS) -> pd.DataFrame:
    """Prices of `tickers` (all when None) with start <= date <= end (open bounds when None);
    `columns`: ticker, date and those of the price columns a caller needs (fewer travel faster)."""
    where, params = _where(
        ("ticker = ANY(%(tickers)s::text[])", "tickers", None if tickers is None else [str(t) for t in tickers]),
        ("date >= %(start)s", "start", _day(start)),
        ("date <= %(end)s", "end", _day(end)),
    )
    return _read_prices(conn, f"SELECT {_select(columns)} FROM prices {where} ORDER BY ticker, date", params, columns)


def read_prices_since(conn: sa.Connection, starts: dict, end, bars_before: int = 0) -> pd.DataFrame:
    """Prices of each ticker of `starts` (ticker -> start date) dated from its start through `end`,
    plus its last `bars_before` rows dated before its start (however old), by ticker and date."""
    columns = _select(frames.PRICE_COLUMNS)
    # Each ticker's rows come from the (ticker, date) primary key index: OFFSET 0 keeps the planner
    # from turning the first LATERAL into a join that hashes the whole table (~30x slower at 2.6M rows).
    sql = (
        "WITH wanted AS (SELECT * FROM unnest(%(tickers)s::text[], %(starts)s::date[]) AS w (ticker, since)) "
        f"SELECT {columns} FROM (SELECT p.* FROM wanted w CROSS JOIN LATERAL (SELECT * FROM prices"
        " WHERE ticker = w.ticker AND date >= w.since AND date <= %(end)s OFFSET 0) p"
        " UNION ALL SELECT b.* FROM wanted w CROSS JOIN LATERAL (SELECT * FROM prices"
        " WHERE ticker = w.ticker AND date < w.since ORDER BY date DESC LIMIT %(bars_before)s) b) r"
        " ORDER BY ticker, date"
    )
    return _read_prices(conn, sql, {
        "tickers": [str(t) for t in starts], "starts": [pd.Timestamp(d).date() for d in starts.values()],
        "end": pd.Timestamp(end).date(), "bars_before": int(bars_before),
    })


def _read_prices(conn: sa.Connection, sql: str, params: dict,
                 columns: list[str] = frames.PRICE_COLUMNS) -> pd.DataFrame:
    if columns[:2] != ["ticker", "date"] or not set(columns[2:]) <= set(frames.PRICE_COLUMNS[2:]):
        raise ValueError(f"price columns must be ticker, date and some of {frames.PRICE_COLUMNS[2:]}: {columns}")
    prices = _read(conn, sql, columns, params)
    for column in columns[2:]:
        prices[column] = prices[column].astype(float)
    return prices


def read_sectors(conn: sa.Connection) -> pd.DataFrame:
    return _read(
        conn, f"SELECT {_select(frames.SECTOR_COLUMNS)} FROM ticker_sectors ORDER BY ticker",
        frames.SECTOR_COLUMNS,
    )
