"""Idempotent ingest writes/read-backs, and the file and yfinance sources that feed them."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.lib import frames
from feedback_loop.lib.ingest import parsing
from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.ingest.sources import (
    FileDisclosureSource,
    FilePriceSource,
    YFinancePriceSource,
)
from feedback_loop.lib.vocab import RejectReason
from feedback_loop_tests.test_parsing import LEGISLATORS, PRICES, house, senate

TABLES = ["politicians", "disclosures", "disclosure_rejects", "prices", "ticker_sectors"]


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}


@pytest.fixture
def files(tmp_path):
    """A House file, a Senate file and a legislators file with good rows, defects and duplicates."""
    house({}, {}, {"ticker": "BRK.B", "transaction_date": "2020-03-02", "disclosure_date": "05/01/2020"},
          {"amount": "$1,001 -"}, {"representative": "Hon. Nobody Known", "ticker": "--"}).to_csv(
        tmp_path / "house.csv", index=False)
    senate({}, {"type": "Sale (Full)", "disclosure_date": "1/15/2021", "transaction_date": "1/4/2021"},
           {"asset_type": "PDF Disclosed Filing", "type": "", "amount": "Unknown"}).to_csv(
        tmp_path / "senate.csv", index=False)
    LEGISLATORS.drop(columns="file_rank").to_csv(tmp_path / "legislators.csv", index=False)
    return tmp_path


def _batch(files) -> frames.DisclosureBatch:
    return FileDisclosureSource(
        [files / "house.csv", files / "senate.csv"], [files / "legislators.csv"]
    ).load_disclosures()


def test_file_disclosure_source_accounts_per_source(files):
    source = FileDisclosureSource([files / "house.csv", files / "senate.csv"], [files / "legislators.csv"])
    batch = source.load_disclosures()
    assert set(batch.stats) == {"house", "senate"}
    house_stats, senate_stats = batch.stats["house"], batch.stats["senate"]
    assert (house_stats.rows_read, house_stats.accepted, house_stats.rejected,
            house_stats.duplicates_collapsed) == (5, 3, 1, 1)
    assert (senate_stats.rows_read, senate_stats.accepted, senate_stats.rejected) == (3, 2, 1)
    assert all(s.balanced() for s in batch.stats.values())
    assert len(batch.disclosures) == house_stats.accepted + senate_stats.accepted
    assert batch.disclosures["disclosure_id"].is_unique
    assert set(batch.politicians["politician_id"]) == {"F000450", "M000355"}
    assert source.metadata["house"]["unmatched_filer_rows"] == 1
    assert source.metadata["house"]["missing_ticker"] == 1
    assert list(batch.rejects.columns) == frames.REJECT_COLUMNS


def test_second_write_of_the_same_batch_changes_no_row_count(engine, files):
    batch = _batch(files)
    prices = parsing.read_price_file(_write_prices(files))
    sectors = pd.DataFrame({"ticker": ["SPY", "BRK-B"], "sector": ["Index", "Financials"]})

    def write_all():
        with engine.begin() as conn:
            ingest.write_disclosures(conn, batch.disclosures, batch.politicians)
            inserted = ingest.write_rejects(conn, batch.rejects)
            ingest.write_prices(conn, prices)
            ingest.write_sectors(conn, sectors)
        return inserted

    assert write_all() == len(batch.rejects)
    first = _counts(engine)
    assert first == {"politicians": 2, "disclosures": 5, "disclosure_rejects": 2, "prices": 2,
                     "ticker_sectors": 2}
    assert write_all() == 0
    assert _counts(engine) == first


def test_disclosures_round_trip_with_normalized_dates(engine, files):
    batch = _batch(files)
    with engine.begin() as conn:
        ingest.write_batch(conn, batch)
    with engine.connect() as conn:
        back = ingest.read_disclosures(conn)
        politicians = ingest.read_politicians(conn)
        rejects = ingest.read_rejects(conn)
    assert list(back.columns) == frames.DISCLOSURE_COLUMNS
    assert back["transaction_date"].dtype == "datetime64[ns]"
    assert back["disclosure_date"].dtype == "datetime64[ns]"
    expected = batch.disclosures.sort_values("disclosure_id").reset_index(drop=True)
    got = back.sort_values("disclosure_id").reset_index(drop=True)
    for column in ["disclosure_id", "ticker", "politician_id", "party", "transaction_type", "filed_before_trade"]:
        assert got[column].tolist() == expected[column].tolist(), column
    assert (got["disclosure_date"] == expected["disclosure_date"]).all()
    assert got["amount_max_usd"].isna().tolist() == expected["amount_max_usd"].isna().tolist()
    assert list(politicians.columns) == frames.POLITICIAN_COLUMNS
    assert set(politicians["party"]) == {"D", "R"}
    assert rejects["raw_row"].map(type).eq(dict).all()
    assert set(rejects["reason"]) == {RejectReason.TRUNCATED_AMOUNT, RejectReason.PAPER_FILING}


def test_read_disclosures_as_of_filters_by_filing_date(engine, files):
    batch = _batch(files)
    with engine.begin() as conn:
        ingest.write_batch(conn, batch)
    with engine.connect() as conn:
        by_may = ingest.read_disclosures(conn, as_of="2020-05-01")
        before_may = ingest.read_disclosures(conn, as_of=pd.Timestamp("2020-04-30"))
        everything = ingest.read_disclosures(conn)
    dates = batch.disclosures["disclosure_date"]
    assert len(by_may) == (dates <= "2020-05-01").sum() > len(before_may) == (dates <= "2020-04-30").sum()
    assert by_may["disclosure_date"].max() <= pd.Timestamp("2020-05-01")
    assert len(everything) == len(batch.disclosures)
    with engine.connect() as conn:
        may_only = ingest.read_disclosures(conn, as_of="2020-05-31", filed_after="2020-04-30")
        after_april = ingest.read_disclosures(conn, filed_after="2020-04-30")
    in_may = (dates > "2020-04-30") & (dates <= "2020-05-31")
    assert 0 < len(may_only) == in_may.sum() < len(after_april) == (dates > "2020-04-30").sum()
    assert sorted(may_only["disclosure_id"]) == sorted(batch.disclosures.loc[in_may, "disclosure_id"])


def test_every_reject_reason_is_accepted_by_its_table_and_a_nul_byte_is_stored_escaped(engine):
    from feedback_loop.lib.vocab import DISCLOSURE_REJECT_REASONS, PRICE_REJECT_REASONS

    raw_row = parsing.storable_raw_row({"representative": "Hon. A\x00B", "amount": 5})
    disclosure_rejects = pd.DataFrame([{"source": "house", "row_hash": f"h{i}", "raw_row": raw_row, "reason": str(r)}
                                       for i, r in enumerate(sorted(DISCLOSURE_REJECT_REASONS))])
    price_rejects = pd.DataFrame([{"row_hash": f"p{i}", "raw_row": raw_row, "reason": str(r)}
                                  for i, r in enumerate(sorted(PRICE_REJECT_REASONS))])
    with engine.begin() as conn:
        assert ingest.write_rejects(conn, disclosure_rejects) == len(DISCLOSURE_REJECT_REASONS)
        assert ingest.write_price_rejects(conn, price_rejects) == len(PRICE_REJECT_REASONS)
        with pytest.raises(sa.exc.IntegrityError, match="price_rejects_reason_check"), conn.begin_nested():
            ingest.write_price_rejects(conn, price_rejects.assign(row_hash="x", reason=str(RejectReason.AMOUNT)))
    with engine.connect() as conn:
        back = ingest.read_rejects(conn)
        price_back = ingest.read_price_rejects(conn)
    assert back["raw_row"].tolist() == [{"representative": "Hon. A\\u0000B", "amount": 5}] * len(back)
    assert sorted(price_back["reason"]) == sorted(map(str, PRICE_REJECT_REASONS))


def _row_by_row(conn, sql: str, columns: list[str]) -> pd.DataFrame:
    """What ingest's readers returned before db.read_frame: SQLAlchemy rows, then the same normalization."""
    result = conn.execute(sa.text(sql))
    frame = frames.normalize_dates(pd.DataFrame(result.fetchall(), columns=list(result.keys()))[columns])
    for column in frame.columns:
        if column in frames.DATE_COLUMNS:
            frame[column] = frame[column].astype("datetime64[ns]")
        elif frame[column].isna().any():
            frame[column] = frame[column].astype("object").where(frame[column].notna(), None)
    return frame


