"""Parse the published House/Senate stock-watcher files, the legislators tables and price files.

Every raw row ends up in exactly one place: accepted (`DISCLOSURE_COLUMNS`), rejected
(`REJECT_COLUMNS`, with a reason) or collapsed into an identical row (`duplicate_count`).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import html
import io
import json
import re
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from feedback_loop.lib import frames, policy
from feedback_loop.lib.vocab import (
    AssetType,
    Chamber,
    DisclosureSource,
    Party,
    RejectReason,
    TransactionType,
)

HOUSE_COLUMNS = [
    "disclosure_date", "transaction_date", "owner", "ticker", "asset_description", "type",
    "amount", "representative", "district", "ptr_link",
]
SENATE_COLUMNS = [
    "transaction_date", "owner", "ticker", "asset_description", "asset_type", "type", "amount",
    "senator", "ptr_link", "disclosure_date",
]

HOUSE_TYPES = {
    "purchase": TransactionType.PURCHASE, "sale_full": TransactionType.SALE_FULL,
    "sale_partial": TransactionType.SALE_PARTIAL, "exchange": TransactionType.EXCHANGE,
}
SENATE_TYPES = {
    "Purchase": TransactionType.PURCHASE, "Sale (Full)": TransactionType.SALE_FULL,
    "Sale (Partial)": TransactionType.SALE_PARTIAL, "Exchange": TransactionType.EXCHANGE,
}

SENATE_ASSET_TYPES = {
    "Stock": AssetType.STOCK, "Stock Option": AssetType.OPTION,
    "Corporate Bond": AssetType.BOND, "Municipal Security": AssetType.BOND,
    "Government Security": AssetType.BOND, "Cryptocurrency": AssetType.CRYPTO,
    "Mutual Fund": AssetType.FUND, "Non-Public Stock": AssetType.OTHER,
}
#: Senate asset types that say nothing about the asset: classify from the description.
SENATE_UNSPECIFIED_ASSET_TYPES = {"", "Other Securities"}
#: Senate rows that only point at a scanned paper filing (no type, amount "Unknown").
SENATE_PAPER_FILING = "PDF Disclosed Filing"

MISSING_TICKERS = {"", "--", "N/A", "NA", "NONE"}

#: C0 control characters and DEL; tab, line feed and carriage return are whitespace in free text.
_CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
#: A lone UTF-16 surrogate (JSON "\\ud800") is no character: the JSON reader keeps its escape as text
#: (pandas' strings, UTF-8 like Postgres, cannot hold it) and the row is rejected by this pattern.
_SURROGATE_ESCAPE = r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
#: The date formats of the published files as strict patterns (a sign, a 5-digit year or a time never parse).
_DATE_PATTERNS = {"%Y-%m-%d": r"\d{4}-\d{1,2}-\d{1,2}", "%m/%d/%Y": r"\d{1,2}/\d{1,2}/\d{4}"}

_ASSET_PATTERNS = [  # first match wins: a "bond fund" is a fund, an "ETF call" an option
    (AssetType.CRYPTO, r"\b(?:crypto\w*|bitcoin|ethereum)\b"),
    (AssetType.OPTION, r"\b(?:calls?|puts?|options?)\b"),
    (AssetType.ETF, r"\b(?:etfs?|spdr|ishares|proshares|exchange[- ]traded)\b"),
    (AssetType.FUND, r"\b(?:funds?|fd|money market|mutual|index)\b"),
    # Bonds also by their abbreviations (BDS, NTS), coupons ("5.0%") and maturities ("Due 06/30").
    (AssetType.BOND, (
        r"\b(?:bonds?|bds|notes?|nts|bills?|treasury|treasuries|debentures?|municipal)\b"
        r"|\d%|\bdue\s+\d"
    )),
]
#: US mutual-fund tickers are five letters ending in X (e.g. TDDXX, VFIAX).
_MUTUAL_FUND_TICKER = r"^[A-Z]{4}X$"


@dataclass
class ParseResult:
    accepted: pd.DataFrame  # DISCLOSURE_COLUMNS
    rejects: pd.DataFrame  # REJECT_COLUMNS
    stats: frames.SourceStats
    #: Counts people read next to the stats (missing tickers, filed-before-trade, ...).
    metadata: dict[str, int] = field(default_factory=dict)


class SourceFileError(ValueError):
    """A whole input file cannot be read (empty, bad gzip, not UTF-8, ragged, ...): nothing of it is ingested."""

    def __init__(self, path: str | Path, defect: str):
        self.path, self.defect = str(path), defect
        super().__init__(f"{path}: {defect}")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _strings(raw: pd.DataFrame) -> pd.DataFrame:
    """Every cell a str, missing cells ""."""
    def text(column: pd.Series) -> pd.Series:
        if isinstance(column.dtype, pd.StringDtype):  # already strings: skip the slow trip through object
            return column.fillna("").astype(str)
        return column.astype("object").where(column.notna(), "").astype(str)

    columns = {i: text(column) for i, (_, column) in enumerate(raw.items())}
    return pd.DataFrame(columns, index=raw.index).set_axis(raw.columns, axis=1)


def _per_distinct(
    values: pd.Series, transform: Callable[[pd.Series], pd.Series | pd.DataFrame]
) -> pd.Series | pd.DataFrame:
    """`transform(values)`, computed once per distinct value.

    The text columns repeat a few hundred values over many rows, and pandas runs regexes
    element by element. Missing values (None, NaN) all reach `transform` as one NaN, so the
    callers fill them first.
    """
    codes, distinct = pd.factorize(values, use_na_sentinel=False)
    return transform(pd.Series(distinct, name=values.name)).take(codes).set_axis(values.index)


def strip_html(descriptions: pd.Series) -> pd.Series:
    """Remove tags, unescape entities (`&amp;`, `&nbsp;`; twice: some are `&amp;amp;`), collapse whitespace."""
    def strip(text: pd.Series) -> pd.Series:
        no_tags = text.str.replace(r"<[^>]*>", " ", regex=True)
        has_entity = no_tags.str.contains("&", regex=False)
        unescaped = no_tags.where(
            ~has_entity, no_tags[has_entity].map(lambda text: html.unescape(html.unescape(text))))
        cleaned = unescaped.str.replace(r"\s+", " ", regex=True).str.strip()
        return _none_where_missing(cleaned, cleaned != "")

    return _per_distinct(descriptions.fillna(""), strip)


def normalize_ticker(tickers: pd.Series) -> pd.Series:
    """Upper-case, strip `$`/spaces, class shares `BRK.B` -> `BRK-B`, preferreds `BAC$K` -> `BAC-PK`.

    Missing markers (`--`, empty, `N/A`) become None.
    """
    def normalize(text: pd.Series) -> pd.Series:
        t = text.str.upper().str.replace(r"\s+", "", regex=True).str.strip("$")
        t = t.str.replace("$", "-P", regex=False).str.replace(".", "-", regex=False)
        return _none_where_missing(t, ~t.isin(MISSING_TICKERS))

    return _per_distinct(tickers.fillna("").astype(str), normalize)


def parse_amount(amounts: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Amount band text -> (min_usd, max_usd, reject reason or None).

    Open-ended bands ("Over $50,000,000", "$1,000,000 +") mean "more than X": floor X + 1,
    no maximum. A band cut off after its floor ("$1,001 -") is rejected as truncated.
    """
    def number(column: pd.Series) -> pd.Series:
        return pd.to_numeric(column.str.replace(",", "", regex=False), errors="coerce")

    def parse(text: pd.Series) -> pd.DataFrame:
        text = text.str.strip()
        band = text.str.extract(r"^\$\s*([\d,]+)\s*-\s*\$\s*([\d,]+)$")
        open_ended = text.str.extract(
            r"^(?:Over\s+\$\s*([\d,]+)|\$\s*([\d,]+)\s*\+)$", flags=re.IGNORECASE)
        truncated = text.str.match(r"^\$\s*[\d,]+\s*-$")
        open_floor = number(open_ended[0].fillna(open_ended[1])) + 1
        amount_min = number(band[0]).fillna(open_floor)
        amount_max = number(band[1])
        reason = pd.Series(None, index=text.index, dtype="object")
        implausible = (amount_min > policy.MAX_AMOUNT_USD) | (amount_max > policy.MAX_AMOUNT_USD)
        reason[amount_min.isna() | (amount_max < amount_min) | implausible] = str(RejectReason.AMOUNT)
        reason[truncated] = str(RejectReason.TRUNCATED_AMOUNT)
        return pd.DataFrame({"min": amount_min, "max": amount_max, "reason": reason})

    bands = _per_distinct(amounts.fillna("").astype(str), parse)
    return bands["min"], bands["max"], bands["reason"]


