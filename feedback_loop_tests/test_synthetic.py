"""The synthetic demo data: determinism, realism of each frame, and the planted weak edge."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from feedback_loop.lib import frames
from feedback_loop.lib.ingest import parsing
from feedback_loop.lib.ingest.synthetic import (
    HOUSE_AMOUNT_TEXT,
    HOUSE_FILE_COLUMNS,
    LEGISLATOR_FILE_COLUMNS,
    SENATE_AMOUNT_TEXT,
    SENATE_FILE_COLUMNS,
    SyntheticConfig,
    SyntheticDisclosureSource,
    SyntheticPriceSource,
    generate,
    published_frames,
    published_legislators,
)

REAL_BANDS = {
    (1_001.0, 15_000.0), (15_001.0, 50_000.0), (50_001.0, 100_000.0),
    (100_001.0, 250_000.0), (250_001.0, 500_000.0), (500_001.0, 1_000_000.0),
    (1_000_001.0, 5_000_000.0), (5_000_001.0, None),
}


@pytest.fixture(scope="module")
def data():
    return generate(SyntheticConfig())


@pytest.fixture(scope="module")
def closes(data) -> pd.DataFrame:
    return data.prices.pivot(index="date", columns="ticker", values="adj_close")


def _frames(dataset):
    return [dataset.politicians, dataset.disclosures, dataset.prices, dataset.sectors,
            dataset.events]


def test_same_seed_same_frames_different_seed_different():
    build = generate.__wrapped__  # bypass the cache: really generate twice
    first, again = build(SyntheticConfig()), build(SyntheticConfig())
    for a, b in zip(_frames(first), _frames(again), strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert first.informed_politician_ids == again.informed_politician_ids
    other = build(SyntheticConfig(seed=8))
    assert not other.prices["close"].equals(first.prices["close"])
    assert not other.disclosures["disclosure_id"].equals(first.disclosures["disclosure_id"])
    assert set(other.sectors["ticker"]) != set(first.sectors["ticker"])


def test_frames_follow_the_contracts(data):
    assert list(data.politicians.columns) == frames.POLITICIAN_COLUMNS
    assert list(data.disclosures.columns) == frames.DISCLOSURE_COLUMNS
    assert list(data.prices.columns) == frames.PRICE_COLUMNS
    assert list(data.sectors.columns) == frames.SECTOR_COLUMNS
    for frame, column in [(data.disclosures, "transaction_date"),
                          (data.disclosures, "disclosure_date"), (data.prices, "date")]:
        assert frame[column].dtype == "datetime64[ns]"
        assert (frame[column] == frame[column].dt.normalize()).all()
    assert pd.api.types.is_integer_dtype(data.prices["volume"])


def test_politicians_look_like_congress(data):
    pols = data.politicians
    assert len(pols) == 120
    assert pols["politician_id"].str.fullmatch(r"S\d{4}").all()
    assert pols["politician_id"].is_unique and pols["full_name"].is_unique
    assert (pols["full_name"] == pols["first_name"] + " " + pols["last_name"]).all()
    assert set(pols["party"]) == {"D", "R", "I"}
    assert 0 < (pols["party"] == "I").sum() <= 5
    assert 0.1 < (pols["chamber"] == "senate").mean() < 0.3
    assert set(pols["chamber"]) == {"house", "senate"}
    assert pols["state"].str.fullmatch(r"[A-Z]{2}").all()
    assert (pols["source"] == "synthetic").all()


def test_disclosures_match_politicians(data):
    d = data.disclosures.merge(data.politicians, on="politician_id", suffixes=("", "_p"))
    assert len(d) == len(data.disclosures)
    for column in ["chamber", "party", "state"]:
        assert (d[column] == d[f"{column}_p"]).all()
    assert (d["filer_name"] == d["full_name"]).all()
    assert (data.disclosures["source"] == "synthetic").all()
    assert (data.disclosures["duplicate_count"] == 1).all()
    assert not data.disclosures["filed_before_trade"].any()
    assert abs(len(data.disclosures) - 8000) < 100


def test_disclosure_id_is_sha256_of_the_natural_key(data):
    """Same key text as the stock-watcher parser, so ids mean the same thing for every source."""
    d = data.disclosures
    assert d["disclosure_id"].is_unique
    # One row per band, plus rows with a missing owner, pin the key format.
    sample = pd.concat([d.drop_duplicates("amount_min_usd"), d[d["owner"].isna()].head(3)])
    assert sample["amount_max_usd"].isna().any() and sample["owner"].isna().any()
    for _, row in sample.iterrows():
        top = "" if row["amount_max_usd"] is None else row["amount_max_usd"]
        key = "|".join([
            "synthetic", row["filer_name"], row["transaction_date"].strftime("%Y-%m-%d"),
            row["disclosure_date"].strftime("%Y-%m-%d"), row["ticker"], row["transaction_type"],
            f"{row['amount_min_usd']}-{top}",
            row["owner"] or "", row["ptr_link"],
        ])
        assert row["disclosure_id"] == hashlib.sha256(key.encode()).hexdigest()


def test_filing_delays_and_dates(data):
    d, config = data.disclosures, data.config
    delay = (d["disclosure_date"] - d["transaction_date"]).dt.days
    assert delay.between(0, 45).all()
    assert delay.max() >= 40 and delay.min() == 0
    assert (d["disclosure_date"] <= config.end).all()
    assert (d["transaction_date"] >= config.start).all()
    assert (d["transaction_date"].dt.dayofweek < 5).all()
    assert (d["disclosure_date"].dt.dayofweek < 5).all()


def test_amount_bands_are_the_real_ones_skewed_small(data):
    d = data.disclosures
    bands = set(zip(d["amount_min_usd"], d["amount_max_usd"], strict=True))
    assert bands == REAL_BANDS
    open_ended = d.loc[d["amount_min_usd"] == 5_000_001.0, "amount_max_usd"]
    assert all(value is None for value in open_ended)
    assert (d["amount_min_usd"] == 1_001.0).mean() > 0.6
    assert (d["amount_min_usd"] >= 1_000_001.0).mean() < 0.02


def test_transaction_and_asset_types(data):
    d = data.disclosures
    shares = d["transaction_type"].value_counts(normalize=True)
    assert set(shares.index) == {"purchase", "sale_full", "sale_partial", "exchange"}
    assert 0.4 < shares["purchase"] < 0.6
    assert shares["exchange"] < 0.05
    asset = d["asset_type"].value_counts(normalize=True)
    assert set(asset.index) == {"stock", "etf"} and asset["stock"] > 0.85
    assert d["ticker"].notna().all()
    assert d["ptr_link"].str.startswith("https://").all()


def test_prices_cover_every_ticker_and_business_day(data, closes):
    config = data.config
    days = pd.bdate_range(config.start, config.end)
    tickers = set(data.sectors["ticker"])
    assert len(tickers) >= 300 and frames.MARKET_TICKER not in tickers
    assert set(closes.columns) == tickers | {frames.MARKET_TICKER}
    assert len(closes) == len(days) and closes.notna().all().all()
    assert data.sectors["ticker"].is_unique
    assert data.sectors["ticker"].str.fullmatch(r"[A-Z]{3,4}").all()
    assert data.sectors["sector"].nunique() == 11
    assert set(data.disclosures["ticker"]) <= tickers


def test_prices_positive_and_ohlc_consistent(data):
    p = data.prices
    assert (p[["open", "high", "low", "close", "adj_close", "volume"]] > 0).all().all()
    assert (p["low"] <= p[["open", "close"]].min(axis=1)).all()
    assert (p["high"] >= p[["open", "close"]].max(axis=1)).all()


def test_returns_correlated_more_within_sectors(data, closes):
    returns = np.log(closes.drop(columns=frames.MARKET_TICKER)).diff().iloc[1:]
    corr = returns.corr().to_numpy()
    upper = np.triu_indices_from(corr, k=1)
    sector = data.sectors.set_index("ticker").loc[returns.columns, "sector"].to_numpy()
    same = (sector[:, None] == sector[None, :])[upper]
    pairs = corr[upper]
    assert pairs.mean() > 0.15
    assert pairs[same].mean() > pairs[~same].mean() + 0.05
    spy = np.log(closes[frames.MARKET_TICKER]).diff().iloc[1:]
    assert np.corrcoef(returns.mean(axis=1), spy)[0, 1] > 0.8


def test_informed_members_are_a_minority_trading_ahead_of_events(data, closes):
    informed = data.informed_politician_ids
    assert len(informed) == round(0.15 * 120) and informed <= set(data.politicians["politician_id"])
    d = data.disclosures[data.disclosures["politician_id"].isin(informed)]
    assert 0.03 < len(d) / len(data.disclosures) < 0.12
    # Every informed trade precedes an event on its ticker by 1..10 trading days,
    # in the event's direction.
    day = pd.Series(np.arange(len(closes)), index=closes.index)
    trades = d.assign(day=day[d["transaction_date"]].to_numpy())
    events = data.events.assign(day=day[data.events["start_date"]].to_numpy())
    pairs = trades.merge(events, on="ticker", suffixes=("", "_event"))
    lead = pairs["day_event"] - pairs["day"]
    agrees = (pairs["transaction_type"] == "purchase") == (pairs["drift_frac"] > 0)
    matched = pairs[lead.between(1, 10) & agrees]
    assert matched["disclosure_id"].nunique() == len(d)
    assert data.events["drift_frac"].abs().between(0.04, 0.08).all()
    assert (data.events["drift_frac"] > 0).sum() == len(data.events) // 2


def test_informed_purchases_have_a_weak_edge(data, closes):
    spy = closes[frames.MARKET_TICKER]
    excess = (closes.shift(-20) / closes).sub(spy.shift(-20) / spy, axis=0)
    buys = data.disclosures[data.disclosures["transaction_type"] == "purchase"]
    start = closes.index.searchsorted(buys["disclosure_date"].to_numpy(), side="right")
    inside = start < len(closes)
    forward = pd.Series(np.nan, index=buys.index)
    forward[inside] = excess.to_numpy()[start[inside],
                                        closes.columns.get_indexer(buys["ticker"][inside])]
    informed = buys["politician_id"].isin(data.informed_politician_ids)
    edge, others = forward[informed].dropna(), forward[~informed].dropna()
    assert len(edge) > 150 and len(others) > 2000
    assert edge.mean() > 0.01
    assert edge.mean() > others.mean() + 0.01
    # Weak: smaller than the planted drift, noisy per trade, tiny pooled over all purchases.
    assert edge.mean() < 0.06
    assert (edge > 0).mean() < 0.8
    assert abs(forward.mean()) < 0.01
    assert abs(others.mean()) < 0.01


def test_sources_serve_the_cached_dataset(data):
    config = SyntheticConfig()
    batch = SyntheticDisclosureSource(config).load_disclosures()
    pd.testing.assert_frame_equal(batch.disclosures, data.disclosures)
    pd.testing.assert_frame_equal(batch.politicians, data.politicians)
    assert list(batch.rejects.columns) == frames.REJECT_COLUMNS and batch.rejects.empty
    stats = batch.stats["synthetic"]
    assert stats.rows_read == stats.accepted == len(data.disclosures) and stats.balanced()
    batch.disclosures.drop(batch.disclosures.index, inplace=True)  # callers get copies
    assert len(generate(config).disclosures) == stats.rows_read
    assert generate(config) is data

    source = SyntheticPriceSource(config)
    some = list(data.sectors["ticker"][:2])
    prices = source.load_prices([*some, "NOPE"])
    assert set(prices["ticker"]) == {*some, frames.MARKET_TICKER}
    assert len(prices) == 3 * len(pd.bdate_range(config.start, config.end))
    assert len(source.load_prices()) == len(data.prices)
    pd.testing.assert_frame_equal(source.load_sectors(), data.sectors)


def test_scale_builds_benchmark_configs():
    config = SyntheticConfig.scale(n_disclosures=1500, n_tickers=40, years=0.5, seed=3)
    assert config.n_disclosures == pytest.approx(1500, abs=2)
    assert (config.end - config.start).days == 183
    small = generate.__wrapped__(config)
    assert small.sectors["ticker"].nunique() == 40
    assert abs(len(small.disclosures) - 1500) < 30
    assert (small.disclosures["disclosure_date"] <= config.end).all()
    assert SyntheticConfig.scale(10_000).n_tickers == 320


def test_config_rejects_a_majority_of_informed_members():
    with pytest.raises(ValueError):
        SyntheticConfig(informed_share=0.6)


# --- the published file formats ------------------------------------------------------------

PUBLISHED_CONFIGS = [
    SyntheticConfig(),
    # More members (shared last names, two chambers per state) over a different span.
    SyntheticConfig.scale(20_000, 200, 3.0, n_politicians=535, seed=11,
                          start=pd.Timestamp("2016-03-01")),
]


def test_published_frames_use_the_files_formats(data):
    house, senate = published_frames(data)
    assert list(house.columns) == HOUSE_FILE_COLUMNS and set(parsing.HOUSE_COLUMNS) <= set(house.columns)
    assert list(senate.columns) == SENATE_FILE_COLUMNS and set(parsing.SENATE_COLUMNS) <= set(senate.columns)
    assert len(house) + len(senate) == len(data.disclosures)
    assert sorted([*house.index, *senate.index]) == list(data.disclosures.index)
    chamber = data.disclosures["chamber"]
    assert (chamber[house.index] == "house").all() and (chamber[senate.index] == "senate").all()
    for frame in (house, senate):
        assert frame.map(lambda v: isinstance(v, str)).all().all()  # all strings, like a read file
        assert frame["ticker"].str.fullmatch(r"[A-Z]{3,4}|--").all()

    assert house["disclosure_date"].str.fullmatch(r"\d{2}/\d{2}/\d{4}").all()
    assert house["transaction_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert (house["disclosure_year"] == house["disclosure_date"].str[-4:]).all()
    for column in ["transaction_date", "disclosure_date"]:  # Senate: M/D/YYYY, no zero padding
        assert senate[column].str.fullmatch(r"[1-9]\d?/[1-9]\d?/\d{4}").all()
    assert set(house["type"]) == {"purchase", "sale_full", "sale_partial", "exchange"}
    assert set(senate["type"]) == {"Purchase", "Sale (Full)", "Sale (Partial)", "Exchange"}
    assert set(house["amount"]) == set(HOUSE_AMOUNT_TEXT) and "$5,000,000 +" in HOUSE_AMOUNT_TEXT
    assert set(senate["amount"]) == set(SENATE_AMOUNT_TEXT) and "Over $5,000,000" in SENATE_AMOUNT_TEXT
    assert "$1,001 - $15,000" in HOUSE_AMOUNT_TEXT
    assert set(house["owner"]) == {"joint", "self", "spouse", "dependent", "--"}
    assert set(senate["owner"]) == {"Joint", "Self", "Spouse", "Child", "--"}
    assert set(senate["asset_type"]) == {"Stock", "Other Securities"}
    assert (senate["comment"] == "--").all()
    assert house["representative"].str.fullmatch(r"Hon\. [A-Z][a-z]+( [A-Z]\.)? [A-Z][a-z]+").all()
    assert senate["senator"].str.fullmatch(r"[A-Z][a-z]+( [A-Z])? [A-Z][a-z]+").all()
    assert house["district"].str.fullmatch(r"[A-Z]{2}\d{2}").all()
    assert set(house["cap_gains_over_200_usd"]) == {"True", "False"}
    assert (house.loc[house["cap_gains_over_200_usd"] == "True", "type"].str.startswith("sale")).all()
    again = published_frames(data)
    pd.testing.assert_frame_equal(again[0], house)
    pd.testing.assert_frame_equal(again[1], senate)


def test_published_legislators_follow_the_legislators_file(data, tmp_path):
    table = published_legislators(data)
    assert list(table.columns) == LEGISLATOR_FILE_COLUMNS
    assert len(table) == len(data.politicians)
    assert set(table["type"]) == {"sen", "rep"} and set(table["party"]) == {"Democrat", "Republican", "Independent"}
    assert table["birthday"].str.fullmatch(r"(19[4-8]\d)-\d{2}-\d{2}").all()
    reps = table[table["type"] == "rep"]
    assert reps["district"].str.fullmatch(r"\d{1,2}").all() and (table.loc[table["type"] == "sen", "district"] == "").all()
    path = tmp_path / "legislators-current.csv"
    table.to_csv(path, index=False)
    loaded = parsing.load_legislators(path)
    assert list(loaded["bioguide_id"]) == list(data.politicians["politician_id"])


@pytest.mark.parametrize("config", PUBLISHED_CONFIGS, ids=["default", "535-members"])
def test_published_frames_parse_back_to_the_synthetic_disclosures(config, tmp_path):
    data = generate(config)
    house, senate = published_frames(data)
    path = tmp_path / "legislators-current.csv"
    published_legislators(data).to_csv(path, index=False)
    legislators = parsing.load_legislators(path)
    for raw, parse in [(house, parsing.parse_house), (senate, parsing.parse_senate)]:
        assert len(raw) > 0
        result = parse(raw)
        # Every row accepted: no rejects, no collapses (the synthetic keys are unique).
        assert result.stats.rows_read == result.stats.accepted == len(raw)
        assert result.stats.rejected == 0 and result.rejects.empty
        assert result.stats.duplicates_collapsed == 0 and result.stats.balanced()
        parsed, politicians = parsing.attach_politicians(result.accepted, legislators)
        expected = data.disclosures.loc[raw.index].reset_index(drop=True)
        assert parsed["politician_id"].notna().all()  # every filer matched to its member
        for column in ["politician_id", "party", "state", "chamber", "ticker", "transaction_type",
                       "transaction_date", "disclosure_date", "amount_min_usd", "amount_max_usd",
                       "asset_type", "asset_description", "ptr_link"]:
            pd.testing.assert_series_equal(
                parsed[column].astype(object), expected[column].astype(object), check_names=False,
                obj=column)
        owner = expected["owner"].replace({"dependent": "child"} if parse is parsing.parse_senate else {})
        pd.testing.assert_series_equal(parsed["owner"], owner.astype(object), check_names=False)
        assert not parsed["filed_before_trade"].any() and (parsed["duplicate_count"] == 1).all()
        members = data.politicians.set_index("politician_id").loc[politicians["politician_id"]]
        assert set(politicians["politician_id"]) == set(expected["politician_id"])
        assert (politicians["party"].to_numpy() == members["party"].to_numpy()).all()
        assert (politicians["state"].to_numpy() == members["state"].to_numpy()).all()


def test_the_edge_knob_scales_the_planted_drift_and_zero_is_pure_noise():
    from feedback_loop.lib.ingest.synthetic import SyntheticConfig, generate

    base = generate(SyntheticConfig.scale(1000, 20, 1.0))
    null = generate(SyntheticConfig.scale(1000, 20, 1.0, edge=0.0))
    double = generate(SyntheticConfig.scale(1000, 20, 1.0, edge=2.0))
    assert (null.events["drift_frac"] == 0).all() and (base.events["drift_frac"] != 0).all()
    assert np.allclose(double.events["drift_frac"], 2 * base.events["drift_frac"])
    # The same members trade the same tickers on the same days: only prices lose the edge.
    same = ["ticker", "transaction_date", "disclosure_date", "transaction_type"]
    pd.testing.assert_frame_equal(null.disclosures[same], base.disclosures[same])
    assert not null.prices["close"].equals(base.prices["close"])
    with pytest.raises(ValueError, match="edge"):
        SyntheticConfig(edge=-1)
