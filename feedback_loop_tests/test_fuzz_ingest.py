"""Fuzzed House/Senate files through the ingest path (FileDisclosureSource + ingest writes) into Postgres.

Seeded: the same rows every run. Row mutations must be quarantined or accepted, never crash, and
every row must be accounted for; whole-file defects must raise one SourceFileError and write nothing.
Run with -s to see the figures.
"""

from __future__ import annotations

import gzip
import json
import random
import re

import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.lib import frames
from feedback_loop.lib.ingest import parsing
from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.ingest.sources import FileDisclosureSource
from feedback_loop.lib.vocab import DISCLOSURE_REJECT_REASONS
from feedback_loop_tests.test_parsing import HOUSE_BASE, LEGISLATORS, SENATE_BASE, house

SEED = 20240612
ROWS_PER_FILE = 3000
TODAY = pd.Timestamp("2021-06-30")
FILERS = ["Hon. Virginia Foxx", "A. Mitchell Mcconnell, Jr.", "Hon. Nobody Known", "Tommy Tuberville",
          "Hon. José Sánchez", "Rick Scott"]
TICKERS = ["AAPL", "BRK.B", "--", "", "msft", "SPY160219P00180000", "BAC$K", "TDDXX", "N/A"]
AMOUNTS = ["$1,001 - $15,000", "$15,001 - $50,000", "Over $50,000,000", "$1,000,000 +", "$1,001 -", "Unknown"]
BAD_DATES = ["-2020-02-24", "2199-01-01", "0009-06-09", "2020-02-30", "", "soon", "99999-01-01", "13/45/2020",
             "2020-02-24T00:00:00", "1/1/1970", "12/31/2099", "2020-1-2", " 2020-02-24 "]
JUNK_AMOUNTS = ["$-5 - $10", "$1e400 - $2e400", "$" + "9" * 400 + " - $" + "9" * 401, "lots", "$1,001 - $15,000 - $1",
                "$15,000 - $1,001", "\u0661\u0662 - \u0663"]
CONTROL = ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x0b"]
UNICODE = ["Müller", "東京", "🚀", "e\u0301", "\u202eevil", "\ufeffBOM", "Ωmega", "\u00a0nbsp"]


def _house_row(rng: random.Random) -> dict:
    traded = pd.Timestamp("2019-06-01") + pd.Timedelta(days=rng.randrange(500))
    filed = traded + pd.Timedelta(days=rng.randrange(60))
    return {**HOUSE_BASE, "transaction_date": traded.strftime("%Y-%m-%d"), "disclosure_date": filed.strftime("%m/%d/%Y"),
            "ticker": rng.choice(TICKERS), "amount": rng.choice(AMOUNTS), "representative": rng.choice(FILERS),
            "type": rng.choice(["purchase", "sale_full", "sale_partial", "exchange", "gift"]),
            "owner": rng.choice(["joint", "self", "spouse", "--", ""]), "ptr_link": f"https://example/{rng.randrange(10**6)}.pdf"}


def _senate_row(rng: random.Random) -> dict:
    traded = pd.Timestamp("2014-01-01") + pd.Timedelta(days=rng.randrange(2000))
    filed = traded + pd.Timedelta(days=rng.randrange(60))
    return {**SENATE_BASE, "transaction_date": f"{traded.month}/{traded.day}/{traded.year}",
            "disclosure_date": filed.strftime("%m/%d/%Y"), "ticker": rng.choice(TICKERS), "amount": rng.choice(AMOUNTS),
            "senator": rng.choice(FILERS), "asset_type": rng.choice(["Stock", "Corporate Bond", "Other Securities", ""]),
            "type": rng.choice(["Purchase", "Sale (Full)", "Sale (Partial)", "Exchange", "Gift"]),
            "ptr_link": f"https://example/ptr/{rng.randrange(10**6)}/"}


