"""The one feature function: the same code builds training rows and scores live signals.

`compute_ticker_features` returns one row per (ticker, as_of) with the columns
`ticker, as_of, trade_count, buy_count, sell_count` + `CANDIDATE_FEATURES` (every feature
of `FEATURE_GROUPS`); models train and score on `FEATURE_NAMES`, the groups that earned
their place in the ablation (benchmarks/feature_ablation.py). It sees only
signal-eligible disclosures (ticker present, asset type in `vocab.SIGNAL_ASSET_TYPES`)
filed on or before `as_of` (filing date, never trade date) and prices dated on or before
`as_of`; a caller passes the disclosures and prices of the `FEATURE_HISTORY_DAYS` before
`as_of` (the member record reaches back that far). Feature units (all are floats; NaN
means "not computable", never a default):

- `politician_count`: distinct politicians (politician_id, else filer_name) with a
  disclosure filed in the window (as_of - window_days, as_of], count.
- `buy_sell_ratio`: purchases / sales (sale_full + sale_partial) in the window, unitless,
  capped at `policy.BUY_SELL_RATIO_CAP`; the cap when there are buys and no sales, 1.0
  when there are neither. Exchanges are neither buys nor sales.
- `politician_count_30d`: distinct politicians with a disclosure filed in
  (as_of - 30 calendar days, as_of], count.
- `recent_activity_30d`: disclosures filed in (as_of - 30 calendar days, as_of], count.
- `bipartisan`: 1.0 when both Democrats and Republicans traded the ticker in the window,
  else 0.0.
- `net_volume`: USD buy volume minus USD sell volume in the window. A disclosure's volume
  is its amount band midpoint ((min + max) / 2, or min for open-ended bands) times its
  `duplicate_count`.
- `volume_magnitude`: log1p of the total USD volume in the window (buys, sales and
  exchanges), natural log.
- `party_alignment`: share (fraction) of the window's D/R trades made by the majority of
  those two parties, in [0.5, 1]; NaN when no trade has a D/R party. Independents are
  not counted (they belong to neither side of `bipartisan` either).
- `disclosure_delay`: mean days from trade date to filing date over the window's trades.
- `trade_size_log_usd`: mean over the window's trades of the natural log of the trade's
  amount band midpoint in USD (the band, not times `duplicate_count`): 7.96 is the
  $1,001-$15,000 band.
- `owner_self_share`, `owner_joint_share`: share (fraction) of the window's trades with a
  stated owner whose owner is "self" / "joint" (the rest: spouse, dependent, child); NaN
  when no trade states an owner (a third of the House rows do not).
- `member_record`: what the filers' earlier trades say about this ticker, fraction of
  excess return. A purchase or sale filed on f "resolved" at r, the
  `MEMBER_RECORD_HORIZON_TRADING_DAYS`-th SPY trading day after e, the last SPY trading
  day on or before f; its signed excess is side (+1 purchase, -1 sale) times (the ticker's
  adj_close return from e to r minus SPY's), NaN without both of the ticker's prices
  (exchanges have no side). A filer's record as of as_of is the sum of the signed excess
  of their filings (any ticker) resolved in (as_of - `MEMBER_RECORD_LOOKBACK_DAYS`, as_of]
  divided by (their count + `MEMBER_RECORD_PRIOR_FILINGS`): the mean, shrunk toward 0 when
  few have resolved. The feature is the mean, over the window's purchases and sales of
  the ticker whose filer has at least one resolved filing, of side times the filer's
  record; NaN when there is none. Every price it reads is dated on or before as_of.
- `committee_relevance`: share (fraction) of the window's trades filed by senators. This
  is the chamber mix, a stand-in: committee membership data is not available.
- `market_momentum`: the ticker's adj_close return over 20 of its trading days, fraction,
  ending at its last price on or before as_of.
- `sector_performance`: mean 20-trading-day return (fraction) of the tickers with prices
  in the ticker's sector as of the date (the ticker included); NaN when the ticker's
  sector is unknown or `sectors` is empty.
- `vix_level`: VIX proxy: SPY realized volatility of the last 20 daily log returns,
  annualized (x sqrt(252)), fraction (0.20 = 20 %).
- `market_return_20d`: SPY 20-trading-day return, fraction.
- `market_breadth`: share (fraction) of priced tickers (SPY excluded) whose last adj_close
  on or before as_of is above their adj_close 20 of their trading days earlier, among
  those with prices at both dates.

A "last price on or before as_of" older than `PRICE_STALENESS_MAX_DAYS` counts as no
price. Price-derived values are NaN when the prices they need are absent (about half of
the real traded tickers have no prices); the market-wide values (`vix_level`,
`market_return_20d`, `market_breadth`) and `sector_performance` do not depend on the
ticker's own prices.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from feedback_loop.lib import policy, vocab
from feedback_loop.lib.frames import MARKET_TICKER, day_numbers

#: Every computed feature, by what it describes (the ablation adds and removes whole groups).
FEATURE_GROUPS: dict[str, list[str]] = {
    "ticker_activity": ["politician_count", "politician_count_30d", "buy_sell_ratio",
                        "recent_activity_30d", "net_volume", "volume_magnitude"],
    "politics": ["bipartisan", "party_alignment", "committee_relevance"],
    "member_profile": ["disclosure_delay", "trade_size_log_usd", "owner_self_share", "owner_joint_share"],
    "member_record": ["member_record"],
    "market": ["market_momentum", "sector_performance", "vix_level", "market_return_20d", "market_breadth"],
}
CANDIDATE_FEATURES: list[str] = [name for names in FEATURE_GROUPS.values() for name in names]
#: The groups models train and score on. The ablation's rule (README "Feature ablation"): a
#: group stays unless it measurably hurts out of sample on the real 2019-2020 filings; none
#: did, and none measurably helped either.
KEPT_GROUPS = ("ticker_activity", "politics", "member_profile", "member_record", "market")
FEATURE_NAMES: list[str] = [name for group in KEPT_GROUPS for name in FEATURE_GROUPS[group]]

#: Columns of the frame `compute_ticker_features` returns, in order.
FEATURE_FRAME_COLUMNS: list[str] = [
    "ticker",
    "as_of",
    "trade_count",
    "buy_count",
    "sell_count",
    *CANDIDATE_FEATURES,
]

#: Default look-back window of the disclosure features, calendar days.
FEATURE_WINDOW_DAYS = 90
#: Window of `recent_activity_30d`, calendar days (what the name promises).
RECENT_ACTIVITY_DAYS = 30
#: Horizon of momentum, sector performance, market return and breadth, trading days.
RETURN_HORIZON_TRADING_DAYS = 20
#: Number of daily log returns in the realized-volatility VIX proxy, trading days.
VOLATILITY_WINDOW_TRADING_DAYS = 20
#: Trading days per year, to annualize daily volatility.
TRADING_DAYS_PER_YEAR = 252
#: Horizon of a filing's signed excess return in `member_record`, SPY trading days (the
#: training label's default horizon).
MEMBER_RECORD_HORIZON_TRADING_DAYS = 20
#: A filer's record counts the filings resolved in this many calendar days before as_of.
MEMBER_RECORD_LOOKBACK_DAYS = 365
#: Pseudo-filings of excess 0 added to a filer's record: with n resolved filings the mean
#: is shrunk by n / (n + this).
MEMBER_RECORD_PRIOR_FILINGS = 10
#: Calendar days of disclosures and prices before as_of a feature row can read: the record's
#: lookback plus the span of its horizon (20 trading days <= 31 calendar days) with room for
#: a gap in the prices.
FEATURE_HISTORY_DAYS = MEMBER_RECORD_LOOKBACK_DAYS + 60
#: The price columns the features read (the adjusted close alone).
FEATURE_PRICE_COLUMNS = ["ticker", "date", "adj_close"]
#: Non-integer weights (log sizes, excess returns) are summed as int64 multiples of
#: 2^-FIXED_POINT_BITS (about 6e-14): integer sums are exact, so a feature computed for one
#: day equals, bit for bit, the same feature computed in a many-day pass over more rows (the
#: Dagster and engine drivers). A window's sum is exact while below 2^(63 - bits) = 524,288.
FIXED_POINT_BITS = 44
#: Larger magnitudes (a return of 262,144-fold is a price error) are clipped to it.
FIXED_POINT_LIMIT = 2.0 ** 18
#: A last price older than this many calendar days before as_of is treated as no price
#: (delisted or no longer delivered); 7 days spans weekends plus a market holiday.
PRICE_STALENESS_MAX_DAYS = 7

_BUY_TYPES = [vocab.TransactionType.PURCHASE.value]
_SELL_TYPES = [vocab.TransactionType.SALE_FULL.value, vocab.TransactionType.SALE_PARTIAL.value]
_SIGNAL_ASSET_TYPES = sorted(t.value for t in vocab.SIGNAL_ASSET_TYPES)
_PRICE_FEATURES = [
    "market_momentum",
    "sector_performance",
    "vix_level",
    "market_return_20d",
    "market_breadth",
]


def compute_ticker_features(
    disclosures: pd.DataFrame,
    prices: pd.DataFrame,
    *,
    as_of_dates: Iterable | None = None,
    pairs: pd.DataFrame | None = None,
    window_days: int = FEATURE_WINDOW_DAYS,
    sectors: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Feature rows for (ticker, as_of) pairs; see the module docstring for each feature's unit.

    Give exactly one of:
    - `as_of_dates`: for each date, every ticker with at least one signal-eligible
      disclosure filed in (as_of - window_days, as_of]; rows sorted by as_of, ticker.
    - `pairs`: a frame with columns ticker, as_of; exactly those rows, in that order
      (a pair without disclosures in its window gets trade_count 0).

    `disclosures` has `frames.DISCLOSURE_COLUMNS`, `prices` `frames.PRICE_COLUMNS` (SPY
    included), `sectors` `frames.SECTOR_COLUMNS` (None or empty: sector_performance NaN).
    Returns `FEATURE_FRAME_COLUMNS` with a fresh RangeIndex.
    """
    if (as_of_dates is None) == (pairs is None):
        raise ValueError("give exactly one of as_of_dates or pairs")
    eligible = _eligible_disclosures(disclosures)
    if pairs is None:
        requests = _active_pairs(eligible, as_of_dates, window_days)
    else:
        requests = pd.DataFrame(
            {"ticker": pairs["ticker"].to_numpy(dtype=object), "as_of": _normalized(pairs["as_of"])}
        )
    counts, disclosure_features = _disclosure_features(requests, eligible, window_days)
    price_features = _price_features(requests, prices, sectors)
    record = _member_record(requests, eligible, prices, window_days)
    out = pd.DataFrame(
        {"ticker": requests["ticker"].to_numpy(dtype=object), "as_of": requests["as_of"].to_numpy()}
    )
    for name, values in counts.items():
        out[name] = values
    features = disclosure_features | price_features | {"member_record": record}
    for name in CANDIDATE_FEATURES:
        out[name] = features[name].astype(float)
    return out


