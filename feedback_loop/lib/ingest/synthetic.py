"""Deterministic synthetic politicians, disclosures, prices and sectors (the demo's data).

Everything is a function of `SyntheticConfig` (seed included): the same config always
yields identical frames, so demos, tests and benchmarks are reproducible.

Prices: daily log returns = beta * market factor + sector factor (11 sectors) +
idiosyncratic noise + planted event drift; SPY follows the market factor.

The planted edge (weak on purpose, so there is something to learn but not much):

- `informed_share` of the members (15% by default) are "informed". They trade only
  ahead of planted ticker-level events; everyone else trades at random (member
  activity and ticker popularity are skewed, but trades are independent of prices).
- An event gives one ticker an extra drift of `drift_frac`, |drift_frac| uniform in
  4-8%, half of the events up and half down, spread evenly (in log terms) over 40
  trading days starting at `start_date`.
- 3-6 informed members trade each event, each 1-10 trading days before it starts:
  purchases before positive events, sales (full or partial) before negative ones. So
  the edge shows at the ticker level (politician count, buy/sell mix, recent activity,
  volume), which is what the features see; informed trades also lean one band larger.
- Informed trades are `event_trade_share` (7%) of all disclosures. With the usual
  filing delay (mean ~19 calendar days) roughly half of an event's drift remains after
  the filing date. Measured: the mean 20-trading-day excess return over SPY after
  informed purchases (from the first trading day after filing) is +2.2% on the default
  data (+1% to +4% across seeds: only ~60 positive events), with a per-trade standard
  deviation of about 7% (about 60% of them beat SPY); after other purchases it is
  about 0 (+0.3%). Pooled over all purchases the edge is under half a percent.
- `edge` scales every event's drift: 1 is the default above, 0 is pure noise (informed
  members still trade in clusters ahead of "events", but no price follows: nothing
  disclosed predicts a return), 2 doubles the drift.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from feedback_loop.lib import frames
from feedback_loop.lib.ingest import parsing
from feedback_loop.lib.vocab import AssetType, Chamber, DisclosureSource, Party, TransactionType

SOURCE = DisclosureSource.SYNTHETIC.value

#: The real PTR amount bands ("$1,001 - $15,000" ... "Over $5,000,000") as (min, max)
#: USD, parsed the way `parsing.parse_amount` does: the open-ended band has no maximum.
AMOUNT_BANDS: list[tuple[float, float | None]] = [
    (1_001.0, 15_000.0), (15_001.0, 50_000.0), (50_001.0, 100_000.0),
    (100_001.0, 250_000.0), (250_001.0, 500_000.0), (500_001.0, 1_000_000.0),
    (1_000_001.0, 5_000_000.0), (5_000_001.0, None),
]
#: Band shares, close to the House 2020 filings (three quarters in the smallest band).
AMOUNT_BAND_PROBS = np.array([0.73, 0.15, 0.05, 0.035, 0.015, 0.01, 0.007, 0.003])

TRANSACTION_TYPE_PROBS = {
    TransactionType.PURCHASE: 0.50,
    TransactionType.SALE_FULL: 0.30,
    TransactionType.SALE_PARTIAL: 0.18,
    TransactionType.EXCHANGE: 0.02,
}
OWNER_PROBS = {"joint": 0.30, "self": 0.30, "spouse": 0.22, "dependent": 0.03, None: 0.15}

SECTORS = [
    "Information Technology", "Health Care", "Financials", "Consumer Discretionary",
    "Communication Services", "Industrials", "Consumer Staples", "Energy", "Utilities",
    "Real Estate", "Materials",
]
SECTOR_PROBS = np.array([0.16, 0.13, 0.13, 0.11, 0.07, 0.13, 0.07, 0.05, 0.05, 0.05, 0.05])

#: House seats per state: House members are drawn by seats, senators uniformly.
HOUSE_SEATS = {
    "CA": 52, "TX": 38, "FL": 28, "NY": 26, "PA": 17, "IL": 17, "OH": 15, "GA": 14,
    "NC": 14, "MI": 13, "NJ": 12, "VA": 11, "WA": 10, "AZ": 9, "TN": 9, "MA": 9, "IN": 9,
    "MO": 8, "MD": 8, "WI": 8, "CO": 8, "MN": 8, "SC": 7, "AL": 7, "LA": 6, "KY": 6,
    "OR": 6, "OK": 5, "CT": 5, "UT": 4, "IA": 4, "NV": 4, "AR": 4, "MS": 4, "KS": 4,
    "NM": 3, "NE": 3, "ID": 2, "WV": 2, "HI": 2, "NH": 2, "ME": 2, "RI": 2, "MT": 2,
    "DE": 1, "SD": 1, "ND": 1, "AK": 1, "VT": 1, "WY": 1,
}

FIRST_NAMES = [
    "James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "David",
    "Elizabeth", "William", "Barbara", "Richard", "Susan", "Joseph", "Jessica", "Thomas",
    "Sarah", "Charles", "Karen", "Daniel", "Nancy", "Matthew", "Lisa", "Mark", "Betty",
    "Donald", "Sandra", "Steven", "Ashley", "Paul", "Kimberly", "Andrew", "Donna", "Joshua",
    "Michelle", "Kenneth", "Carol", "Kevin", "Amanda", "Brian", "Melissa", "George",
    "Deborah", "Timothy", "Stephanie", "Ronald", "Rebecca", "Jason", "Laura", "Gary",
    "Sharon", "Ryan", "Cynthia", "Jacob", "Kathleen", "Nicholas", "Amy", "Eric", "Angela",
]
LAST_NAMES = [
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
    "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson",
    "Thomas", "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White",
    "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young",
    "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green",
    "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter",
    "Roberts", "Gomez", "Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards",
    "Collins", "Reyes", "Stewart", "Morris", "Morales", "Murphy", "Cook", "Rogers",
    "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson", "Bailey", "Reed", "Kelly",
    "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson",
]
_NAME_HEADS = np.array([
    "Al", "Bel", "Cor", "Dyn", "El", "Fal", "Gen", "Hal", "Ion", "Jun", "Kor", "Lum", "Mer",
    "Nor", "Om", "Pax", "Quan", "Rav", "Sol", "Tel", "Ul", "Ver", "Wex", "Zen",
])
_NAME_TAILS = np.array([
    "tex", "vora", "nix", "gen", "lytics", "core", "via", "dyne", "stream", "point",
    "wave", "mark", "tron", "field", "bridge", "sys",
])
_COMPANY_SUFFIXES = np.array([
    " Inc.", " Corp.", " Holdings Inc.", " Group Inc.", " Technologies Inc.", " Co.",
    " Therapeutics Inc.", " Industries Inc.",
])
_LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_HEX = np.array(list("0123456789abcdef"))

# Daily return model (log returns).
MARKET_DRIFT = 0.0003
MARKET_VOL = 0.010
SECTOR_VOL = 0.007
IDIO_VOL_RANGE = (0.008, 0.018)
BETA_RANGE = (0.7, 1.3)
ETF_SHARE = 0.04


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate; hashable, so generated data is cached per config."""

    seed: int = 7
    n_politicians: int = 120
    n_tickers: int = 320
    start: pd.Timestamp = pd.Timestamp("2023-01-02")  # noqa: RUF009 (immutable)
    end: pd.Timestamp = pd.Timestamp("2024-12-31")  # noqa: RUF009 (immutable)
    disclosures_per_year: float = 4000.0
    informed_share: float = 0.15
    #: Share of all disclosures that are informed trades ahead of planted events.
    event_trade_share: float = 0.07
    informed_per_event: tuple[int, int] = (3, 6)
    event_drift_frac: tuple[float, float] = (0.04, 0.08)
    #: Scale of the planted edge: event drifts times this (0 = pure noise).
    edge: float = 1.0
    event_days: int = 40
    #: Informed trades fall 1..event_lead_days trading days before the event starts.
    event_lead_days: int = 10
    max_filing_delay_days: int = 45

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", pd.Timestamp(self.start).normalize())
        object.__setattr__(self, "end", pd.Timestamp(self.end).normalize())
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if not 0 < self.informed_share < 0.5:
            raise ValueError("informed_share must be a minority share in (0, 0.5)")
        if not 1 <= self.n_politicians <= len(FIRST_NAMES) * len(LAST_NAMES):
            raise ValueError("n_politicians out of range")
        if self.n_tickers < 1:
            raise ValueError("n_tickers must be positive")
        if not 0 <= self.edge <= 10:
            raise ValueError("edge must be in [0, 10] (0 = pure noise, 1 = the default planted edge)")

    @property
    def years(self) -> float:
        return (self.end - self.start).days / 365.25

    @property
    def n_disclosures(self) -> int:
        return round(self.disclosures_per_year * self.years)

    @classmethod
    def scale(
        cls, n_disclosures: int, n_tickers: int = 320, years: float = 2.0, **overrides
    ) -> SyntheticConfig:
        """A config with about `n_disclosures` over `years` (from the default start)."""
        start = pd.Timestamp(overrides.pop("start", cls.start))
        end = (start + pd.Timedelta(days=round(years * 365.25))).normalize()
        per_year = n_disclosures / ((end - start).days / 365.25)
        return cls(start=start, end=end, n_tickers=n_tickers, disclosures_per_year=per_year,
                   **overrides)


