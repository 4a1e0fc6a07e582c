"""A second, independent implementation of the ticker features, in DuckDB SQL.

The benchmark runs it next to `features.compute_ticker_features` (the fast numpy code) to
check, in the same run, that both compute the same numbers, and to time them side by
side. It is written from the definitions in the `features` module docstring only (it
shares the constants, never the helpers): disclosure features are a range join of the
requested (ticker, as_of) pairs to the eligible disclosures with GROUP BY aggregates;
price features are window functions over each ticker's own price rows plus ASOF joins
for "the last value on or before as_of, at most `PRICE_STALENESS_MAX_DAYS` old";
sector performance and breadth aggregate every priced ticker's value on each needed
as_of date; the member record joins each request's purchases and sales to their filers'
resolved filings (a numbered SPY calendar gives each filing's resolution day).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from feedback_loop.lib import policy, vocab
from feedback_loop.lib.frames import MARKET_TICKER
from feedback_loop.lib.signals.features import (
    CANDIDATE_FEATURES,
    FEATURE_FRAME_COLUMNS,
    FEATURE_WINDOW_DAYS,
    MEMBER_RECORD_HORIZON_TRADING_DAYS,
    MEMBER_RECORD_LOOKBACK_DAYS,
    MEMBER_RECORD_PRIOR_FILINGS,
    PRICE_STALENESS_MAX_DAYS,
    RECENT_ACTIVITY_DAYS,
    RETURN_HORIZON_TRADING_DAYS,
    TRADING_DAYS_PER_YEAR,
    VOLATILITY_WINDOW_TRADING_DAYS,
)

_DISCLOSURE_INPUT_COLUMNS = [
    "ticker", "asset_type", "transaction_type", "politician_id", "filer_name", "party", "chamber",
    "disclosure_date", "transaction_date", "amount_min_usd", "amount_max_usd", "duplicate_count", "owner",
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
        CAST(duplicate_count AS DOUBLE) AS duplicates,
        lower(trim(CAST(owner AS VARCHAR))) AS owner
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
    filed - traded AS delay_days,
    CASE WHEN high_usd IS NULL THEN low_usd ELSE (low_usd + high_usd) / 2 END AS midpoint_usd,
    owner
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
    SELECT row_id, count(*) AS recent, count(DISTINCT politician) AS recent_politicians
    FROM in_span WHERE filed > as_of - $recent GROUP BY row_id
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
        sum(delay_days) AS delay_days,
        avg(ln(midpoint_usd)) FILTER (midpoint_usd > 0) AS trade_size_log_usd,
        count(owner) AS owners,
        count(*) FILTER (owner = 'self') AS self_owned,
        count(*) FILTER (owner = 'joint') AS joint_owned
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
    CAST(coalesce(recent_politicians, 0) AS DOUBLE) AS politician_count_30d,
    CASE WHEN sells > 0 THEN least(buys / sells, $cap)
         WHEN buys > 0 THEN $cap
         ELSE 1.0 END AS buy_sell_ratio,
    CAST(coalesce(recent, 0) AS DOUBLE) AS recent_activity_30d,
    CASE WHEN democrats > 0 AND republicans > 0 THEN 1.0 ELSE 0.0 END AS bipartisan,
    coalesce(net_volume_usd, 0.0) AS net_volume,
    ln(1 + coalesce(volume_usd, 0.0)) AS volume_magnitude,
    greatest(democrats, republicans) / nullif(democrats + republicans, 0) AS party_alignment,
    delay_days / trades AS disclosure_delay,
    senators / trades AS committee_relevance,
    trade_size_log_usd,
    self_owned / nullif(owners, 0) AS owner_self_share,
    joint_owned / nullif(owners, 0) AS owner_joint_share
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

# Each purchase or sale resolves on the `horizon`-th SPY trading day after the last one on or
# before its filing day; a request averages, over its ticker's purchases and sales in the
# window whose filer has resolved filings in the lookback, side × the filer's shrunk record.
# A filer's sum and count over (as_of - lookback, as_of] are differences of running totals
# (joining each pair to every filing of its filer grew with the square of filings per member).
_MEMBER_RECORD_SQL = """
CREATE TEMP TABLE member_record AS
WITH calendar AS (
    SELECT date, row_number() OVER (ORDER BY date) AS pos FROM priced WHERE ticker = $market
),
sided AS (
    SELECT row_number() OVER () AS trade_id, ticker, filed, politician,
           CASE WHEN is_buy THEN 1.0 ELSE -1.0 END AS side
    FROM eligible WHERE is_buy OR is_sell
),
entered AS (
    SELECT s.*, c.date AS entry_date, c.pos AS entry_pos
    FROM sided AS s ASOF JOIN calendar AS c ON c.date <= s.filed
),
outcomes AS (
    SELECT e.politician, x.date AS resolved,
           e.side * ((p1.adj_close / p0.adj_close - 1) - (m1.adj_close / m0.adj_close - 1)) AS excess
    FROM entered AS e
    JOIN calendar AS x ON x.pos = e.entry_pos + $horizon
    JOIN priced AS p0 ON p0.ticker = e.ticker AND p0.date = e.entry_date
    JOIN priced AS p1 ON p1.ticker = e.ticker AND p1.date = x.date
    JOIN priced AS m0 ON m0.ticker = $market AND m0.date = e.entry_date
    JOIN priced AS m1 ON m1.ticker = $market AND m1.date = x.date
    WHERE p0.adj_close <> 0 AND m0.adj_close <> 0
),
pairs AS (
    SELECT q.row_id, q.as_of, s.trade_id, s.politician, s.side
    FROM requests AS q
    JOIN sided AS s ON s.ticker = q.ticker AND s.filed <= q.as_of AND s.filed > q.as_of - $window
),
running AS (
    SELECT politician, resolved, sum(total) OVER w AS total_through, sum(filings) OVER w AS filings_through
    FROM (SELECT politician, resolved, sum(excess) AS total, count(*) AS filings FROM outcomes GROUP BY ALL)
    WINDOW w AS (PARTITION BY politician ORDER BY resolved ROWS UNBOUNDED PRECEDING)
),
records AS (
    SELECT p.row_id, p.side, now.total_through - coalesce(old.total_through, 0) AS total,
           now.filings_through - coalesce(old.filings_through, 0) AS filings
    FROM pairs AS p
    ASOF JOIN running AS now ON now.politician = p.politician AND now.resolved <= p.as_of
    ASOF LEFT JOIN running AS old ON old.politician = p.politician AND old.resolved <= p.as_of - $lookback
)
SELECT row_id, avg(side * total / (filings + $prior)) AS member_record FROM records WHERE filings > 0
GROUP BY row_id
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
        con.execute(_MEMBER_RECORD_SQL, {
            "market": MARKET_TICKER, "horizon": MEMBER_RECORD_HORIZON_TRADING_DAYS, "window": int(window_days),
            "lookback": MEMBER_RECORD_LOOKBACK_DAYS, "prior": float(MEMBER_RECORD_PRIOR_FILINGS),
        })
        result = con.execute(
            "SELECT * FROM disclosure_features JOIN price_features USING (row_id)"
            " LEFT JOIN member_record USING (row_id) ORDER BY row_id"
        ).df()
    finally:
        con.close()
    out = pd.DataFrame({"ticker": tickers, "as_of": as_of})
    for name in ("trade_count", "buy_count", "sell_count"):
        out[name] = result[name].to_numpy(dtype=np.int64)
    for name in CANDIDATE_FEATURES:
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