def _mutate(rng: random.Random, row: dict, as_json: bool) -> dict:
    """One random defect (or none) in `row`; JSON rows also get missing keys, wrong types, lone surrogates."""
    row = dict(row)
    key = rng.choice([k for k in row if k != "_duplicate_count"])
    kind = rng.randrange(12 if as_json else 9)
    if kind == 0:
        at = rng.randrange(len(row[key]) + 1)
        row[key] = row[key][:at] + rng.choice(CONTROL) + row[key][at:]
    elif kind == 1:
        row[key] = rng.choice("AX\u00e9") * rng.choice([17, 25, 300, 2001, 3000])
    elif kind == 2:
        row[rng.choice(["transaction_date", "disclosure_date"])] = rng.choice(BAD_DATES)
    elif kind == 3:
        row["amount"] = rng.choice(JUNK_AMOUNTS)
    elif kind == 4:
        row[key] = rng.choice(UNICODE) + row[key]
    elif kind == 5:  # free text with line breaks and tabs (no delimiter after a break: CSV-safe)
        row["asset_description"] = row["asset_description"].replace(" ", rng.choice(["\n", "\t", "\r\n"]), 1)
    elif kind == 6:
        row["disclosure_date"], row["transaction_date"] = row["transaction_date"], row["disclosure_date"]
    elif kind == 9:
        del row[key]
    elif kind == 10:
        row[key] = rng.choice([None, 12345, 1.5, True, ["AAPL"], {"a": 1}])
    elif kind == 11:
        row[key] = row[key] + "\ud800"
    return row  # kinds 7, 8: unchanged


def _rows(rng: random.Random, make, as_json: bool) -> list[dict]:
    rows: list[dict] = []
    while len(rows) < ROWS_PER_FILE:
        if rows and rng.random() < 0.08:
            rows.append(rng.choice(rows))  # duplicate line within the file
        else:
            rows.append(_mutate(rng, make(rng), as_json))
    return rows


def _write(path, rows: list[dict]) -> None:
    if path.name.endswith((".json", ".json.gz")):
        text = json.dumps(rows)  # ensure_ascii: lone surrogates travel as \ud800 escapes
        path.write_bytes(gzip.compress(text.encode()) if path.name.endswith(".gz") else text.encode())
    else:
        frame = pd.DataFrame(rows)
        with (gzip.open(path, "wt", encoding="utf-8", newline="") if path.name.endswith(".gz")
              else open(path, "w", encoding="utf-8", newline="")) as handle:
            frame.to_csv(handle, index=False)


def _counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ["politicians", "disclosures", "disclosure_rejects"]}


@pytest.fixture
def legislators(tmp_path):
    path = tmp_path / "legislators.csv"
    LEGISLATORS.drop(columns="file_rank").to_csv(path, index=False)
    return path


