"""Values passed between training assets: DataFrames as Parquet, dicts as JSON (never pickle)."""


import json
from pathlib import Path

import dagster as dg
import pandas as pd

from feedback_loop.lib.store import db


class ParquetJsonIOManager(dg.ConfigurableIOManager):
    base_dir: str = ""

    def _path(self, context, suffix: str) -> Path:
        root = Path(self.base_dir) if self.base_dir else db.state_dir() / "assets"
        path = root.joinpath(*context.asset_key.path).with_suffix(suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if isinstance(obj, pd.DataFrame):
            obj.to_parquet(self._path(context, ".parquet"), index=False)
        else:
            self._path(context, ".json").write_text(json.dumps(obj, default=str, indent=1))

    def load_input(self, context: dg.InputContext):
        parquet = self._path(context.upstream_output, ".parquet")
        if parquet.exists():
            return pd.read_parquet(parquet)
        return json.loads(self._path(context.upstream_output, ".json").read_text())


@dg.definitions
def io_managers() -> dg.Definitions:
    return dg.Definitions(resources={"io_manager": ParquetJsonIOManager()})