def feature_vectors(frame: pd.DataFrame) -> list[dict[str, float | None]]:
    """The JSON-able feature dict stored with each row's signal: keys `FEATURE_NAMES`, NaN -> None."""
    values = frame[FEATURE_NAMES].to_numpy(dtype=float)
    rows = np.where(np.isnan(values), None, values.astype(object)).tolist()
    return [dict(zip(FEATURE_NAMES, row)) for row in rows]


def features_frame_from_vectors(vectors: Iterable[Mapping]) -> pd.DataFrame:
    """Inverse of `feature_vectors` over many stored vectors: a float frame of `FEATURE_NAMES`.

    None becomes NaN. A feature key that no vector carries raises ValueError (training
    must never silently drop or default a feature the vectors were supposed to store).
    """
    records = list(vectors)
    frame = pd.DataFrame.from_records(records)
    missing = [name for name in FEATURE_NAMES if name not in frame.columns]
    if records and missing:
        raise ValueError(f"stored feature vectors lack keys {missing}")
    return frame.reindex(columns=FEATURE_NAMES).astype(float).reset_index(drop=True)


# --- disclosures ---------------------------------------------------------------------


def _normalized(values) -> np.ndarray:
    """Dates as midnight-normalized datetime64[ns] values."""
    return pd.to_datetime(pd.Series(values)).dt.normalize().astype("datetime64[ns]").to_numpy()


