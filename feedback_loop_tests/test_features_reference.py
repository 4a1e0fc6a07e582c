"""The DuckDB reference features equal compute_ticker_features, on synthetic and tricky data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feedback_loop.lib.frames import DISCLOSURE_COLUMNS, PRICE_COLUMNS
from feedback_loop.lib.ingest.synthetic import SyntheticConfig, generate
from feedback_loop.lib.signals.features import (
    CANDIDATE_FEATURES,
    FEATURE_FRAME_COLUMNS,
    compute_ticker_features,
)
from feedback_loop.lib.signals.features_reference import reference_ticker_features
from feedback_loop.lib.training.labels import training_pairs

AS_OF = pd.Timestamp("2024-03-29")  # a Friday
DAY = pd.Timedelta(days=1)
COUNTS = ["trade_count", "buy_count", "sell_count"]


def assert_same_features(reference: pd.DataFrame, fast: pd.DataFrame) -> None:
    assert list(reference.columns) == FEATURE_FRAME_COLUMNS
    assert reference["ticker"].tolist() == fast["ticker"].tolist()
    np.testing.assert_array_equal(reference["as_of"].to_numpy(), fast["as_of"].to_numpy())
    for name in COUNTS:
        assert reference[name].dtype == np.int64
        np.testing.assert_array_equal(reference[name].to_numpy(), fast[name].to_numpy(), name)
    for name in CANDIDATE_FEATURES:
        np.testing.assert_allclose(reference[name].to_numpy(dtype=float),
                                   fast[name].to_numpy(dtype=float),
                                   rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=name)


@pytest.fixture(scope="module")
def synthetic():
    config = SyntheticConfig.scale(3000, 60, 1.5, start=pd.Timestamp("2015-01-02"))
    data = generate(config)
    return data, training_pairs(data.disclosures, config.start, config.end)


def test_reference_matches_compute_ticker_features_on_synthetic_data(synthetic):
    data, pairs = synthetic
    reference = reference_ticker_features(data.disclosures, data.prices, pairs,
                                          sectors=data.sectors)
    fast = compute_ticker_features(data.disclosures, data.prices, pairs=pairs,
                                   sectors=data.sectors)
    assert len(reference) == len(pairs) > 1000
    assert reference[CANDIDATE_FEATURES].notna().mean().min() > 0.9  # the comparison has teeth
    assert_same_features(reference, fast)


def test_a_different_window_gives_different_values(synthetic):
    data, pairs = synthetic
    wide = reference_ticker_features(data.disclosures, data.prices, pairs, window_days=90)
    narrow = reference_ticker_features(data.disclosures, data.prices, pairs, window_days=60)
    with pytest.raises(AssertionError):
        assert_same_features(narrow, wide)
    assert (narrow["trade_count"] <= wide["trade_count"]).all()
    assert (narrow["trade_count"] < wide["trade_count"]).any()


def disclosure(ticker: str, filed: pd.Timestamp, **fields) -> dict:
    row = {
        "disclosure_id": None, "source": "house", "politician_id": "p1", "filer_name": "Hon. One",
        "chamber": "house", "party": "D", "state": "CA", "ticker": ticker,
        "asset_description": "", "asset_type": "stock", "transaction_type": "purchase",
        "transaction_date": filed - 6 * DAY, "disclosure_date": filed,
        "amount_min_usd": 1001.0, "amount_max_usd": 15000.0, "owner": "self", "ptr_link": "",
        "duplicate_count": 1, "filed_before_trade": False,
    }
    row.update(fields)
    return row


def tricky_disclosures() -> pd.DataFrame:
    rows = [
        disclosure("AAA", AS_OF),  # the window's last day
        disclosure("AAA", AS_OF - 89 * DAY, transaction_type="sale_full", party="R",
                   chamber="senate", politician_id="p2", filer_name="Hon. Two",
                   amount_min_usd=5_000_001.0, amount_max_usd=None),  # first day, open band
        disclosure("AAA", AS_OF - 90 * DAY),  # just outside the window
        disclosure("AAA", AS_OF - 30 * DAY, transaction_type="exchange", party=None,
                   politician_id=None, filer_name="Hon. Unmatched", duplicate_count=3),
        disclosure("AAA", AS_OF - 29 * DAY, transaction_type="sale_partial", party="I"),
        disclosure("AAA", AS_OF + DAY),  # filed after as_of
        disclosure("AAA", AS_OF - 3 * DAY, asset_type="option"),
        disclosure("AAA", AS_OF - 3 * DAY, asset_type="bond"),
        disclosure(None, AS_OF - 3 * DAY),
        disclosure("AAA", AS_OF - 3 * DAY, asset_type="etf", politician_id="p3", party="R",
                   amount_min_usd=15001.0, amount_max_usd=50000.0, duplicate_count=2),
        *[disclosure("BBB", AS_OF - k * DAY) for k in range(12)],  # buys only
        disclosure("CCC", AS_OF - 5 * DAY, party="R", chamber="senate"),  # no prices
        *[disclosure("EEE", AS_OF - k * DAY, politician_id=f"p{k % 3}") for k in range(11)],
        disclosure("EEE", AS_OF - 2 * DAY, transaction_type="sale_full"),  # ratio capped at 10
        disclosure("GGG", AS_OF - 40 * DAY, transaction_type="sale_full"),  # unknown sector
    ]
    out = pd.DataFrame(rows, columns=DISCLOSURE_COLUMNS)
    out["disclosure_id"] = [f"d{i}" for i in range(len(out))]
    return out


def tricky_prices() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    days = pd.bdate_range(AS_OF - 180 * DAY, AS_OF)
    last_day = {"BBB": AS_OF - 8 * DAY, "HHH": AS_OF - 7 * DAY}  # stale / just fresh
    frames = []
    for ticker in ["SPY", "AAA", "BBB", "EEE", "FFF", "GGG", "HHH"]:
        dates = days[days <= last_day.get(ticker, AS_OF)]
        if ticker == "FFF":
            dates = dates[-15:]  # too short for a 20-day return
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, len(dates))))
        frames.append(pd.DataFrame({"ticker": ticker, "date": dates, "adj_close": close}))
    prices = pd.concat(frames, ignore_index=True)
    extra = pd.DataFrame({
        "ticker": ["AAA", "EEE", "EEE"],
        "date": [AS_OF + DAY, AS_OF, AS_OF],
        "adj_close": [np.nan, 1.0, 250.0],  # ignored; then duplicates where the last wins
    })
    prices = pd.concat([prices, extra], ignore_index=True)
    for column in ["open", "high", "low", "close"]:
        prices[column] = prices["adj_close"]
    prices["volume"] = 1000
    return prices[PRICE_COLUMNS]


def tricky_pairs() -> pd.DataFrame:
    as_of = [AS_OF, AS_OF + DAY, AS_OF - 200 * DAY, AS_OF - 20 * DAY]  # + a Saturday, pre-prices
    tickers = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH"]
    return pd.DataFrame([(t, d) for d in as_of for t in tickers], columns=["ticker", "as_of"])


SECTORS = pd.DataFrame({
    "ticker": ["AAA", "BBB", "CCC", "EEE", "FFF", "HHH", "AAA", None],
    "sector": ["Tech", "Tech", "Energy", "Energy", "Energy", "Tech", "Health Care", "Tech"],
})


@pytest.mark.parametrize("sectors", [SECTORS, None], ids=["sectors", "no-sectors"])
def test_reference_matches_compute_ticker_features_on_tricky_data(sectors):
    disclosures, prices, pairs = tricky_disclosures(), tricky_prices(), tricky_pairs()
    reference = reference_ticker_features(disclosures, prices, pairs, sectors=sectors)
    fast = compute_ticker_features(disclosures, prices, pairs=pairs, sectors=sectors)
    assert_same_features(reference, fast)


def test_tricky_values_follow_the_definitions():
    """A few hand-derived values, so both implementations cannot share a mistake there."""
    pairs = tricky_pairs()
    out = reference_ticker_features(tricky_disclosures(), tricky_prices(), pairs, sectors=SECTORS)
    at = out.set_index(["ticker", "as_of"])
    aaa = at.loc[("AAA", AS_OF)]
    assert (aaa["trade_count"], aaa["buy_count"], aaa["sell_count"]) == (5, 2, 2)
    assert aaa["politician_count"] == 4  # p1 twice, p2, p3, Hon. Unmatched
    assert aaa["recent_activity_30d"] == 3
    assert aaa["bipartisan"] == 1.0
    assert aaa["party_alignment"] == pytest.approx(2 / 3)
    volumes = [8000.5, 5_000_001.0, 3 * 8000.5, 8000.5, 2 * 32500.5]
    assert aaa["net_volume"] == pytest.approx(8000.5 + 65001.0 - 5_000_001.0 - 8000.5)
    assert aaa["volume_magnitude"] == pytest.approx(np.log1p(sum(volumes)))
    assert at.loc[("EEE", AS_OF), "buy_sell_ratio"] == 10.0
    assert at.loc[("EEE", AS_OF), "market_momentum"] > 0.5  # its last duplicate price, 250
    assert at.loc[("BBB", AS_OF), "buy_sell_ratio"] == 10.0
    assert not np.isnan(at.loc[("AAA", AS_OF + DAY), "market_momentum"])  # null price ignored
    assert np.isnan(at.loc[("BBB", AS_OF), "market_momentum"])  # last price 8 days old
    assert not np.isnan(at.loc[("HHH", AS_OF), "market_momentum"])  # 7 days old still counts
    assert np.isnan(at.loc[("CCC", AS_OF), "market_momentum"])
    assert not np.isnan(at.loc[("CCC", AS_OF), "sector_performance"])  # from its peers
    assert np.isnan(at.loc[("GGG", AS_OF), "sector_performance"])
    ddd = at.loc[("DDD", AS_OF)]
    assert ddd["trade_count"] == 0 and ddd["buy_sell_ratio"] == 1.0
    assert np.isnan(ddd["party_alignment"]) and np.isnan(ddd["disclosure_delay"])
    assert out.loc[pairs["as_of"] == AS_OF - 200 * DAY, "vix_level"].isna().all()


def test_recent_activity_spans_30_days_even_with_a_shorter_window():
    """The docstring's (as_of - 30 days, as_of], independent of the feature window."""
    pairs = pd.DataFrame({"ticker": ["AAA", "BBB"], "as_of": [AS_OF, AS_OF]})
    out = reference_ticker_features(tricky_disclosures(), tricky_prices(), pairs, window_days=7)
    assert out["trade_count"].tolist() == [2, 7]  # AAA: filed 0 and 3 days before; BBB: 0-6
    assert out["recent_activity_30d"].tolist() == [3, 12]  # AAA: and 29 days before
