"""File and yfinance implementations of `frames.DisclosureSource` / `frames.PriceSource`."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from feedback_loop.lib import frames
from feedback_loop.lib.ingest import parsing


class FileDisclosureSource:
    """Stock-watcher style House/Senate files joined to the congress-legislators tables.

    Every file is read and parsed before anything is returned: one unreadable file raises
    `parsing.SourceFileError` and yields nothing. Disclosure dates after `today` (default: the
    current date) are rejected as out of range.
    """

    def __init__(self, disclosure_paths: Sequence[str | Path], legislator_paths: Sequence[str | Path], today=None):
        self.disclosure_paths = [Path(p) for p in disclosure_paths]
        self.legislator_paths = [Path(p) for p in legislator_paths]
        self.today = today
        #: Per-source counts beyond SourceStats (missing tickers, unmatched filers, ...).
        self.metadata: dict[str, dict[str, int]] = {}

    def load_disclosures(self) -> frames.DisclosureBatch:
        parsed: dict[str, list[parsing.ParseResult]] = {}
        for path in self.disclosure_paths:
            source, result = parsing.parse_disclosure_file(path, today=self.today)
            parsed.setdefault(source, []).append(result)
        results = [r for rs in parsed.values() for r in rs]
        if not results:
            raise ValueError("FileDisclosureSource needs at least one disclosure file")
        accepted = pd.concat([r.accepted for r in results], ignore_index=True)
        rejects = pd.concat([r.rejects for r in results], ignore_index=True)
        # The same trade (or rejected line) in two files of one source (overlapping dumps) is kept
        # once; the copies count as collapsed.
        accepted_again = accepted["disclosure_id"].duplicated(keep="first")
        rejected_again = rejects.duplicated(["source", "row_hash"], keep="first")
        collapsed_across_files = pd.concat([accepted.loc[accepted_again, "source"],
                                            rejects.loc[rejected_again, "source"]]).value_counts()
        accepted, rejects = accepted[~accepted_again], rejects[~rejected_again]
        legislators = parsing.load_legislators(self.legislator_paths)
        disclosures, politicians = parsing.attach_politicians(accepted, legislators)

        stats, self.metadata = {}, {}
        for source, rs in parsed.items():
            stats[source] = frames.SourceStats(
                rows_read=sum(r.stats.rows_read for r in rs),
                accepted=int((disclosures["source"] == source).sum()),
                rejected=int((rejects["source"] == source).sum()),
                duplicates_collapsed=sum(r.stats.duplicates_collapsed for r in rs)
                + int(collapsed_across_files.get(source, 0)),
            )
            counts: dict[str, int] = {}
            for r in rs:
                for key, value in r.metadata.items():
                    counts[key] = counts.get(key, 0) + value
            mine = disclosures[disclosures["source"] == source]
            counts["unmatched_filer_rows"] = int(mine["politician_id"].isna().sum())
            counts["unknown_party_rows"] = int(mine["party"].isna().sum())
            self.metadata[source] = counts
        return frames.DisclosureBatch(
            politicians=politicians, disclosures=disclosures.reset_index(drop=True),
            rejects=rejects[frames.REJECT_COLUMNS], stats=stats,
        )


class FilePriceSource:
    """A long-format price file (CSV/.csv.gz/Parquet); sectors from an optional CSV.

    `rejects` holds the quarantined rows (PRICE_REJECT_COLUMNS) of the last `load_prices`.
    """

    def __init__(self, path: str | Path, sectors_path: str | Path | None = None, today=None):
        self.path = Path(path)
        self.sectors_path = Path(sectors_path) if sectors_path else None
        self.today = today
        self.rejects = frames.empty(frames.PRICE_REJECT_COLUMNS)

    def load_prices(self, tickers: list[str] | None = None) -> pd.DataFrame:
        parsed = parsing.parse_price_file(self.path, today=self.today)
        prices, self.rejects = parsed.prices, parsed.rejects
        if tickers is not None:
            wanted = set(parsing.normalize_ticker(pd.Series(list(tickers), dtype=object)).dropna())
            prices = prices[prices["ticker"].isin(wanted | {frames.MARKET_TICKER})]
        return prices.reset_index(drop=True)

    def fingerprint(self) -> str:
        """sha256 of the price file's (and the sectors file's) bytes, and of `today` when set."""
        digest = hashlib.sha256(str(self.today).encode())
        for path in (self.path, self.sectors_path):
            if path is not None:
                with path.open("rb") as handle:
                    digest.update(hashlib.file_digest(handle, "sha256").digest())
        return digest.hexdigest()

    def load_sectors(self) -> pd.DataFrame:
        if self.sectors_path is None:
            return frames.empty(frames.SECTOR_COLUMNS)
        sectors = pd.read_csv(self.sectors_path, dtype=str, keep_default_na=False)
        missing = [c for c in frames.SECTOR_COLUMNS if c not in sectors.columns]
        if missing:
            raise ValueError(f"sectors file {self.sectors_path} is missing columns {missing}")
        sectors["ticker"] = parsing.normalize_ticker(sectors["ticker"])
        sectors = sectors[sectors["ticker"].notna() & (sectors["sector"].str.strip() != "")]
        return sectors[frames.SECTOR_COLUMNS].drop_duplicates("ticker").reset_index(drop=True)


Downloader = Callable[[list[str], pd.Timestamp, pd.Timestamp], pd.DataFrame]

_YF_COLUMNS = {
    "Open": "open", "High": "high", "Low": "low", "Close": "close", "Adj Close": "adj_close",
    "Volume": "volume",
}


def _yfinance_download(tickers: list[str], start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    try:
        import yfinance
    except ImportError as error:
        raise ImportError(
            "YFinancePriceSource needs the optional yfinance package: "
            "pip install 'feedback_loop[yfinance]'"
        ) from error
    # yfinance's `end` is exclusive.
    return yfinance.download(
        tickers, start=start.date(), end=(end + pd.Timedelta(days=1)).date(),
        auto_adjust=False, group_by="column", progress=False, threads=False,
    )


def yfinance_to_long(wide: pd.DataFrame) -> pd.DataFrame:
    """yfinance's (field, ticker) column frame indexed by date -> long PRICE_COLUMNS."""
    if wide is None or wide.empty:
        return frames.empty(frames.PRICE_COLUMNS)
    missing = [c for c in _YF_COLUMNS if c not in wide.columns.get_level_values(0)]
    if missing:
        raise ValueError(f"yfinance frame is missing fields {missing}")
    long = wide.stack(level=1, future_stack=True).rename_axis(["date", "ticker"]).reset_index()
    long = long.rename(columns=_YF_COLUMNS).dropna(subset=["close", "adj_close"])
    long["ticker"] = parsing.normalize_ticker(long["ticker"])
    long["date"] = pd.to_datetime(long["date"]).dt.tz_localize(None).dt.normalize().astype("datetime64[ns]")
    for column in frames.PRICE_COLUMNS[2:]:
        long[column] = long[column].astype(float)
    return long[frames.PRICE_COLUMNS].sort_values(["ticker", "date"]).reset_index(drop=True)


