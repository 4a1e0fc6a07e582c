"""A re-run replaces the day: after a serving fallback (or a restore) and a re-run, every daily table
holds exactly what one clean run of the same days wrote, row for row.

Eleven weeks of heuristic history are written from the engine; a champion is promoted for DAY. One
database runs DAY twice (the champion's artifact broken in one run, intact in the other), the
other runs it once with the artifact as the re-run had it; both then run NEXT_DAY, whose open
fills DAY's queued signals.
"""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.defs import loop
from feedback_loop.defs.monitoring import feature_drift
from feedback_loop.defs.resources import DatabaseResource
from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.ingest.synthetic import SyntheticConfig, generate
from feedback_loop.lib.loop.engine import HEURISTIC_ARM, LoopData, LoopEngine
from feedback_loop.lib.loop.history import persist_history
from feedback_loop.lib.models import registry
from feedback_loop.lib.models import store as model_store
from feedback_loop.lib.training.artifact import BOOSTER_FILE

# Positions the history opens on 2024-03-21 reach the 20-trading-day timeout on DAY.
HISTORY_START, HISTORY_END = "2024-02-01", "2024-04-16"
DAY, NEXT_DAY = "2024-04-17", "2024-04-18"
DAILY_ASSETS = [loop.ticker_features, loop.heuristic_signals, loop.trading_signals, loop.portfolio_positions,
                loop.signal_outcomes, loop.portfolio_performance, feature_drift]
#: Every table a daily asset writes, with its sort key; wall-clock and surrogate columns are not compared.
DAILY_TABLES = {
    "ticker_features": "as_of, ticker", "heuristic_signals": "as_of, ticker", "trading_signals": "signal_id",
    "ml_predictions": "signal_id, model_id", "portfolio_positions": "position_id", "portfolio_equity": "date",
    "signal_outcomes": "position_id", "shadow_outcomes": "signal_id", "model_performance_history": "as_of, scope",
    "drift_reports": "as_of, model_id",
}
#: The tables whose rows of DAY depend on the model served.
SERVED_TABLES = ["trading_signals", "ml_predictions", "heuristic_signals"]
WALL_CLOCK = {"created_at", "updated_at", "latency_ms", "prediction_id"}
from feedback_loop_tests.harness import small_model


@pytest.fixture(scope="module")
def data():
    ds = generate(SyntheticConfig.scale(1500, 60, 1.5, seed=3))
    history = LoopEngine(LoopData(ds.disclosures, ds.prices, ds.sectors, ds.politicians), HEURISTIC_ARM,
                         start=HISTORY_START, end=HISTORY_END).run()
    return ds, history, _champion_model()


def _champion_model():
    return small_model("2023-01-02", "2024-01-31", pd.Timestamp("2024-03-01"))


class Loop:
    """One database with the history written and the champion promoted for DAY."""

    def __init__(self, url: str, data, root: Path, instance: dg.DagsterInstance):
        ds, history, (model, training_frame) = data
        self.engine, self.url, self.instance = sa.create_engine(url), url, instance
        with self.engine.begin() as conn:
            ingest.write_politicians(conn, ds.politicians)
            ingest.write_disclosures(conn, ds.disclosures)
            ingest.write_prices(conn, ds.prices[ds.prices["date"] <= NEXT_DAY])
            ingest.write_sectors(conn, ds.sectors)
        persist_history(self.engine, history, root / "history")
        with self.engine.begin() as conn:
            record = model_store.store_model(conn, model, model_id="champ", trigger="manual",
                                             training_frame=training_frame, artifact_root=root / "models")
        registry.promote(self.engine, "champ", as_of=HISTORY_END, trigger="manual", reason="test champion")
        self.booster = Path(record.artifact_path) / BOOSTER_FILE
        self.intact = self.booster.read_bytes()

    def run(self, day: str, *, artifact_ok: bool) -> None:
        self.booster.write_bytes(self.intact if artifact_ok else self.intact + b"\0")
        result = dg.materialize(DAILY_ASSETS, partition_key=day, instance=self.instance,
                                resources={"database": DatabaseResource(url=self.url)})
        assert result.success

    def table(self, name: str) -> pd.DataFrame:
        with self.engine.connect() as conn:
            frame = pd.read_sql(sa.text(f"SELECT * FROM {name} ORDER BY {DAILY_TABLES[name]}"), conn)
        frame = frame.drop(columns=[c for c in frame.columns if c in WALL_CLOCK])
        # JSON columns come back as dicts; compare them as text.
        return frame.apply(lambda col: col.map(repr) if col.map(lambda v: isinstance(v, (dict, list))).any() else col)

    def rows_of_day(self, name: str) -> pd.DataFrame:
        frame = self.table(name)
        return frame[frame["as_of"] == pd.Timestamp(DAY).date()].reset_index(drop=True)

    def count(self, sql: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), {"d": DAY, "n": NEXT_DAY}).scalar()


@pytest.mark.slow
@pytest.mark.parametrize("first_artifact_ok", [False, True], ids=["fallback_then_restored", "served_then_fallback"])
def test_a_rerun_after_a_serving_change_leaves_the_tables_of_one_clean_run(
        data, db_url, second_db_url, tmp_path, first_artifact_ok):
    with dg.instance_for_test() as instance:
        rerun = Loop(db_url, data, tmp_path / "rerun", instance)
        clean = Loop(second_db_url, data, tmp_path / "clean", instance)
        final_ok = not first_artifact_ok

        rerun.run(DAY, artifact_ok=first_artifact_ok)
        first_run = {name: rerun.rows_of_day(name) for name in SERVED_TABLES}
        rerun.run(DAY, artifact_ok=final_ok)
        clean.run(DAY, artifact_ok=final_ok)
        for db in (rerun, clean):
            db.run(NEXT_DAY, artifact_ok=True)

    served = "champion" if final_ok else "heuristic_fallback"
    assert clean.count(f"SELECT count(*) FROM trading_signals WHERE as_of = :d AND serving_path <> '{served}'") == 0
    assert any(not first_run[name].equals(clean.rows_of_day(name)) for name in SERVED_TABLES), \
        "the first run of DAY wrote what the re-run writes: nothing was tested"
    for name in DAILY_TABLES:
        pd.testing.assert_frame_equal(rerun.table(name), clean.table(name), obj=name)
    if not final_ok:  # the champion's calls queue nothing on DAY; the heuristic's fill at NEXT_DAY's open
        assert clean.count("SELECT count(*) FROM portfolio_positions WHERE entry_date = :n") > 0
    assert clean.count("SELECT count(*) FROM signal_outcomes WHERE exit_date IN (:d, :n)") > 0, "nothing closed"
    for db in (rerun, clean):
        db.engine.dispose()
