"""compute_ticker_features on a tiny hand-built fixture: every value derived by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from feedback_loop.lib import policy
from feedback_loop.lib.frames import DISCLOSURE_COLUMNS
from feedback_loop.lib.ingest.synthetic import SyntheticConfig, generate
from feedback_loop.lib.signals.features import (
    CANDIDATE_FEATURES,
    FEATURE_FRAME_COLUMNS,
    FEATURE_GROUPS,
    FEATURE_HISTORY_DAYS,
    FEATURE_NAMES,
    MEMBER_RECORD_PRIOR_FILINGS,
    compute_ticker_features,
    feature_vectors,
    features_frame_from_vectors,
)

AS_OF = pd.Timestamp("2024-03-29")  # a Friday; 2024 is a leap year
DAY = pd.Timedelta(days=1)


def disclosure(**fields) -> dict:
    row = {
        "disclosure_id": None,
        "source": "house",
        "politician_id": "p1",
        "filer_name": "Hon. One",
        "chamber": "house",
        "party": "D",
        "state": "CA",
        "ticker": "AAA",
        "asset_description": "",
        "asset_type": "stock",
        "transaction_type": "purchase",
        "transaction_date": AS_OF - 10 * DAY,
        "disclosure_date": AS_OF - 5 * DAY,
        "amount_min_usd": 1001.0,
        "amount_max_usd": 15000.0,
        "owner": "self",
        "ptr_link": "",
        "duplicate_count": 1,
        "filed_before_trade": False,
    }
    row.update(fields)
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=DISCLOSURE_COLUMNS)
    out["disclosure_id"] = [f"d{i}" for i in range(len(out))]
    return out


@pytest.fixture
def disclosures() -> pd.DataFrame:
    return frame(
        [
            # AAA: four visible trades by three politicians
            disclosure(
                transaction_date=AS_OF - 28 * DAY, disclosure_date=AS_OF - 9 * DAY
            ),  # delay 19
            disclosure(
                transaction_date=AS_OF - 38 * DAY,
                disclosure_date=AS_OF - 28 * DAY,  # delay 10
                amount_min_usd=15001.0,
                amount_max_usd=50000.0,
                duplicate_count=2,
            ),
            disclosure(
                politician_id=None,
                filer_name="Sen. X",
                chamber="senate",
                party="R",
                transaction_type="sale_full",
                amount_min_usd=5_000_001.0,
                amount_max_usd=None,
                transaction_date=AS_OF - 57 * DAY,
                disclosure_date=AS_OF - 30 * DAY,
            ),  # delay 27
            disclosure(
                politician_id="p3",
                filer_name="Hon. Three",
                party=None,
                transaction_type="exchange",
                transaction_date=AS_OF - 29 * DAY,
                disclosure_date=AS_OF - 29 * DAY,
            ),  # delay 0
            # AAA: invisible or ineligible
            disclosure(asset_type="bond"),
            disclosure(
                transaction_date=AS_OF - 20 * DAY, disclosure_date=AS_OF + 4 * DAY
            ),  # filed after as_of
            disclosure(
                disclosure_date=AS_OF - 90 * DAY, transaction_date=AS_OF - 100 * DAY
            ),  # window is (-90, 0]
            # no ticker
            disclosure(ticker=None),
            # BBB: a single purchase, one party, no prices
            disclosure(ticker="BBB", politician_id="p4", filer_name="Hon. Four"),
            # CCC: exchanges only
            disclosure(ticker="CCC", transaction_type="exchange"),
            disclosure(ticker="CCC", transaction_type="exchange", politician_id="p5", party="I"),
            # EEE: only an option, never eligible
            disclosure(ticker="EEE", asset_type="option"),
        ]
    )


SPY_STEP = 0.01  # SPY log returns alternate +2 * SPY_STEP, -SPY_STEP


@pytest.fixture
def prices() -> pd.DataFrame:
    days = pd.bdate_range(end=AS_OF, periods=40).append(pd.bdate_range(AS_OF + DAY, periods=5))
    k = np.arange(len(days))
    spy_log = np.concatenate([[0.0], np.where(k[1:] % 2 == 1, 2 * SPY_STEP, -SPY_STEP)]).cumsum()
    series = {
        "SPY": 400 * np.exp(spy_log),
        "AAA": 100 * 1.01**k,
        "PEER": 50 * 0.99**k,
        "DDD": 20 * 1.005**k,
    }
    rows = [pd.DataFrame({"ticker": t, "date": days, "adj_close": v}) for t, v in series.items()]
    # STALE: its prices end 10 calendar days before as_of
    stale_days = pd.bdate_range(end=AS_OF - 10 * DAY, periods=30)
    rows.append(
        pd.DataFrame(
            {"ticker": "STALE", "date": stale_days, "adj_close": 10 * 1.02 ** np.arange(30)}
        )
    )
    out = pd.concat(rows, ignore_index=True)
    for column in ["open", "high", "low", "close"]:
        out[column] = out["adj_close"]
    out["volume"] = 1_000.0
    return out


SECTORS = pd.DataFrame(
    {"ticker": ["AAA", "PEER", "DDD", "BBB"], "sector": ["Tech", "Tech", "Energy", "Energy"]}
)


def features_at(disclosures, prices, as_of=AS_OF, **kwargs) -> pd.DataFrame:
    return compute_ticker_features(disclosures, prices, as_of_dates=[as_of], **kwargs).set_index(
        "ticker"
    )


def test_columns_and_active_tickers(disclosures, prices):
    out = compute_ticker_features(disclosures, prices, as_of_dates=[AS_OF])
    assert list(out.columns) == FEATURE_FRAME_COLUMNS
    assert FEATURE_FRAME_COLUMNS[5:] == CANDIDATE_FEATURES
    assert set(FEATURE_NAMES) <= set(CANDIDATE_FEATURES) and len(set(CANDIDATE_FEATURES)) == len(CANDIDATE_FEATURES)
    assert sum(map(len, FEATURE_GROUPS.values())) == len(CANDIDATE_FEATURES)
    # EEE (option only) and the ticker-less filing are not signal-eligible
    assert list(out["ticker"]) == ["AAA", "BBB", "CCC"]
    assert (out["as_of"] == AS_OF).all()


def test_disclosure_features_by_hand(disclosures, prices):
    aaa = features_at(disclosures, prices).loc["AAA"]
    assert (aaa.trade_count, aaa.buy_count, aaa.sell_count) == (4, 2, 1)
    assert aaa.politician_count == 3  # p1 (twice), "Sen. X" by filer name, p3
    assert aaa.buy_sell_ratio == 2.0
    assert aaa.recent_activity_30d == 3  # filed 9, 28, 29 days back; 30 days back is out
    assert aaa.bipartisan == 1.0
    buy_usd = (1001 + 15000) / 2 + (15001 + 50000) / 2 * 2
    sell_usd = 5_000_001  # open-ended band: its minimum
    exchange_usd = (1001 + 15000) / 2
    assert aaa.net_volume == pytest.approx(buy_usd - sell_usd)
    assert aaa.volume_magnitude == pytest.approx(math.log1p(buy_usd + sell_usd + exchange_usd))
    assert aaa.party_alignment == pytest.approx(2 / 3)  # D, D, R; the exchange has no party
    assert aaa.disclosure_delay == pytest.approx((19 + 10 + 27 + 0) / 4)
    assert aaa.committee_relevance == pytest.approx(1 / 4)  # one senate trade of four
    assert aaa.politician_count_30d == 2  # p1 (9 days back), p3 (29); Sen. X filed 30 days back
    assert aaa.trade_size_log_usd == pytest.approx(
        (math.log(8000.5) + math.log(32500.5) + math.log(5_000_001) + math.log(8000.5)) / 4)
    assert (aaa.owner_self_share, aaa.owner_joint_share) == (1.0, 0.0)  # every fixture row is "self"


def test_ratio_edges_and_single_party(disclosures, prices):
    out = features_at(disclosures, prices)
    bbb, ccc = out.loc["BBB"], out.loc["CCC"]
    assert bbb.buy_sell_ratio == policy.BUY_SELL_RATIO_CAP  # buys, no sells
    assert ccc.buy_sell_ratio == 1.0  # neither
    assert (bbb.bipartisan, bbb.party_alignment) == (0.0, 1.0)
    assert ccc.party_alignment == 1.0  # one D trade; the independent is not counted
    assert math.isnan(
        features_at(frame([disclosure(party="I")]), prices).loc["AAA"].party_alignment
    )
    assert ccc.net_volume == 0.0 and ccc.buy_count == ccc.sell_count == 0
    many_buys = frame(
        [disclosure(politician_id=f"p{i}") for i in range(12)]
        + [disclosure(transaction_type="sale_partial")]
    )
    assert (
        features_at(many_buys, prices).loc["AAA"].buy_sell_ratio == policy.BUY_SELL_RATIO_CAP
    )  # 12 / 1 capped


def test_recent_activity_counts_exactly_30_calendar_days(prices):
    rows = frame(
        [
            disclosure(disclosure_date=AS_OF),  # day 1
            disclosure(disclosure_date=AS_OF - 29 * DAY),  # day 30: in
            disclosure(disclosure_date=AS_OF - 30 * DAY),  # day 31: out
            disclosure(disclosure_date=AS_OF - 89 * DAY),  # in the 90-day window only
        ]
    )
    aaa = features_at(rows, prices).loc["AAA"]
    assert aaa.recent_activity_30d == 2
    assert aaa.trade_count == 4
    assert features_at(rows, prices, window_days=30).loc["AAA"].trade_count == 2


def test_filing_after_as_of_is_invisible_even_if_traded_before(disclosures, prices):
    late = disclosure(ticker="LATE", transaction_date=AS_OF - 40 * DAY, disclosure_date=AS_OF + DAY)
    with_late = pd.concat([disclosures, frame([late])], ignore_index=True)
    assert "LATE" not in features_at(with_late, prices).index
    pairs = pd.DataFrame({"ticker": ["LATE"], "as_of": [AS_OF]})
    assert compute_ticker_features(with_late, prices, pairs=pairs).loc[0, "trade_count"] == 0
    assert (
        compute_ticker_features(with_late, prices, pairs=pairs.assign(as_of=AS_OF + DAY)).loc[
            0, "trade_count"
        ]
        == 1
    )


def test_owner_shares_count_only_stated_owners(prices):
    rows = frame([disclosure(owner=o) for o in ["self", "Joint ", "spouse", "dependent", None]])
    aaa = features_at(rows, prices).loc["AAA"]
    assert (aaa.owner_self_share, aaa.owner_joint_share) == (0.25, 0.25)  # 4 stated owners
    assert math.isnan(features_at(frame([disclosure(owner=None)]), prices).loc["AAA"].owner_self_share)


RECORD_DAYS = pd.bdate_range("2023-01-02", periods=320)


def _record_prices() -> pd.DataFrame:
    """SPY flat; OLD +10% from day 10 to day 30; OLD2 -10% from day 12 to day 32; ANCIENT
    doubles from day 0 to day 20 (all as level steps); AAA and BBB have no prices."""
    k = np.arange(len(RECORD_DAYS))
    series = {"SPY": np.full(len(k), 100.0), "OLD": np.where(k >= 30, 110.0, 100.0),
              "OLD2": np.where(k >= 32, 90.0, 100.0), "ANCIENT": np.where(k >= 20, 200.0, 100.0)}
    out = pd.concat([pd.DataFrame({"ticker": t, "date": RECORD_DAYS, "adj_close": v}) for t, v in series.items()],
                    ignore_index=True)
    for column in ["open", "high", "low", "close"]:
        out[column] = out["adj_close"]
    return out.assign(volume=1_000.0)


def test_member_record_by_hand():
    day = RECORD_DAYS
    lookback_end = day[20] + pd.Timedelta(days=365)  # ANCIENT resolved exactly 365 days before
    member = {"p1": {}, "p2": {"filer_name": "Hon. Two"}, "p4": {"filer_name": "Hon. Four"}}

    def filed(politician, ticker, kind, on):
        return disclosure(politician_id=politician, ticker=ticker, transaction_type=kind, disclosure_date=on,
                          transaction_date=on - 3 * DAY, **member[politician])

    rows = frame([
        filed("p1", "ANCIENT", "purchase", day[0]),    # resolves day 20: +1.00
        filed("p1", "OLD", "purchase", day[10]),       # resolves day 30: +0.10
        filed("p1", "OLD2", "sale_full", day[12]),     # resolves day 32: sold before -10%, +0.10
        filed("p4", "OLD2", "purchase", day[12]),      # resolves day 32: -0.10
        filed("p1", "AAA", "purchase", day[25]),       # AAA has no prices: in no record
        filed("p2", "AAA", "sale_full", day[25]),      # p2 never has a resolved filing
        filed("p4", "AAA", "sale_partial", day[25]),
        filed("p1", "AAA", "exchange", day[25]),       # no side
        filed("p2", "BBB", "purchase", day[25]),
        filed("p1", "AAA", "purchase", lookback_end - 10 * DAY),
    ])
    pairs = pd.DataFrame({"ticker": ["AAA", "AAA", "AAA", "BBB", "AAA", "AAA", "AAA"],
                          "as_of": [day[19], day[29], day[31], day[32], day[32],
                                    lookback_end - DAY, lookback_end]})
    got = compute_ticker_features(rows, _record_prices(), pairs=pairs)["member_record"].to_numpy()
    k = MEMBER_RECORD_PRIOR_FILINGS
    p1_at_32 = 1.2 / (3 + k)
    expected = [
        math.nan,                         # nothing resolved yet (ANCIENT resolves on day 20)
        1.0 / (1 + k),                    # p1: ANCIENT; p2 and p4 have no record
        1.1 / (2 + k),                    # + OLD; OLD2 resolves on day 32
        math.nan,                         # BBB: its only filer has no record
        (p1_at_32 + (-1) * (-0.1 / (1 + k))) / 2,  # p4's record is -0.1, and p4 sold AAA
        p1_at_32,                         # the window holds p1's second purchase only
        0.2 / (2 + k),                    # ANCIENT left the lookback
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-12, equal_nan=True)


def test_member_record_sees_no_price_or_filing_after_as_of():
    rng = np.random.default_rng(5)
    k = np.arange(len(RECORD_DAYS))
    tickers = [f"T{i}" for i in range(6)]
    walks = {t: 100 * np.exp(np.cumsum(rng.normal(0, 0.02, len(k)))) for t in [*tickers, "SPY"]}
    prices = pd.concat([pd.DataFrame({"ticker": t, "date": RECORD_DAYS, "adj_close": v}) for t, v in walks.items()],
                       ignore_index=True)
    for column in ["open", "high", "low", "close"]:
        prices[column] = prices["adj_close"]
    prices["volume"] = 1_000.0
    on = RECORD_DAYS[rng.integers(0, len(k), 600)]
    rows = frame([disclosure(politician_id=f"p{rng.integers(8)}", ticker=rng.choice(tickers), disclosure_date=d,
                             transaction_date=d - 2 * DAY,
                             transaction_type=rng.choice(["purchase", "sale_full", "exchange"])) for d in on])
    cut = RECORD_DAYS[200]
    pairs = pd.DataFrame({"ticker": tickers * 40, "as_of": np.repeat(RECORD_DAYS[161:201], 6)})
    before = compute_ticker_features(rows, prices, pairs=pairs)
    assert before["member_record"].notna().mean() > 0.8
    future = prices["date"] > cut
    perturbed = prices.assign(adj_close=np.where(future, prices["adj_close"] * rng.uniform(0.2, 5, len(prices)),
                                                 prices["adj_close"]))
    late = rows["disclosure_date"] > cut
    assert late.sum() > 50 and future.sum() > 100
    flipped = rows.assign(transaction_type=np.where(late, "purchase", rows["transaction_type"]))
    after = compute_ticker_features(flipped, perturbed, pairs=pairs)
    pd.testing.assert_frame_equal(before, after)
    # the test has teeth: the same perturbation of the past moves the record
    past = prices.assign(adj_close=np.where(prices["date"] <= cut, perturbed["adj_close"] + prices["adj_close"]
                                            * rng.uniform(0.2, 5, len(prices)), prices["adj_close"]))
    moved = compute_ticker_features(rows, past, pairs=pairs)["member_record"]
    assert not np.allclose(moved.fillna(0), before["member_record"].fillna(0))


def test_perturbing_the_future_changes_nothing(disclosures, prices):
    dates = [AS_OF, AS_OF + DAY]  # a trading Friday and the Saturday after it
    before = compute_ticker_features(disclosures, prices, as_of_dates=dates, sectors=SECTORS)
    future_disclosures = disclosures.copy()
    late = future_disclosures["disclosure_date"] > AS_OF
    assert late.any()
    future_disclosures.loc[late, ["transaction_type", "party", "chamber"]] = [
        "sale_full",
        "R",
        "senate",
    ]
    future_disclosures.loc[late, "amount_min_usd"] = 1e9
    extra = frame(
        [
            disclosure(ticker=t, disclosure_date=AS_OF + 2 * DAY, transaction_date=AS_OF - DAY)
            for t in ["AAA", "BBB", "NEW"]
        ]
    )
    future_prices = prices.copy()
    after = future_prices["date"] > AS_OF
    assert after.any()
    future_prices.loc[after, "adj_close"] *= np.linspace(0.1, 10, after.sum())
    future_prices = pd.concat(
        [future_prices, future_prices.loc[after].assign(ticker="BBB")], ignore_index=True
    )
    later = compute_ticker_features(
        pd.concat([future_disclosures, extra], ignore_index=True),
        future_prices,
        as_of_dates=dates,
        sectors=SECTORS,
    )
    pd.testing.assert_frame_equal(before, later)


def test_pairs_and_as_of_dates_agree(disclosures, prices):
    dates = pd.bdate_range(end=AS_OF + 3 * DAY, periods=60)
    grid = compute_ticker_features(disclosures, prices, as_of_dates=dates, sectors=SECTORS)
    assert grid["as_of"].nunique() > 40 and grid["ticker"].nunique() == 3
    pairs = grid[["ticker", "as_of"]].sample(frac=1.0, random_state=7).reset_index(drop=True)
    served = compute_ticker_features(disclosures, prices, pairs=pairs, sectors=SECTORS)
    assert list(served["ticker"]) == list(pairs["ticker"])
    assert list(served["as_of"]) == list(pairs["as_of"])
    expected = (
        grid.set_index(["ticker", "as_of"]).loc[pd.MultiIndex.from_frame(pairs)].reset_index()
    )
    pd.testing.assert_frame_equal(served, expected)


def test_price_features_by_hand(disclosures, prices):
    out = features_at(disclosures, prices, sectors=SECTORS)
    aaa = out.loc["AAA"]
    assert aaa.market_momentum == pytest.approx(1.01**20 - 1)
    # SPY's 20 last log returns: ten of +2s and ten of -s, s = SPY_STEP
    assert aaa.market_return_20d == pytest.approx(math.exp(10 * SPY_STEP) - 1)
    spy_sample_std = 1.5 * SPY_STEP * math.sqrt(20 / 19)
    assert aaa.vix_level == pytest.approx(spy_sample_std * math.sqrt(252))
    # AAA and DDD rise over 20 days, PEER falls; SPY is not counted, STALE is stale
    assert aaa.market_breadth == pytest.approx(2 / 3)
    assert aaa.sector_performance == pytest.approx(((1.01**20 - 1) + (0.99**20 - 1)) / 2)
    # market-wide values are the same for every ticker of the date
    assert out["market_breadth"].nunique() == 1 and out["vix_level"].nunique() == 1


def test_last_price_on_or_before_as_of(prices):
    days = prices.loc[prices["ticker"] == "AAA", "date"].to_numpy()
    k = np.arange(len(days))
    wavy = pd.DataFrame(
        {"ticker": "WAVY", "date": days, "adj_close": 100.0 + k**2}
    )  # AS_OF is k = 39
    prices = pd.concat([prices, wavy], ignore_index=True)
    saturday = AS_OF + DAY
    pairs = pd.DataFrame(
        {
            "ticker": ["WAVY", "AAA", "STALE", "STALE"],
            "as_of": [saturday, AS_OF - 14 * DAY, AS_OF, AS_OF - 10 * DAY],
        }
    )
    out = compute_ticker_features(frame([]), prices, pairs=pairs)
    assert out.loc[0, "market_momentum"] == pytest.approx(
        (100 + 39**2) / (100 + 19**2) - 1
    )  # Friday's
    assert out.loc[1, "market_momentum"] == pytest.approx(1.01**20 - 1)  # a constant-growth series
    assert math.isnan(out.loc[2, "market_momentum"])  # last price 10 days old: stale
    assert out.loc[3, "market_momentum"] == pytest.approx(1.02**20 - 1)
    assert (out["trade_count"] == 0).all() and (out["politician_count"] == 0).all()


def test_sector_performance_nan_without_sectors_and_varies_with_them(disclosures, prices):
    without = features_at(disclosures, prices)
    assert without["sector_performance"].isna().all()
    empty = features_at(disclosures, prices, sectors=SECTORS.iloc[0:0])
    assert empty["sector_performance"].isna().all()
    with_sectors = features_at(disclosures, prices, sectors=SECTORS)
    # BBB has no prices of its own but Energy peers (DDD); CCC has no sector
    assert with_sectors.loc["BBB", "sector_performance"] == pytest.approx(1.005**20 - 1)
    assert (
        with_sectors.loc["AAA", "sector_performance"]
        != with_sectors.loc["BBB", "sector_performance"]
    )
    assert math.isnan(with_sectors.loc["CCC", "sector_performance"])


def test_no_price_tickers_get_nan_price_features(disclosures, prices):
    out = features_at(disclosures, prices, sectors=SECTORS)
    assert math.isnan(out.loc["BBB", "market_momentum"]) and math.isnan(
        out.loc["CCC", "market_momentum"]
    )
    assert not math.isnan(out.loc["BBB", "market_return_20d"])  # the market's prices exist
    no_prices = features_at(disclosures, prices.iloc[0:0], sectors=SECTORS)
    price_names = [
        "market_momentum",
        "sector_performance",
        "vix_level",
        "market_return_20d",
        "market_breadth",
    ]
    assert no_prices[price_names].isna().all().all()
    assert (no_prices["trade_count"] > 0).all()
    without_spy = features_at(disclosures, prices[prices["ticker"] != "SPY"])
    assert without_spy[["vix_level", "market_return_20d"]].isna().all().all()
    assert not without_spy["market_breadth"].isna().any()


def test_exactly_one_selector(disclosures, prices):
    with pytest.raises(ValueError):
        compute_ticker_features(disclosures, prices)
    with pytest.raises(ValueError):
        compute_ticker_features(
            disclosures,
            prices,
            as_of_dates=[AS_OF],
            pairs=pd.DataFrame({"ticker": ["AAA"], "as_of": [AS_OF]}),
        )


def test_feature_vector_round_trip(disclosures, prices):
    out = compute_ticker_features(disclosures, prices, as_of_dates=[AS_OF], sectors=SECTORS)
    vectors = feature_vectors(out)
    assert all(list(v) == FEATURE_NAMES for v in vectors)
    stored = json.loads(json.dumps(vectors, allow_nan=False))  # JSON-able: NaN became None
    assert stored[1]["market_momentum"] is None  # BBB has no prices
    back = features_frame_from_vectors(stored)
    pd.testing.assert_frame_equal(back, out[FEATURE_NAMES].astype(float))


def test_vectors_missing_a_feature_key_are_rejected():
    vector = {name: 1.0 for name in FEATURE_NAMES if name != "vix_level"}
    with pytest.raises(ValueError, match="vix_level"):
        features_frame_from_vectors([vector])
    assert list(features_frame_from_vectors([]).columns) == FEATURE_NAMES


def _brute_force_disclosure_features(disclosures: pd.DataFrame, ticker: str, as_of, window_days: int) -> dict:
    """The disclosure features of one (ticker, as_of), straight from their definitions."""
    d = disclosures[(disclosures["ticker"] == ticker) & disclosures["asset_type"].isin(["stock", "etf"])]
    d = d[d["disclosure_date"] <= as_of]
    recent_rows = d[d["disclosure_date"] > as_of - pd.Timedelta(days=30)]
    recent = len(recent_rows)
    d = d[d["disclosure_date"] > as_of - pd.Timedelta(days=window_days)]
    buys = (d["transaction_type"] == "purchase").sum()
    sells = d["transaction_type"].isin(["sale_full", "sale_partial"]).sum()
    volume = d["amount_min_usd"].where(d["amount_max_usd"].isna(), (d["amount_min_usd"] + d["amount_max_usd"]) / 2)
    volume = volume * d["duplicate_count"]
    sign = np.where(d["transaction_type"] == "purchase", 1.0, np.where(d["transaction_type"] == "exchange", 0.0, -1.0))
    dems, reps = (d["party"] == "D").sum(), (d["party"] == "R").sum()
    midpoint = d["amount_min_usd"].where(d["amount_max_usd"].isna(), (d["amount_min_usd"] + d["amount_max_usd"]) / 2)
    owners = d["owner"].dropna()
    return {
        "politician_count_30d": recent_rows["politician_id"].fillna(recent_rows["filer_name"]).nunique(),
        "trade_size_log_usd": np.log(midpoint.astype(float)).mean() if len(d) else math.nan,
        "owner_self_share": (owners == "self").mean() if len(owners) else math.nan,
        "owner_joint_share": (owners == "joint").mean() if len(owners) else math.nan,
        "trade_count": len(d),
        "politician_count": d["politician_id"].fillna(d["filer_name"]).nunique(),
        "buy_sell_ratio": min(buys / sells, policy.BUY_SELL_RATIO_CAP) if sells else (policy.BUY_SELL_RATIO_CAP if buys else 1.0),
        "recent_activity_30d": recent,
        "bipartisan": float(dems > 0 and reps > 0),
        "net_volume": float((volume * sign).sum()),
        "volume_magnitude": math.log1p(volume.sum()),
        "party_alignment": max(dems, reps) / (dems + reps) if dems + reps else math.nan,
        "disclosure_delay": ((d["disclosure_date"] - d["transaction_date"]).dt.days.mean() if len(d) else math.nan),
        "committee_relevance": (d["chamber"] == "senate").mean() if len(d) else math.nan,
    }


@pytest.mark.parametrize("window_days", [90, 20])
def test_windowed_sums_match_brute_force_on_random_filings(prices, window_days):
    """Many members filing the same tickers on the same and nearby days, including repeats of
    one member within a window, as_of dates on window edges, before all filings and after."""
    rng = np.random.default_rng(3)
    n = 400
    filed = AS_OF - pd.to_timedelta(rng.integers(0, 200, n), "D")
    rows = [
        disclosure(
            ticker=rng.choice(["AAA", "BBB", "CCC"]),
            politician_id=rng.choice(["p1", "p2", "p3", None]),
            filer_name=rng.choice(["Sen. A", "Sen. B"]),
            chamber=rng.choice(["house", "senate"]),
            party=rng.choice(["D", "R", "I", None]),
            transaction_type=rng.choice(["purchase", "sale_full", "sale_partial", "exchange"]),
            asset_type=rng.choice(["stock", "etf", "option"], p=[0.7, 0.2, 0.1]),
            disclosure_date=f,
            transaction_date=f - pd.Timedelta(days=int(rng.integers(0, 45))),
            amount_max_usd=rng.choice([15000.0, None]),
            owner=rng.choice(["self", "joint", "spouse", None]),
            duplicate_count=int(rng.integers(1, 3)),
        )
        for f in filed
    ]
    disclosures = frame(rows)
    as_of = AS_OF - pd.to_timedelta(np.arange(-5, 260, 7), "D")
    pairs = pd.DataFrame([(t, d) for t in ["AAA", "BBB", "CCC", "ZZZ"] for d in as_of], columns=["ticker", "as_of"])
    got = compute_ticker_features(disclosures, prices, pairs=pairs, window_days=window_days)
    expected = pd.DataFrame([
        _brute_force_disclosure_features(disclosures, t, d, window_days) for t, d in pairs.itertuples(index=False)
    ])
    assert expected["trade_count"].gt(0).sum() > 50 and expected["politician_count"].gt(1).sum() > 20
    for column in expected.columns:
        np.testing.assert_allclose(got[column].to_numpy(float), expected[column].to_numpy(float),
                                   rtol=1e-12, err_msg=column)


def test_one_day_from_its_history_slice_equals_a_many_day_pass_bit_for_bit():
    """The Dagster daily step computes a day from the disclosures and prices of the
    FEATURE_HISTORY_DAYS before it, in the order the database returns them; the engine
    computes many days in one pass over everything. Both must give the same bits (windowed
    sums are exact), or a model's artifact and its drift statistics differ between drivers."""
    data = generate(SyntheticConfig.scale(3000, 40, 2.0, seed=11))
    days = pd.bdate_range(data.config.end - pd.Timedelta(days=60), data.config.end - pd.Timedelta(days=1))
    many = compute_ticker_features(data.disclosures, data.prices, as_of_dates=days, sectors=data.sectors)
    assert many["member_record"].notna().sum() > 100 and many["trade_size_log_usd"].notna().all()
    for day in days[[0, len(days) // 2, -1]]:
        start = day - pd.Timedelta(days=FEATURE_HISTORY_DAYS)
        filed = data.disclosures["disclosure_date"]
        recent = data.disclosures[(filed > start) & (filed <= day)].sample(frac=1.0, random_state=1)
        prices = data.prices[(data.prices["date"] > start) & (data.prices["date"] <= day)]
        one = compute_ticker_features(recent, prices.sample(frac=1.0, random_state=2), as_of_dates=[day],
                                      sectors=data.sectors)
        expected = many[many["as_of"] == day].reset_index(drop=True)
        pd.testing.assert_frame_equal(one, expected, check_exact=True)
