"""The Dagster jobs against a real Postgres: a loop day, a retrain + promotion, the champion serving, gates."""

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.defs.training import training_run_config
from feedback_loop_tests.harness import definitions_for

DAY, NEXT_DAY = "2024-03-01", "2024-03-04"
LOOP_ASSETS = {"champion_in_service", "politicians", "disclosures", "market_prices", "ticker_features", "heuristic_signals",
               "trading_signals", "portfolio_positions", "signal_outcomes", "portfolio_performance", "feature_drift"}


def _counts(engine: sa.Engine) -> dict[str, int]:
    tables = ["politicians", "disclosures", "disclosure_rejects", "prices", "ticker_features", "trading_signals",
              "portfolio_positions", "portfolio_equity", "signal_outcomes", "ml_predictions", "ml_models"]
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in tables}


def _signals(engine: sa.Engine, day: str) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.text(
            "SELECT signal_id, signal_type, confidence, heuristic_confidence, ml_signal_type, ml_confidence,"
            " blend_weight, blend_case, model_id, serving_path, features::text AS features"
            " FROM trading_signals WHERE as_of = :d ORDER BY signal_id"), conn, params={"d": day})


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.mark.slow
def test_loop_day_retrain_and_champion_serving(db_url, tmp_path, instance):
    definitions = definitions_for(db_url, tmp_path)
    daily = definitions.resolve_job_def("daily_loop_job")
    engine = sa.create_engine(db_url)

    first = daily.execute_in_process(instance=instance, partition_key=DAY)
    assert first.success
    materialized = {e.asset_key.to_user_string() for e in first.get_asset_materialization_events()}
    assert materialized == LOOP_ASSETS
    checks = {e.check_name: e.passed for e in first.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks
    with engine.connect() as conn:
        paths = set(conn.execute(sa.text("SELECT DISTINCT serving_path FROM trading_signals")).scalars())
    assert paths == {"no_champion"}

    retrain = definitions.resolve_job_def("market_retrain_job").execute_in_process(
        instance=instance, run_config=training_run_config(as_of=DAY, use_outcomes=False, trigger="manual"))
    assert retrain.success
    with engine.connect() as conn:
        active = conn.execute(sa.text("SELECT model_id, trained_as_of FROM ml_models WHERE status = 'active'")).all()
        comparison = conn.execute(sa.text("SELECT promoted, current_model_id, reason FROM ml_model_comparisons")).one()
        event = conn.execute(sa.text("SELECT trigger, deployed FROM model_retraining_events")).one()
    assert len(active) == 1 and comparison.promoted and comparison.current_model_id is None
    assert tuple(event) == ("manual", True)

    # The same training inputs again (a second sensor's request): the champion is reproduced, and the
    # decision is "no change", never a comparison of the champion with itself.
    same = definitions.resolve_job_def("market_retrain_job").execute_in_process(
        instance=instance, run_config=training_run_config(as_of=DAY, use_outcomes=False, trigger="feature_drift"))
    assert same.success
    with engine.connect() as conn:
        comparisons = conn.execute(sa.text("SELECT count(*) FROM ml_model_comparisons")).scalar()
        events = conn.execute(sa.text(
            "SELECT deployed, reason, old_model_id, new_model_id FROM model_retraining_events ORDER BY event_id")).all()
        deployments = conn.execute(sa.text("SELECT count(*) FROM model_deployments")).scalar()
    assert comparisons == 1 and deployments == 1
    assert not events[-1].deployed and events[-1].reason.startswith("no change")
    assert events[-1].old_model_id == events[-1].new_model_id == active[0].model_id

    second = daily.execute_in_process(instance=instance, partition_key=NEXT_DAY)
    assert second.success
    with engine.connect() as conn:
        served = conn.execute(sa.text(
            "SELECT serving_path, model_id, count(*) FROM trading_signals WHERE as_of = :d GROUP BY 1, 2"),
            {"d": NEXT_DAY}).all()
        predictions = conn.execute(sa.text("SELECT count(*) FROM ml_predictions WHERE as_of = :d"),
                                   {"d": NEXT_DAY}).scalar()
        filled_from_day = conn.execute(sa.text(
            "SELECT count(*) FROM portfolio_positions WHERE entry_date = :d"), {"d": NEXT_DAY}).scalar()
    assert [(p, m) for p, m, _ in served] == [("champion", active[0].model_id)]
    assert predictions == sum(n for *_, n in served), "every champion-scored signal has its prediction logged"
    assert filled_from_day > 0, "signals queued on DAY were not filled at NEXT_DAY's open"

    before = _counts(engine)
    signals_before = _signals(engine, NEXT_DAY)
    # A later promotion must not change what re-materializing the past day produces.
    definitions.resolve_job_def("market_retrain_job").execute_in_process(
        instance=instance, run_config=training_run_config(as_of=NEXT_DAY, use_outcomes=False, trigger="manual"))
    again = daily.execute_in_process(instance=instance, partition_key=NEXT_DAY)
    assert again.success
    after = _counts(engine)
    assert {k: v for k, v in after.items() if k != "ml_models"} == \
        {k: v for k, v in before.items() if k != "ml_models"}, "re-materializing a day duplicated rows"
    pd.testing.assert_frame_equal(_signals(engine, NEXT_DAY), signals_before)
    engine.dispose()


@pytest.mark.slow
def test_failing_blocking_check_stops_the_challenger(db_url, tmp_path, instance):
    definitions = definitions_for(db_url, tmp_path)
    assert definitions.resolve_job_def("daily_loop_job").execute_in_process(
        instance=instance, partition_key="2023-02-15").success
    # Six weeks of history: far fewer than 100 labeled rows, so the gate must hold.
    result = definitions.resolve_job_def("market_retrain_job").execute_in_process(
        instance=instance, raise_on_error=False,
        run_config=training_run_config(as_of="2023-02-15", use_outcomes=False, trigger="manual"))
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["training_set_has_enough_rows"] is False
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "blended_training_set" in materialized
    assert "challenger_model" not in materialized and "promotion_decision" not in materialized
    with sa.create_engine(db_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ml_models")).scalar() == 0


@pytest.mark.slow
def test_failing_blocking_loop_check_stops_the_portfolio(db_url, tmp_path, instance):
    # An operator's queue threshold under the mission's floor: signals queue that the gate must hold back.
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE reference_portfolio_config SET min_queue_confidence = 0.6"))
    result = definitions_for(db_url, tmp_path).resolve_job_def("daily_loop_job").execute_in_process(
        instance=instance, partition_key=DAY, raise_on_error=False)
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    gate = checks["trading_signals_queue_respects_thresholds"]
    assert gate.passed is False and gate.metadata["queued_under_threshold"].value > 0
    assert checks["ticker_features_one_row_per_ticker"].passed
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"ticker_features", "heuristic_signals", "trading_signals"} <= materialized
    # The next trading day's portfolio fills that queue: it holds it back and stops what follows.
    next_day = definitions_for(db_url, tmp_path).resolve_job_def("daily_loop_job").execute_in_process(
        instance=instance, partition_key=NEXT_DAY, raise_on_error=False)
    assert not next_day.success
    failed = {e.step_key: e for e in next_day.all_events if e.is_step_failure}
    assert "portfolio_positions" in failed  # (the day's own trading_signals fails its blocking gate too)
    assert "failed their gate trading_signals_queue_respects_thresholds" in str(
        failed["portfolio_positions"].event_specific_data.error)
    materialized = {e.asset_key.to_user_string() for e in next_day.get_asset_materialization_events()}
    assert not materialized & {"portfolio_positions", "signal_outcomes", "portfolio_performance"}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM portfolio_positions")).scalar() == 0
    engine.dispose()
