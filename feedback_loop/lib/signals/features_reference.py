"""A second, independent implementation of the ticker features, in DuckDB SQL.

The benchmark runs it next to `features.compute_ticker_features` (the fast numpy code) to
check, in the same run, that both compute the same numbers, and to time them side by
side. It is written from the definitions in the `features` module docstring only (it
shares the constants, never the helpers): disclosure features are a range join of the
requested (ticker, as_of) pairs to the eligible disclosures with GROUP BY aggregates;
price features are window functions over each ticker's own price rows plus ASOF joins
for "the last value on or before as_of, at most `PRICE_STALENESS_MAX_DAYS` old";
sector performance and breadth aggregate every priced ticker's value on each needed
as_of date.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from feedback_loop.lib import policy, vocab
from feedback_loop.lib.frames import MARKET_TICKER
from feedback_loop.lib.signals.features import (
    FEATURE_FRAME_COLUMNS,
    FEATURE_NAMES,
    FEATURE_WINDOW_DAYS,
    PRICE_STALENESS_MAX_DAYS,
    RECENT_ACTIVITY_DAYS,
    RETURN_HORIZON_TRADING_DAYS,
    TRADING_DAYS_PER_YEAR,
    VOLATILITY_WINDOW_TRADING_DAYS,
)

_DISCLOSURE_INPUT_COLUMNS = [
    "ticker", "asset_type", "transaction_type", "politician_id", "filer_name", "party", "chamber",
    "disclosure_date", "transaction_date", "amount_min_usd", "amount_max_usd", "duplicate_count",
]

# Eligible disclosures with the per-trade quantities of the module docstring.
_ELIGIBLE_SQL = """
CREATE TEMP TABLE eligible AS
WITH typed AS (
    SELECT
        CAST(ticker AS VARCHAR) AS ticker,
        CAST(asset_type AS VARCHAR) AS asset_type,
        CAST(transaction_type AS VARCHAR) AS transaction_type,
        coalesce(CAST(politician_id AS VARCHAR), CAST(filer_name AS VARCHAR)) AS politician,
        CAST(party AS VARCHAR) AS party,
        CAST(chamber AS VARCHAR) AS chamber,
        CAST(disclosure_date AS DATE) AS filed,
        CAST(transaction_date AS DATE) AS traded,
        CAST(amount_min_usd AS DOUBLE) AS low_usd,
        CAST(amount_max_usd AS DOUBLE) AS high_usd,
        CAST(duplicate_count AS DOUBLE) AS duplicates
    FROM disclosures_in
)
SELECT
    ticker,
    filed,
    politician,
    coalesce(transaction_type = $purchase, false) AS is_buy,
    coalesce(list_contains($sales, transaction_type), false) AS is_sell,
    coalesce(party = $democrat, false) AS is_democrat,
    coalesce(party = $republican, false) AS is_republican,
    coalesce(chamber = $senate, false) AS is_senate,
    CASE WHEN high_usd IS NULL THEN low_usd ELSE (low_usd + high_usd) / 2 END * duplicates
        AS volume_usd,
    filed - traded AS delay_days
FROM typed
WHERE ticker IS NOT NULL AND list_contains($asset_types, asset_type)
"""

# Requests joined to the disclosures filed in (as_of - span, as_of], span = the longer of
# the feature window and the 30-day recent-activity window. The join key adds a bucket of
# `span` days: the span covers at most two buckets, so each request is joined twice (its
# as_of's bucket and the one before) instead of to all of its ticker's disclosures; the
# date predicates alone decide membership.
_DISCLOSURE_SQL = """
CREATE TEMP TABLE disclosure_features AS
WITH eligible_bucketed AS (
    SELECT *, CAST(floor((filed - DATE '1970-01-01') / $span) AS BIGINT) AS bucket
    FROM eligible
),
request_buckets AS (
    SELECT row_id, ticker, as_of,
           CAST(floor((as_of - DATE '1970-01-01') / $span) AS BIGINT) - unnest([0, 1]) AS bucket
    FROM requests
),
in_span AS (
    SELECT r.row_id, r.as_of, e.*
    FROM request_buckets AS r
    JOIN eligible_bucketed AS e
      ON e.ticker = r.ticker AND e.bucket = r.bucket
     AND e.filed <= r.as_of AND e.filed > r.as_of - $span
),
recent_per_request AS (
    SELECT row_id, count(*) AS recent FROM in_span WHERE filed > as_of - $recent GROUP BY row_id
),
per_request AS (
    SELECT
        row_id,
        count(*) AS trades,
        count(*) FILTER (is_buy) AS buys,
        count(*) FILTER (is_sell) AS sells,
        count(*) FILTER (is_democrat) AS democrats,
        count(*) FILTER (is_republican) AS republicans,
        count(*) FILTER (is_senate) AS senators,
        count(DISTINCT politician) AS politicians,
        sum(volume_usd) AS volume_usd,
        sum(CASE WHEN is_buy THEN volume_usd WHEN is_sell THEN -volume_usd ELSE 0 END)
            AS net_volume_usd,
        sum(delay_days) AS delay_days
    FROM in_span
    WHERE filed > as_of - $window
    GROUP BY row_id
)
SELECT
    q.row_id,
    coalesce(trades, 0) AS trade_count,
    coalesce(buys, 0) AS buy_count,
    coalesce(sells, 0) AS sell_count,
    CAST(coalesce(politicians, 0) AS DOUBLE) AS politician_count,
    CASE WHEN sells > 0 THEN least(buys / sells, $cap)
         WHEN buys > 0 THEN $cap
         ELSE 1.0 END AS buy_sell_ratio,
    CAST(coalesce(recent, 0) AS DOUBLE) AS recent_activity_30d,
    CASE WHEN democrats > 0 AND republicans > 0 THEN 1.0 ELSE 0.0 END AS bipartisan,
    coalesce(net_volume_usd, 0.0) AS net_volume,
    ln(1 + coalesce(volume_usd, 0.0)) AS volume_magnitude,
    greatest(democrats, republicans) / nullif(democrats + republicans, 0) AS party_alignment,
    delay_days / trades AS disclosure_delay,
    senators / trades AS committee_relevance