def _eligible_disclosures(disclosures: pd.DataFrame) -> pd.DataFrame:
    """Signal-eligible disclosures reduced to the per-trade quantities the features need."""
    d = disclosures.loc[
        disclosures["ticker"].notna() & disclosures["asset_type"].isin(_SIGNAL_ASSET_TYPES)
    ]
    low_usd = d["amount_min_usd"].astype(float)
    high_usd = d["amount_max_usd"].astype(float)
    volume_usd = low_usd.where(high_usd.isna(), (low_usd + high_usd) / 2) * d[
        "duplicate_count"
    ].astype(float)
    is_buy = d["transaction_type"].isin(_BUY_TYPES).to_numpy()
    is_sell = d["transaction_type"].isin(_SELL_TYPES).to_numpy()
    filed = _normalized(d["disclosure_date"])
    traded = _normalized(d["transaction_date"])
    midpoint = low_usd.where(high_usd.isna(), (low_usd + high_usd) / 2).to_numpy()
    sized = np.isfinite(midpoint) & (midpoint > 0)
    owner = d["owner"].astype(object).str.strip().str.lower()
    return pd.DataFrame(
        {
            "ticker": d["ticker"].to_numpy(dtype=object),
            "filed": filed,
            "politician": pd.factorize(d["politician_id"].fillna(d["filer_name"]))[0],
            "buy": is_buy.astype(float),
            "sell": is_sell.astype(float),
            "volume_usd": volume_usd.to_numpy(),
            "signed_volume_usd": volume_usd.to_numpy()
            * (is_buy.astype(float) - is_sell.astype(float)),
            "democrat": (d["party"] == vocab.Party.DEMOCRAT.value).to_numpy(dtype=float),
            "republican": (d["party"] == vocab.Party.REPUBLICAN.value).to_numpy(dtype=float),
            "senate": (d["chamber"] == vocab.Chamber.SENATE.value).to_numpy(dtype=float),
            "delay_days": (filed - traded) / np.timedelta64(1, "D"),
            "sized": sized.astype(float),
            "log_size_usd": np.log(np.where(sized, midpoint, 1.0)),
            "owner_known": owner.notna().to_numpy(dtype=float),
            "owner_self": (owner == "self").to_numpy(dtype=float),
            "owner_joint": (owner == "joint").to_numpy(dtype=float),
        }
    )


