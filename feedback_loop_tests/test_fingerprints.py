"""Fingerprinted ingest writes: only changed parts travel, and nothing done behind their back is missed."""

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.lib import frames
from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.ingest.synthetic import SyntheticConfig, generate
from feedback_loop.lib.store import db


@pytest.fixture(scope="module")
def dataset():
    return generate(SyntheticConfig.scale(400, 12, 0.5, seed=5))


def _write_prices(engine, prices) -> int:
    with engine.begin() as conn:
        return ingest.write_prices(conn, prices)


def _stored_prices(engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return ingest.read_prices(conn)


def _expected(prices) -> pd.DataFrame:
    return prices[frames.PRICE_COLUMNS].astype({"volume": float}).sort_values(["ticker", "date"]).reset_index(drop=True)


def _part(prices, ticker, month) -> pd.Series:
    return (prices["ticker"] == ticker) & (prices["date"].dt.to_period("M") == pd.Period(month))


def _fingerprints(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM ingest_fingerprints WHERE table_name = :t"), {"t": table}).scalar()


def test_an_unchanged_source_writes_nothing_and_a_restated_part_only_itself(engine, dataset):
    prices = dataset.prices
    assert _write_prices(engine, prices) == len(prices)
    parts = prices.groupby(["ticker", prices["date"].dt.to_period("M")]).ngroups
    assert _fingerprints(engine, "prices") == parts
    # Same rows in another order and with other dtypes: the same content, nothing to write.
    shuffled = prices.sample(frac=1.0, random_state=0).astype({"volume": float})
    shuffled["date"] = shuffled["date"].astype("datetime64[us]")
    assert _write_prices(engine, shuffled) == 0

    restated = prices.copy()
    part = _part(restated, "SPY", "2023-03")
    restated.loc[part & (restated["date"] == restated.loc[part, "date"].min()), "adj_close"] *= 0.97
    late = prices[_part(prices, "SPY", "2023-04")].iloc[[0]].assign(date=pd.Timestamp("2023-04-30"))
    with_late = pd.concat([restated, late], ignore_index=True)
    assert _write_prices(engine, with_late) == part.sum() + _part(with_late, "SPY", "2023-04").sum()
    pd.testing.assert_frame_equal(_stored_prices(engine), _expected(with_late))
    assert _write_prices(engine, with_late) == 0


@pytest.mark.parametrize("behind_its_back", [
    "DELETE FROM prices WHERE ticker = 'SPY' AND date < '2023-02-01'",
    "TRUNCATE prices",
    "UPDATE prices SET close = close * 2 WHERE date = (SELECT min(date) FROM prices)",
    "INSERT INTO prices (ticker, date, close, adj_close) VALUES ('ZZZ', '2023-01-03', 1, 1)",
])
def test_any_other_write_makes_the_next_ingest_restore_every_part(engine, dataset, behind_its_back):
    prices = dataset.prices
    _write_prices(engine, prices)
    with engine.begin() as conn:
        conn.execute(sa.text(behind_its_back))
    assert _fingerprints(engine, "prices") == 0
    assert _write_prices(engine, prices) == len(prices)
    stored = _stored_prices(engine)
    pd.testing.assert_frame_equal(stored[stored["ticker"] != "ZZZ"].reset_index(drop=True), _expected(prices))
    assert _write_prices(engine, prices) == 0


def test_an_upsert_that_bypasses_the_fingerprints_is_overwritten_next_time(engine, dataset):
    prices = dataset.prices
    _write_prices(engine, prices)
    with engine.begin() as conn:
        db.upsert_frame(conn, "prices", prices[frames.PRICE_COLUMNS].assign(close=1.0), ["ticker", "date"])
    assert _write_prices(engine, prices) == len(prices)
    pd.testing.assert_frame_equal(_stored_prices(engine), _expected(prices))


def test_rows_and_fingerprints_roll_back_together(engine, dataset):
    prices = dataset.prices
    with pytest.raises(RuntimeError), engine.begin() as conn:
        ingest.write_prices(conn, prices)
        raise RuntimeError("the asset failed after writing")
    assert _fingerprints(engine, "prices") == 0 and _stored_prices(engine).empty
    assert _write_prices(engine, prices) == len(prices)


def test_a_late_filing_writes_its_filing_date_only(engine, dataset):
    disclosures = dataset.disclosures
    politicians = dataset.politicians
    filed = disclosures["disclosure_date"]
    known = disclosures[filed < filed.max()]
    with engine.begin() as conn:
        assert ingest.write_disclosures(conn, known, politicians) == len(known)
        assert ingest.write_disclosures(conn, known) == 0
        # The source now holds the last day's filings and one old filing it had not published before.
        old_day = known["disclosure_date"].iloc[len(known) // 2]
        late = known[known["disclosure_date"] == old_day].iloc[[0]].assign(disclosure_id="late-filing")
        now = pd.concat([disclosures, late], ignore_index=True)
        expected = (now["disclosure_date"] == filed.max()).sum() + (now["disclosure_date"] == old_day).sum()
        assert ingest.write_disclosures(conn, now) == expected
        back = ingest.read_disclosures(conn)
    assert len(back) == len(now) and "late-filing" in set(back["disclosure_id"])


def test_a_table_without_the_forgetting_trigger_is_refused(engine):
    frame = pd.DataFrame({"ticker": ["AAA"], "sector": ["Tech"]})
    with engine.begin() as conn, pytest.raises(ValueError, match="trigger"):
        db.upsert_changed_parts(conn, "ticker_sectors", frame, ["ticker"], frame[["ticker"]])


def test_row_hashes_tell_null_from_any_value_and_ignore_dtypes():
    types = {"t": "text", "f": "double precision", "d": "date"}
    frame = pd.DataFrame({"t": [None, "None", "", "nan", "x"], "f": [np.nan, 1.0, 1.0, 1.0, None],
                          "d": pd.to_datetime(["2020-01-01"] * 4 + [None])})
    hashes = db._row_hashes(frame, types)
    assert len(set(hashes.tolist())) == len(frame)
    retyped = frame.astype({"t": object, "d": "datetime64[s]"}).assign(f=[None, 1, 1, 1, np.nan])
    assert (db._row_hashes(retyped, types) == hashes).all()


def _natural_key_check(engine) -> dict[str, int]:
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn, conn.begin():
        return ingest.natural_key_duplicates(conn)


def test_the_natural_key_check_reads_only_filing_dates_changed_since_it_verified_them(engine, dataset):
    disclosures, politicians = dataset.disclosures, dataset.politicians
    dates = disclosures["disclosure_date"].nunique()
    with engine.begin() as conn:
        ingest.write_disclosures(conn, disclosures, politicians)
    assert _natural_key_check(engine) == {"duplicate_keys": 0, "filing_dates_with_duplicates": 0,
                                          "filing_dates_checked": dates}
    assert _natural_key_check(engine)["filing_dates_checked"] == 0

    # A restated filing date is read again, alone.
    old_day = disclosures["disclosure_date"].iloc[len(disclosures) // 2]
    restated = disclosures.copy()
    restated.loc[restated["disclosure_date"] == old_day, "owner"] = "joint"
    with engine.begin() as conn:
        ingest.write_disclosures(conn, restated)
    assert _natural_key_check(engine)["filing_dates_checked"] == 1

    # A duplicate under another id, through the ingest: found on its date.
    copy = restated[restated["disclosure_date"] == old_day].iloc[[0]].assign(disclosure_id="same-key-other-id")
    with engine.begin() as conn:
        ingest.write_disclosures(conn, pd.concat([restated, copy], ignore_index=True))
    assert _natural_key_check(engine) == {"duplicate_keys": 1, "filing_dates_with_duplicates": 1,
                                          "filing_dates_checked": 1}
    # Not recorded as verified: found again next time.
    assert _natural_key_check(engine)["duplicate_keys"] == 1


def test_a_write_behind_the_ingest_makes_the_natural_key_check_read_every_date(engine, dataset):
    disclosures, politicians = dataset.disclosures, dataset.politicians
    with engine.begin() as conn:
        ingest.write_disclosures(conn, disclosures, politicians)
    _natural_key_check(engine)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO disclosures SELECT 'behind-its-back', source, politician_id, filer_name, chamber, party,"
            " state, ticker, asset_description, asset_type, transaction_type, transaction_date, disclosure_date,"
            " amount_min_usd, amount_max_usd, owner, ptr_link, duplicate_count, filed_before_trade, ingested_at"
            " FROM disclosures ORDER BY disclosure_date LIMIT 1"))
    found = _natural_key_check(engine)
    assert found["duplicate_keys"] == 1 and found["filing_dates_checked"] == disclosures["disclosure_date"].nunique()
