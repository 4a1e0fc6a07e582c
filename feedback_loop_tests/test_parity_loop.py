"""The two drivers of the loop give the same rows (DESIGN §5): the Dagster batch driver (`batch.run_days`:
the real schedules, jobs and sensors, a real Postgres Dagster instance) and the engine (`LoopEngine`,
its state written by `persist_history`), over the same trading days of the same synthetic data."""

from __future__ import annotations

import json
import re

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop import batch
from feedback_loop.defs.history import load_loop_data
from feedback_loop.lib.loop import engine as engine_module
from feedback_loop.lib.loop.engine import CLOSED_LOOP_ARM, LoopEngine
from feedback_loop.lib.loop.history import persist_history
from feedback_loop.lib.models.promotion import (
    HoldoutComparison,
    compare_on_holdout,
    decide_promotion,
)
from feedback_loop.lib.store import db
from feedback_loop_tests.conftest import _fresh_database
from feedback_loop_tests.harness import definitions_for

# 30 trading days of the harness's synthetic data: weekly and monthly retrains, a drift retrain,
# a promotion, challengers kept in shadow, and the first blend-weight move (shadow outcomes resolve
# after 20 trading days).
START, END = "2024-03-01", "2024-04-11"
PROJECT_ROOT = db.PROJECT_ROOT

#: table → (query, sort keys). Wall-clock columns (created_at, updated_at, latency), run ids and
#: serial ids are left out; model ids are compared by version (the engine prefixes its arm name).
TABLES = {
    "trading_signals": ("SELECT * FROM trading_signals", ["signal_id"]),
    "heuristic_signals": ("SELECT * FROM heuristic_signals", ["as_of", "ticker"]),
    "portfolio_positions": ("SELECT * FROM portfolio_positions", ["position_id"]),
    "portfolio_equity": ("SELECT * FROM portfolio_equity", ["date"]),
    "signal_outcomes": ("SELECT * FROM signal_outcomes", ["position_id"]),
    "shadow_outcomes": ("SELECT * FROM shadow_outcomes", ["signal_id"]),
    "ml_models": ("SELECT * FROM ml_models", ["version"]),
    "model_deployments": ("SELECT * FROM model_deployments", ["effective_from", "model_id"]),
    "ml_model_comparisons": ("SELECT * FROM ml_model_comparisons", ["as_of", "new_model_id"]),
    "model_retraining_events": ("SELECT * FROM model_retraining_events", ["as_of", "trigger", "new_model_id"]),
    "blend_weight_decisions": (("SELECT analysis_date, analysis_window_days, median_value AS weight,"
                                " avg_return_when_high, avg_return_when_low, lift_pct, sample_size_total, details"
                                " FROM feature_importance_history WHERE feature_name = '_ml_blend_weight'"),
                               ["analysis_date"]),
    "drift_reports": ("SELECT * FROM drift_reports", ["as_of"]),
}
WALL_CLOCK = {"created_at", "updated_at", "promoted_at", "archived_at", "ingested_at", "latency_ms",
              "dagster_run_id", "comparison_id", "event_id", "deployment_id", "artifact_path"}
FLOAT_DIGITS = 12
MODEL_ID_COLUMNS = {"model_id", "new_model_id", "old_model_id", "current_model_id"}


def _frame(conn: sa.Connection, table: str, versions: dict[str, str]) -> pd.DataFrame:
    query, keys = TABLES[table]
    frame = pd.read_sql(sa.text(query), conn)
    frame = frame.drop(columns=[c for c in frame.columns if c in WALL_CLOCK])
    for column in MODEL_ID_COLUMNS & set(frame.columns):
        frame[column] = frame[column].map(lambda m: versions.get(m, m) if isinstance(m, str) else m)
    for column in frame.columns:  # JSON columns: compared as canonical text, floats to 12 significant digits
        if frame[column].map(lambda v: isinstance(v, (dict, list))).any():
            frame[column] = frame[column].map(lambda v: json.dumps(_rounded(v), sort_keys=True)
                                              if isinstance(v, (dict, list)) else v)
    return frame.sort_values(keys).reset_index(drop=True)