def test_readers_return_the_frames_row_by_row_fetching_returned(engine, files):
    batch = _batch(files)
    prices = PRICES.assign(date=pd.to_datetime(PRICES["date"]))
    prices.loc[0, "volume"] = None
    with engine.begin() as conn:
        ingest.write_batch(conn, batch)
        ingest.write_prices(conn, prices)
        conn.execute(sa.text("INSERT INTO disclosure_rejects (source, row_hash, raw_row, reason)"
                             " VALUES ('x', 'h', '{\"a\": [1, null, \"é\"]}', 'unparseable amount')"))
    readers = {
        "disclosures": (ingest.read_disclosures, frames.DISCLOSURE_COLUMNS, "disclosure_date, disclosure_id"),
        "politicians": (ingest.read_politicians, frames.POLITICIAN_COLUMNS, "politician_id"),
        "disclosure_rejects": (ingest.read_rejects, frames.REJECT_COLUMNS, "reject_id"),
        "prices": (ingest.read_prices, frames.PRICE_COLUMNS, "ticker, date"),
    }
    with engine.connect() as conn:
        for table, (read, columns, order) in readers.items():
            got = read(conn)
            expected = _row_by_row(conn, f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}", columns)
            if table == "prices":
                expected[columns[2:]] = expected[columns[2:]].astype(float)
            assert len(got) > 0
            pd.testing.assert_frame_equal(got, expected, obj=table)
    assert got["volume"].isna().sum() == 1


