"""The project's Definitions bound to a test database and small synthetic data."""

import dagster as dg

from feedback_loop.definitions import defs as project_defs
from feedback_loop.defs.io import ParquetJsonIOManager
from feedback_loop.defs.resources import (
    DatabaseResource,
    DisclosureSourceResource,
    PriceSourceResource,
)

SCALE = "1500,60,1.5"  # synthetic data 2023-01-02 .. 2024-07-02
SYNTHETIC_SEED = 3


def definitions_for(db_url: str, tmp_path, loaded: dg.Definitions | None = None) -> dg.Definitions:
    loaded = loaded or project_defs()
    return dg.Definitions(
        assets=list(loaded.assets), asset_checks=list(loaded.asset_checks or []), jobs=list(loaded.jobs),
        schedules=list(loaded.schedules), sensors=list(loaded.sensors),
        resources={
            "database": DatabaseResource(url=db_url),
            "disclosure_source": DisclosureSourceResource(kind="synthetic", synthetic_seed=SYNTHETIC_SEED, synthetic_scale=SCALE),
            "price_source": PriceSourceResource(kind="synthetic", synthetic_seed=SYNTHETIC_SEED, synthetic_scale=SCALE),
            "io_manager": ParquetJsonIOManager(base_dir=str(tmp_path / "io")),
        },
    )