def classify_assets(descriptions: pd.Series, tickers: pd.Series) -> pd.Series:
    """Asset type from the description; stock when only a ticker says anything, else other."""
    def matches(text: pd.Series) -> pd.DataFrame:
        text = text.str.lower()
        return pd.DataFrame({
            str(kind): text.str.contains(pattern, regex=True) for kind, pattern in _ASSET_PATTERNS
        })

    conditions = _per_distinct(descriptions.fillna(""), matches)
    conditions[str(AssetType.FUND)] |= _per_distinct(
        tickers.fillna(""), lambda t: t.str.match(_MUTUAL_FUND_TICKER))
    default = np.where(tickers.notna(), str(AssetType.STOCK), str(AssetType.OTHER))
    return pd.Series(
        np.select([conditions[kind] for kind in conditions], list(conditions), default=default),
        index=descriptions.index,
    )


def row_hash(source: str, raw_row: dict) -> str:
    """sha256 of the source name + the raw row as compact JSON (re-ingest never duplicates)."""
    return _sha256(source + json.dumps(raw_row, separators=(",", ":"), ensure_ascii=False))


def _none_where_missing(values: pd.Series, keep: pd.Series | None = None) -> pd.Series:
    """Object series with None (not NaN) where `values` is missing or `keep` is False."""
    keep = values.notna() if keep is None else keep & values.notna()
    return values.astype("object").where(keep, None)


