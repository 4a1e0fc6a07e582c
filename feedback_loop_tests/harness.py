"""The project's Definitions bound to a test database and small synthetic data."""

import dagster as dg
import numpy as np
import pandas as pd

from feedback_loop.definitions import defs as project_defs
from feedback_loop.defs.io import ParquetJsonIOManager
from feedback_loop.defs.resources import (
    DatabaseResource,
    DisclosureSourceResource,
    PriceSourceResource,
)
from feedback_loop.lib.signals.features import FEATURE_NAMES
from feedback_loop.lib.training.config import Hyperparameters, TrainingConfig
from feedback_loop.lib.training.labels import LABELED_COLUMNS, label_from_return
from feedback_loop.lib.training.model import train_challenger

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


def small_model(first_day: str, last_day: str, as_of: pd.Timestamp):
    """A small XGBoost model over the real feature names whose calls follow the first feature
    (so they differ from the heuristic's), and its labeled training frame."""
    rng = np.random.default_rng(0)
    n = 300
    t0 = pd.Series(np.sort(rng.choice(pd.bdate_range(first_day, last_day), n)))
    frame = pd.DataFrame({"ticker": rng.choice(["AAA", "BBB"], n), "t0": t0, "t1": t0 + pd.Timedelta(days=28)})
    x = rng.normal(size=(n, len(FEATURE_NAMES)))
    frame[FEATURE_NAMES] = x
    forward = 3 * x[:, 0] + rng.normal(size=n)
    frame = frame.assign(forward_return_pct=forward, label=label_from_return(forward, TrainingConfig()),
                         source="market", weight=1.0)[LABELED_COLUMNS]
    config = TrainingConfig(hyperparameters=Hyperparameters(n_estimators=5, max_depth=2))
    return train_challenger(frame, config, as_of, validate=False), frame
