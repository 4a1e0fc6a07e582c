"""Parsing rules of the House/Senate stock-watcher formats, on small hand-made rows."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from feedback_loop.lib import frames
from feedback_loop.lib.ingest import parsing
from feedback_loop.lib.vocab import AssetType, RejectReason, TransactionType

HOUSE_BASE = {
    "disclosure_year": "2020", "disclosure_date": "04/28/2020", "transaction_date": "2020-02-24",
    "owner": "joint", "ticker": "BHC", "asset_description": "Bausch Health Companies Inc.",
    "type": "purchase", "amount": "$1,001 - $15,000", "representative": "Hon. Virginia Foxx",
    "district": "NC05", "ptr_link": "https://example/1.pdf", "cap_gains_over_200_usd": "False",
}
SENATE_BASE = {
    "transaction_date": "12/22/2020", "owner": "Spouse", "ticker": "BA",
    "asset_description": "The Boeing Company", "asset_type": "Stock", "type": "Purchase",
    "amount": "$15,001 - $50,000", "comment": "--", "senator": "A. Mitchell Mcconnell, Jr.",
    "ptr_link": "https://example/ptr/1/", "disclosure_date": "12/31/2020",
}


def house(*changes: dict) -> pd.DataFrame:
    return pd.DataFrame([{**HOUSE_BASE, **c} for c in changes])


def senate(*changes: dict) -> pd.DataFrame:
    return pd.DataFrame([{**SENATE_BASE, **c} for c in changes])


def reason_of(result: parsing.ParseResult) -> list[str]:
    return result.rejects["reason"].tolist()


def test_house_row_becomes_a_disclosure_with_every_column():
    result = parsing.parse_house(house({}))
    row = result.accepted.iloc[0]
    assert list(result.accepted.columns) == frames.DISCLOSURE_COLUMNS
    assert row["source"] == "house" and row["chamber"] == "house"
    assert row["filer_name"] == "Virginia Foxx"
    assert row["state"] == "NC"
    assert row["transaction_date"] == pd.Timestamp("2020-02-24")
    assert row["disclosure_date"] == pd.Timestamp("2020-04-28")
    assert (row["amount_min_usd"], row["amount_max_usd"]) == (1001, 15000)
    assert row["transaction_type"] == TransactionType.PURCHASE
    assert row["asset_type"] == AssetType.STOCK
    assert row["duplicate_count"] == 1 and not row["filed_before_trade"]
    assert result.stats == frames.SourceStats(rows_read=1, accepted=1, rejected=0, duplicates_collapsed=0)


@pytest.mark.parametrize(("raw", "expected"), [
    ("purchase", TransactionType.PURCHASE), ("sale_full", TransactionType.SALE_FULL),
    ("sale_partial", TransactionType.SALE_PARTIAL), ("exchange", TransactionType.EXCHANGE),
])
def test_house_transaction_types(raw, expected):
    assert parsing.parse_house(house({"type": raw})).accepted["transaction_type"].tolist() == [expected]


@pytest.mark.parametrize(("raw", "expected"), [
    ("Purchase", TransactionType.PURCHASE), ("Sale (Full)", TransactionType.SALE_FULL),
    ("Sale (Partial)", TransactionType.SALE_PARTIAL), ("Exchange", TransactionType.EXCHANGE),
])
def test_senate_transaction_types(raw, expected):
    assert parsing.parse_senate(senate({"type": raw})).accepted["transaction_type"].tolist() == [expected]


def test_unknown_transaction_type_is_rejected_with_reason_and_raw_strings():
    result = parsing.parse_senate(senate({"type": "Gift"}, {"type": "Purchase"}))
    assert len(result.accepted) == 1
    assert reason_of(result) == [RejectReason.TRANSACTION_TYPE]
    reject = result.rejects.iloc[0]
    assert reject["raw_row"]["type"] == "Gift" and reject["source"] == "senate"
    expected_hash = hashlib.sha256(("senate" + json.dumps(
        reject["raw_row"], separators=(",", ":"), ensure_ascii=False)).encode()).hexdigest()
    assert reject["row_hash"] == expected_hash
    # House spellings are not Senate spellings, and the other way round.
    assert reason_of(parsing.parse_house(house({"type": "Purchase"}))) == [RejectReason.TRANSACTION_TYPE]


def test_senate_paper_filings_are_rejected():
    result = parsing.parse_senate(senate({
        "asset_type": "PDF Disclosed Filing", "type": "", "amount": "Unknown", "ticker": "",
    }))
    assert reason_of(result) == [RejectReason.PAPER_FILING]


@pytest.mark.parametrize(("amount", "low", "high"), [
    ("$1,001 - $15,000", 1001, 15000),
    ("$5,000,001 - $25,000,000", 5_000_001, 25_000_000),
    ("Over $50,000,000", 50_000_001, None),
    ("$1,000,000 +", 1_000_001, None),
])
def test_amount_bands(amount, low, high):
    row = parsing.parse_house(house({"amount": amount})).accepted.iloc[0]
    assert row["amount_min_usd"] == low
    assert row["amount_max_usd"] == high


@pytest.mark.parametrize(("amount", "reason"), [
    ("$1,001 -", RejectReason.TRUNCATED_AMOUNT),
    ("$15,001 - ", RejectReason.TRUNCATED_AMOUNT),
    ("Unknown", RejectReason.AMOUNT),
    ("$15,000 - $1,001", RejectReason.AMOUNT),
    ("", RejectReason.AMOUNT),
])
def test_bad_amounts_are_rejected(amount, reason):
    assert reason_of(parsing.parse_house(house({"amount": amount}))) == [reason]


def test_senate_dates_without_leading_zeros():
    row = parsing.parse_senate(senate({"transaction_date": "6/2/2017", "disclosure_date": "7/14/2017"}))
    assert row.accepted.iloc[0]["transaction_date"] == pd.Timestamp("2017-06-02")
    assert row.accepted.iloc[0]["disclosure_date"] == pd.Timestamp("2017-07-14")


@pytest.mark.parametrize(("trade_date", "reason"), [
    ("0009-06-09", RejectReason.TRADE_DATE_RANGE),
    ("1999-12-31", RejectReason.TRADE_DATE_RANGE),
    ("2022-01-05", RejectReason.TRADE_AFTER_FILING),  # filed 2020-04-28, before the trade
    ("2020-02-30", RejectReason.TRADE_DATE),
    ("", RejectReason.TRADE_DATE),
    ("soon", RejectReason.TRADE_DATE),
])
def test_impossible_trade_dates_are_rejected(trade_date, reason):
    assert reason_of(parsing.parse_house(house({"transaction_date": trade_date}))) == [reason]


def test_unparseable_filing_date_is_rejected():
    assert reason_of(parsing.parse_house(house({"disclosure_date": "2020-04-28"}))) == [
        RejectReason.FILING_DATE
    ]


def test_filing_dated_before_the_trade_is_rejected():
    # Accepted, it would be visible as of its filing date, eleven months before the trade.
    result = parsing.parse_house(house(
        {"transaction_date": "2020-12-24", "disclosure_date": "01/02/2020"}, {},
    ))
    assert reason_of(result) == [RejectReason.TRADE_AFTER_FILING]
    assert result.accepted["filed_before_trade"].tolist() == [False]


@pytest.mark.parametrize(("raw", "expected"), [
    ("BRK.B", "BRK-B"), ("brk.b", "BRK-B"), (" $AAPL ", "AAPL"), ("BAC$K", "BAC-PK"),
    ("LGF-B", "LGF-B"), ("--", None), ("", None), ("N/A", None),
])
def test_ticker_normalization(raw, expected):
    assert parsing.normalize_ticker(pd.Series([raw])).tolist() == [expected]


def test_per_distinct_transforms_each_value_once_and_maps_back_in_place():
    values = pd.Series(["b", None, "a", "b", np.nan, "a"], index=[5, 3, 5, 1, 0, 2], name="x")
    calls = []

    def upper(text: pd.Series) -> pd.Series:
        calls.append(len(text))
        return text.fillna("?").str.upper()

    result = parsing._per_distinct(values, upper)
    assert result.tolist() == ["B", "?", "A", "B", "?", "A"]
    assert result.index.tolist() == [5, 3, 5, 1, 0, 2] and result.name == "x"
    assert calls == [3]  # "b", "a" and one missing value for None and NaN


def test_cleaners_treat_none_and_nan_as_empty_text():
    values = pd.Series([None, "x", np.nan], dtype=object)
    assert parsing.strip_html(values).tolist() == [None, "x", None]
    assert parsing.clean_filer_name(values).tolist() == [None, "x", None]
    assert parsing.normalize_ticker(values).tolist() == [None, "X", None]
    assert parsing.parse_amount(values)[2].tolist() == [RejectReason.AMOUNT] * 3


def test_missing_tickers_are_kept_and_counted():
    result = parsing.parse_house(house({"ticker": "--", "asset_description": "Rental property"}, {}))
    assert result.accepted["ticker"].isna().tolist() == [True, False]
    assert result.accepted["asset_type"].tolist() == [AssetType.OTHER, AssetType.STOCK]
    assert result.metadata["missing_ticker"] == 1


@pytest.mark.parametrize(("description", "ticker", "expected"), [
    ("SPDR S&P 500 ETF Trust", "SPY", AssetType.ETF),
    ("iShares Core MSCI EAFE", "IEFA", AssetType.ETF),
    ("Vanguard Total Stock Market ETF", "VTI", AssetType.ETF),
    ("Apple Inc. Call Option, strike $300", "AAPL", AssetType.OPTION),
    ("Microsoft Corp - Put", "MSFT", AssetType.OPTION),
    ("US Treasury Notes 2.5% 2024", "", AssetType.BOND),
    ("Tampa Florida Solid Waste System Revenue Bond", "", AssetType.BOND),
    ("Minnesota ST GO St Var Purp BDS 5.00% Due 08/01/2021", "", AssetType.BOND),
    ("Los Angeles CNTY Calif Tax and Rev 4.00% Due 06/30/2021", "", AssetType.BOND),
    ("American Tax-Exempt bond Fd", "", AssetType.FUND),
    ("Lord Abbett Ultra Short Bond Fund Class F", "LUBFX", AssetType.FUND),
    ("Lord Abbett Ultra Short Bond", "LUBFX", AssetType.FUND),
    ("JNL/MELLON NASDAQ 100 INDEX", "", AssetType.FUND),
    ("Fidelity Contrafund", "FCNTX", AssetType.FUND),
    ("TD Money Market Portfolio", "TDDXX", AssetType.FUND),
    ("Grayscale Bitcoin Trust", "GBTC", AssetType.CRYPTO),
    ("Callaway Golf Company", "ELY", AssetType.STOCK),
    ("Family farm LLC", "", AssetType.OTHER),
])
def test_house_asset_types_from_description(description, ticker, expected):
    result = parsing.parse_house(house({"asset_description": description, "ticker": ticker}))
    assert result.accepted["asset_type"].tolist() == [expected]


@pytest.mark.parametrize(("asset_type", "description", "expected"), [
    ("Stock", "The Boeing Company", AssetType.STOCK),
    ("Stock", "SPDR S&P 500 ETF Trust", AssetType.ETF),
    ("Stock Option", "Boeing call", AssetType.OPTION),
    ("Corporate Bond", "Boeing 3.2% 2029", AssetType.BOND),
    ("Municipal Security", "Tampa Revenue", AssetType.BOND),
    ("Cryptocurrency", "Bitcoin", AssetType.CRYPTO),
    ("Non-Public Stock", "EB 480 Sprague, LLC", AssetType.OTHER),
    ("Other Securities", "Vanguard 500 Index Fund", AssetType.FUND),
    ("", "The Boeing Company", AssetType.STOCK),
])
def test_senate_asset_types(asset_type, description, expected):
    result = parsing.parse_senate(senate({"asset_type": asset_type, "asset_description": description}))
    assert result.accepted["asset_type"].tolist() == [expected]


def test_html_is_stripped_from_descriptions():
    result = parsing.parse_senate(senate(
        {"asset_description": "Pfizer Inc. (Exchanged) <br> Viatris Inc. (Received)"},
        {"asset_description": "The Procter &amp; Gamble Company", "ticker": "PG"},
        {"asset_description": 'Acme <div class="text-muted"><em>Rate:</em>&nbsp;5%</div>', "ticker": "--"},
    ))
    assert result.accepted["asset_description"].tolist() == [
        "Pfizer Inc. (Exchanged) Viatris Inc. (Received)",
        "The Procter & Gamble Company",
        "Acme Rate: 5%",
    ]


def test_exact_duplicates_collapse_into_one_counted_row():
    result = parsing.parse_house(house({}, {}, {}, {"ticker": "MSFT"}))
    counts = dict(zip(result.accepted["ticker"], result.accepted["duplicate_count"]))
    assert counts == {"BHC": 3, "MSFT": 1}
    assert result.stats.duplicates_collapsed == 2 and result.stats.balanced()


def test_duplicate_rejects_are_counted_once():
    result = parsing.parse_house(house({"amount": "$1,001 -"}, {"amount": "$1,001 -"}, {}))
    assert (result.stats.accepted, result.stats.rejected, result.stats.duplicates_collapsed) == (1, 1, 1)
    assert result.stats.rows_read == 3


def test_lines_differing_outside_the_natural_key_are_one_trade():
    result = parsing.parse_senate(senate({"comment": "--"}, {"comment": "R"}))
    assert len(result.accepted) == 1 and result.accepted.iloc[0]["duplicate_count"] == 2
    assert result.stats.balanced() and result.metadata["key_duplicates_collapsed"] == 1


def test_disclosure_id_is_stable_and_depends_on_the_natural_key():
    first = parsing.parse_house(house({})).accepted["disclosure_id"].iloc[0]
    again = parsing.parse_house(house({"cap_gains_over_200_usd": "True"})).accepted["disclosure_id"].iloc[0]
    other_owner = parsing.parse_house(house({"owner": "self"})).accepted["disclosure_id"].iloc[0]
    other_amount = parsing.parse_house(house({"amount": "$15,001 - $50,000"})).accepted["disclosure_id"].iloc[0]
    assert first == again
    assert len({first, other_owner, other_amount}) == 3
    assert len(first) == 64


def test_disclosure_id_is_sha256_of_the_key_text_stored_ids_were_made_from():
    result = parsing.parse_house(house({}, {
        "ticker": "--", "asset_description": "<b>Rental</b> property", "owner": "",
        "amount": "Over $50,000,000", "ptr_link": "",
    }))
    keys = [
        ("house|Virginia Foxx|2020-02-24|2020-04-28|BHC|purchase|1001.0-15000.0|joint"
         "|https://example/1.pdf"),
        "house|Virginia Foxx|2020-02-24|2020-04-28|Rental property|purchase|50000001.0-||",
    ]
    assert result.accepted["disclosure_id"].tolist() == [
        hashlib.sha256(key.encode()).hexdigest() for key in keys
    ]


def test_stats_balance_on_a_mixed_batch():
    raw = house({}, {}, {"type": "gift"}, {"amount": "$1,001 -"}, {"transaction_date": "0009-06-09"},
                {"ticker": "--"}, {"ticker": "BRK.B"})
    result = parsing.parse_house(raw)
    assert result.stats.rows_read == len(raw)
    assert result.stats.balanced()
    assert (result.stats.accepted, result.stats.rejected, result.stats.duplicates_collapsed) == (3, 3, 1)
    assert result.rejects["reason"].str.len().gt(0).all()


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="amount"):
        parsing.parse_house(house({}).drop(columns="amount"))


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".json"])
def test_read_disclosure_file_detects_the_chamber_and_keeps_strings(tmp_path, suffix):
    frame = senate({"ticker": "0123"})
    path = tmp_path / f"senate{suffix}"
    if suffix == ".json":
        path.write_text(frame.to_json(orient="records"))
    elif suffix == ".csv.gz":
        with gzip.open(path, "wt") as handle:
            frame.to_csv(handle, index=False)
    else:
        frame.to_csv(path, index=False)
    source, raw = parsing.read_disclosure_file(path)
    assert source == "senate"
    assert raw.loc[0, "ticker"] == "0123"  # not read as a number
    house_path = tmp_path / "house.csv"
    house({}).to_csv(house_path, index=False)
    assert parsing.read_disclosure_file(house_path)[0] == "house"
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="representative"):
        parsing.read_disclosure_file(tmp_path / "other.csv")


# --- legislators ----------------------------------------------------------------------

LEGISLATORS = pd.DataFrame([
    # bioguide, last, first, middle, nickname, type, state, party, birthday
    ("F000450", "Foxx", "Virginia", "", "", "rep", "NC", "Democrat", "1943-06-29"),
    ("M000355", "McConnell", "Mitch", "", "", "sen", "KY", "Republican", "1942-02-20"),
    ("T000278", "Tuberville", "Tommy", "Hawley", "", "sen", "AL", "Republican", "1954-09-18"),
    ("S000185", "Scott", "Robert", "C.", "Bobby", "rep", "VA", "Democrat", "1947-04-30"),
    ("S001189", "Scott", "Austin", "", "", "rep", "GA", "Republican", "1969-12-10"),
    ("S001217", "Scott", "Rick", "", "", "sen", "FL", "Republican", "1952-12-01"),
    ("V000128", "Van Hollen", "Chris", "", "", "sen", "MD", "Democrat", "1959-01-10"),
    ("S001156", "Sánchez", "Linda", "T.", "", "rep", "CA", "Democrat", "1969-01-28"),
    ("K000383", "King", "Angus", "S.", "", "sen", "ME", "Independent", "1944-03-31"),
    ("A000367", "Amash", "Justin", "", "", "rep", "MI", "Libertarian", "1980-04-18"),
    ("K000379", "Kennedy", "Joseph", "P.", "", "rep", "MA", "Democrat", "1980-10-04"),
    ("K000113", "Kennedy", "Joseph", "P.", "", "rep", "MA", "Democrat", "1952-09-24"),
    ("S000000", "Scott", "Robert", "", "", "rep", "VA", "Whig", "1790-01-01"),
], columns=["bioguide_id", "last_name", "first_name", "middle_name", "nickname", "type", "state",
            "party", "birthday"]).assign(full_name="", file_rank=0)


def _attach(rows: list[tuple[str, str, str | None]]):
    disclosures = frames.empty(frames.DISCLOSURE_COLUMNS).reindex(range(len(rows)))
    disclosures["filer_name"] = [r[0] for r in rows]
    disclosures["chamber"] = [r[1] for r in rows]
    disclosures["state"] = [r[2] for r in rows]
    disclosures["disclosure_date"] = pd.Timestamp("2020-01-02")
    return parsing.attach_politicians(disclosures, LEGISLATORS)


def test_names_in_their_published_forms_join_to_one_politician():
    cleaned = parsing.clean_filer_name(pd.Series([
        "Hon. Virginia Foxx", "A. Mitchell Mcconnell, Jr.", "Thomas H Tuberville",
        'Hon. Robert C. "Bobby" Scott', "Bobby Scott", "Chris Van Hollen", "Linda T. Sanchez",
        "Angus S King, Jr.", "Angus S King", "Rick Scott", "Austin Scott",
    ]))
    chambers = ["house", "senate", "senate", "house", "house", "senate", "house", "senate",
                "senate", "senate", "house"]
    states = ["NC", None, None, "VA", "VA", None, "CA", None, None, None, "GA"]
    disclosures, politicians = _attach(list(zip(cleaned, chambers, states)))
    assert disclosures["politician_id"].tolist() == [
        "F000450", "M000355", "T000278", "S000185", "S000185", "V000128", "S001156",
        "K000383", "K000383", "S001217", "S001189",
    ]
    assert disclosures["party"].tolist() == ["D", "R", "R", "D", "D", "D", "D", "I", "I", "R", "R"]
    assert disclosures["state"].tolist()[:3] == ["NC", "KY", "AL"]
    assert sorted(politicians["politician_id"]) == sorted(set(disclosures["politician_id"]))
    assert list(politicians.columns) == frames.POLITICIAN_COLUMNS
    assert politicians["politician_id"].is_unique


def test_district_state_disambiguates_and_ties_stay_unmatched():
    disclosures, politicians = _attach([
        ("Robert Scott", "house", "GA"),      # no Robert Scott in GA
        ("Joseph P. Kennedy", "house", "MA"),  # two of them: ambiguous
        ("Justin Amash", "house", "MI"),      # matched, party outside D/R/I
        ("Nobody Atall", "senate", None),
    ])
    assert disclosures["politician_id"].tolist() == [None, None, "A000367", None]
    assert disclosures["party"].tolist() == [None, None, None, None]
    assert disclosures["state"].tolist() == ["GA", "MA", "MI", None]
    assert politicians["politician_id"].tolist() == ["A000367"]


def test_load_legislators_prefers_the_first_file(tmp_path):
    current = LEGISLATORS.iloc[:2].drop(columns="file_rank").assign(party="Republican")
    historical = LEGISLATORS.iloc[:3].drop(columns="file_rank")
    current.to_csv(tmp_path / "current.csv", index=False)
    historical.to_csv(tmp_path / "historical.csv", index=False)
    legislators = parsing.load_legislators([tmp_path / "current.csv", tmp_path / "historical.csv"])
    assert legislators["bioguide_id"].tolist() == ["F000450", "M000355", "T000278"]
    assert legislators.set_index("bioguide_id").loc["F000450", "party"] == "Republican"


# --- prices -----------------------------------------------------------------------------

PRICES = pd.DataFrame({
    "ticker": ["brk.b", "SPY"], "date": ["2020-01-02", "2020-01-02"], "open": [1.0, 2.0],
    "high": [1.5, 2.5], "low": [0.5, 1.5], "close": [1.2, 2.2], "adj_close": [1.1, 2.1],
    "volume": [100, 200], "extra": ["x", "y"],
})


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_read_price_file(tmp_path, suffix):
    path = tmp_path / f"prices{suffix}"
    if suffix == ".parquet":
        PRICES.to_parquet(path)
    else:
        PRICES.to_csv(path, index=False)
    prices = parsing.read_price_file(path)
    assert list(prices.columns) == frames.PRICE_COLUMNS
    assert prices["ticker"].tolist() == ["BRK-B", "SPY"]
    assert prices["date"].dtype == "datetime64[ns]"
    assert prices["adj_close"].tolist() == [1.1, 2.1]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_price_file_missing_columns_are_named(tmp_path, suffix):
    path = tmp_path / f"prices{suffix}"
    broken = PRICES.drop(columns=["adj_close", "volume"])
    broken.to_parquet(path) if suffix == ".parquet" else broken.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"adj_close.*volume"):
        parsing.read_price_file(path)


def test_without_legislator_files_filers_stay_unmatched_and_nothing_fails():
    legislators = parsing.load_legislators([])
    assert legislators.empty
    raw = pd.DataFrame([{
        "transaction_date": "01/02/2020", "owner": "Self", "ticker": "AAPL", "asset_description": "Apple Inc.",
        "asset_type": "Stock", "type": "Purchase", "amount": "$1,001 - $15,000", "comment": "--",
        "senator": "Jane Q Public", "ptr_link": "https://example.invalid/ptr/1", "disclosure_date": "01/15/2020",
    }])
    accepted, _ = parsing.attach_politicians(parsing.parse_senate(raw).accepted, legislators)
    assert len(accepted) == 1 and accepted["politician_id"].isna().all() and accepted["party"].isna().all()


def test_price_rows_without_adj_close_or_with_non_positive_prices_are_quarantined(tmp_path):
    good = {"ticker": "AAA", "date": "2020-01-02", "open": "1", "high": "1", "low": "1", "close": "1",
            "adj_close": "1", "volume": "10"}
    rows = [good, {**good, "adj_close": ""}, {**good, "close": "-2"}, {**good, "open": "inf"},
            {**good, "date": "-2020-01-02"}, {**good, "ticker": "--"}, {**good, "volume": "-1"},
            {**good, "ticker": "A\x00"}, {**good, "date": "2020-01-03", "open": ""}]
    path = tmp_path / "prices.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    parsed = parsing.parse_price_file(path, today="2021-01-01")
    assert parsed.rows_read == len(rows) == len(parsed.prices) + len(parsed.rejects)
    assert parsed.prices["date"].dt.day.tolist() == [2, 3] and (parsed.prices[["close", "adj_close"]] > 0).all().all()
    assert parsed.rejects["reason"].tolist() == [
        RejectReason.MISSING_PRICE, RejectReason.NON_POSITIVE_PRICE, RejectReason.NON_POSITIVE_PRICE,
        RejectReason.PRICE_DATE, RejectReason.TICKER, RejectReason.NEGATIVE_VOLUME, RejectReason.CONTROL_CHARACTER]
    assert parsed.rejects["raw_row"].iloc[-1]["ticker"] == "A\\u0000"


def test_typed_price_columns_parse_exactly_as_their_text():
    """Numbers and datetimes skip the trip through text: same prices, same rejects, same row hashes."""
    rng = np.random.default_rng(4)
    n = 400
    typed = pd.DataFrame({
        "ticker": rng.choice(["AAA", "brk.b", "--", None], n),
        "date": pd.Timestamp("2020-01-02") + pd.to_timedelta(rng.integers(-3, 400, n), "D"),
        **{c: rng.lognormal(3, 1, n) * rng.choice([1.0, 1.0, 1.0, -1.0], n) for c in ["open", "high", "low", "close"]},
        "adj_close": np.where(rng.random(n) < 0.05, np.nan, rng.lognormal(3, 1, n) / 3),
        "volume": rng.integers(-5, 10**9, n),
    })
    typed.loc[::37, "open"] = np.inf
    typed.loc[::41, "date"] = pd.NaT
    typed.loc[::43, "high"] = np.nan
    typed.loc[::47, "date"] = pd.Timestamp("1850-06-30 15:30")
    typed.loc[1::5, "date"] += pd.Timedelta(hours=15, minutes=30)  # a time of day: the day is kept
    as_text = typed.astype("object").where(typed.notna(), "").astype(str)
    fast, slow = (parsing.parse_prices(frame, today="2020-12-31") for frame in (typed, as_text))
    assert 0 < len(fast.rejects) < n and fast.rows_read == n
    pd.testing.assert_frame_equal(fast.prices, slow.prices, check_exact=True)
    pd.testing.assert_frame_equal(fast.rejects, slow.rejects)


def test_the_issues_rows_are_quarantined_and_the_rest_accepted():
    result = parsing.parse_house(house(
        {}, {"representative": "Hon. Vir\x00ginia Foxx"}, {"type": "gift\x00"}, {"transaction_date": "-2020-02-24"},
        {"ticker": "X" * 3000}, {"disclosure_date": "04/28/2199"}, {"ticker": "MSFT"},
    ), today="2021-01-01")
    assert reason_of(result) == [RejectReason.CONTROL_CHARACTER, RejectReason.CONTROL_CHARACTER,
                                 RejectReason.TRADE_DATE, RejectReason.FIELD_TOO_LONG, RejectReason.FILING_DATE_RANGE]
    assert result.accepted["ticker"].tolist() == ["BHC", "MSFT"] and result.stats.balanced()