class YFinancePriceSource:
    """Daily prices from Yahoo Finance, downloaded in batches with retries and backoff."""

    def __init__(
        self,
        tickers: Sequence[str],
        start,
        end,
        batch_size: int = 50,
        max_retries: int = 3,
        backoff_s: float = 1.0,
        downloader: Downloader | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.tickers = list(tickers)
        self.start, self.end = pd.Timestamp(start), pd.Timestamp(end)
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.downloader = downloader or _yfinance_download
        self.sleep = sleep

    def _download_batch(self, batch: list[str]) -> pd.DataFrame:
        """One batch, tried up to `max_retries` times, waiting backoff_s * 2**k after failure k."""
        attempt = 1
        while True:
            try:
                return yfinance_to_long(self.downloader(batch, self.start, self.end))
            except ImportError:
                raise
            except Exception as error:  # network and library errors of any kind
                if attempt >= self.max_retries:
                    raise RuntimeError(
                        f"price download failed after {attempt} attempts for tickers "
                        f"{', '.join(batch)}: {error}"
                    ) from error
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
                attempt += 1

    def load_prices(self, tickers: list[str] | None = None) -> pd.DataFrame:
        requested = self.tickers if tickers is None else list(tickers)
        # Yahoo writes class shares with '-', as the disclosures are normalized.
        normalized = parsing.normalize_ticker(pd.Series(requested, dtype=object)).dropna()
        wanted = sorted(set(normalized) | {frames.MARKET_TICKER})
        parts = [
            self._download_batch(wanted[i:i + self.batch_size])
            for i in range(0, len(wanted), self.batch_size)
        ]
        return pd.concat(parts, ignore_index=True) if parts else frames.empty(frames.PRICE_COLUMNS)

    def load_sectors(self) -> pd.DataFrame:
        return frames.empty(frames.SECTOR_COLUMNS)

    def fingerprint(self) -> None:
        """None: Yahoo restates history at any time, so every ingest takes all it returns."""
