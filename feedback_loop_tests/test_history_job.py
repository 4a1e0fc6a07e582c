"""The history run: a range of days stepped in one Dagster run, every day recorded as the daily
assets' materializations, retrains as the training assets', sensors' cursors where the daemon reads them."""

import json

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa
from dagster._core.definitions.run_request import InstigatorType

from feedback_loop.defs.automation import TRAINING_KEY_TAG
from feedback_loop.defs.history import refuse_foreign_history
from feedback_loop.lib import rules
from feedback_loop.lib.frames import MARKET_TICKER
from feedback_loop.lib.models import store as model_store
from feedback_loop_tests.harness import definitions_for, small_model

START, END = "2024-03-01", "2024-04-30"
INGEST = [dg.AssetKey(k) for k in ("politicians", "disclosures", "market_prices")]
DAILY_ASSETS = ("portfolio_positions", "signal_outcomes", "ticker_features", "heuristic_signals",
                "champion_in_service", "trading_signals", "portfolio_performance", "feature_drift")


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _materializations(instance, asset: str) -> list:
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=10_000, ascending=True).records
    return [r.asset_materialization for r in records]


@pytest.mark.slow
def test_history_run_records_every_day_in_date_order(db_url, tmp_path, instance):
    definitions = definitions_for(db_url, tmp_path)
    ingest = definitions.resolve_job_def("daily_loop_job").execute_in_process(
        instance=instance, partition_key=END, asset_selection=INGEST)
    assert ingest.success
    history = definitions.resolve_job_def("loop_history_job").execute_in_process(
        instance=instance, run_config={"ops": {"step_history_days": {"config": {"start": START, "end": END}}}})
    assert history.success

    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        days = [pd.Timestamp(d) for d in conn.execute(sa.text(
            "SELECT date FROM prices WHERE ticker = :t AND date BETWEEN :s AND :e ORDER BY date"),
            {"t": MARKET_TICKER, "s": START, "e": END}).scalars()]
        models = conn.execute(sa.text("SELECT count(*) FROM ml_models")).scalar()
        signal_days = conn.execute(sa.text("SELECT count(DISTINCT as_of) FROM trading_signals")).scalar()
    assert len(days) > 30 and signal_days > 0

    for asset in DAILY_ASSETS:
        partitions = [m.partition for m in _materializations(instance, asset)]
        # One materialization per trading day, recorded in date order.
        assert partitions == [f"{d:%Y-%m-%d}" for d in days], asset
    signals = _materializations(instance, "trading_signals")
    assert {"queued", "blend_weight", "serving_path", "by_status"} <= set(signals[-1].metadata)
    assert isinstance(signals[-1].metadata["by_status"], dg.TableMetadataValue)

    challengers = _materializations(instance, "challenger_model")
    assert len(challengers) == models >= 2
    assert len(_materializations(instance, "promotion_decision")) == models
    training_checks = [e for e in history.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert training_checks, "the training-set checks of every retrain are recorded"

    # The daemon's sensors start from the history's cursors: nothing the history asked for is asked again.
    states = {s.instigator_name: s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)}
    requested = set()
    for rule in rules.SENSOR_TRIGGERS:
        sensor = definitions.resolve_sensor_def(f"{rule}_sensor")
        state = states.get(sensor.name)
        cursor = state.instigator_data.cursor if state and state.instigator_data else None
        if cursor is not None:
            assert json.loads(cursor)["model_id"]
        data = sensor.evaluate_tick(dg.build_sensor_context(
            instance=instance, cursor=cursor, resources=definitions.resources, sensor_name=sensor.name,
            repository_def=definitions.get_repository_def()))
        requested |= {r.tags[TRAINING_KEY_TAG] for r in data.run_requests or []}
    assert len(requested) <= 1


def test_a_history_never_merges_into_another(engine, tmp_path):
    """A live champion (or a history of other dates) in the database: the history refuses before it runs."""
    model, frame = small_model("2023-06-01", "2023-12-29", pd.Timestamp("2024-02-29"))
    refuse_foreign_history(engine, pd.Timestamp("2024-03-01"), pd.Timestamp("2024-04-30"))  # empty: fine
    with engine.begin() as conn:
        model_store.store_model(conn, model, model_id=f"model-{model.version}", trigger="manual",
                                training_frame=frame, artifact_root=tmp_path)
    with pytest.raises(dg.Failure, match="fresh database"):
        refuse_foreign_history(engine, pd.Timestamp("2024-03-01"), pd.Timestamp("2024-04-30"))