def _collapse_exact_duplicates(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Keep the first of each group of identical lines; return it with the group size."""
    group = raw.groupby(list(raw.columns), sort=False, dropna=False).ngroup()
    counts = group.map(group.value_counts())
    keep = ~group.duplicated(keep="first")
    return raw[keep], counts[keep].astype(int)


def _parse_dates(text: pd.Series, fmt: str) -> tuple[pd.Series, pd.Series]:
    """(parsed dates, 4-digit year written in the text or NaN); NaT unless the text has the exact format."""
    def parse(distinct: pd.Series) -> pd.DataFrame:
        year = pd.to_numeric(distinct.str.extract(r"(?<!\d)(\d{4})(?!\d)")[0], errors="coerce")
        stripped = distinct.str.strip()
        # Years outside datetime64[ns] (e.g. 0009) would raise even with errors="coerce".
        parseable = stripped.where(stripped.str.fullmatch(_DATE_PATTERNS[fmt]) & year.between(1900, 2200), "")
        parsed = pd.to_datetime(parseable, format=fmt, errors="coerce").dt.normalize()
        return pd.DataFrame({"date": parsed.astype("datetime64[ns]"), "year": year})

    dates = _per_distinct(text, parse)
    return dates["date"], dates["year"]


def _cell_defects(raw: pd.DataFrame) -> pd.Series:
    """Per row, the first reason a raw cell cannot be stored faithfully (control character, lone
    surrogate, longer than policy.MAX_FIELD_CHARS), or None."""
    reason = pd.Series(None, index=raw.index, dtype="object")
    for column in raw.columns:
        text = raw[column]
        for defect, found in [
            (RejectReason.CONTROL_CHARACTER, text.str.contains(_CONTROL_CHARACTERS, regex=True)),
            (RejectReason.INVALID_UNICODE, text.str.contains(_SURROGATE_ESCAPE, regex=True)),
            (RejectReason.FIELD_TOO_LONG, text.str.len() > policy.MAX_FIELD_CHARS),
        ]:
            reason = reason.mask(reason.isna() & found, str(defect))
    return reason


def storable_raw_row(row: dict) -> dict:
    """The raw row as Postgres JSONB can hold it: NUL, which JSONB refuses, written as the text "\\u0000"."""
    return {key: value.replace("\x00", "\\u0000") if isinstance(value, str) else value for key, value in row.items()}


def _parse(
    source: DisclosureSource,
    raw: pd.DataFrame,
    *,
    filer: pd.Series,
    type_map: dict[str, TransactionType],
    type_text: pd.Series,
    ticker: pd.Series,
    description: pd.Series,
    trade_format: str,
    filing_format: str,
    asset_types: pd.Series,
    state: pd.Series,
    reasons_before: pd.Series,
    today: pd.Timestamp,
) -> ParseResult:
    transaction_type = type_text.str.strip().map({k: str(v) for k, v in type_map.items()})
    trade_date, trade_year = _parse_dates(raw["transaction_date"], trade_format)
    filing_date, _ = _parse_dates(raw["disclosure_date"], filing_format)
    amount_min, amount_max, amount_reason = parse_amount(raw["amount"])

    filer_text = raw["representative" if source == DisclosureSource.HOUSE else "senator"]
    # First failing check wins: what cannot be stored at all, then what is missing or implausible.
    checks = [
        (_cell_defects(raw.drop(columns="_duplicate_count")), None),
        ((filer_text.str.len() > policy.MAX_NAME_CHARS)
         | (ticker.fillna("").str.len() > policy.MAX_TICKER_CHARS), RejectReason.FIELD_TOO_LONG),
        (reasons_before, None),
        (filer.isna(), RejectReason.FILER),
        (transaction_type.isna(), RejectReason.TRANSACTION_TYPE),
        (filing_date.isna(), RejectReason.FILING_DATE),
        ((filing_date.dt.year < policy.MIN_DISCLOSURE_YEAR) | (filing_date > today), RejectReason.FILING_DATE_RANGE),
        (trade_year < policy.MIN_TRADE_YEAR, RejectReason.TRADE_DATE_RANGE),
        (trade_date.isna(), RejectReason.TRADE_DATE),
        # A report lists trades already made; a later trade date is a typo, and would let the trade be
        # seen as of its filing date, before it happened.
        (trade_date > filing_date, RejectReason.TRADE_AFTER_FILING),
        (amount_reason, None),
    ]
    reason = pd.Series(None, index=raw.index, dtype="object")
    for mask, why in checks:
        if why is None:  # a series of reasons (None where the row passes)
            reason = reason.where(reason.notna(), mask)
        else:
            reason[reason.isna() & mask] = str(why)
    rejected = reason.notna()

    owner = raw["owner"].str.strip().str.lower()
    ptr_link = raw["ptr_link"].str.strip()
    out = pd.DataFrame({
        "source": str(source),
        "politician_id": None,
        "filer_name": filer,
        "chamber": str(Chamber(str(source))),
        "party": None,
        "state": state,
        "ticker": ticker,
        "asset_description": description,
        "asset_type": asset_types,
        "transaction_type": transaction_type.astype("object"),
        "transaction_date": trade_date,
        "disclosure_date": filing_date,
        "amount_min_usd": amount_min,
        "amount_max_usd": amount_max.astype("object").where(amount_max.notna(), None),
        "owner": _none_where_missing(owner, ~owner.isin(["", "--"])),
        "ptr_link": _none_where_missing(ptr_link, ptr_link != ""),
        "duplicate_count": raw["_duplicate_count"],
    }, index=raw.index)[~rejected]
    out["filed_before_trade"] = out["disclosure_date"] < out["transaction_date"]
    out["disclosure_id"] = _disclosure_ids(out)

    # Lines that differ only outside the natural key (e.g. a comment) are one trade.
    key_duplicate = out["disclosure_id"].duplicated()
    key_duplicates = int(key_duplicate.sum())
    if key_duplicates:
        key_groups = out.groupby("disclosure_id", sort=False)["duplicate_count"]
        out["duplicate_count"] = key_groups.transform("sum").astype(int)
        out = out[~key_duplicate]

    raw_strings = raw.drop(columns="_duplicate_count")[rejected]
    raw_rows = raw_strings.to_dict(orient="records")
    rejects = pd.DataFrame({
        "source": str(source),
        "row_hash": [row_hash(str(source), r) for r in raw_rows],
        "raw_row": [storable_raw_row(r) for r in raw_rows],
        "reason": reason[rejected],
    }, index=raw_strings.index)
    exact_duplicates = int(raw["_duplicate_count"].sum() - len(raw))
    stats = frames.SourceStats(
        rows_read=int(raw["_duplicate_count"].sum()),
        accepted=len(out),
        rejected=len(rejects),
        duplicates_collapsed=exact_duplicates + key_duplicates,
    )
    assert stats.balanced(), stats
    metadata = {
        "exact_duplicates_collapsed": exact_duplicates,
        "key_duplicates_collapsed": key_duplicates,
        "missing_ticker": int(out["ticker"].isna().sum()),
        "filed_before_trade": int(out["filed_before_trade"].sum()),
        "open_ended_amount": int(out["amount_max_usd"].isna().sum()),
    }
    metadata.update({f"rejected: {k}": int(v) for k, v in rejects["reason"].value_counts().items()})
    return ParseResult(
        accepted=out[frames.DISCLOSURE_COLUMNS].reset_index(drop=True),
        rejects=rejects[frames.REJECT_COLUMNS].reset_index(drop=True),
        stats=stats,
        metadata=metadata,
    )


def _disclosure_ids(out: pd.DataFrame) -> pd.Series:
    """sha256 of "source|filer|trade day|filing day|ticker or description|type|min-max|owner|link".

    The ids are stored primary keys: the key text must not change (missing parts empty,
    amounts as `str(float)`, e.g. "1001.0-15000.0").
    """
    def text(values: pd.Series) -> np.ndarray:
        return values.fillna("").to_numpy(dtype=object)

    def amount(column: str) -> np.ndarray:  # few distinct amounts and days: format each once
        return _per_distinct(
            out[column], lambda v: v.astype("object").where(v.notna(), "").astype(str).astype("object"),
        ).to_numpy()

    def day(column: str) -> np.ndarray:
        return _per_distinct(out[column], lambda d: d.dt.strftime("%Y-%m-%d").astype("object")).to_numpy()

    parts = zip(
        text(out["source"]), text(out["filer_name"]), day("transaction_date"), day("disclosure_date"),
        text(out["ticker"].fillna(out["asset_description"])), text(out["transaction_type"]),
        amount("amount_min_usd"), amount("amount_max_usd"), text(out["owner"]), text(out["ptr_link"]),
    )
    return pd.Series([
        _sha256(f"{source}|{filer}|{traded}|{filed}|{asset}|{kind}|{low}-{high}|{owner}|{link}")
        for source, filer, traded, filed, asset, kind, low, high, owner, link in parts
    ], index=out.index, dtype="str")


def clean_filer_name(names: pd.Series) -> pd.Series:
    """Strip honorifics ("Hon. ", "Mr. "), stray commas and whitespace; empty -> None."""
    def clean(text: pd.Series) -> pd.Series:
        cleaned = (
            text.str.replace(r"^\s*(?:Hon|Mr|Mrs|Ms|Dr)\.?\s+", "", regex=True)
            .str.replace(r"\s+,", ",", regex=True).str.replace(r"\s+", " ", regex=True)
            .str.strip(" ,")
        )
        return _none_where_missing(cleaned, cleaned != "")

    return _per_distinct(names.fillna("").astype(str), clean)


def _with_duplicate_counts(raw: pd.DataFrame) -> pd.DataFrame:
    strings = _strings(raw)
    kept, counts = _collapse_exact_duplicates(strings)
    return kept.assign(_duplicate_count=counts)


def _require(raw: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise ValueError(f"{what} is missing columns {missing}")


def _day(today) -> pd.Timestamp:
    """`today` as a normalized Timestamp; the current date when None."""
    return pd.Timestamp.today().normalize() if today is None else pd.Timestamp(today).normalize()


def parse_house(raw: pd.DataFrame, today=None) -> ParseResult:
    """House Stock Watcher rows (all strings) -> accepted disclosures + rejects.

    A disclosure date after `today` (default: the current date) is rejected as out of range."""
    _require(raw, HOUSE_COLUMNS, "House file")
    rows = _with_duplicate_counts(raw)
    ticker = normalize_ticker(rows["ticker"])
    description = strip_html(rows["asset_description"])
    state = _per_distinct(
        rows["district"], lambda d: d.str.strip().str.upper().str.extract(r"^([A-Z]{2})")[0])
    return _parse(
        DisclosureSource.HOUSE, rows,
        filer=clean_filer_name(rows["representative"]),
        type_map=HOUSE_TYPES, type_text=rows["type"], ticker=ticker, description=description,
        trade_format="%Y-%m-%d", filing_format="%m/%d/%Y",
        asset_types=classify_assets(description, ticker),
        state=_none_where_missing(state),
        reasons_before=pd.Series(None, index=rows.index, dtype="object"), today=_day(today),
    )


def parse_senate(raw: pd.DataFrame, today=None) -> ParseResult:
    """Senate Stock Watcher rows (all strings) -> accepted disclosures + rejects (`today` as in parse_house)."""
    _require(raw, SENATE_COLUMNS, "Senate file")
    rows = _with_duplicate_counts(raw)
    ticker = normalize_ticker(rows["ticker"])
    description = strip_html(rows["asset_description"])
    declared = rows["asset_type"].str.strip()
    from_description = classify_assets(description, ticker)
    asset_types = declared.map(SENATE_ASSET_TYPES).astype("object")
    # "Stock" also covers ETFs; unspecified types fall back to the description.
    is_etf = (asset_types == AssetType.STOCK) & (from_description == AssetType.ETF)
    asset_types[is_etf] = str(AssetType.ETF)
    unspecified = declared.isin(SENATE_UNSPECIFIED_ASSET_TYPES)
    asset_types[unspecified] = from_description[unspecified]
    asset_types = asset_types.fillna(str(AssetType.OTHER)).astype(str)
    paper = pd.Series(
        np.where(declared == SENATE_PAPER_FILING, str(RejectReason.PAPER_FILING), None), index=rows.index,
        dtype=object,
    )
    return _parse(
        DisclosureSource.SENATE, rows,
        filer=clean_filer_name(rows["senator"]),
        type_map=SENATE_TYPES, type_text=rows["type"], ticker=ticker, description=description,
        trade_format="%m/%d/%Y", filing_format="%m/%d/%Y",
        asset_types=asset_types,
        state=pd.Series(None, index=rows.index, dtype="object"),
        reasons_before=paper, today=_day(today),
    )


def _read_text(path: Path) -> str:
    """The text of `path` (gunzipped when its name ends in .gz), refused with a SourceFileError when
    it is no regular file, bad gzip, empty or blank, or not UTF-8.

    UTF-8 (with or without a byte-order mark) and UTF-16 with a byte-order mark are decoded; they
    are recognised without guessing. Anything else (latin-1, cp1252, UTF-16 without a BOM) is
    refused: no byte sequence tells latin-1 from cp1252 reliably, and a wrong guess stores wrong names.
    """
    if path.is_dir():
        raise SourceFileError(path, "is a directory, not a file")
    try:
        data = path.read_bytes()
        if path.name.lower().endswith(".gz"):
            data = gzip.decompress(data)
    except FileNotFoundError:
        raise SourceFileError(path, "does not exist") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise SourceFileError(path, f"truncated or invalid gzip ({error})") from None
    except OSError as error:
        raise SourceFileError(path, f"cannot be read ({error.strerror or error})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
    elif data.count(b"\x00") > len(data) // 4:
        raise SourceFileError(path, "looks like UTF-16 without a byte-order mark; save it as UTF-8")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise SourceFileError(path, (
                f"is not UTF-8 (byte 0x{data[error.start]:02x} at offset {error.start}; latin-1 or cp1252?); "
                "save it as UTF-8")) from None
    if not text:
        raise SourceFileError(path, "is empty")
    if not text.strip():
        raise SourceFileError(path, "holds only whitespace")
    return text


def _csv_header(path: Path, text: str) -> list[str]:
    header = next(csv.reader(io.StringIO(text[:text.find("\n") + 1 or len(text)])))
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise SourceFileError(path, f"duplicate header columns {duplicated}")
    return header


def _csv_table(path: Path, text: str) -> pd.DataFrame:
    """CSV text -> strings, every record checked against the header.

    An unbalanced quote makes the CSV reader run one field over the following lines until the next
    quote: the record then spans several physical lines and (almost always) has the wrong number of
    fields, or holds a field with a line break followed by the delimiter. Both are refused with the
    lines concerned (the published files have no multi-line fields at all).
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records, lines = [], []  # lines: (first, last) physical line of each record
    try:
        header = next(reader)
        last = reader.line_num
        for record in reader:
            if record:  # blank lines are skipped
                records.append(record)
                lines.append((last + 1, reader.line_num))
            last = reader.line_num
    except csv.Error as error:
        raise SourceFileError(path, f"malformed CSV near line {reader.line_num + 1}: {error} (an unbalanced quote?)") from None
    _csv_header(path, text)
    width = len(header)
    for record, (first, last) in zip(records, lines, strict=True):
        spans_lines = first != last
        merged = spans_lines and any(re.search(r"[\r\n][^\r\n]*,", cell) for cell in record)
        if spans_lines and (len(record) != width or merged):
            raise SourceFileError(path, f"unbalanced quote: the record of line {first} runs over lines {first}-{last}")
        if len(record) != width:
            raise SourceFileError(path, f"ragged row at line {first}: {len(record)} fields, the header has {width}")
    return pd.DataFrame(records, columns=header, dtype=object) if records else pd.DataFrame(columns=header, dtype=object)


def _json_table(path: Path, text: str) -> pd.DataFrame:
    """A JSON array of row objects -> a frame (keys missing from a row are missing cells)."""
    def text_of(value):  # lone surrogates kept as their escapes (see _SURROGATE_ESCAPE)
        return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value

    def row_of(pairs):  # each object as it is decoded: the rows are never held twice (1M rows: ~1.5 GB)
        keys = [k for k, _ in pairs]
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        if duplicated:
            raise SourceFileError(path, f"duplicate keys {duplicated} in a JSON row")
        return {text_of(key): text_of(value) for key, value in pairs}

    try:
        rows = json.loads(text, object_pairs_hook=row_of)
    except json.JSONDecodeError as error:
        raise SourceFileError(path, f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise SourceFileError(path, "JSON must be an array of row objects")
    return pd.DataFrame.from_records(rows).astype("object")


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV, .csv.gz, JSON or .json.gz file as a frame of strings; SourceFileError when it cannot be read."""
    path = Path(path)
    text = _read_text(path)
    is_json = path.name.lower().endswith((".json", ".json.gz"))
    return _strings(_json_table(path, text) if is_json else _csv_table(path, text))


def read_disclosure_file(path: str | Path) -> tuple[str, pd.DataFrame]:
    """Read a House or Senate file (CSV, .csv.gz, JSON) as strings; detect which by its columns."""
    path = Path(path)
    raw = read_table(path)
    for source, filer, columns in [(DisclosureSource.HOUSE, "representative", HOUSE_COLUMNS),
                                   (DisclosureSource.SENATE, "senator", SENATE_COLUMNS)]:
        if filer in raw.columns:
            missing = [c for c in columns if c not in raw.columns]
            if missing:
                raise SourceFileError(path, f"{source} file is missing columns {missing}")
            return str(source), raw
    raise SourceFileError(path, "neither a House (representative) nor a Senate (senator) file")


def parse_disclosure_file(path: str | Path, today=None) -> tuple[str, ParseResult]:
    source, raw = read_disclosure_file(path)
    parser = parse_house if source == DisclosureSource.HOUSE else parse_senate
    return source, parser(raw, today=today)


# --- legislators and the name join -------------------------------------------------------

LEGISLATOR_COLUMNS = [
    "bioguide_id", "last_name", "first_name", "middle_name", "nickname", "full_name",
    "type", "state", "party", "birthday",
]
PARTIES = {
    "Democrat": str(Party.DEMOCRAT), "Republican": str(Party.REPUBLICAN),
    "Independent": str(Party.INDEPENDENT),
}
#: PTRs exist from 2012; members born before this cannot be the filers.
EARLIEST_BIRTH_YEAR = 1920
_NAME_SUFFIXES = {"jr", "sr", "ii", "iii", "iv", "md", "facs", "phd", "esq"}
#: Formal given names and the short forms members file or are listed under.
NICKNAMES = {
    "thomas": {"tom", "tommy", "thom"}, "richard": {"rick", "dick", "rich"}, "william": {"bill", "wm"},
    "robert": {"bob", "bobby", "rob"}, "mitchell": {"mitch"}, "michael": {"mike"},
    "james": {"jim", "jimmy"}, "joseph": {"joe"}, "john": {"jack"}, "charles": {"chuck"},
    "christopher": {"chris"}, "daniel": {"dan"}, "david": {"dave"}, "edward": {"ed", "ted"},
    "gerald": {"gerry"}, "harold": {"hal"}, "kenneth": {"ken", "kenny"},
    "rafael": {"ted"}, "ronald": {"ron"}, "steven": {"steve"}, "stephen": {"steve"},
    "timothy": {"tim"}, "benjamin": {"ben"}, "patrick": {"pat"}, "gregory": {"greg"},
    "terrance": {"tj"}, "earl": {"buddy"}, "nicholas": {"nick"}, "jacklyn": {"jacky"},
    "susan": {"sue"}, "elizabeth": {"liz", "beth"}, "kathleen": {"kathy"},
}
#: (given, equivalent) pairs in both directions, e.g. thomas<->tom, tom<->tommy.
_EQUIVALENT_GIVEN = pd.DataFrame(
    [(a, b) for formal, shorts in NICKNAMES.items()
     for a in {formal, *shorts} for b in {formal, *shorts} if a != b],
    columns=["token", "equivalent"],
).drop_duplicates()


def _name_token(text: pd.Series) -> pd.Series:
    """Lower-case ASCII letters only ("Sánchez" -> "sanchez", "O'Halleran" -> "ohalleran")."""
    ascii_text = text.fillna("").astype(str).map(
        lambda s: unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()
    )
    return ascii_text.str.lower().str.replace(r"[^a-z]", "", regex=True)


def load_legislators(paths) -> pd.DataFrame:
    """The congress-legislators CSVs (current first), one row per bioguide_id."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    tables = []
    for rank, path in enumerate(paths):
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        _require(table, [c for c in LEGISLATOR_COLUMNS if c != "nickname"], f"legislators file {path}")
        if "nickname" not in table.columns:
            table["nickname"] = ""
        tables.append(table[LEGISLATOR_COLUMNS].assign(file_rank=rank))
    if not tables:  # no legislator files: filers stay unmatched (party unknown), nothing fails
        return pd.DataFrame(columns=[*LEGISLATOR_COLUMNS, "file_rank"], dtype=object)
    legislators = pd.concat(tables, ignore_index=True)
    legislators = legislators[legislators["bioguide_id"] != ""]
    return legislators.drop_duplicates("bioguide_id", keep="first").reset_index(drop=True)


def _legislator_keys(legislators: pd.DataFrame) -> pd.DataFrame:
    """(bioguide_id, last, given, strength): strength 2 for first/nickname, 1 for middle."""
    last = _name_token(legislators["last_name"])
    parts = []
    for column, strength in [("first_name", 2), ("nickname", 2), ("middle_name", 1)]:
        parts.append(pd.DataFrame({
            "bioguide_id": legislators["bioguide_id"], "last": last,
            "given": _name_token(legislators[column]), "strength": strength,
        }))
    keys = pd.concat(parts, ignore_index=True)
    return keys[keys["given"].str.len() > 0]


def _filer_keys(filers: pd.Series) -> pd.DataFrame:
    """(filer_name, last, given, first): name forms a filer may be listed under.

    `last` is the last word or the last two words ("Van Hollen"); `given` every earlier
    word of two letters or more, nicknames in quotes/parentheses and the other forms of a
    name in NICKNAMES (not `first`); `first` marks the first word and the nickname.
    """
    names = pd.Series(filers.unique())
    names = names[names.notna()]
    nick = names.str.extract(r"[\"(]([^\")]+)[\")]")[0]
    words = names.str.replace(r"[\"(][^\")]*[\")]", " ", regex=True).str.replace(",", " ")
    tokens = words.str.split().explode().to_frame("word")
    tokens["filer_name"] = names.loc[tokens.index].values
    tokens["token"] = _name_token(tokens["word"])
    tokens = tokens[(tokens["token"] != "") & ~tokens["token"].isin(_NAME_SUFFIXES)]
    tokens["pos"] = tokens.groupby("filer_name").cumcount()
    tokens["n"] = tokens.groupby("filer_name")["pos"].transform("size")
    last_word = tokens[tokens["pos"] == tokens["n"] - 1].set_index("filer_name")["token"]
    before = tokens[tokens["pos"] == tokens["n"] - 2].set_index("filer_name")["token"]
    lasts = pd.concat([last_word, before.reindex(last_word.index).fillna("") + last_word])
    givens = tokens[(tokens["pos"] < tokens["n"] - 1) & (tokens["token"].str.len() >= 2)]
    givens = givens.assign(first=givens.groupby("filer_name")["pos"].rank(method="first") == 1)
    nicks = pd.DataFrame({
        "filer_name": names.values, "token": _name_token(nick).values, "first": True
    })
    givens = pd.concat([givens[["filer_name", "token", "first"]], nicks[nicks["token"] != ""]])
    equivalent = givens.merge(_EQUIVALENT_GIVEN, on="token")
    equivalent = equivalent.assign(token=equivalent["equivalent"], first=False)
    givens = pd.concat([givens, equivalent[givens.columns]]).rename(columns={"token": "given"})
    return givens.merge(lasts.rename("last").reset_index(), on="filer_name")


def match_filers(filers: pd.DataFrame, legislators: pd.DataFrame) -> pd.Series:
    """bioguide_id per (filer_name, chamber, state) row of `filers`, None when not unique.

    Candidates share the last name and a given name (or one of its NICKNAMES forms). A House
    filer's state must match. Ranked by chamber match, given-name strength (first word >
    other words > middle name), current before historical; a tie stays unmatched.
    """
    recent = legislators[
        pd.to_numeric(legislators["birthday"].str[:4], errors="coerce").fillna(9999)
        >= EARLIEST_BIRTH_YEAR
    ]
    people = recent.assign(
        chamber=recent["type"].map({"sen": str(Chamber.SENATE), "rep": str(Chamber.HOUSE)}),
        leg_state=recent["state"],
    )[["bioguide_id", "chamber", "leg_state", "file_rank"]]
    leg_keys = _legislator_keys(recent)

    named = _filer_keys(filers["filer_name"]).merge(leg_keys, on=["last", "given"])
    named["strength"] = named["strength"] + named["first"].astype(int)
    candidates = named.groupby(["filer_name", "bioguide_id"], as_index=False)["strength"].max()

    rows = filers[["filer_name", "chamber", "state"]].drop_duplicates()
    c = rows.merge(candidates, on="filer_name").merge(
        people, on="bioguide_id", suffixes=("", "_leg"))
    c = c[c["state"].isna() | (c["state"] == c["leg_state"])]
    c["chamber_match"] = (c["chamber"] == c["chamber_leg"]).astype(int)
    rank_cols = ["chamber_match", "strength", "file_rank"]
    c = c.sort_values(rank_cols, ascending=[False, False, True])
    key = ["filer_name", "chamber", "state"]
    top = c.groupby(key, dropna=False).head(1)[key + rank_cols]
    best = c.merge(top, on=key + rank_cols)
    unique = best.groupby(key, dropna=False)["bioguide_id"].transform("nunique") == 1
    chosen = best[unique].drop_duplicates(key)[key + ["bioguide_id"]]
    matched = filers[key].merge(chosen, on=key, how="left")
    return pd.Series(_none_where_missing(matched["bioguide_id"]).values, index=filers.index, dtype=object)


def attach_politicians(
    disclosures: pd.DataFrame, legislators: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fill politician_id (= bioguide_id), party and state; return the politicians met.

    Unmatched filers keep politician_id/party None (and the state of their district).
    """
    out = disclosures.copy()
    bioguide = match_filers(out, legislators)
    people = legislators.set_index("bioguide_id")
    party = bioguide.map(people["party"].map(PARTIES))
    leg_state = bioguide.map(people["state"])
    out["politician_id"] = bioguide
    out["party"] = _none_where_missing(party)
    state = out["state"].where(out["state"].notna(), leg_state)
    out["state"] = _none_where_missing(state)

    met = out[out["politician_id"].notna()].sort_values("disclosure_date")
    latest = met.drop_duplicates("politician_id", keep="last").set_index("politician_id")
    ids = latest.index
    p = people.loc[ids]
    politicians = pd.DataFrame({
        "politician_id": ids,
        "full_name": p["full_name"].where(
            p["full_name"] != "", p["first_name"] + " " + p["last_name"]).values,
        "first_name": p["first_name"].values,
        "last_name": p["last_name"].values,
        "party": latest["party"].values,
        "chamber": latest["chamber"].values,
        "state": p["state"].values,
        "bioguide_id": ids,
        "source": "congress_legislators",
    })
    return out[frames.DISCLOSURE_COLUMNS], politicians[frames.POLITICIAN_COLUMNS].reset_index(drop=True)


# --- prices ------------------------------------------------------------------------------

PRICE_VALUE_COLUMNS = ["open", "high", "low", "close", "adj_close"]
#: Price dates: the daily files start in 2010; one before 1990 or after `today` is a typo.
MIN_PRICE_YEAR = 1990


@dataclass
class PriceParseResult:
    prices: pd.DataFrame  # PRICE_COLUMNS, every one storable and positive
    rejects: pd.DataFrame  # PRICE_REJECT_COLUMNS
    rows_read: int


def parse_prices(raw: pd.DataFrame, today=None, written_through: pd.Series | None = None) -> PriceParseResult:
    """Long-format price rows (text or numbers) -> storable prices + quarantined rows with a reason.

    A row is rejected without a ticker, with a date that does not parse or lies before MIN_PRICE_YEAR
    or after `today`, without close or adj_close, with any price that is not a positive finite
    number (open/high/low may be missing), or with a negative or non-finite volume.

    `written_through` (ticker -> date) skips, unread, the rows of a ticker dated on or before its
    date: rows an earlier ingest of the same source content has already taken (store.price_watermarks).
    Rows whose ticker or date does not parse are always read, so they are always quarantined.
    """
    missing = [c for c in frames.PRICE_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"price rows are missing columns {missing}")
    raw = raw[frames.PRICE_COLUMNS]
    if written_through is not None and len(written_through) and len(raw):
        codes, tickers = pd.factorize(_price_ticker(raw))  # a missing ticker: code -1, never skipped
        through = np.append(written_through.reindex(tickers).to_numpy(dtype="datetime64[ns]"), np.datetime64("NaT"))
        raw = raw[~(_price_date(raw).to_numpy() <= through[codes])]
    # float64, integer and datetime columns are read as they are: their text would read back to the
    # same values (float32's would not), and turning millions of numbers into strings was most of
    # a price ingest. Rejected rows keep their text form, so their row hashes do not change.
    typed = {c for c in frames.PRICE_COLUMNS[2:]
             if isinstance(raw[c].dtype, np.dtype) and (raw[c].dtype == np.float64 or raw[c].dtype.kind in "iu")}
    typed |= {"date"} if pd.api.types.is_datetime64_any_dtype(raw["date"]) else set()
    text = _strings(raw[[c for c in frames.PRICE_COLUMNS if c not in typed]])
    ticker = normalize_ticker(text["ticker"])
    date = _price_date(raw, text.get("date"))
    values = {c: raw[c].astype("float64") if c in typed else _numbers(text[c].str.strip())
              for c in frames.PRICE_COLUMNS[2:]}
    given = {c: raw[c].notna() if c in typed else text[c].str.strip().ne("") for c in frames.PRICE_COLUMNS[2:]}

    def bad(column: str) -> pd.Series:  # given but not a positive finite number
        value = values[column]
        return given[column] & ~(np.isfinite(value) & (value > 0))

    volume = values["volume"]
    checks = [
        (_cell_defects(text), None),
        (ticker.fillna("").str.len() > policy.MAX_TICKER_CHARS, RejectReason.FIELD_TOO_LONG),
        (ticker.isna(), RejectReason.TICKER),
        (date.isna() | (date.dt.year < MIN_PRICE_YEAR) | (date > _day(today)), RejectReason.PRICE_DATE),
        (~given["close"] | ~given["adj_close"], RejectReason.MISSING_PRICE),
        (pd.concat([bad(c) for c in PRICE_VALUE_COLUMNS], axis=1).any(axis=1), RejectReason.NON_POSITIVE_PRICE),
        (given["volume"] & ~(np.isfinite(volume) & (volume >= 0)), RejectReason.NEGATIVE_VOLUME),
    ]
    reason = pd.Series(None, index=text.index, dtype="object")
    for mask, why in checks:
        reason = reason.where(reason.notna(), mask) if why is None else reason.mask(reason.isna() & mask, str(why))
    rejected = reason.notna()
    prices = pd.DataFrame({"ticker": ticker, "date": date.astype("datetime64[ns]"), **values})[~rejected]
    raw_rows = _strings(raw[rejected]).to_dict(orient="records")
    rejects = pd.DataFrame({
        "row_hash": [row_hash("prices", r) for r in raw_rows],
        "raw_row": [storable_raw_row(r) for r in raw_rows],
        "reason": reason[rejected].to_numpy(),
    }, columns=frames.PRICE_REJECT_COLUMNS)
    return PriceParseResult(
        prices=prices[frames.PRICE_COLUMNS].reset_index(drop=True),
        rejects=rejects.drop_duplicates("row_hash").reset_index(drop=True),
        rows_read=len(raw),
    )


def _price_ticker(raw: pd.DataFrame) -> pd.Series:
    return normalize_ticker(_strings(raw[["ticker"]])["ticker"])


def _price_date(raw: pd.DataFrame, text: pd.Series | None = None) -> pd.Series:
    """The calendar day of each row's date (NaT where it does not parse); `text`: the column as text."""
    if pd.api.types.is_datetime64_any_dtype(raw["date"]):
        return _calendar_day(raw["date"])
    text = _strings(raw[["date"]])["date"] if text is None else text
    return pd.to_datetime(text.str.strip().str[:10], format="%Y-%m-%d", errors="coerce").dt.normalize()


def _calendar_day(dates: pd.Series) -> pd.Series:
    """The local calendar day of datetime values (what their text's first 10 characters say)."""
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    return dates.dt.normalize()


def _numbers(text: pd.Series) -> pd.Series:
    """Floats of the text, NaN where empty or not a number (Arrow's cast first: 10x faster than to_numeric)."""
    import pyarrow as pa

    try:
        return text.mask(text == "").astype("float64")
    except (ValueError, TypeError, pa.ArrowInvalid):
        return pd.to_numeric(text, errors="coerce").astype(float)


def parse_price_file(path: str | Path, today=None) -> PriceParseResult:
    """A long-format price file (CSV, .csv.gz or Parquet) -> `parse_prices` of its rows.

    SourceFileError when the file cannot be read or lacks a PRICE_COLUMNS column."""
    path = Path(path)
    if path.name.lower().endswith((".parquet", ".pq")):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            present = set(pq.read_schema(path).names)
            _require_price_columns(present, path)
            raw = pd.read_parquet(path, columns=frames.PRICE_COLUMNS)
        except (OSError, pa.ArrowException) as error:
            raise SourceFileError(path, f"is not a readable Parquet file ({error})") from None
    else:
        raw = _price_csv(path, _read_text(path))
    return parse_prices(raw, today=today)


def _price_csv(path: Path, text: str) -> pd.DataFrame:
    """A price CSV's PRICE_COLUMNS as strings, by Arrow's reader (a million rows in a second; the
    csv module takes ten). One record per line: a ragged row or an unbalanced quote is refused."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    header = _csv_header(path, text)
    _require_price_columns(set(header), path)
    try:
        table = pa_csv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            convert_options=pa_csv.ConvertOptions(
                column_types={c: pa.string() for c in header}, include_columns=frames.PRICE_COLUMNS,
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as error:
        raise SourceFileError(path, f"malformed CSV (a ragged row or an unbalanced quote): {error}") from None
    return table.to_pandas()


def read_price_file(path: str | Path, today=None) -> pd.DataFrame:
    """The storable prices of a price file (PRICE_COLUMNS, tickers normalized); see parse_price_file."""
    return parse_price_file(path, today=today).prices


def _require_price_columns(present: set[str], path: Path) -> None:
    missing = [c for c in frames.PRICE_COLUMNS if c not in present]
    if missing:
        raise SourceFileError(path, f"price file is missing columns {missing}")
