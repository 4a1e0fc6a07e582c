"""Column contracts of the DataFrames passed between lib modules (one definition each).

Dates in frames are pandas Timestamps normalized to midnight (datetime64[ns]); the
database stores them as DATE. Money is USD; returns carry their unit in the name
(`_pct` = percent points, `_frac` = fraction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

POLITICIAN_COLUMNS = [
    "politician_id", "full_name", "first_name", "last_name", "party", "chamber", "state",
    "bioguide_id", "source",
]

DISCLOSURE_COLUMNS = [
    "disclosure_id", "source", "politician_id", "filer_name", "chamber", "party", "state",
    "ticker", "asset_description", "asset_type", "transaction_type", "transaction_date",
    "disclosure_date", "amount_min_usd", "amount_max_usd", "owner", "ptr_link",
    "duplicate_count", "filed_before_trade",
]

REJECT_COLUMNS = ["source", "row_hash", "raw_row", "reason"]

PRICE_REJECT_COLUMNS = ["row_hash", "raw_row", "reason"]

PRICE_COLUMNS = ["ticker", "date", "open", "high", "low", "close", "adj_close", "volume"]

SECTOR_COLUMNS = ["ticker", "sector"]

MARKET_TICKER = "SPY"

DATE_COLUMNS = {
    "transaction_date", "disclosure_date", "date", "as_of", "entry_date", "exit_date", "t0", "t1",
}


def empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in columns})


def normalize_dates(frame: pd.DataFrame) -> pd.DataFrame:
    """Return `frame` with every known date column as normalized datetime64[ns]."""
    out = frame.copy()
    for column in DATE_COLUMNS.intersection(out.columns):
        out[column] = pd.to_datetime(out[column]).dt.normalize()
    return out


def day_numbers(dates) -> np.ndarray:
    """Midnight dates (datetime64 array or Series) as whole days since the epoch (int64):
    integer keys for sorting and binary search."""
    return np.asarray(dates, dtype="datetime64[D]").astype(np.int64)


@dataclass
class SourceStats:
    """Accounting of one disclosure source: rows_read = accepted + rejected + duplicates_collapsed."""

    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates_collapsed: int = 0

    def balanced(self) -> bool:
        return self.rows_read == self.accepted + self.rejected + self.duplicates_collapsed


@dataclass
class DisclosureBatch:
    """What a disclosure source yields: politicians, accepted disclosures, quarantined rejects."""

    politicians: pd.DataFrame  # POLITICIAN_COLUMNS
    disclosures: pd.DataFrame  # DISCLOSURE_COLUMNS
    rejects: pd.DataFrame  # REJECT_COLUMNS
    stats: dict[str, SourceStats] = field(default_factory=dict)  # per source name


class DisclosureSource(Protocol):
    def load_disclosures(self) -> DisclosureBatch: ...


class PriceSource(Protocol):
    def load_prices(self, tickers: list[str] | None = None) -> pd.DataFrame:
        """PRICE_COLUMNS for `tickers` (all known when None) plus SPY."""

    def load_sectors(self) -> pd.DataFrame:
        """SECTOR_COLUMNS; empty when the source knows no sectors."""

    def fingerprint(self) -> str | None:
        """Changes whenever the rows the source returns may change; None when that cannot be told
        (then every ingest takes all the source's rows instead of those after each watermark)."""