def _write_prices(folder) -> str:
    path = folder / "prices.csv"
    PRICES.to_csv(path, index=False)
    return path


def test_read_prices_filters_tickers_and_dates(engine):
    dates = pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-06"])
    prices = pd.DataFrame([
        {"ticker": t, "date": d, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0 + i,
         "adj_close": 1.0 + i, "volume": 10.0}
        for t in ["AAA", "SPY"] for i, d in enumerate(dates)
    ])
    with engine.begin() as conn:
        ingest.write_prices(conn, prices)
        ingest.write_sectors(conn, pd.DataFrame({"ticker": ["AAA"], "sector": ["Tech"]}))
    with engine.connect() as conn:
        window = ingest.read_prices(conn, tickers=["AAA"], start="2020-01-03", end="2020-01-06")
        everything = ingest.read_prices(conn)
        sectors = ingest.read_sectors(conn)
        none = ingest.read_prices(conn, tickers=["ZZZ"])
    assert window["ticker"].unique().tolist() == ["AAA"]
    assert window["date"].tolist() == list(dates[1:])
    assert window["date"].dtype == "datetime64[ns]"
    assert len(everything) == 6
    assert list(none.columns) == frames.PRICE_COLUMNS and none.empty
    assert sectors.to_dict("records") == [{"ticker": "AAA", "sector": "Tech"}]


def test_read_prices_since_reads_each_tickers_window_and_its_last_rows_before_it(engine):
    days = pd.date_range("2020-01-01", periods=10)
    rows = [(t, d) for t in ["AAA", "SPY"] for d in days] + [("BBB", days[i]) for i in (0, 1, 2, 8, 9)]
    prices = pd.DataFrame([{"ticker": t, "date": d, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
                            "adj_close": float(d.day), "volume": 1.0} for t, d in rows])
    with engine.begin() as conn:
        ingest.write_prices(conn, prices)
    with engine.connect() as conn:
        got = ingest.read_prices_since(conn, {"AAA": days[5], "BBB": days[7]}, days[8], bars_before=2)
        windows_only = ingest.read_prices_since(conn, {"AAA": days[5]}, days[8])
        nothing = ingest.read_prices_since(conn, {}, days[8], bars_before=2)
    assert list(got.columns) == frames.PRICE_COLUMNS and got["date"].dtype == "datetime64[ns]"
    # AAA: days 6..9 and the two before; BBB: day 9 and the two rows before day 8, however old.
    assert [(t, d.day) for t, d in zip(got["ticker"], got["date"])] == \
        [("AAA", d) for d in range(4, 10)] + [("BBB", 2), ("BBB", 3), ("BBB", 9)]
    assert windows_only["date"].dt.day.tolist() == [6, 7, 8, 9]
    assert nothing.empty and list(nothing.columns) == frames.PRICE_COLUMNS


