"""market_prices of an unchanged source reads only the rows after each ticker's watermark, and ends
with the same prices as an ingest of the whole source; a changed source or a write behind its
back makes the next run read everything again."""

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.defs.ingest import disclosures, market_prices, politicians
from feedback_loop.defs.resources import (
    DatabaseResource,
    DisclosureSourceResource,
    PriceSourceResource,
)
from feedback_loop.lib import frames
from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.ingest.synthetic import generate
from feedback_loop_tests.harness import SCALE, SYNTHETIC_SEED

FIRST_DAY, DAY = "2024-03-01", "2024-03-08"
SOURCE = {"synthetic_seed": SYNTHETIC_SEED, "synthetic_scale": SCALE}


@pytest.fixture(scope="module")
def source_prices() -> pd.DataFrame:
    from feedback_loop.defs.resources import synthetic_config

    return generate(synthetic_config(SYNTHETIC_SEED, SCALE)).prices


def _ingest(db_url: str, price_file, day: str) -> dict:
    """Materialize the ingest assets for `day` from `price_file`; market_prices' metadata."""
    result = dg.materialize(
        [politicians, disclosures, market_prices], partition_key=day,
        resources={"database": DatabaseResource(url=db_url),
                   "disclosure_source": DisclosureSourceResource(kind="synthetic", **SOURCE),
                   "price_source": PriceSourceResource(kind="files", price_file=str(price_file))})
    assert result.success
    return {k: v.value for k, v in result.asset_materializations_for_node("market_prices")[0].metadata.items()}


def _stored(db_url: str) -> pd.DataFrame:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        prices = ingest.read_prices(conn)
    engine.dispose()
    return prices


def _write(prices: pd.DataFrame, path) -> None:
    prices[frames.PRICE_COLUMNS].to_csv(path, index=False)


def test_an_unchanged_source_is_read_after_its_watermarks_only(db_url, second_db_url, tmp_path, source_prices):
    price_file = tmp_path / "prices.csv"
    _write(source_prices, price_file)

    first = _ingest(db_url, price_file, FIRST_DAY)
    assert first["tickers_read_after_watermark"] == 0
    assert first["rows_loaded"] == (source_prices["date"] <= FIRST_DAY).sum()
    second = _ingest(db_url, price_file, DAY)
    new_rows = source_prices["date"].between(pd.Timestamp(FIRST_DAY), pd.Timestamp(DAY), inclusive="right")
    assert second["tickers_read_after_watermark"] > 0
    assert second["rows_loaded"] == second["rows_written"] == new_rows.sum() > 0
    assert second["tickers_priced"] == first["tickers_priced"] and second["traded_tickers_without_price"] == 0

    # The same day straight from the whole source, in another database: the same prices.
    whole = _ingest(second_db_url, price_file, DAY)
    assert whole["rows_loaded"] == (source_prices["date"] <= DAY).sum()
    pd.testing.assert_frame_equal(_stored(db_url), _stored(second_db_url))
    # Re-running the day reads nothing new and writes nothing.
    again = _ingest(db_url, price_file, DAY)
    assert again["rows_loaded"] == again["rows_written"] == 0


def test_a_restated_source_is_read_whole_again(db_url, tmp_path, source_prices):
    price_file = tmp_path / "prices.csv"
    _write(source_prices, price_file)
    _ingest(db_url, price_file, DAY)
    restated = source_prices.copy()
    old = (restated["ticker"] == "SPY") & (restated["date"] == restated["date"].min())
    restated.loc[old, "adj_close"] *= 0.5
    _write(restated, price_file)

    rerun = _ingest(db_url, price_file, DAY)
    assert rerun["tickers_read_after_watermark"] == 0 and rerun["rows_loaded"] == (restated["date"] <= DAY).sum()
    stored = _stored(db_url)
    first_spy = stored[(stored["ticker"] == "SPY")].iloc[0]
    assert first_spy["adj_close"] == pytest.approx(restated.loc[old, "adj_close"].iloc[0])


def test_a_write_behind_the_ingest_makes_it_read_whole_again(db_url, tmp_path, source_prices):
    price_file = tmp_path / "prices.csv"
    _write(source_prices, price_file)
    _ingest(db_url, price_file, DAY)
    before = _stored(db_url)
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM prices WHERE ticker = 'SPY' AND date < :d"), {"d": FIRST_DAY})
        watermarks = conn.execute(sa.text("SELECT count(*) FROM ingest_watermarks")).scalar()
    engine.dispose()
    assert watermarks == 0

    rerun = _ingest(db_url, price_file, DAY)
    assert rerun["tickers_read_after_watermark"] == 0 and rerun["rows_written"] > 0
    pd.testing.assert_frame_equal(_stored(db_url), before)
