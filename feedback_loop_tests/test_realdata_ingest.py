"""The parsers and ingest over the real published files in ../shared/data (skipped when absent).

Each class of defect the data README lists is looked up in the raw files and followed to
where the parser puts it. Run with -s to see the accounting.
"""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.lib import frames, policy
from feedback_loop.lib.ingest import parsing
from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.ingest.sources import FileDisclosureSource, FilePriceSource
from feedback_loop.lib.vocab import AssetType, RejectReason, TransactionType

pytestmark = pytest.mark.realdata

PARTY_KNOWN_MIN_FRAC = 0.95


@pytest.fixture(scope="module")
def real(shared_data):
    congress = shared_data / "congress"
    paths = {
        "house": congress / "house_ptr_transactions.csv.gz",
        "senate": congress / "senate_ptr_transactions.csv.gz",
    }
    raw = {source: parsing.read_disclosure_file(path)[1] for source, path in paths.items()}
    source = FileDisclosureSource(
        list(paths.values()),
        [congress / "legislators-current.csv.gz", congress / "legislators-historical.csv.gz"],
    )
    batch = source.load_disclosures()
    return raw, batch, source.metadata


def _accepted(batch, source: str) -> pd.DataFrame:
    return batch.disclosures[batch.disclosures["source"] == source]


def _rejects(batch, source: str) -> pd.DataFrame:
    return batch.rejects[batch.rejects["source"] == source]


@pytest.mark.parametrize("source", ["house", "senate"])
def test_every_row_is_accounted_for(real, source):
    raw, batch, metadata = real
    stats = batch.stats[source]
    accepted, rejects = _accepted(batch, source), _rejects(batch, source)
    print(f"\n{source}: read={stats.rows_read} accepted={stats.accepted} rejected={stats.rejected} "
          f"collapsed={stats.duplicates_collapsed}")
    print(f"{source} rejects by reason: {rejects['reason'].value_counts().to_dict()}")
    print(f"{source} metadata: {metadata[source]}")
    assert stats.rows_read == len(raw[source])
    assert stats.rows_read == stats.accepted + stats.rejected + stats.duplicates_collapsed
    assert (len(accepted), len(rejects)) == (stats.accepted, stats.rejected)
    assert rejects["reason"].fillna("").str.strip().ne("").all()
    assert rejects["row_hash"].is_unique
    # Every raw line is either behind an accepted row (duplicate_count) or a rejected line.
    assert accepted["duplicate_count"].sum() + _rejected_lines(raw[source], rejects).sum() == stats.rows_read


def _rejected_lines(raw: pd.DataFrame, rejects: pd.DataFrame) -> pd.Series:
    """Raw lines identical to a rejected line."""
    rejected = pd.DataFrame(list(rejects["raw_row"]), columns=raw.columns)
    return raw.merge(rejected.drop_duplicates().assign(_hit=True), how="left", on=list(raw.columns))[
        "_hit"].fillna(False).set_axis(raw.index)


@pytest.mark.parametrize("source", ["house", "senate"])
def test_party_is_known_for_stock_trades(real, source):
    _, batch, _ = real
    accepted = _accepted(batch, source)
    stocks = accepted[(accepted["asset_type"] == AssetType.STOCK) & accepted["ticker"].notna()]
    known = stocks["party"].notna().mean()
    unmatched = accepted.loc[accepted["politician_id"].isna(), "filer_name"].value_counts()
    print(f"\n{source}: party known for {known:.4f} of {len(stocks)} stock trades; "
          f"unmatched filers: {unmatched.to_dict()}")
    assert known >= PARTY_KNOWN_MIN_FRAC
    assert set(accepted["party"].dropna()) <= {"D", "R", "I"}


def test_names_in_their_published_forms_join(real):
    _, batch, _ = real
    ids = batch.disclosures.groupby("filer_name")["politician_id"].agg(lambda s: set(s.dropna()))
    assert ids["Virginia Foxx"] == {"F000450"}  # filed as "Hon. Virginia Foxx"
    assert ids["A. Mitchell Mcconnell, Jr."] == {"M000355"}
    assert ids["Rafael E Cruz"] == {"C001098"}  # listed as Ted
    assert ids["Thomas R Tillis"] == {"T000476"}  # listed as Thom
    assert "Hon." not in " ".join(batch.disclosures["filer_name"])


def test_members_who_filed_under_two_spellings_are_one_politician(real):
    _, batch, _ = real
    ids = batch.disclosures.groupby("filer_name")["politician_id"].first()
    for spellings in [
        ["Neal Patrick Dunn MD, FACS", "Neal Patrick MD, FACS Dunn", "Neal Patrick MD, Facs Dunn"],
        ["Ron Wyden", "Ron L Wyden"],
        ["Tammy Duckworth", "Ladda Tammy Duckworth"],
    ]:
        assert ids[spellings].nunique() == 1 and ids[spellings].notna().all(), spellings
    names = batch.disclosures["filer_name"].nunique()
    people = batch.disclosures["politician_id"].nunique()
    assert people < names
    assert len(batch.politicians) == people and batch.politicians["politician_id"].is_unique


