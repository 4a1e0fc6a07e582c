"""Resources: the database and the data sources, configured from environment variables.

FEEDBACK_LOOP_SOURCE            synthetic (default) | files
FEEDBACK_LOOP_DISCLOSURE_FILES  House/Senate stock-watcher files, separated by ':'
FEEDBACK_LOOP_LEGISLATOR_FILES  congress-legislators CSVs, separated by ':'
FEEDBACK_LOOP_PRICE_SOURCE      synthetic (default) | files | yfinance
FEEDBACK_LOOP_PRICE_FILE        long-format daily prices (CSV or Parquet)
FEEDBACK_LOOP_SYNTHETIC_SEED    seed of the synthetic demo data (default 7)
FEEDBACK_LOOP_SYNTHETIC_SCALE   synthetic size as "disclosures,tickers,years[,start date]" (default: the demo's 2 years)
"""


import os
from functools import lru_cache
from pathlib import Path

import dagster as dg
import pydantic
import sqlalchemy as sa

from feedback_loop.lib.frames import DisclosureBatch, DisclosureSource, PriceSource
from feedback_loop.lib.store import db


def _paths(env_name: str) -> list[str]:
    return [p for p in os.environ.get(env_name, "").split(os.pathsep) if p]


def synthetic_config(seed: int, scale: str):
    """The synthetic data's config: the demo default, or a "disclosures,tickers,years[,start]" scale."""
    import pandas as pd

    from feedback_loop.lib.ingest.synthetic import SyntheticConfig

    if not scale:
        return SyntheticConfig(seed=seed)
    disclosures, tickers, years, *start = scale.split(",")
    extra = {"start": pd.Timestamp(start[0])} if start else {}
    return SyntheticConfig.scale(int(disclosures), int(tickers), float(years), seed=seed, **extra)


class DatabaseResource(dg.ConfigurableResource):
    """The application database (FEEDBACK_LOOP_DATABASE_URL, else the project's local cluster)."""

    url: str = ""

    def get_engine(self) -> sa.Engine:
        return _migrated_engine(self.url or db.app_database_url())


@lru_cache(maxsize=8)
def _migrated_engine(url: str) -> sa.Engine:
    engine = db.engine_for(url)
    db.migrate(engine)
    return engine


class DisclosureSourceResource(dg.ConfigurableResource):
    """Where disclosures and politicians come from: the synthetic demo or stock-watcher files."""

    kind: str = "synthetic"
    disclosure_files: list[str] = pydantic.Field(default_factory=list)
    legislator_files: list[str] = pydantic.Field(default_factory=list)
    synthetic_seed: int = 7
    synthetic_scale: str = ""

    @classmethod
    def from_env(cls) -> "DisclosureSourceResource":
        return cls(
            kind=os.environ.get("FEEDBACK_LOOP_SOURCE", "synthetic"),
            disclosure_files=_paths("FEEDBACK_LOOP_DISCLOSURE_FILES"),
            legislator_files=_paths("FEEDBACK_LOOP_LEGISLATOR_FILES"),
            synthetic_seed=int(os.environ.get("FEEDBACK_LOOP_SYNTHETIC_SEED", "7")),
            synthetic_scale=os.environ.get("FEEDBACK_LOOP_SYNTHETIC_SCALE", ""),
        )

    def load(self) -> DisclosureBatch:
        """The source's batch, parsed once per process (politicians and disclosures share it)."""
        return _load_disclosures(self.kind, tuple(self.disclosure_files), tuple(self.legislator_files),
                                 self.synthetic_seed, self.synthetic_scale)

    def get_source(self) -> DisclosureSource:
        if self.kind == "synthetic":
            from feedback_loop.lib.ingest.synthetic import SyntheticDisclosureSource

            return SyntheticDisclosureSource(synthetic_config(self.synthetic_seed, self.synthetic_scale))
        if self.kind == "files":
            from feedback_loop.lib.ingest.sources import FileDisclosureSource

            if not self.disclosure_files:
                raise dg.Failure("FEEDBACK_LOOP_SOURCE=files needs FEEDBACK_LOOP_DISCLOSURE_FILES")
            return FileDisclosureSource(
                [Path(p) for p in self.disclosure_files], [Path(p) for p in self.legislator_files]
            )
        raise dg.Failure(f"unknown disclosure source kind {self.kind!r} (synthetic | files)")


@lru_cache(maxsize=4)
def _load_disclosures(kind: str, disclosure_files: tuple, legislator_files: tuple, seed: int,
                      scale: str) -> DisclosureBatch:
    resource = DisclosureSourceResource(kind=kind, disclosure_files=list(disclosure_files),
                                        legislator_files=list(legislator_files), synthetic_seed=seed,
                                        synthetic_scale=scale)
    return resource.get_source().load_disclosures()


class PriceSourceResource(dg.ConfigurableResource):
    """Where daily prices come from: the synthetic demo, a price file, or yfinance."""

    kind: str = "synthetic"
    price_file: str = ""
    synthetic_seed: int = 7
    synthetic_scale: str = ""
    yfinance_start: str = "2012-01-01"

    @classmethod
    def from_env(cls) -> "PriceSourceResource":
        return cls(
            kind=os.environ.get("FEEDBACK_LOOP_PRICE_SOURCE", os.environ.get("FEEDBACK_LOOP_SOURCE", "synthetic")),
            price_file=os.environ.get("FEEDBACK_LOOP_PRICE_FILE", ""),
            synthetic_seed=int(os.environ.get("FEEDBACK_LOOP_SYNTHETIC_SEED", "7")),
            synthetic_scale=os.environ.get("FEEDBACK_LOOP_SYNTHETIC_SCALE", ""),
        )

    def get_source(self) -> PriceSource:
        if self.kind == "synthetic":
            from feedback_loop.lib.ingest.synthetic import SyntheticPriceSource

            return SyntheticPriceSource(synthetic_config(self.synthetic_seed, self.synthetic_scale))
        if self.kind == "files":
            from feedback_loop.lib.ingest.sources import FilePriceSource

            if not self.price_file:
                raise dg.Failure("FEEDBACK_LOOP_PRICE_SOURCE=files needs FEEDBACK_LOOP_PRICE_FILE")
            return FilePriceSource(Path(self.price_file))
        if self.kind == "yfinance":
            import pandas as pd

            from feedback_loop.lib.ingest.sources import YFinancePriceSource

            return YFinancePriceSource([], start=self.yfinance_start, end=pd.Timestamp.today().normalize())
        raise dg.Failure(f"unknown price source kind {self.kind!r} (synthetic | files | yfinance)")

    def last_market_day(self):
        """The last date the source has a SPY price for (None when it has none)."""
        from feedback_loop.lib.frames import MARKET_TICKER

        dates = self.get_source().load_prices([MARKET_TICKER])["date"]
        return dates.max() if len(dates) else None


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={
        "database": DatabaseResource(),
        "disclosure_source": DisclosureSourceResource.from_env(),
        "price_source": PriceSourceResource.from_env(),
    })