def _active_pairs(eligible: pd.DataFrame, as_of_dates: Iterable, window_days: int) -> pd.DataFrame:
    """Every (ticker, as_of) with >= 1 eligible disclosure filed in (as_of - window_days, as_of].

    A disclosure filed on f is in the window of the dates d with f <= d < f + window_days:
    a contiguous run of the sorted dates, found by binary search. Runs are marked +1/-1 on
    a (date, ticker) grid whose running sum along the dates is the number of disclosures
    in each window.
    """
    dates = np.unique(_normalized(list(as_of_dates)))
    codes, tickers = pd.factorize(eligible["ticker"], sort=True)
    filed = eligible["filed"].to_numpy()
    first = np.searchsorted(dates, filed, side="left")
    stop = np.searchsorted(dates, filed + np.timedelta64(window_days, "D"), side="left")
    in_window = np.zeros((len(dates) + 1, len(tickers)), dtype=np.int32)
    np.add.at(in_window, (first, codes), 1)
    np.add.at(in_window, (stop, codes), -1)
    date_idx, ticker_idx = np.nonzero(np.cumsum(in_window[:-1], axis=0))
    return pd.DataFrame({
        "ticker": np.asarray(tickers, dtype=object)[ticker_idx],
        "as_of": dates[date_idx],
    })