def test_missing_tickers_are_kept_without_a_ticker(real):
    raw, batch, metadata = real
    for source in ["house", "senate"]:
        marked = raw[source]["ticker"].str.strip().isin(["--", ""])
        accepted = _accepted(batch, source)
        assert marked.sum() > 0
        assert metadata[source]["missing_ticker"] == accepted["ticker"].isna().sum() > 0
    # A real House line with ticker "--" and a valid band is accepted with ticker None.
    house = raw["house"]
    example = house[(house["ticker"] == "--") & (house["amount"] == "$1,001 - $15,000")].iloc[0]
    match = _accepted(batch, "house")
    match = match[(match["ptr_link"] == example["ptr_link"]) & match["ticker"].isna()]
    assert len(match) > 0 and match["asset_type"].isin([t.value for t in AssetType]).all()


def test_truncated_amounts_are_rejected(real):
    raw, batch, _ = real
    house = raw["house"]
    truncated = house[house["amount"].str.strip() == "$1,001 -"]
    assert len(truncated) > 0
    rejects = _rejects(batch, "house")
    hit = rejects[rejects["reason"] == RejectReason.TRUNCATED_AMOUNT]
    assert len(hit) == len(truncated.drop_duplicates())
    assert all(r["amount"] == "$1,001 -" for r in hit["raw_row"])
    assert "$1,001 -" not in set(_accepted(batch, "house")["amount_min_usd"].astype(str))


def test_date_defects(real):
    raw, batch, _ = real
    accepted = batch.disclosures
    # Year typos in these copies show up as trades after their filing (e.g. filed 01/02/2020 for a
    # 2020-12-24 trade): rejected, one per distinct raw line whose trade date parses after its filing.
    assert not accepted["filed_before_trade"].any()
    assert (accepted["disclosure_date"] >= accepted["transaction_date"]).all()
    for source, trade_format in [("house", "%Y-%m-%d"), ("senate", "%m/%d/%Y")]:
        lines = raw[source].drop_duplicates()
        traded = pd.to_datetime(lines["transaction_date"], format=trade_format, errors="coerce")
        filed = pd.to_datetime(lines["disclosure_date"], format="%m/%d/%Y", errors="coerce")
        after = _rejects(batch, source)["reason"] == RejectReason.TRADE_AFTER_FILING
        assert after.sum() == (traded > filed).sum() > 0, source
    assert accepted["transaction_date"].dt.year.min() >= policy.MIN_TRADE_YEAR
    # Impossible years are rejected as implausible: as many rejects as raw lines with one.
    for source, parser in [("house", parsing.parse_house), ("senate", parsing.parse_senate)]:
        years = pd.to_numeric(raw[source]["transaction_date"].str.extract(r"(\d{4})")[0])
        bad_lines = raw[source][years < policy.MIN_TRADE_YEAR].drop_duplicates()
        reasons = _rejects(batch, source)["reason"]
        assert (reasons == RejectReason.TRADE_DATE_RANGE).sum() == len(bad_lines)
    # The README's `0009-06-09` does not occur in these copies: put it on a real row.
    house = raw["house"][raw["house"]["amount"] == "$1,001 - $15,000"].head(50).copy()
    house.loc[house.index[0], "transaction_date"] = "0009-06-09"
    result = parsing.parse_house(house)
    assert result.rejects["reason"].tolist() == [RejectReason.TRADE_DATE_RANGE]
    assert result.rejects["raw_row"].iloc[0]["transaction_date"] == "0009-06-09"


def test_html_is_stripped_from_real_descriptions(real):
    raw, batch, _ = real
    senate = raw["senate"]
    assert senate["asset_description"].str.contains(r"<br>|&amp;|<div", regex=True).sum() > 0
    descriptions = batch.disclosures["asset_description"].dropna()
    assert not descriptions.str.contains(r"<[a-zA-Z/][^>]*>|&amp;|&nbsp;", regex=True).any()
    assert "The Procter & Gamble Company" in set(descriptions)
    double_escaped = senate["asset_description"].str.contains("&amp;amp;", regex=False)
    assert double_escaped.any()  # "Procter &amp;amp; Gamble Company" comes out clean too
    exchanged = descriptions[descriptions.str.startswith("Pfizer Inc. (Exchanged)")]
    assert "Pfizer Inc. (Exchanged) Viatris Inc. (Received)" in set(exchanged)