FROM requests AS q
LEFT JOIN per_request USING (row_id)
LEFT JOIN recent_per_request USING (row_id)
"""

# Price rows (null adj_close ignored, the last of duplicate (ticker, date) rows kept) with
# the return over the ticker's own trading days.
_PRICES_SQL = """
CREATE TEMP TABLE priced AS
WITH deduplicated AS (
    SELECT CAST(ticker AS VARCHAR) AS ticker, CAST(date AS DATE) AS date,
           arg_max(CAST(adj_close AS DOUBLE), position) AS adj_close
    FROM prices_in
    WHERE adj_close IS NOT NULL AND ticker IS NOT NULL
    GROUP BY ALL
)
SELECT ticker, date, adj_close,
       adj_close / lag(adj_close, $horizon) OVER (PARTITION BY ticker ORDER BY date) - 1
           AS return_frac
FROM deduplicated
"""

# SPY's return and realized volatility at each of its price dates.
_MARKET_SQL = """
CREATE TEMP TABLE market AS
WITH log_returns AS (
    SELECT date, return_frac,
           ln(adj_close) - ln(lag(adj_close) OVER (ORDER BY date)) AS log_return
    FROM priced WHERE ticker = $market
)
SELECT date, return_frac,
       CASE WHEN count(log_return) OVER last_n = $vol_window
            THEN stddev_samp(log_return) OVER last_n * sqrt($year) END AS volatility
FROM log_returns
WINDOW last_n AS (ORDER BY date ROWS BETWEEN $vol_window - 1 PRECEDING AND CURRENT ROW)
"""

# Every priced ticker's return as of each requested date (NULL when stale), then the
# cross-sectional aggregates per date: breadth and each sector's mean.
_CROSS_SECTION_SQL = """
CREATE TEMP TABLE cross_section AS
WITH grid AS (
    SELECT d.as_of, t.ticker
    FROM (SELECT DISTINCT as_of FROM requests) AS d
    CROSS JOIN (SELECT DISTINCT ticker FROM priced) AS t
)
SELECT g.as_of, g.ticker,
       CASE WHEN g.as_of - p.date <= $staleness THEN p.return_frac END AS return_frac
FROM grid AS g ASOF LEFT JOIN priced AS p ON p.ticker = g.ticker AND p.date <= g.as_of
"""

_BREADTH_SQL = """
CREATE TEMP TABLE breadth AS
SELECT as_of,
       count(*) FILTER (return_frac > 0) / nullif(count(return_frac), 0) AS market_breadth
FROM cross_section WHERE ticker <> $market GROUP BY as_of
"""

_SECTOR_SQL = """
CREATE TEMP TABLE sector_of AS
SELECT CAST(ticker AS VARCHAR) AS ticker, arg_max(CAST(sector AS VARCHAR), position) AS sector
FROM sectors_in WHERE ticker IS NOT NULL AND sector IS NOT NULL GROUP BY ALL;
CREATE TEMP TABLE sector_means AS
SELECT c.as_of, s.sector, avg(c.return_frac) AS sector_performance
FROM cross_section AS c JOIN sector_of AS s USING (ticker)
GROUP BY c.as_of, s.sector
"""

_PRICE_FEATURES_SQL = """
CREATE TEMP TABLE price_features AS
WITH own AS (
    SELECT q.row_id,
           CASE WHEN q.as_of - p.date <= $staleness THEN p.return_frac END AS market_momentum
    FROM requests AS q ASOF LEFT JOIN priced AS p ON p.ticker = q.ticker AND p.date <= q.as_of
),
market_as_of AS (
    SELECT d.as_of,
           CASE WHEN d.as_of - m.date <= $staleness THEN m.volatility END AS vix_level,
           CASE WHEN d.as_of - m.date <= $staleness THEN m.return_frac END AS market_return_20d
    FROM (SELECT DISTINCT as_of FROM requests) AS d
    ASOF LEFT JOIN market AS m ON m.date <= d.as_of
)
SELECT q.row_id, own.market_momentum, sm.sector_performance, mk.vix_level,
       mk.market_return_20d, b.market_breadth