def test_fuzzed_rows_are_all_accounted_for_and_read_back_as_parsed(engine, tmp_path, legislators):
    rng = random.Random(SEED)
    files = {"house.csv": (_house_row, False), "house.json": (_house_row, True),
             "senate.csv.gz": (_senate_row, False), "senate.json.gz": (_senate_row, True)}
    written: dict[str, int] = {}
    paths = []
    previous: dict[str, list[dict]] = {}
    for name, (make, as_json) in files.items():
        rows = _rows(rng, make, as_json)
        source = name.split(".")[0]
        if source in previous:  # overlapping dumps: the second file repeats a tenth of the first
            rows += rng.sample(previous[source], ROWS_PER_FILE // 10)
        previous[source] = rows
        _write(tmp_path / name, rows)
        written[source] = written.get(source, 0) + len(rows)
        paths.append(tmp_path / name)

    batch = FileDisclosureSource(paths, [legislators], today=TODAY).load_disclosures()
    with engine.begin() as conn:
        ingest.write_batch(conn, batch)
    with engine.connect() as conn:
        back = ingest.read_disclosures(conn)
        rejects_back = ingest.read_rejects(conn)

    figures = {s: vars(stats) for s, stats in batch.stats.items()}
    print(f"\nfuzz: rows fuzzed={sum(written.values())} per source {figures}; "
          f"rejects by reason {batch.rejects['reason'].value_counts().to_dict()}")
    for source, stats in batch.stats.items():
        assert stats.rows_read == written[source], source
        assert stats.accepted == (batch.disclosures["source"] == source).sum()
        assert stats.rejected == (batch.rejects["source"] == source).sum()
        assert stats.balanced(), (source, stats)
        assert stats.accepted > 0 and stats.rejected > 0 and stats.duplicates_collapsed > 0, (source, stats)
    assert set(batch.rejects["reason"]) <= set(map(str, DISCLOSURE_REJECT_REASONS))
    assert len(set(batch.rejects["reason"])) >= 10
    # What was parsed is what is stored, value for value.
    expected = batch.disclosures.sort_values("disclosure_id").reset_index(drop=True)
    got = back.sort_values("disclosure_id").reset_index(drop=True)
    assert len(got) == len(expected) == sum(s.accepted for s in batch.stats.values())
    for column in frames.DISCLOSURE_COLUMNS:
        assert got[column].astype(object).where(got[column].notna(), None).tolist() == \
            expected[column].astype(object).where(expected[column].notna(), None).tolist(), column
    def as_json(row):
        return json.dumps(row, sort_keys=True)

    assert sorted(map(as_json, rejects_back["raw_row"])) == sorted(map(as_json, batch.rejects["raw_row"]))
    assert rejects_back["reason"].str.len().gt(0).all()
    # The same files again: nothing new in any table.
    counts = _counts(engine)
    with engine.begin() as conn:
        ingest.write_batch(conn, FileDisclosureSource(paths, [legislators], today=TODAY).load_disclosures())
    assert _counts(engine) == counts


def _good_csv() -> str:
    return house({}, {"ticker": "MSFT"}).to_csv(index=False)


GOOD = _good_csv()
HEADER, FIRST, SECOND = GOOD.splitlines()
WHOLE_FILE_DEFECTS = {
    "empty": ("house.csv", b"", "is empty"),
    "whitespace only": ("house.csv", b" \n\t\n ", "only whitespace"),
    "truncated gzip": ("house.csv.gz", gzip.compress(GOOD.encode())[:40], "truncated or invalid gzip"),
    "not gzip": ("house.csv.gz", GOOD.encode(), "truncated or invalid gzip"),
    "latin-1": ("house.csv", GOOD.replace("Foxx", "Sánchez").encode("latin-1"), "is not UTF-8"),
    "utf-16 without BOM": ("house.csv", GOOD.encode("utf-16-le"), "UTF-16 without a byte-order mark"),
    "missing column": ("house.csv", house({}).drop(columns="amount").to_csv(index=False).encode(), "missing columns ['amount']"),
    "duplicate header": ("house.csv", (HEADER + ",ticker\n" + FIRST + ",X\n").encode(), "duplicate header columns ['ticker']"),
    "short ragged row": ("house.csv", (GOOD + "a,b,c\n").encode(), "ragged row at line 4"),
    "long ragged row": ("house.csv", (GOOD + FIRST + ",extra\n").encode(), "ragged row at line 4"),
    "unbalanced quote": ("house.csv", (HEADER + "\n" + FIRST.replace("Bausch", '"Bausch', 1) + "\n" + SECOND + "\n"
                                       + FIRST.replace(",Bausch Health Companies Inc.,", ',"Bausch, Inc",') + "\n").encode(),
                         "unbalanced quote"),
    "unbalanced quote to the end": ("house.csv", (GOOD + FIRST.replace("Bausch", '"Bausch', 1) + "\n").encode(),
                                    "malformed CSV"),
    "neither chamber": ("house.csv", b"a,b\n1,2\n", "neither a House"),
    "invalid JSON": ("house.json", b'[{"ticker": "AAPL"', "invalid JSON at line 1"),
    "JSON not rows": ("house.json", b'{"ticker": ["AAPL"]}', "array of row objects"),
    "JSON duplicate key": ("house.json", json.dumps([HOUSE_BASE]).replace('"owner"', '"ticker": "X", "owner"').encode(),
                           "duplicate keys ['ticker']"),
}


@pytest.mark.parametrize("defect", list(WHOLE_FILE_DEFECTS))
def test_whole_file_defect_is_one_clear_error_and_writes_nothing(engine, tmp_path, legislators, defect):
    name, content, message = WHOLE_FILE_DEFECTS[defect]
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    with engine.begin() as conn:  # the previous day's data
        ingest.write_batch(conn, FileDisclosureSource([good], [legislators], today=TODAY).load_disclosures())
    before = _counts(engine)
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(parsing.SourceFileError, match=re.escape(message)) as raised:
        FileDisclosureSource([good, bad], [legislators], today=TODAY).load_disclosures()
    assert str(raised.value).startswith(str(bad)) and "\n" not in str(raised.value)
    assert _counts(engine) == before


def test_directory_or_missing_file_is_a_clear_error(tmp_path, legislators):
    (tmp_path / "house.csv").mkdir()
    with pytest.raises(parsing.SourceFileError, match="house.csv: is a directory"):
        FileDisclosureSource([tmp_path / "house.csv"], [legislators]).load_disclosures()
    with pytest.raises(parsing.SourceFileError, match="nope.csv: does not exist"):
        FileDisclosureSource([tmp_path / "nope.csv"], [legislators]).load_disclosures()


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_files_with_a_byte_order_mark_are_decoded_faithfully(tmp_path, encoding):
    path = tmp_path / "house.csv"
    path.write_bytes(GOOD.replace("Foxx", "Sánchez").encode(encoding))
    _, raw = parsing.read_disclosure_file(path)
    assert raw.columns[0] == "disclosure_year" and raw.loc[0, "representative"] == "Hon. Virginia Sánchez"