@dataclass(frozen=True)
class SyntheticDataset:
    """Generated frames; shared by the cache, so treat them as read-only."""

    config: SyntheticConfig
    politicians: pd.DataFrame  # POLITICIAN_COLUMNS
    disclosures: pd.DataFrame  # DISCLOSURE_COLUMNS
    prices: pd.DataFrame  # PRICE_COLUMNS, SPY included
    sectors: pd.DataFrame  # SECTOR_COLUMNS
    #: Planted events: ticker, start_date, drift_frac.
    events: pd.DataFrame
    informed_politician_ids: frozenset[str]


def _rng(config: SyntheticConfig, stream: str) -> np.random.Generator:
    """An independent stream per component, so e.g. more tickers leave the names unchanged."""
    return np.random.default_rng([config.seed, int.from_bytes(stream.encode(), "little")])


def _join_chars(chars: np.ndarray) -> np.ndarray:
    """(n, k) array of single characters -> n strings of length k."""
    chars = np.ascontiguousarray(chars.astype("<U1"))
    return chars.view(f"<U{chars.shape[1]}").ravel()


def _politicians(config: SyntheticConfig) -> pd.DataFrame:
    rng = _rng(config, "politicians")
    n = config.n_politicians
    combo = rng.choice(len(FIRST_NAMES) * len(LAST_NAMES), size=n, replace=False)
    first = np.array(FIRST_NAMES)[combo // len(LAST_NAMES)]
    last = np.array(LAST_NAMES)[combo % len(LAST_NAMES)]
    senate = rng.random(n) < 0.2
    states = np.array(list(HOUSE_SEATS))
    seats = np.array(list(HOUSE_SEATS.values()), dtype=float)
    state = np.where(
        senate, rng.choice(states, size=n), rng.choice(states, size=n, p=seats / seats.sum())
    )
    party = rng.choice([Party.DEMOCRAT.value, Party.REPUBLICAN.value], size=n)
    party[rng.choice(n, size=min(n, max(1, round(n * 0.02))), replace=False)] = (
        Party.INDEPENDENT.value
    )
    return pd.DataFrame({
        "politician_id": [f"S{i:04d}" for i in range(1, n + 1)],
        "full_name": np.char.add(np.char.add(first, " "), last),
        "first_name": first,
        "last_name": last,
        "party": party,
        "chamber": np.where(senate, Chamber.SENATE.value, Chamber.HOUSE.value),
        "state": state,
        "bioguide_id": None,
        "source": SOURCE,
    })[frames.POLITICIAN_COLUMNS]


def _tickers(config: SyntheticConfig) -> pd.DataFrame:
    """Unique 3-4 letter symbols (never SPY) with sector, asset type and description."""
    rng = _rng(config, "tickers")
    n = config.n_tickers
    m = 2 * n + 100
    four = pd.Series(_join_chars(rng.choice(_LETTERS, size=(m, 4))))
    symbols = four.where(rng.random(m) < 0.55, four.str[:3])
    symbols = symbols[symbols != frames.MARKET_TICKER].drop_duplicates().to_numpy()[:n]
    if len(symbols) < n:
        raise ValueError("could not draw enough unique tickers")
    sector = rng.choice(len(SECTORS), size=n, p=SECTOR_PROBS)
    etf = rng.random(n) < ETF_SHARE
    stem = np.char.add(rng.choice(_NAME_HEADS, size=n), rng.choice(_NAME_TAILS, size=n))
    company = np.char.add(stem, rng.choice(_COMPANY_SUFFIXES, size=n))
    fund = np.char.add(np.char.add(stem, " "), np.char.add(np.array(SECTORS)[sector], " ETF"))
    return pd.DataFrame({
        "ticker": symbols,
        "sector_idx": sector,
        "sector": np.array(SECTORS)[sector],
        "asset_type": np.where(etf, AssetType.ETF.value, AssetType.STOCK.value),
        "asset_description": np.where(etf, fund, company),
        # Zipf-like popularity: a few names draw most of the (random) trading.
        "popularity": 1.0 / (1.0 + rng.permutation(n)) ** 0.8,
    })


def _events(config: SyntheticConfig, tickers: pd.DataFrame, days: pd.DatetimeIndex,
            n_informed: int) -> pd.DataFrame:
    rng = _rng(config, "events")
    lo, hi = config.informed_per_event
    n_events = round(config.n_disclosures * config.event_trade_share / ((lo + hi) / 2))
    first = config.event_lead_days
    last = max(first + 1, len(days) - config.event_days)
    start_idx = rng.integers(first, last, size=n_events)
    magnitude = rng.uniform(*config.event_drift_frac, size=n_events)
    return pd.DataFrame({
        "ticker": rng.choice(tickers["ticker"].to_numpy(), size=n_events),
        "start_date": days[start_idx],
        # Half the events up, half down, in random order.
        "direction": rng.permutation(np.arange(n_events) % 2 * 2 - 1),
        "start_idx": start_idx,
        "n_traders": rng.integers(lo, hi + 1, size=n_events).clip(max=n_informed),
    }).pipe(lambda e: e.assign(drift_frac=config.edge * magnitude * e["direction"]))


def _prices(config: SyntheticConfig, tickers: pd.DataFrame, events: pd.DataFrame,
            days: pd.DatetimeIndex) -> pd.DataFrame:
    rng = _rng(config, "prices")
    n_days, n = len(days), len(tickers)
    market = rng.normal(MARKET_DRIFT, MARKET_VOL, size=n_days)
    sector_f = rng.normal(0.0, SECTOR_VOL, size=(n_days, len(SECTORS)))
    beta = rng.uniform(*BETA_RANGE, size=n)
    idio_vol = rng.uniform(*IDIO_VOL_RANGE, size=n)
    # Convexity correction: without it more volatile names would beat SPY in arithmetic
    # terms, and random purchases would show a spurious excess return.
    convexity = 0.5 * ((beta**2 - 1) * MARKET_VOL**2 + SECTOR_VOL**2 + idio_vol**2)
    returns = (market[:, None] * beta + sector_f[:, tickers["sector_idx"].to_numpy()]
               + rng.normal(0.0, 1.0, size=(n_days, n)) * idio_vol - convexity)

    # Planted events: log(1 + drift_frac) spread evenly over event_days trading days.
    column = pd.Index(tickers["ticker"]).get_indexer(events["ticker"])
    event_days = events["start_idx"].to_numpy()[:, None] + np.arange(config.event_days)
    per_day = np.log1p(events["drift_frac"].to_numpy()) / config.event_days
    inside = event_days < n_days
    np.add.at(returns, (event_days[inside], np.broadcast_to(column[:, None], inside.shape)[inside]),
              np.broadcast_to(per_day[:, None], inside.shape)[inside])

    # SPY is the market factor plus a little tracking noise; it is the last column.
    returns = np.column_stack([returns, market + rng.normal(0.0, 0.0005, size=n_days)])
    vol = np.append(idio_vol, 0.004)
    first_close = np.append(np.exp(rng.normal(np.log(60.0), 0.9, size=n)), 380.0)
    close = first_close * np.exp(np.cumsum(returns, axis=0))
    prev_close = np.vstack([first_close, close[:-1]])
    open_ = prev_close * np.exp(rng.normal(0.0, 0.3, size=close.shape) * vol)
    wick = np.abs(rng.normal(0.0, 0.5, size=(2, *close.shape))) * vol
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    base_volume = np.append(np.exp(rng.normal(np.log(2e6), 1.0, size=n)), 8e7)
    volume = (base_volume * np.exp(rng.normal(0.0, 0.3, size=close.shape))
              * (1.0 + 0.5 * np.abs(returns) / vol)).astype(np.int64)

    symbols = np.append(tickers["ticker"].to_numpy(), frames.MARKET_TICKER)
    close_r = close.T.ravel().round(4)
    return pd.DataFrame({
        "ticker": np.repeat(symbols, n_days),
        "date": np.tile(days.to_numpy(), len(symbols)),
        "open": open_.T.ravel().round(4),
        "high": high.T.ravel().round(4),
        "low": low.T.ravel().round(4),
        "close": close_r,
        "adj_close": close_r,
        "volume": volume.T.ravel(),
    })[frames.PRICE_COLUMNS]


def _random_hex(rng: np.random.Generator, n: int, length: int) -> pd.Series:
    return pd.Series(_join_chars(rng.choice(_HEX, size=(n, length))))


def _disclosures(config: SyntheticConfig, politicians: pd.DataFrame, tickers: pd.DataFrame,
                 events: pd.DataFrame, informed: np.ndarray, days: pd.DatetimeIndex
                 ) -> pd.DataFrame:
    rng = _rng(config, "disclosures")
    n_pol = len(politicians)

    # Informed trades: event rows repeated once per trader, traders drawn without replacement.
    n_traders = events["n_traders"].to_numpy()
    event_of = np.repeat(np.arange(len(events)), n_traders)
    rank = np.arange(len(event_of)) - np.repeat(np.cumsum(n_traders) - n_traders, n_traders)
    trader_order = np.argsort(rng.random((len(events), len(informed))), axis=1)
    ev_pol = informed[trader_order[event_of, rank]]
    ev_day = events["start_idx"].to_numpy()[event_of] - rng.integers(
        1, config.event_lead_days + 1, size=len(event_of))
    positive = events["direction"].to_numpy()[event_of] > 0  # informed sides do not depend on `edge`
    ev_type = np.where(positive, TransactionType.PURCHASE.value,
                       np.where(rng.random(len(event_of)) < 0.6, TransactionType.SALE_FULL.value,
                                TransactionType.SALE_PARTIAL.value))
    ev_ticker = pd.Index(tickers["ticker"]).get_indexer(events["ticker"])[event_of]

    # Random trades by uninformed members, skewed activity (a few members trade a lot).
    n_random = max(0, config.n_disclosures - len(event_of))
    activity = np.exp(rng.normal(0.0, 1.2, size=n_pol))
    activity[informed] = 0.0
    rnd_pol = rng.choice(n_pol, size=n_random, p=activity / activity.sum())
    popularity = tickers["popularity"].to_numpy()
    rnd_ticker = rng.choice(len(tickers), size=n_random, p=popularity / popularity.sum())
    kinds = list(TRANSACTION_TYPE_PROBS)
    rnd_type = np.array([k.value for k in kinds])[
        rng.choice(len(kinds), size=n_random, p=list(TRANSACTION_TYPE_PROBS.values()))]

    n = len(event_of) + n_random
    pol = np.concatenate([ev_pol, rnd_pol])
    ticker = np.concatenate([ev_ticker, rnd_ticker])
    # Filing delay in calendar days, mean ~19, within 0..max_filing_delay_days.
    delay = np.rint(config.max_filing_delay_days * rng.beta(1.6, 2.2, size=n)).astype(int)
    # Random trade days are drawn among those whose filing still falls within the range.
    latest = np.searchsorted(days, config.end - pd.to_timedelta(delay[len(event_of):], "D"),
                             side="right")
    rnd_day = (rng.random(n_random) * latest).astype(int)
    trade_day = days.to_numpy()[np.concatenate([ev_day, rnd_day])]
    filed = np.minimum(trade_day + delay.astype("timedelta64[D]"), config.end.to_datetime64())
    # Filings land on weekdays: weekend dates roll back to Friday (never before the trade).
    filed = np.busday_offset(filed.astype("datetime64[D]"), 0, roll="backward")

    band = rng.choice(len(AMOUNT_BANDS), size=n, p=AMOUNT_BAND_PROBS)
    band[: len(event_of)] = np.minimum(band[: len(event_of)] + rng.integers(0, 2, len(event_of)),
                                       len(AMOUNT_BANDS) - 1)
    owners = list(OWNER_PROBS)
    owner = np.array(owners, dtype=object)[
        rng.choice(len(owners), size=n, p=list(OWNER_PROBS.values()))]

    p = politicians.iloc[pol].reset_index(drop=True)
    t = tickers.iloc[ticker].reset_index(drop=True)
    out = pd.DataFrame({
        "source": SOURCE,
        "politician_id": p["politician_id"],
        "filer_name": p["full_name"],
        "chamber": p["chamber"],
        "party": p["party"],
        "state": p["state"],
        "ticker": t["ticker"],
        "asset_description": t["asset_description"],
        "asset_type": t["asset_type"],
        "transaction_type": np.concatenate([ev_type, rnd_type]),
        "transaction_date": trade_day,
        "disclosure_date": filed.astype("datetime64[ns]"),
        "amount_min_usd": np.array([lo for lo, _ in AMOUNT_BANDS])[band],
        # Object columns with None for missing values, as the parser writes them.
        "amount_max_usd": pd.Series(np.array([hi for _, hi in AMOUNT_BANDS], dtype=object)[band],
                                    dtype=object),
        "owner": pd.Series(owner, dtype=object),
        "duplicate_count": 1,
        "filed_before_trade": False,
    })
    out["ptr_link"] = _ptr_links(rng, out)
    out["disclosure_id"] = _disclosure_ids(out)
    # A handful of random draws repeat a whole natural key; keep one (ids are primary keys).
    out = out.drop_duplicates("disclosure_id")
    return out.sort_values(["disclosure_date", "transaction_date", "politician_id", "ticker"],
                           ignore_index=True)[frames.DISCLOSURE_COLUMNS]


def _ptr_links(rng: np.random.Generator, disclosures: pd.DataFrame) -> pd.Series:
    """One report per member and filing date, linked in the chamber's own URL format."""
    report, first = pd.factorize(
        disclosures["politician_id"] + disclosures["disclosure_date"].dt.strftime("%Y-%m-%d"))
    n = len(first)
    year = disclosures.groupby(report)["disclosure_date"].first().dt.year.astype(str).to_numpy()
    senate = disclosures.groupby(report)["chamber"].first().eq(Chamber.SENATE.value).to_numpy()
    doc = pd.Series(rng.permutation(n) + 20_010_000).astype(str).to_numpy()
    house = "https://disclosures-clerk.house.gov/public_disc/ptr-pdfs/" + year + "/" + doc + ".pdf"
    h = _random_hex(rng, n, 32)
    uuid = (h.str[:8] + "-" + h.str[8:12] + "-" + h.str[12:16] + "-" + h.str[16:20] + "-"
            + h.str[20:]).to_numpy()
    senate_link = "https://efdsearch.senate.gov/search/view/ptr/" + uuid + "/"
    return pd.Series(np.where(senate, senate_link, house)[report], index=disclosures.index)


def _disclosure_ids(disclosures: pd.DataFrame) -> list[str]:
    """sha256 of the natural key, in the same text form as `parsing` builds it.

    '|'-joined: source, filer, ISO trade and filing dates, ticker, type, band as
    "<min>-<max>" (floats as str, '' when open-ended), owner, ptr_link; missing -> ''.
    """
    def text(column: str) -> pd.Series:
        values = disclosures[column]
        return values.astype(object).where(values.notna(), "").astype(str)

    def day(column: str) -> pd.Series:
        return disclosures[column].dt.strftime("%Y-%m-%d")

    key = text("source").str.cat([
        text("filer_name"), day("transaction_date"), day("disclosure_date"), text("ticker"),
        text("transaction_type"), text("amount_min_usd") + "-" + text("amount_max_usd"),
        text("owner"), text("ptr_link"),
    ], sep="|")
    # Hashing is per string by nature; everything else stays vectorized.
    return [hashlib.sha256(k.encode()).hexdigest() for k in key]


@functools.lru_cache(maxsize=4)
def generate(config: SyntheticConfig = SyntheticConfig()) -> SyntheticDataset:
    """Generate (once per config) the whole synthetic dataset."""
    days = pd.bdate_range(config.start, config.end).astype("datetime64[ns]")
    politicians = _politicians(config)
    n_informed = max(1, round(config.informed_share * config.n_politicians))
    informed = np.sort(_rng(config, "informed").choice(len(politicians), n_informed,
                                                       replace=False))
    tickers = _tickers(config)
    events = _events(config, tickers, days, n_informed)
    return SyntheticDataset(
        config=config,
        politicians=politicians,
        disclosures=_disclosures(config, politicians, tickers, events, informed, days),
        prices=_prices(config, tickers, events, days),
        sectors=tickers[frames.SECTOR_COLUMNS].reset_index(drop=True),
        events=events[["ticker", "start_date", "drift_frac"]]
        .sort_values(["start_date", "ticker"], ignore_index=True),
        informed_politician_ids=frozenset(politicians["politician_id"].iloc[informed]),
    )


# --- the synthetic data in the published file formats ----------------------------------

#: Columns of the House Stock Watcher files, in their order (`parsing.HOUSE_COLUMNS` and more).
HOUSE_FILE_COLUMNS = [
    "disclosure_year", "disclosure_date", "transaction_date", "owner", "ticker",
    "asset_description", "type", "amount", "representative", "district", "ptr_link",
    "cap_gains_over_200_usd",
]
#: Columns of the Senate Stock Watcher files, in their order (`parsing.SENATE_COLUMNS` and more).
SENATE_FILE_COLUMNS = [
    "transaction_date", "owner", "ticker", "asset_description", "asset_type", "type", "amount",
    "comment", "senator", "ptr_link", "disclosure_date",
]
#: Columns of the unitedstates/congress-legislators CSV files, in their order.
LEGISLATOR_FILE_COLUMNS = [
    "last_name", "first_name", "middle_name", "suffix", "nickname", "full_name", "birthday",
    "gender", "type", "state", "district", "senate_class", "party", "url", "address", "phone",
    "contact_form", "rss_url", "twitter", "facebook", "youtube", "youtube_id", "bioguide_id",
    "thomas_id", "opensecrets_id", "lis_id", "fec_ids", "cspan_id", "govtrack_id", "votesmart_id",
    "ballotpedia_id", "washington_post_id", "icpsr_id", "wikipedia_id",
]
#: How each file writes an amount band: closed bands alike ("$1,001 - $15,000"); the
#: open-ended one as "$5,000,000 +" (House) or "Over $5,000,000" (Senate).
HOUSE_AMOUNT_TEXT = [f"${lo:,.0f} - ${hi:,.0f}" if hi is not None else f"${lo - 1:,.0f} +"
                     for lo, hi in AMOUNT_BANDS]
SENATE_AMOUNT_TEXT = [f"${lo:,.0f} - ${hi:,.0f}" if hi is not None else f"Over ${lo - 1:,.0f}"
                      for lo, hi in AMOUNT_BANDS]
_HOUSE_TYPE_TEXT = {str(kind): text for text, kind in parsing.HOUSE_TYPES.items()}
_SENATE_TYPE_TEXT = {str(kind): text for text, kind in parsing.SENATE_TYPES.items()}
_SENATE_OWNER_TEXT = {"joint": "Joint", "self": "Self", "spouse": "Spouse", "dependent": "Child"}
#: Senate files file ETFs mostly under "Other Securities" (the parser then reads the description).
_SENATE_ASSET_TEXT = {AssetType.STOCK.value: "Stock", AssetType.ETF.value: "Other Securities"}
_PARTY_TEXT = {code: name for name, code in parsing.PARTIES.items()}
_MISSING = "--"
#: Share of House sales flagged with capital gains over $200.
_CAP_GAINS_SHARE = 0.15


def _date_text(dates: pd.Series, style: str) -> np.ndarray:
    """Dates as "2020-01-02" (iso), "01/02/2020" (mdy) or "1/2/2020" (short), formatting
    each distinct day once."""
    codes, days = pd.factorize(dates)
    days = pd.DatetimeIndex(days)
    if style == "iso":
        text = days.strftime("%Y-%m-%d")
    elif style == "mdy":
        text = days.strftime("%m/%d/%Y")
    else:
        text = (days.month.astype(str) + "/" + days.day.astype(str) + "/" + days.year.astype(str))
    return np.asarray(text, dtype=object)[codes]


def _published_members(dataset: SyntheticDataset) -> pd.DataFrame:
    """Per politician (index politician_id): the names and district as the files write them.

    Half of the members file with a middle initial ("Hon. Mary K. Smith" in the House,
    "Mary K Smith" in the Senate); House districts are numbered within each state ("CA12",
    at-large "MT00")."""
    pols = dataset.politicians.set_index("politician_id")
    rng = _rng(dataset.config, "published")
    n = len(pols)
    initial = pd.Series(rng.choice(_LETTERS, size=n), index=pols.index)
    has_middle = pd.Series(rng.random(n) < 0.5, index=pols.index)
    first, last = pols["first_name"], pols["last_name"]
    house_name = "Hon. " + first + (" " + initial + ".").where(has_middle, "") + " " + last
    senate_name = first + (" " + initial).where(has_middle, "") + " " + last
    house = pols["chamber"] == Chamber.HOUSE.value
    seats = pols["state"].map(HOUSE_SEATS)
    number = (pols.groupby(["state", "chamber"]).cumcount() % seats + 1).where(seats > 1, 0)
    born = pd.Timestamp("1940-01-01") + pd.to_timedelta(rng.integers(0, 45 * 365, size=n), "D")
    return pd.DataFrame({
        "filer": house_name.where(house, senate_name),
        "middle_name": (initial + ".").where(has_middle, ""),
        "district_number": number.where(house, 0),
        "district": pols["state"] + number.map("{:02d}".format),
        "senate_class": (pols.groupby(["state", "chamber"]).cumcount() % 3 + 1).astype(str),
        "birthday": np.asarray(pd.DatetimeIndex(born).strftime("%Y-%m-%d")),
        "gender": np.where(pd.Index(FIRST_NAMES).get_indexer(first) % 2 == 0, "M", "F"),
    }, index=pols.index)


def published_frames(dataset: SyntheticDataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The synthetic disclosures as raw (House, Senate) stock-watcher rows, all strings.

    House members' trades become House rows (`HOUSE_FILE_COLUMNS`), senators' Senate rows
    (`SENATE_FILE_COLUMNS`), in the files' own formats: House filing dates "MM/DD/YYYY" and
    trade dates "YYYY-MM-DD", Senate dates "M/D/YYYY"; amount bands as the files write them;
    House type codes ("sale_full"), Senate types ("Sale (Full)"); filers "Hon. First Last" /
    "First Last" (sometimes with a middle initial); a missing ticker or owner as "--"; Senate
    owner "dependent" as "Child", so it parses back as "child". `parsing.parse_house` /
    `parse_senate` accept every row. Each frame keeps the index of its rows in
    `dataset.disclosures`.
    """
    d = dataset.disclosures
    members = _published_members(dataset)
    who = members.index.get_indexer(d["politician_id"])
    band = pd.Index([lo for lo, _ in AMOUNT_BANDS]).get_indexer(d["amount_min_usd"])
    owner = d["owner"].astype(object)
    ticker = d["ticker"].astype(object).where(d["ticker"].notna(), _MISSING)
    kind = d["transaction_type"].astype(str)
    rng = _rng(dataset.config, "published-rows")
    cap_gains = kind.isin([TransactionType.SALE_FULL.value, TransactionType.SALE_PARTIAL.value]) & (
        rng.random(len(d)) < _CAP_GAINS_SHARE)

    house = pd.DataFrame({
        "disclosure_year": d["disclosure_date"].dt.year.astype(str),
        "disclosure_date": _date_text(d["disclosure_date"], "mdy"),
        "transaction_date": _date_text(d["transaction_date"], "iso"),
        "owner": owner.where(owner.notna(), _MISSING),
        "ticker": ticker,
        "asset_description": d["asset_description"],
        "type": kind.map(_HOUSE_TYPE_TEXT),
        "amount": np.asarray(HOUSE_AMOUNT_TEXT, dtype=object)[band],
        "representative": members["filer"].to_numpy()[who],
        "district": members["district"].to_numpy()[who],
        "ptr_link": d["ptr_link"],
        "cap_gains_over_200_usd": np.where(cap_gains, "True", "False"),
    }, index=d.index)
    senate = pd.DataFrame({
        "transaction_date": _date_text(d["transaction_date"], "short"),
        "owner": owner.map(_SENATE_OWNER_TEXT).where(owner.notna(), _MISSING),
        "ticker": ticker,
        "asset_description": d["asset_description"],
        "asset_type": d["asset_type"].map(_SENATE_ASSET_TEXT),
        "type": kind.map(_SENATE_TYPE_TEXT),
        "amount": np.asarray(SENATE_AMOUNT_TEXT, dtype=object)[band],
        "comment": _MISSING,
        "senator": members["filer"].to_numpy()[who],
        "ptr_link": d["ptr_link"],
        "disclosure_date": _date_text(d["disclosure_date"], "short"),
    }, index=d.index)
    in_house = (d["chamber"] == Chamber.HOUSE.value).to_numpy()
    return house[in_house][HOUSE_FILE_COLUMNS], senate[~in_house][SENATE_FILE_COLUMNS]


def published_legislators(dataset: SyntheticDataset) -> pd.DataFrame:
    """The synthetic politicians as a congress-legislators table (`LEGISLATOR_FILE_COLUMNS`,
    all strings), so `parsing.load_legislators` + `attach_politicians` match the filers of
    `published_frames`. bioguide_id is the synthetic politician_id: matched disclosures carry
    the synthetic ids. Columns the parser does not read are left empty."""
    pols = dataset.politicians
    members = _published_members(dataset).loc[pols["politician_id"]]
    senator = (pols["chamber"] == Chamber.SENATE.value).to_numpy()
    table = pd.DataFrame({
        "last_name": pols["last_name"].to_numpy(),
        "first_name": pols["first_name"].to_numpy(),
        "middle_name": members["middle_name"].to_numpy(),
        "full_name": pols["full_name"].to_numpy(),
        "birthday": members["birthday"].to_numpy(),
        "gender": members["gender"].to_numpy(),
        "type": np.where(senator, "sen", "rep"),
        "state": pols["state"].to_numpy(),
        "district": np.where(senator, "", members["district_number"].astype(str).to_numpy()),
        "senate_class": np.where(senator, members["senate_class"].to_numpy(), ""),
        "party": pols["party"].map(_PARTY_TEXT).to_numpy(),
        "bioguide_id": pols["politician_id"].to_numpy(),
    })
    return table.reindex(columns=LEGISLATOR_FILE_COLUMNS, fill_value="")


@dataclass(frozen=True)
class SyntheticDisclosureSource:
    """`frames.DisclosureSource` over the synthetic dataset."""

    config: SyntheticConfig = SyntheticConfig()

    def load_disclosures(self) -> frames.DisclosureBatch:
        data = generate(self.config)
        n = len(data.disclosures)
        return frames.DisclosureBatch(
            politicians=data.politicians.copy(),
            disclosures=data.disclosures.copy(),
            rejects=frames.empty(frames.REJECT_COLUMNS),
            stats={SOURCE: frames.SourceStats(rows_read=n, accepted=n)},
        )


@dataclass(frozen=True)
class SyntheticPriceSource:
    """`frames.PriceSource` over the synthetic dataset; unknown tickers simply have no rows."""

    config: SyntheticConfig = SyntheticConfig()

    def load_prices(self, tickers: list[str] | None = None) -> pd.DataFrame:
        prices = generate(self.config).prices
        if tickers is None:
            return prices.copy()
        wanted = prices["ticker"].isin([*tickers, frames.MARKET_TICKER])
        return prices[wanted].reset_index(drop=True)

    def load_sectors(self) -> pd.DataFrame:
        return generate(self.config).sectors.copy()

    def fingerprint(self) -> str:
        """The generated rows are a function of the config and of this module's code."""
        return hashlib.sha256(repr(self.config).encode() + Path(__file__).read_bytes()).hexdigest()
