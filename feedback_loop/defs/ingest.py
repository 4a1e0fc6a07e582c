"""Ingest: politicians, disclosures (with quarantine) and market prices, written idempotently.

Daily partitions by as-of date, like the rest of the loop (one job runs ingest → drift for
a day). Partition D writes everything the source held as of D: disclosures filed on or
before D and prices dated on or before D. Sources are whole dumps (stock-watcher files,
the synthetic history) where late filings land at any time, and every write is an upsert
on a natural key, so materializing the latest partition catches up on all history, any
past partition can be re-run, and nothing is ever duplicated. Only the parts whose content
changed since they were last written travel to the database (disclosures per filing date,
prices per ticker and month; see `db.upsert_changed_parts`), so a daily run writes the new
day and whatever the source restated, not the whole history. A price source whose content is
unchanged since the last run (same fingerprint: the file's sha256, the synthetic config) is not
even parsed again before each ticker's watermark (`store.price_watermarks`); a changed source,
or one without a fingerprint (Yahoo), is read whole. Rejected rows carry no trustworthy date,
so every run quarantines all it read (idempotently, by row hash).

A source file that cannot be read at all (empty, bad gzip, not UTF-8, ragged, ...) fails the
asset with `parsing.SourceFileError` before anything is written; the previous data stays.
"""


import os

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from feedback_loop.defs.partitions import daily_partitions
from feedback_loop.defs.resources import (
    DatabaseResource,
    DisclosureSourceResource,
    PriceSourceResource,
)
from feedback_loop.lib import frames
from feedback_loop.lib.frames import MARKET_TICKER
from feedback_loop.lib.ingest import parsing
from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.store import db
from feedback_loop.lib.vocab import SIGNAL_ASSET_TYPES

OWNERS = ["team:data-platform"]
#: Fraction of read rows that may be quarantined before ingest is considered broken.
MAX_REJECT_RATIO = float(os.environ.get("FEEDBACK_LOOP_MAX_REJECT_RATIO", "0.10"))
#: SPY must have a price within this many calendar days before the latest filing date.
SPY_FRESHNESS_DAYS = 5


def _markdown_table(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.to_markdown(index=False) if len(frame) else "_none_")


@dg.asset(
    group_name="ingest", kinds={"python", "postgres"}, owners=OWNERS, partitions_def=daily_partitions,
    description="Members of Congress with party, chamber and state, joined from the disclosure source.",
)
def politicians(database: DatabaseResource, disclosure_source: DisclosureSourceResource) -> dg.MaterializeResult:
    batch = disclosure_source.load()
    with database.get_engine().begin() as conn:
        written = ingest.write_politicians(conn, batch.politicians)
        total = conn.execute(sa.text("SELECT count(*) FROM politicians")).scalar()
    by_party = batch.politicians["party"].fillna("unknown").value_counts()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": int(total),
        "upserted": written,
        "by_party": dg.MetadataValue.json({str(k): int(v) for k, v in by_party.items()}),
    })


def _accounting(batch) -> pd.DataFrame:
    """One row per source: rows_read, accepted, rejected, duplicates_collapsed (within and across files), balanced."""
    return pd.DataFrame([
        {"source": name, "rows_read": s.rows_read, "accepted": s.accepted, "rejected": s.rejected,
         "duplicates_collapsed": s.duplicates_collapsed, "balanced": s.balanced()}
        for name, s in batch.stats.items()
    ], columns=["source", "rows_read", "accepted", "rejected", "duplicates_collapsed", "balanced"])


@dg.asset(
    group_name="ingest", kinds={"python", "postgres"}, owners=OWNERS, deps=[politicians],
    partitions_def=daily_partitions,
    description=(
        "Parsed, normalized, de-duplicated trade disclosures. Malformed rows are quarantined in "
        "disclosure_rejects with their reason: rows read = accepted + rejected + duplicates collapsed."
    ),
)
def disclosures(context: dg.AssetExecutionContext, database: DatabaseResource,
                disclosure_source: DisclosureSourceResource) -> dg.MaterializeResult:
    day = pd.Timestamp(context.partition_key)
    batch = disclosure_source.load()
    known = batch.disclosures[batch.disclosures["disclosure_date"] <= day]
    with database.get_engine().begin() as conn:
        ingest.write_politicians(conn, batch.politicians)
        written = ingest.write_disclosures(conn, known)
        rejects_inserted = ingest.write_rejects(conn, batch.rejects)
        total = conn.execute(sa.text("SELECT count(*) FROM disclosures")).scalar()
    accounting = _accounting(batch)
    reasons = batch.rejects["reason"].value_counts().rename_axis("reason").reset_index(name="rows")
    accepted = batch.disclosures
    eligible = accepted["ticker"].notna() & accepted["asset_type"].isin(list(SIGNAL_ASSET_TYPES))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": int(total),
        "rows_read": int(accounting["rows_read"].sum()) if len(accounting) else 0,
        "accepted": len(accepted),
        "filed_on_or_before_partition": len(known),
        "rows_written": written,
        "rejected": len(batch.rejects),
        "duplicates_collapsed": int(accounting["duplicates_collapsed"].sum()) if len(accounting) else 0,
        "accounting_balanced": bool(accounting["balanced"].all()) if len(accounting) else True,
        "accounting": _markdown_table(accounting),
        "rejects_inserted": rejects_inserted,
        "rejects_by_reason": _markdown_table(reasons),
        "signal_eligible": int(eligible.sum()),
        "without_ticker": int(accepted["ticker"].isna().sum()),
        "party_known_share_of_stock_trades": float(accepted.loc[eligible, "party"].notna().mean()) if eligible.any() else 0.0,
        "latest_filing_date": str(accepted["disclosure_date"].max().date()) if len(accepted) else "",
    })