def _disclosure_features(
    requests: pd.DataFrame, eligible: pd.DataFrame, window_days: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(trade/buy/sell counts, disclosure features) for each request row, as arrays.

    A disclosure filed on day f counts for the as_of days in [f, f + window_days), so each
    windowed sum is (weights of disclosures starting on or before as_of) minus (weights of
    those whose window ended on or before as_of): two prefix sums over disclosures sorted
    by (ticker, day) and a binary search per request, O((disclosures + requests) log n).
    """
    n = len(requests)
    codes, _ = pd.factorize(
        np.concatenate([requests["ticker"].to_numpy(dtype=object), eligible["ticker"].to_numpy(dtype=object)])
    )
    request_code, disclosure_code = codes[:n].astype(np.int64), codes[n:].astype(np.int64)
    filed_day = day_numbers(eligible["filed"].to_numpy())
    as_of_day = day_numbers(requests["as_of"].to_numpy())
    origin = int(filed_day.min()) if len(filed_day) else 0
    span = (int(filed_day.max()) - origin if len(filed_day) else 0) + max(window_days, RECENT_ACTIVITY_DAYS) + 2

    def key(code: np.ndarray, day: np.ndarray) -> np.ndarray:
        # One band of `span` keys per ticker; a request day outside the band is clipped to
        # just below or at its top, where every window of the ticker is already open-and-closed
        # or not yet open.
        return code * span + np.clip(day - origin, -1, span - 1)

    query = key(request_code, as_of_day)
    start = key(disclosure_code, filed_day)
    weights = np.column_stack([
        np.ones(len(eligible)), eligible["buy"], eligible["sell"], eligible["democrat"],
        eligible["republican"], eligible["senate"], eligible["volume_usd"],
        eligible["signed_volume_usd"], eligible["delay_days"], eligible["sized"],
        eligible["owner_known"], eligible["owner_self"], eligible["owner_joint"],
    ]).astype(float)
    (trades, buys, sells, democrats, republicans, senate, volume, net_volume, delay, sized,
     owner_known, owner_self, owner_joint) = _window_sums(start, start + window_days, weights, query).T
    log_size = _from_fixed_point(_window_sums(start, start + window_days,
                                              _to_fixed_point(eligible["log_size_usd"].to_numpy())[:, None],
                                              query)[:, 0])
    recent = _window_sums(start, start + RECENT_ACTIVITY_DAYS, np.ones((len(eligible), 1)), query)[:, 0]
    politician = eligible["politician"].to_numpy()
    politicians = _window_sums(*_first_filing_in_window(disclosure_code, politician, start, window_days),
                               query)[:, 0]
    politicians_30d = _window_sums(*_first_filing_in_window(disclosure_code, politician, start,
                                                            RECENT_ACTIVITY_DAYS), query)[:, 0]
    ratio = np.select(
        [sells > 0, buys > 0],
        [np.minimum(_ratio(buys, sells), policy.BUY_SELL_RATIO_CAP), policy.BUY_SELL_RATIO_CAP],
        1.0,
    )
    counts = {
        "trade_count": trades.astype(np.int64),
        "buy_count": buys.astype(np.int64),
        "sell_count": sells.astype(np.int64),
    }
    features = {
        "politician_count": politicians,
        "politician_count_30d": politicians_30d,
        "buy_sell_ratio": ratio,
        "recent_activity_30d": recent,
        "bipartisan": ((democrats > 0) & (republicans > 0)).astype(float),
        "net_volume": net_volume,
        "volume_magnitude": np.log1p(volume),
        "party_alignment": _ratio(np.maximum(democrats, republicans), democrats + republicans),
        "disclosure_delay": _ratio(delay, trades),
        "committee_relevance": _ratio(senate, trades),
        "trade_size_log_usd": _ratio(log_size, sized),
        "owner_self_share": _ratio(owner_self, owner_known),
        "owner_joint_share": _ratio(owner_joint, owner_known),
    }
    return counts, features


def _window_sums(start: np.ndarray, end: np.ndarray, weights: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Per query key, the column sums of `weights` over the rows with start <= query < end.

    The sums are differences of prefix sums over every row passed, so they are exact only for
    integer weights (whole or half dollars, counts) or int64 fixed point (`_to_fixed_point`,
    whose prefix sums may wrap: the differences are still exact). Float prefix sums would
    depend in their last bits on the other rows of the call.
    """
    def prefix(bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(bounds, kind="stable")
        totals = np.vstack([np.zeros((1, weights.shape[1]), dtype=weights.dtype),
                            np.cumsum(weights[order], axis=0)])
        return bounds[order], totals

    starts, started = prefix(start)
    ends, ended = prefix(end)
    return started[np.searchsorted(starts, query, side="right")] - ended[np.searchsorted(ends, query, side="right")]


def _window_sum_table(start: np.ndarray, end: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """`_window_sums` for every query key 0..size-1 at once, as a table indexed by the key: one
    pass over the rows instead of two binary searches per query, for key spaces that fit in
    memory (filer x day). Exact as `_window_sums`: int64 weights, differences of prefix sums."""
    table = np.zeros((size + 1, weights.shape[1]), dtype=np.int64)
    np.add.at(table, np.minimum(start, size), weights)
    np.add.at(table, np.minimum(end, size), -weights)
    return np.cumsum(table, axis=0)[:size]


def _to_fixed_point(values: np.ndarray) -> np.ndarray:
    """Fractions as int64 multiples of 2^-FIXED_POINT_BITS (clipped to +-FIXED_POINT_LIMIT)."""
    clipped = np.clip(values, -FIXED_POINT_LIMIT, FIXED_POINT_LIMIT)
    return np.rint(np.ldexp(clipped, FIXED_POINT_BITS)).astype(np.int64)


def _from_fixed_point(values: np.ndarray) -> np.ndarray:
    return np.ldexp(values.astype(float), -FIXED_POINT_BITS)


def _segment_sums(values: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Sums of the int64 `values` in the consecutive segments ending (exclusive) at `ends`."""
    prefix = np.concatenate([np.zeros(1, dtype=np.int64), np.cumsum(values)])
    return prefix[ends] - prefix[np.concatenate([[0], ends[:-1]])]


def _first_filing_in_window(code: np.ndarray, politician: np.ndarray, start: np.ndarray, window_days: int):
    """(start, end, weights) for `_window_sums` counting distinct politicians per window.

    Of one politician's filings on a ticker inside a window, exactly one is the first: the
    one whose previous filing (same ticker and politician, strictly earlier day) lies
    outside the window. For a filing on day f with previous filing on day p, that holds for
    the as_of days in [max(f, p + window_days), f + window_days).
    """
    keys = pd.DataFrame({"code": code, "politician": politician, "start": start}).drop_duplicates()
    keys = keys.sort_values(["code", "politician", "start"])
    same_member = (keys["code"].diff().eq(0) & keys["politician"].diff().eq(0)).to_numpy()
    first_start = keys["start"].to_numpy()
    previous = np.roll(first_start, 1)
    first = np.where(same_member, np.maximum(first_start, previous + window_days), first_start)
    return first, first_start + window_days, np.ones((len(keys), 1))


def _member_record(requests: pd.DataFrame, eligible: pd.DataFrame, prices: pd.DataFrame,
                   window_days: int) -> np.ndarray:
    """`member_record` of each request row (module docstring).

    Each request is paired with its ticker's purchases and sales filed in the window (a
    binary search over them sorted by (ticker, day)); each pair's filer record is a
    windowed sum over the filer's filings keyed by (filer, resolution day), tabled once for
    every (filer, day). Pairs are built for chunks of requests to bound memory.
    """
    out = np.full(len(requests), np.nan)
    sided = eligible.loc[(eligible["buy"] + eligible["sell"]).to_numpy() > 0]
    if len(requests) == 0 or sided.empty:
        return out
    side = (sided["buy"] - sided["sell"]).to_numpy()
    filed_day = day_numbers(sided["filed"].to_numpy())
    resolved_day, excess = _signed_excess(sided, side, prices)
    as_of_day = day_numbers(requests["as_of"].to_numpy())
    origin = min(filed_day.min(), as_of_day.min()) - window_days - 1
    span = max(filed_day.max(), as_of_day.max()) - origin + MEMBER_RECORD_LOOKBACK_DAYS + 2
    codes, _ = pd.factorize(np.concatenate([requests["ticker"].to_numpy(dtype=object),
                                            sided["ticker"].to_numpy(dtype=object)]))
    request_code, ticker_code = codes[:len(requests)].astype(np.int64), codes[len(requests):].astype(np.int64)
    by_ticker = np.argsort(ticker_code * span + filed_day - origin, kind="stable")
    trade_keys = (ticker_code * span + filed_day - origin)[by_ticker]
    filer = sided["politician"].to_numpy().astype(np.int64)
    resolved = np.isfinite(excess)
    record_start = filer[resolved] * span + resolved_day[resolved] - origin
    record_weights = np.column_stack([_to_fixed_point(excess[resolved]),
                                      np.ones(int(resolved.sum()), dtype=np.int64)])
    # Every query key (filer, day) is below this: the records of all of them, tabled once.
    records = _window_sum_table(record_start, record_start + MEMBER_RECORD_LOOKBACK_DAYS, record_weights,
                                int(filer.max() + 1) * span)
    chunk = 200_000
    for first in range(0, len(requests), chunk):
        rows = np.arange(first, min(first + chunk, len(requests)))
        query = request_code[rows] * span + as_of_day[rows] - origin
        low = np.searchsorted(trade_keys, query - window_days, side="right")
        counts = np.searchsorted(trade_keys, query, side="right") - low
        pair_row = np.repeat(rows, counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        trade = by_ticker[np.repeat(low, counts) + offsets]
        record_query = filer[trade] * span + as_of_day[pair_row] - origin
        fixed_total, filings = records[record_query].T
        total = _from_fixed_point(fixed_total)
        known = filings > 0
        value = np.where(known, side[trade] * total / (filings + MEMBER_RECORD_PRIOR_FILINGS), 0.0)
        # A request's pairs are contiguous: per-request sums as differences of int64 prefix
        # sums, exact whatever the order of the rows passed.
        ends = np.cumsum(counts)
        sums = _segment_sums(_to_fixed_point(value), ends)
        known_count = _segment_sums(known.astype(np.int64), ends)
        out[rows] = _ratio(_from_fixed_point(sums), known_count)
    return out


def _signed_excess(sided: pd.DataFrame, side: np.ndarray, prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(resolution day number, signed excess return fraction) of each purchase or sale (module
    docstring, `member_record`); the excess is NaN when it cannot be computed."""
    nothing = (np.zeros(len(sided), dtype=np.int64), np.full(len(sided), np.nan))
    p = prices.loc[prices["adj_close"].notna(), FEATURE_PRICE_COLUMNS]
    p = p.assign(date=_normalized(p["date"])).drop_duplicates(["ticker", "date"], keep="last")
    calendar = np.sort(p.loc[p["ticker"] == MARKET_TICKER, "date"].to_numpy("datetime64[ns]"))
    if len(calendar) == 0:
        return nothing
    entry_pos = np.searchsorted(calendar, sided["filed"].to_numpy(), side="right") - 1
    exit_pos = entry_pos + MEMBER_RECORD_HORIZON_TRADING_DAYS
    found = (entry_pos >= 0) & (exit_pos < len(calendar))
    entry = calendar[np.clip(entry_pos, 0, len(calendar) - 1)]
    exit_ = calendar[np.clip(exit_pos, 0, len(calendar) - 1)]
    close = p.set_index(["ticker", "date"])["adj_close"]
    tickers = sided["ticker"].to_numpy(dtype=object)
    market = np.full(len(sided), MARKET_TICKER, dtype=object)

    def at(names: np.ndarray, dates: np.ndarray) -> np.ndarray:
        return close.reindex(pd.MultiIndex.from_arrays([names, dates])).to_numpy(dtype=float)

    stock_return = at(tickers, exit_) / at(tickers, entry) - 1.0
    market_return = at(market, exit_) / at(market, entry) - 1.0
    excess = np.where(found, side * (stock_return - market_return), np.nan)
    return day_numbers(exit_), excess


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, np.nan)


# --- prices --------------------------------------------------------------------------


def _price_features(
    requests: pd.DataFrame, prices: pd.DataFrame, sectors: pd.DataFrame | None
) -> dict[str, np.ndarray]:
    """Price-derived features of each request row, looked up on a daily calendar.

    Per-ticker series (20-trading-day return over the ticker's own rows, SPY volatility)
    are pivoted onto every calendar day and forward-filled at most
    `PRICE_STALENESS_MAX_DAYS`, so a calendar day holds the value at the last price on or
    before it; a request reads its as_of row.
    """
    p = prices.loc[prices["adj_close"].notna(), FEATURE_PRICE_COLUMNS].copy()
    as_of = requests["as_of"].to_numpy()
    if p.empty or len(requests) == 0:
        return {name: np.full(len(requests), np.nan) for name in _PRICE_FEATURES}
    p["date"] = _normalized(p["date"])
    p = p.drop_duplicates(["ticker", "date"], keep="last").sort_values(["ticker", "date"])
    by_ticker = p.groupby("ticker", sort=False)["adj_close"]
    p["return_frac"] = p["adj_close"] / by_ticker.shift(RETURN_HORIZON_TRADING_DAYS) - 1.0

    start = p["date"].min()
    calendar = pd.date_range(start, max(p["date"].max(), as_of.max()), freq="D")
    returns = (
        p.pivot(index="date", columns="ticker", values="return_frac")
        .reindex(calendar)
        .ffill(limit=PRICE_STALENESS_MAX_DAYS)
    )
    spy_close = p.loc[p["ticker"] == MARKET_TICKER].set_index("date")["adj_close"]
    spy_volatility = _trailing_std(np.log(spy_close).diff(), VOLATILITY_WINDOW_TRADING_DAYS)
    spy_volatility = (spy_volatility * np.sqrt(TRADING_DAYS_PER_YEAR)).reindex(calendar)
    spy_volatility = spy_volatility.ffill(limit=PRICE_STALENESS_MAX_DAYS)
    spy_return = (
        returns[MARKET_TICKER]
        if MARKET_TICKER in returns.columns
        else pd.Series(np.nan, index=calendar)
    )
    stocks = returns.drop(columns=[MARKET_TICKER], errors="ignore")
    breadth = pd.Series(
        _ratio((stocks > 0).sum(axis=1).to_numpy(), stocks.notna().sum(axis=1).to_numpy()),
        index=calendar,
    )

    day = ((as_of - start.to_datetime64()) // np.timedelta64(1, "D")).astype(np.int64)
    ticker_col = returns.columns.get_indexer(requests["ticker"])
    sector_of = _sector_map(sectors)
    sector_means = returns.T.groupby(returns.columns.map(sector_of)).mean().T
    sector_col = sector_means.columns.get_indexer(requests["ticker"].map(sector_of))
    return {
        "market_momentum": _lookup(returns.to_numpy(), day, ticker_col),
        "sector_performance": _lookup(sector_means.to_numpy(), day, sector_col),
        "vix_level": _lookup(spy_volatility.to_numpy()[:, None], day, np.zeros_like(day)),
        "market_return_20d": _lookup(spy_return.to_numpy()[:, None], day, np.zeros_like(day)),
        "market_breadth": _lookup(breadth.to_numpy()[:, None], day, np.zeros_like(day)),
    }


def _sector_map(sectors: pd.DataFrame | None) -> pd.Series:
    """ticker -> sector (unknown tickers map to NaN)."""
    if sectors is None or sectors.empty:
        return pd.Series(dtype=object)
    known = sectors.dropna(subset=["ticker", "sector"]).drop_duplicates("ticker", keep="last")
    return known.set_index("ticker")["sector"]


def _trailing_std(values: pd.Series, window: int) -> pd.Series:
    """Sample standard deviation of each trailing `window` of `values`, from the window alone.

    pandas' rolling std updates a running sum, so its last bits depend on where the series
    starts: a day's features computed from 120 days of prices (the daily asset) and from the
    whole history (the engine's panel) would differ.
    """
    result = np.full(len(values), np.nan)
    if len(values) >= window:
        result[window - 1:] = sliding_window_view(values.to_numpy(dtype=float), window).std(axis=1, ddof=1)
    return pd.Series(result, index=values.index)


def _lookup(table: np.ndarray, day: np.ndarray, column: np.ndarray) -> np.ndarray:
    """table[day, column] per request, NaN where the day precedes the table or the column is unknown."""
    found = (day >= 0) & (column >= 0)
    out = np.full(len(day), np.nan)
    out[found] = table[day[found], column[found]]
    return out