def test_file_price_source(tmp_path):
    prices_path = _write_prices(tmp_path)
    source = FilePriceSource(prices_path)
    assert source.load_prices(["brk.b"])["ticker"].tolist() == ["BRK-B", "SPY"]
    assert source.load_prices(["NOPE"])["ticker"].tolist() == ["SPY"]
    assert list(source.load_sectors().columns) == frames.SECTOR_COLUMNS and source.load_sectors().empty
    pd.DataFrame({"ticker": ["brk.b", "XX"], "sector": ["Financials", ""]}).to_csv(
        tmp_path / "sectors.csv", index=False)
    with_sectors = FilePriceSource(prices_path, sectors_path=tmp_path / "sectors.csv")
    assert with_sectors.load_sectors().to_dict("records") == [{"ticker": "BRK-B", "sector": "Financials"}]


# --- yfinance (stubbed: no network) --------------------------------------------------------

def _yf_frame(tickers: list[str], start, end) -> pd.DataFrame:
    """What yfinance.download returns: date index, (field, ticker) columns."""
    dates = pd.bdate_range(start, end)
    columns = pd.MultiIndex.from_product(
        [["Adj Close", "Close", "High", "Low", "Open", "Volume"], tickers], names=["Price", "Ticker"])
    values = [[10.0 + i] * len(columns) for i in range(len(dates))]
    return pd.DataFrame(values, index=pd.DatetimeIndex(dates, name="Date"), columns=columns)


class FlakyDownloader:
    def __init__(self, failures: dict[str, int]):
        self.failures = failures  # first ticker of a batch -> failures before success
        self.calls: list[list[str]] = []

    def __call__(self, tickers, start, end):
        self.calls.append(list(tickers))
        if self.failures.get(tickers[0], 0) > 0:
            self.failures[tickers[0]] -= 1
            raise ConnectionError("rate limited")
        return _yf_frame(tickers, start, end)


def _yf_source(failures: dict[str, int], sleeps: list[float], **kwargs):
    downloader = FlakyDownloader(failures)
    source = YFinancePriceSource(
        ["CCC", "AAA", "brk.b", "BBB"], "2020-01-02", "2020-01-03", batch_size=2,
        backoff_s=0.5, downloader=downloader, sleep=sleeps.append, **kwargs,
    )
    return source, downloader


def test_yfinance_batch_that_fails_twice_then_succeeds():
    sleeps: list[float] = []
    source, downloader = _yf_source({"BRK-B": 2}, sleeps)
    prices = source.load_prices()
    assert downloader.calls == [["AAA", "BBB"], ["BRK-B", "CCC"], ["BRK-B", "CCC"], ["BRK-B", "CCC"], ["SPY"]]
    assert sleeps == [0.5, 1.0]
    assert list(prices.columns) == frames.PRICE_COLUMNS
    assert sorted(set(prices["ticker"])) == ["AAA", "BBB", "BRK-B", "CCC", "SPY"]
    assert len(prices) == 5 * 2 and not prices.duplicated(["ticker", "date"]).any()
    assert prices["date"].dtype == "datetime64[ns]"
    assert prices.loc[prices["date"] == pd.Timestamp("2020-01-03"), "adj_close"].eq(11.0).all()


def test_yfinance_batch_that_always_fails_names_its_tickers():
    sleeps: list[float] = []
    source, downloader = _yf_source({"BRK-B": 99}, sleeps, max_retries=3)
    with pytest.raises(RuntimeError, match=r"3 attempts for tickers BRK-B, CCC: rate limited"):
        source.load_prices()
    assert downloader.calls.count(["BRK-B", "CCC"]) == 3
    assert sleeps == [0.5, 1.0]


def test_yfinance_missing_package_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_yfinance(name, *args, **kwargs):
        if name == "yfinance":
            raise ImportError("No module named 'yfinance'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_yfinance)
    sleeps: list[float] = []
    source = YFinancePriceSource(["AAA"], "2020-01-02", "2020-01-03", sleep=sleeps.append)
    with pytest.raises(ImportError, match=r"feedback_loop\[yfinance\]"):
        source.load_prices()
    assert sleeps == []  # not retried
    assert source.load_sectors().empty