@dg.asset(
    group_name="ingest", kinds={"python", "postgres"}, owners=OWNERS, deps=[disclosures],
    partitions_def=daily_partitions,
    description=("Daily OHLCV and adjusted close for every traded ticker the price source knows, plus SPY; sectors "
                 "where known. Rows without close/adj_close or with a non-positive price are quarantined in "
                 "price_rejects, never written."),
)
def market_prices(context: dg.AssetExecutionContext, database: DatabaseResource,
                  price_source: PriceSourceResource) -> dg.MaterializeResult:
    day = pd.Timestamp(context.partition_key)
    engine = database.get_engine()
    with engine.connect() as conn:
        tickers = sorted(conn.execute(sa.text(
            "SELECT DISTINCT ticker FROM disclosures WHERE ticker IS NOT NULL")).scalars())
    source = price_source.get_source()
    fingerprint = source.fingerprint()
    with engine.connect() as conn:
        written_through = ingest.price_watermarks(conn, fingerprint)
    # Every source's rows pass the one price rule; a file source has quarantined its unreadable rows
    # already. Of an unchanged source, only each ticker's rows after its watermark are new.
    checked = parsing.parse_prices(source.load_prices(tickers), written_through=written_through)
    rejects = pd.concat([getattr(source, "rejects", frames.empty(frames.PRICE_REJECT_COLUMNS)), checked.rejects],
                        ignore_index=True).drop_duplicates("row_hash")
    prices = checked.prices[checked.prices["date"] <= day]
    sectors = source.load_sectors()
    with engine.begin() as conn:
        written = ingest.write_prices(conn, prices)
        rejects_inserted = ingest.write_price_rejects(conn, rejects)
        ingest.write_sectors(conn, sectors)
        ingest.write_price_watermarks(conn, fingerprint, tickers, day, prices)
        total = conn.execute(sa.text("SELECT count(*) FROM prices")).scalar()
        priced = set(prices["ticker"].unique()) | ingest.priced_tickers(conn)
    reasons = rejects["reason"].value_counts().rename_axis("reason").reset_index(name="rows")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": int(total),
        "source_fingerprint": fingerprint or "none: read whole",
        "tickers_read_after_watermark": len(written_through),
        "rows_loaded": len(prices),
        "rows_written": written,
        "rejected": len(rejects),
        "rejects_inserted": rejects_inserted,
        "rejects_by_reason": _markdown_table(reasons),
        "tickers_priced": len(priced),
        "traded_tickers_without_price": len(set(tickers) - priced),
        "first_date": str(prices["date"].min().date()) if len(prices) else "",
        "last_date": str(prices["date"].max().date()) if len(prices) else "",
        "sectors_known": len(sectors),
    })


def _scalar(database: DatabaseResource, sql: str):
    with database.get_engine().connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


@dg.asset_check(asset=disclosures, blocking=True, partitions_def=daily_partitions,
                description=("No two accepted disclosures share a natural key (counted over the filing dates that "
                             "changed since they were last verified)."))
def disclosures_have_unique_natural_keys(database: DatabaseResource) -> dg.AssetCheckResult:
    engine = database.get_engine()
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        found = ingest.natural_key_duplicates(conn)
    return dg.AssetCheckResult(passed=found["duplicate_keys"] == 0, severity=dg.AssetCheckSeverity.ERROR,
                               metadata=found)


@dg.asset_check(asset=disclosures, blocking=True, partitions_def=daily_partitions,
                description="Every row read is accepted, rejected or collapsed into a duplicate, within and across files.")