def _rounded(value):
    """Floats in a JSON value to FLOAT_DIGITS significant digits (a feature computed for one day or for
    many in one pass can differ in the last bit)."""
    if isinstance(value, float):
        return float(f"{value:.{FLOAT_DIGITS}g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _versions(conn: sa.Connection) -> dict[str, str]:
    return dict(conn.execute(sa.text("SELECT model_id, version FROM ml_models")).all())


def read_tables(url: str) -> dict[str, pd.DataFrame]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        versions = _versions(conn)
        tables = {table: _frame(conn, table, versions) for table in TABLES}
    engine.dispose()
    return tables


def differing_tables(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> dict[str, str]:
    """table → the first difference between the two runs' rows (empty when every table is equal)."""
    differences = {}
    for table in TABLES:
        try:
            pd.testing.assert_frame_equal(left[table], right[table], check_dtype=False, rtol=1e-9, atol=1e-12)
        except AssertionError as exc:
            differences[table] = _describe(left[table], right[table]) or re.sub(r"\s+", " ", str(exc))[:300]
    return differences


def _describe(left: pd.DataFrame, right: pd.DataFrame) -> str:
    """Which columns differ, in how many rows, and the first differing pair of values."""
    if left.shape != right.shape or list(left.columns) != list(right.columns):
        return f"shape {left.shape} vs {right.shape}; columns only left {sorted(set(left) - set(right))}, " \
               f"only right {sorted(set(right) - set(left))}"
    parts = []
    for column in left.columns:
        a, b = left[column], right[column]
        numeric = all(pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x) for x in (a, b))
        same = ((a - b).abs() <= 1e-12 + 1e-9 * b.abs()) if numeric else (a.astype(str) == b.astype(str))
        same |= a.isna() & b.isna()
        if not same.all():
            i = (~same).idxmax()
            x, y = str(a[i]), str(b[i])
            at = next((k for k, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            start = max(0, at - 60)
            parts.append(f"{column}: {(~same).sum()} rows, first at char {at}: {x[start:at + 60]!r} vs {y[start:at + 60]!r}")
    return "; ".join(parts)


def loop_counts(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    events = tables["model_retraining_events"]
    comparisons = tables["ml_model_comparisons"]
    return {
        "retrains": len(events),
        "promotions": int(comparisons["promoted"].sum()),
        "promotions_over_a_champion": int((comparisons["promoted"] & comparisons["current_model_id"].notna()).sum()),
        "rejected_challengers": int((~comparisons["promoted"]).sum()),
        "blend_weight_tests": int(tables["blend_weight_decisions"]["details"].map(
            lambda details: json.loads(details)["p_value"] is not None).sum()),
        **{f"rows_{table}": len(frame) for table, frame in tables.items()},
    }


@pytest.fixture(scope="module")
def dagster_run(pg_cluster, template_url, tmp_path_factory):
    """The Dagster path over [START, END], once for the module: (app database URL, BatchRun, tables)."""
    tmp = tmp_path_factory.mktemp("dagster_path")
    app = _fresh_database(pg_cluster)
    app_url = next(app)
    storage = sa.create_engine(pg_cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    storage_name = f"dagster_parity_{tmp.name}"
    with storage.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{storage_name}"'))
    with pytest.MonkeyPatch.context() as env:
        env.setenv(db.STATE_DIR_ENV, str(tmp / "state"))
        env.setenv(db.DATABASE_URL_ENV, app_url)
        env.setenv(db.DAGSTER_URL_ENV, pg_cluster.url(storage_name))
        instance = dg.DagsterInstance.from_config(str(PROJECT_ROOT))
        try:
            result = batch.run_days(definitions_for(app_url, tmp), instance, START, END)
        finally:
            instance.dispose()
    yield app_url, result, read_tables(app_url)
    with storage.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{storage_name}" WITH (FORCE)'))
    storage.dispose()
    next(app, None)


def engine_tables(dagster_url: str, engine_url: str, artifacts) -> dict[str, pd.DataFrame]:
    """The engine over [START, END] on the data the Dagster path ingested, persisted into `engine_url`."""
    source = sa.create_engine(dagster_url)
    data = load_loop_data(source, END)
    source.dispose()
    state = LoopEngine(data, CLOSED_LOOP_ARM, start=START, end=END).run()
    target = sa.create_engine(engine_url)
    persist_history(target, state, artifacts)
    target.dispose()
    return read_tables(engine_url)


@pytest.mark.slow
def test_parity_dagster_batch_driver_and_engine_write_the_same_rows(dagster_run, second_db_url, tmp_path):
    dagster_url, result, dagster_tables = dagster_run
    counts = {"days": len(result.days), **loop_counts(dagster_tables)}
    print("parity counts:", counts)
    assert counts["days"] >= 30, counts
    # The gate with evidence rejects every challenger on this noise: promotions are the first model's.
    assert counts["retrains"] >= 2 and counts["promotions"] >= 1, counts
    # Every day's blend-weight decision is compared, tested ones included (the weight stays put on noise).
    assert counts["rejected_challengers"] >= 1 and counts["blend_weight_tests"] >= 1, counts
    engine_side = engine_tables(dagster_url, second_db_url, tmp_path / "models")
    assert differing_tables(dagster_tables, engine_side) == {}, counts


@pytest.mark.slow
def test_parity_comparison_fails_when_one_side_changes_a_rule(dagster_run, second_db_url, tmp_path, monkeypatch):
    """The engine alone demands one more accuracy point for a promotion: the comparison must notice."""
    def stricter_gate(challenger, champion, holdout):
        compared = compare_on_holdout(challenger, champion, holdout)
        if champion is None:
            return compared
        stricter = {**compared.new_metrics, "accuracy": compared.new_metrics["accuracy"] - 0.01}
        decision = decide_promotion(stricter, compared.current_metrics, compared.decision.evidence)
        return HoldoutComparison(compared.new_metrics, compared.current_metrics, decision)

    monkeypatch.setattr(engine_module, "compare_on_holdout", stricter_gate)
    dagster_url, _, dagster_tables = dagster_run
    differences = differing_tables(dagster_tables, engine_tables(dagster_url, second_db_url, tmp_path / "models"))
    # Every challenger is rejected on this noise either way: the decisions' records differ, not the deployments.
    assert {"ml_model_comparisons", "model_retraining_events"} <= set(differences), differences
