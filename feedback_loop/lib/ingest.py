"""Idempotent writes of the ingest tables and their read-backs as frames.py frames.

Writing the same batch twice leaves every table unchanged: products upsert on their
primary key, rejects are kept once per (source, row_hash).
"""

from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa

from feedback_loop.lib import frames
from feedback_loop.lib.db import upsert_frame


def write_politicians(conn: sa.Connection, politicians: pd.DataFrame) -> int:
    return upsert_frame(conn, "politicians", politicians[frames.POLITICIAN_COLUMNS], ["politician_id"])


def write_disclosures(
    conn: sa.Connection, disclosures: pd.DataFrame, politicians: pd.DataFrame | None = None
) -> int:
    """Upsert disclosures; `politicians` (when given) are written first for the foreign key."""
    if politicians is not None:
        write_politicians(conn, politicians)
    return upsert_frame(conn, "disclosures", disclosures[frames.DISCLOSURE_COLUMNS], ["disclosure_id"])


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


def write_prices(conn: sa.Connection, prices: pd.DataFrame) -> int:
    return upsert_frame(conn, "prices", prices[frames.PRICE_COLUMNS], ["ticker", "date"])


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
    result = conn.execute(sa.text(sql), params or {})
    frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
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


def read_politicians(conn: sa.Connection) -> pd.DataFrame:
    return _read(
        conn, f"SELECT {_select(frames.POLITICIAN_COLUMNS)} FROM politicians ORDER BY politician_id",
        frames.POLITICIAN_COLUMNS,
    )


def read_disclosures(conn: sa.Connection, as_of=None) -> pd.DataFrame:
    """Disclosures filed on or before `as_of` (all when None), by filing date."""
    where = "" if as_of is None else "WHERE disclosure_date <= :as_of"
    params = {} if as_of is None else {"as_of": pd.Timestamp(as_of).date()}
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


def read_prices(conn: sa.Connection, tickers=None, start=None, end=None) -> pd.DataFrame:
    """Prices of `tickers` (all when None) with start <= date <= end (open bounds when None)."""
    clauses, params = [], {}
    if tickers is not None:
        clauses.append("ticker = ANY(:tickers)")
        params["tickers"] = list(tickers)
    if start is not None:
        clauses.append("date >= :start")
        params["start"] = pd.Timestamp(start).date()
    if end is not None:
        clauses.append("date <= :end")
        params["end"] = pd.Timestamp(end).date()
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    prices = _read(
        conn, f"SELECT {_select(frames.PRICE_COLUMNS)} FROM prices {where} ORDER BY ticker, date",
        frames.PRICE_COLUMNS, params,
    )
    for column in frames.PRICE_COLUMNS[2:]:
        prices[column] = prices[column].astype(float)
    return prices


def read_sectors(conn: sa.Connection) -> pd.DataFrame:
    return _read(
        conn, f"SELECT {_select(frames.SECTOR_COLUMNS)} FROM ticker_sectors ORDER BY ticker",
        frames.SECTOR_COLUMNS,
    )