def disclosure_accounting_is_balanced(disclosure_source: DisclosureSourceResource) -> dg.AssetCheckResult:
    accounting = _accounting(disclosure_source.load())
    unbalanced = accounting[~accounting["balanced"].astype(bool)]
    return dg.AssetCheckResult(passed=len(unbalanced) == 0, severity=dg.AssetCheckSeverity.ERROR, metadata={
        "unbalanced_sources": ", ".join(unbalanced["source"]), "accounting": _markdown_table(accounting)})


@dg.asset_check(asset=disclosures, blocking=True, partitions_def=daily_partitions,
                description="Every disclosure filed before its trade date is flagged (filed_before_trade).")
def disclosures_filed_before_trade_are_flagged(database: DatabaseResource) -> dg.AssetCheckResult:
    unflagged = _scalar(database, "SELECT count(*) FROM disclosures WHERE disclosure_date < transaction_date AND NOT filed_before_trade")
    flagged = _scalar(database, "SELECT count(*) FROM disclosures WHERE filed_before_trade")
    return dg.AssetCheckResult(passed=unflagged == 0, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"unflagged": int(unflagged), "flagged": int(flagged)})


@dg.asset_check(asset=disclosures, blocking=True, partitions_def=daily_partitions,
                description=f"Quarantined rows stay under FEEDBACK_LOOP_MAX_REJECT_RATIO (default {MAX_REJECT_RATIO:.0%}).")
def disclosure_reject_ratio_is_bounded(database: DatabaseResource) -> dg.AssetCheckResult:
    rejected = _scalar(database, "SELECT count(*) FROM disclosure_rejects")
    accepted = _scalar(database, "SELECT COALESCE(sum(duplicate_count), 0) FROM disclosures")
    ratio = rejected / max(rejected + accepted, 1)
    return dg.AssetCheckResult(passed=ratio <= MAX_REJECT_RATIO, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"reject_ratio": float(ratio), "bound": MAX_REJECT_RATIO,
                                         "rejected": int(rejected)})


@dg.asset_check(asset=market_prices, blocking=True, partitions_def=daily_partitions,
                description=("Every price is positive: guaranteed by the table's CHECK constraint prices_are_positive, "
                             "else counted over the whole table."))
def prices_are_positive(database: DatabaseResource) -> dg.AssetCheckResult:
    with database.get_engine().connect() as conn:
        enforced = db.has_check_constraint(conn, "prices", "prices_are_positive")
        bad = 0 if enforced else conn.execute(sa.text(
            "SELECT count(*) FROM prices WHERE NOT (close > 0 AND adj_close > 0 AND (open IS NULL OR open > 0)"
            " AND (high IS NULL OR high > 0) AND (low IS NULL OR low > 0))")).scalar()
    return dg.AssetCheckResult(passed=bad == 0, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"non_positive_rows": int(bad), "enforced_by_constraint": enforced})


@dg.asset_check(asset=market_prices, blocking=True, partitions_def=daily_partitions,
                description=("One price row per (ticker, date): guaranteed by a unique index on those columns (the "
                             "primary key), else counted over the whole table."))
def prices_are_unique_per_ticker_day(database: DatabaseResource) -> dg.AssetCheckResult:
    with database.get_engine().connect() as conn:
        enforced = db.has_unique_index(conn, "prices", ["ticker", "date"])
        duplicates = 0 if enforced else conn.execute(sa.text(
            "SELECT count(*) - count(DISTINCT (ticker, date)) FROM prices")).scalar()
    return dg.AssetCheckResult(passed=duplicates == 0, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"duplicate_rows": int(duplicates), "enforced_by_unique_index": enforced})


@dg.asset_check(asset=market_prices, blocking=True, partitions_def=daily_partitions,
                description=f"SPY has a price within {SPY_FRESHNESS_DAYS} days before the partition's as-of date.")
def spy_is_present_and_fresh(context: dg.AssetCheckExecutionContext, database: DatabaseResource) -> dg.AssetCheckResult:
    as_of = pd.Timestamp(context.partition_key).date()
    with database.get_engine().connect() as conn:
        spy_last = conn.execute(sa.text("SELECT max(date) FROM prices WHERE ticker = :t AND date <= :d"),
                                {"t": MARKET_TICKER, "d": as_of}).scalar()
    if spy_last is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   metadata={"spy_last_date": str(spy_last), "as_of": str(as_of)})
    lag_days = (as_of - spy_last).days
    return dg.AssetCheckResult(passed=lag_days <= SPY_FRESHNESS_DAYS, severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"spy_last_date": str(spy_last), "as_of": str(as_of), "lag_days": lag_days})