def test_bonds_options_funds_are_not_stocks(real):
    raw, batch, _ = real
    counts = batch.disclosures.groupby(["source", "asset_type"]).size()
    print(f"\nasset types: {counts.to_dict()}")
    for source in ["house", "senate"]:
        for kind in [AssetType.BOND, AssetType.OPTION, AssetType.FUND, AssetType.ETF, AssetType.STOCK]:
            assert counts.get((source, kind), 0) > 0, (source, kind)
    senate = _accepted(batch, "senate")
    house = _accepted(batch, "house")
    assert set(house.loc[house["ticker"] == "TDDXX", "asset_type"]) == {AssetType.FUND}
    assert (house.loc[house["ticker"] == "SPY", "asset_type"] == AssetType.ETF).all()
    # Every real Senate "Corporate Bond"/"Municipal Security" line that was accepted is a bond.
    bonds = raw["senate"][raw["senate"]["asset_type"].isin(["Corporate Bond", "Municipal Security"])]
    bond_descriptions = set(parsing.strip_html(bonds["asset_description"]).dropna())
    accepted_bonds = senate[senate["asset_description"].isin(bond_descriptions)]
    assert len(accepted_bonds) > 0
    assert accepted_bonds["asset_type"].eq(AssetType.BOND).mean() > 0.95


def test_exchanges_and_paper_filings(real):
    raw, batch, _ = real
    for source in ["house", "senate"]:
        assert (_accepted(batch, source)["transaction_type"] == TransactionType.EXCHANGE).sum() > 0
    paper = raw["senate"][raw["senate"]["asset_type"] == parsing.SENATE_PAPER_FILING]
    rejects = _rejects(batch, "senate")
    assert (rejects["reason"] == RejectReason.PAPER_FILING).sum() == len(paper.drop_duplicates()) > 0
    assert set(_accepted(batch, "house")["transaction_type"]) <= {t.value for t in TransactionType}


def test_duplicate_lines_collapse(real):
    raw, batch, metadata = real
    for source in ["house", "senate"]:
        lines = raw[source]
        assert metadata[source]["exact_duplicates_collapsed"] == lines.duplicated().sum() > 0
        biggest = lines.value_counts(dropna=False).max()
        assert _accepted(batch, source)["duplicate_count"].max() >= biggest
        assert batch.disclosures["disclosure_id"].is_unique


def test_class_shares_are_normalized(real):
    raw, batch, _ = real
    assert (raw["house"]["ticker"] == "BRK.B").any()
    tickers = batch.disclosures["ticker"].dropna()
    assert "BRK-B" in set(tickers) and not tickers.str.contains(r"[.$a-z ]", regex=True).any()


def test_ingest_twice_leaves_row_counts_unchanged(real, engine):
    _, batch, _ = real
    tables = ["politicians", "disclosures", "disclosure_rejects"]

    def counts():
        with engine.connect() as conn:
            return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in tables}

    with engine.begin() as conn:
        ingest.write_batch(conn, batch)
    first = counts()
    print(f"\nafter first ingest: {first}")
    assert first == {"politicians": len(batch.politicians), "disclosures": len(batch.disclosures),
                     "disclosure_rejects": len(batch.rejects)}
    with engine.begin() as conn:
        written = ingest.write_batch(conn, batch)
    assert written["rejects"] == 0
    assert counts() == first
    with engine.connect() as conn:
        back = ingest.read_disclosures(conn, as_of="2020-06-30")
    assert len(back) == (batch.disclosures["disclosure_date"] <= "2020-06-30").sum()


def test_real_price_file(shared_data, real):
    _, batch, _ = real
    source = FilePriceSource(shared_data / "prices" / "daily_prices.csv.gz")
    prices = source.load_prices()
    assert list(prices.columns) == frames.PRICE_COLUMNS
    assert prices["date"].dtype == "datetime64[ns]"
    assert prices["date"].min() == pd.Timestamp("2010-01-04")
    assert prices["date"].max() == pd.Timestamp("2021-03-31")
    assert frames.MARKET_TICKER in set(prices["ticker"])
    assert not prices["ticker"].str.contains(r"[.$a-z ]", regex=True).any()
    assert not prices.duplicated(["ticker", "date"]).any()
    assert prices["adj_close"].notna().all()
    traded = set(batch.disclosures.loc[
        batch.disclosures["asset_type"].isin([AssetType.STOCK, AssetType.ETF]), "ticker"].dropna())
    covered = len(traded & set(prices["ticker"])) / len(traded)
    print(f"\nprices: {prices['ticker'].nunique()} tickers, {len(prices)} rows; "
          f"{covered:.2%} of traded stock/ETF tickers have prices")
    assert 0.2 < covered < 0.9
    assert source.load_sectors().empty