FROM requests AS q
JOIN own USING (row_id)
LEFT JOIN sector_of AS so ON so.ticker = q.ticker
LEFT JOIN sector_means AS sm ON sm.as_of = q.as_of AND sm.sector = so.sector
LEFT JOIN market_as_of AS mk ON mk.as_of = q.as_of
LEFT JOIN breadth AS b ON b.as_of = q.as_of
"""


def reference_ticker_features(
    disclosures: pd.DataFrame,
    prices: pd.DataFrame,
    pairs: pd.DataFrame,
    *,
    window_days: int = FEATURE_WINDOW_DAYS,
    sectors: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """`compute_ticker_features(disclosures, prices, pairs=pairs, ...)` computed in DuckDB.

    Returns `FEATURE_FRAME_COLUMNS` for exactly the `pairs` rows (ticker, as_of), in order.
    """
    as_of = pd.to_datetime(pairs["as_of"]).dt.normalize().astype("datetime64[ns]").to_numpy()
    tickers = pairs["ticker"].to_numpy(dtype=object)
    requests = pd.DataFrame({"row_id": np.arange(len(pairs)), "ticker": tickers, "as_of": as_of})
    con = duckdb.connect()
    try:
        _register_inputs(con, requests, disclosures, prices, sectors)
        con.execute("CREATE TEMP TABLE requests AS SELECT row_id, CAST(ticker AS VARCHAR) AS ticker,"
                    " CAST(as_of AS DATE) AS as_of FROM requests_in")
        con.execute(_ELIGIBLE_SQL, {
            "purchase": vocab.TransactionType.PURCHASE.value,
            "sales": [vocab.TransactionType.SALE_FULL.value,
                      vocab.TransactionType.SALE_PARTIAL.value],
            "democrat": vocab.Party.DEMOCRAT.value,
            "republican": vocab.Party.REPUBLICAN.value,
            "senate": vocab.Chamber.SENATE.value,
            "asset_types": sorted(t.value for t in vocab.SIGNAL_ASSET_TYPES),
        })
        con.execute(_DISCLOSURE_SQL, {
            "window": int(window_days),
            "span": max(int(window_days), RECENT_ACTIVITY_DAYS),
            "recent": RECENT_ACTIVITY_DAYS,
            "cap": float(policy.BUY_SELL_RATIO_CAP),
        })
        con.execute(_PRICES_SQL, {"horizon": RETURN_HORIZON_TRADING_DAYS})
        con.execute(_MARKET_SQL, {"market": MARKET_TICKER, "year": TRADING_DAYS_PER_YEAR,
                                  "vol_window": VOLATILITY_WINDOW_TRADING_DAYS})
        con.execute(_CROSS_SECTION_SQL, {"staleness": PRICE_STALENESS_MAX_DAYS})
        con.execute(_BREADTH_SQL, {"market": MARKET_TICKER})
        con.execute(_SECTOR_SQL)
        con.execute(_PRICE_FEATURES_SQL, {"staleness": PRICE_STALENESS_MAX_DAYS})
        result = con.execute(
            "SELECT * FROM disclosure_features JOIN price_features USING (row_id) ORDER BY row_id"
        ).df()
    finally:
        con.close()
    out = pd.DataFrame({"ticker": tickers, "as_of": as_of})
    for name in ("trade_count", "buy_count", "sell_count"):
        out[name] = result[name].to_numpy(dtype=np.int64)
    for name in FEATURE_NAMES:
        out[name] = result[name].to_numpy(dtype=float)
    return out[FEATURE_FRAME_COLUMNS]


def _register_inputs(
    con: duckdb.DuckDBPyConnection,
    requests: pd.DataFrame,
    disclosures: pd.DataFrame,
    prices: pd.DataFrame,
    sectors: pd.DataFrame | None,
) -> None:
    """Register the input columns the SQL reads; `position` orders rows for "keep the last"."""
    con.register("requests_in", requests)
    con.register("disclosures_in", disclosures[_DISCLOSURE_INPUT_COLUMNS])
    con.register("prices_in", prices[["ticker", "date", "adj_close"]].assign(
        position=np.arange(len(prices))))
    if sectors is None:
        sectors = pd.DataFrame({"ticker": [], "sector": []})
    con.register("sectors_in", sectors[["ticker", "sector"]].assign(
        position=np.arange(len(sectors))))
