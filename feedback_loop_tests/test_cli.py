"""The operator commands: manual promotion and rollback through the registry's transaction, logged as manual;
status, the model registry's tables, retrain with its minimum of new samples, and the audited ML kill switch."""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from feedback_loop.cli import main
from feedback_loop.lib import policy
from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.ingest.synthetic import SyntheticConfig, generate
from feedback_loop.lib.models import flow, registry, serving
from feedback_loop.lib.models import store as model_store
from feedback_loop.lib.monitoring.blend_weight import BlendWeightDecision, apply_blend_weight
from feedback_loop.lib.store import db
from feedback_loop.lib.training.artifact import ARTIFACT_FILES, artifact_sha256
from feedback_loop.lib.vocab import ServingPath
from feedback_loop_tests.harness import SCALE, SYNTHETIC_SEED, small_model


def _register(engine, model_id: str, artifact_root, **fields) -> None:
    """A registered model whose artifact files hold its id (so its sha256 verifies); `fields` override the row."""
    path = artifact_root / model_id
    path.mkdir()
    for name in ARTIFACT_FILES:
        (path / name).write_bytes(model_id.encode())
    row = {"version": model_id, "trained_as_of": "2024-01-05", "trigger": "manual", "num_classes": 5, "config": {},
           "feature_names": [], "metrics": {"accuracy": 0.3}, "model_card": {}, "training_start": None,
           "training_end": None, **fields}
    with engine.begin() as conn:
        registry.register_model(conn, model_id=model_id, artifact_path=str(path),
                                artifact_sha256=artifact_sha256(path), **row)


def test_manual_promote_and_rollback_use_the_registry_transaction_and_are_logged(db_url, monkeypatch, tmp_path):
    monkeypatch.setenv(db.DATABASE_URL_ENV, db_url)
    engine = sa.create_engine(db_url)
    _register(engine, "model-a", tmp_path)
    _register(engine, "model-b", tmp_path)
    runner = CliRunner()

    for model_id, as_of in (("model-a", "2024-01-08"), ("model-b", "2024-01-15")):
        result = runner.invoke(main, ["models", "promote", model_id, "--reason", "operator", "--as-of", as_of])
        assert result.exit_code == 0, result.output
    again = runner.invoke(main, ["models", "promote", "model-b", "--reason", "again", "--as-of", "2024-01-16"])
    assert again.exit_code != 0 and "already the champion" in again.output
    assert len(again.output.strip().splitlines()) == 1 and "Traceback" not in again.output
    listing = runner.invoke(main, ["models", "list"]).output
    assert "model-b" in listing and "active" in listing

    result = runner.invoke(main, ["models", "rollback", "--reason", "bad fills", "--as-of", "2024-01-20"])
    assert result.exit_code == 0, result.output
    with engine.connect() as conn:
        assert registry.active_model(conn).model_id == "model-a"
        assert registry.champion_as_of(conn, "2024-01-21").model_id == "model-a"
        assert registry.champion_as_of(conn, "2024-01-17").model_id == "model-b"
        events = conn.execute(sa.text(
            "SELECT trigger, new_model_id, deployed, reason FROM model_retraining_events ORDER BY event_id")).all()
    assert [(e.trigger, e.new_model_id, e.deployed) for e in events] == [
        ("manual", "model-a", True), ("manual", "model-b", True), ("manual", "model-a", True)]
    assert events[-1].reason == "manual rollback: bad fills"

    again = runner.invoke(main, ["models", "rollback", "--reason", "again", "--as-of", "2024-01-25"])
    assert again.exit_code != 0 and "no previous champion" in again.output
    with engine.connect() as conn:
        assert registry.active_model(conn).model_id == "model-a", "a refused rollback leaves the champion in place"
    engine.dispose()


def test_live_mode_needs_confirmation_and_the_flag_and_is_audited(db_url, monkeypatch):
    monkeypatch.setenv(db.DATABASE_URL_ENV, db_url)
    monkeypatch.delenv("FEEDBACK_LOOP_ALLOW_LIVE_TRADING", raising=False)
    runner = CliRunner()
    refused = runner.invoke(main, ["trading-mode", "live", "--confirm"])
    assert refused.exit_code != 0 and "FEEDBACK_LOOP_ALLOW_LIVE_TRADING" in refused.output
    assert runner.invoke(main, ["trading-mode"]).output.strip() == "paper"

    monkeypatch.setenv("FEEDBACK_LOOP_ALLOW_LIVE_TRADING", "1")
    assert runner.invoke(main, ["trading-mode", "live"]).exit_code != 0, "the flag alone is not enough"
    switched = runner.invoke(main, ["trading-mode", "live", "--confirm", "--reason", "go"])
    assert switched.exit_code == 0 and "LIVE" in switched.output
    with sa.create_engine(db_url).connect() as conn:
        changes = conn.execute(sa.text(
            "SELECT old_mode, new_mode, confirmed, env_flag_set, outcome FROM trading_mode_changes"
            " ORDER BY change_id")).all()
    assert [tuple(c) for c in changes] == [
        ("paper", "live", True, False, "refused"), ("paper", "live", False, True, "refused"),
        ("paper", "live", True, True, "applied")]

    again = runner.invoke(main, ["trading-mode", "live", "--confirm"])
    back = runner.invoke(main, ["trading-mode", "paper"])
    same = runner.invoke(main, ["trading-mode", "paper"])
    assert (again.exit_code, back.exit_code, same.exit_code) == (0, 0, 0)
    assert "already live" in again.output and "already paper" in same.output
    with sa.create_engine(db_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM trading_mode_changes")).scalar() == 4, \
            "only the live -> paper switch was added: same-mode switches are no-ops"


def _one_line_error(result, says: str) -> None:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert says in lines[0] and "Traceback" not in result.output, result.output


def _cli(db_url, monkeypatch):
    monkeypatch.setenv(db.DATABASE_URL_ENV, db_url)
    runner = CliRunner()
    return lambda *argv: runner.invoke(main, list(argv))


def test_status_on_an_empty_database_says_so(db_url, monkeypatch):
    cli = _cli(db_url, monkeypatch)
    text = cli("status")
    assert text.exit_code == 0, text.output
    for phrase in ("health: healthy", "no champion yet", "never (starting weight 0.20)", "ML serving    enabled",
                   "trading mode  paper", "no signals yet", "latest report  none yet", "Recent decisions\n  (none)",
                   "Recent pipeline failures\n  (none)"):
        assert phrase in text.output, (phrase, text.output)
    report = json.loads(cli("status", "--json").output)
    assert report["champion"] is None and report["latest_loop_day"] is None and report["decisions"] == []
    assert report["blend_weight"]["weight"] == policy.BLEND_WEIGHT_DEFAULT and report["ml"]["enabled"] is True
    assert report["serving_sla"]["mean_latency_ms"] is None and report["health"]["status"] == "healthy"


def _signal(conn, day: str, ticker: str, path: str, latency_ms: float | None, model_id: str) -> None:
    signal_id = f"{day}:{ticker}"
    conn.execute(sa.text(
        "INSERT INTO trading_signals (signal_id, as_of, ticker, signal_type, confidence, heuristic_signal_type,"
        " heuristic_confidence, blend_weight, blend_case, ml_enhanced, serving_path, status, features)"
        " VALUES (:s, :d, :t, 'buy', 0.8, 'buy', 0.8, 0.2, 'agree', TRUE, :p, 'queued', '{}')"),
        {"s": signal_id, "d": day, "t": ticker, "p": path})
    if latency_ms is not None:
        conn.execute(sa.text(
            "INSERT INTO ml_predictions (signal_id, as_of, ticker, model_id, model_version, role, serving_path,"
            " feature_hash, probabilities, predicted_class, confidence, latency_ms)"
            " VALUES (:s, :d, :t, :m, :m, 'champion', :p, 'h', '{}', 'buy', 0.8, :l)"),
            {"s": signal_id, "d": day, "t": ticker, "m": model_id, "p": path, "l": latency_ms})


def test_status_of_a_populated_database(db_url, monkeypatch, tmp_path):
    cli = _cli(db_url, monkeypatch)
    engine = sa.create_engine(db_url)
    for model_id in ("model-a", "model-b", "model-c"):
        _register(engine, model_id, tmp_path)
    registry.promote(engine, "model-a", as_of="2024-01-08", trigger="scheduled", reason="first champion")
    assert cli("models", "promote", "model-b", "--reason", "operator says", "--as-of", "2024-02-01").exit_code == 0
    latencies = {"AAA": 60.0, "BBB": 95.0, "CCC": 110.0}  # a fallback signal below has no prediction
    with engine.begin() as conn:
        registry.record_comparison(
            conn, as_of="2024-02-10", new_model_id="model-c", current_model_id="model-b", new_accuracy=0.3,
            current_accuracy=0.31, new_f1=0.2, current_f1=0.25, holdout_rows=500, new_shadow_win_rate=None,
            current_shadow_win_rate=None, promoted=False, reason="accuracy +0.00 < +0.02", details={})
        apply_blend_weight(conn, BlendWeightDecision(0.2, 0.3, True, "ML ahead", 0.6, 0.5, 40), "2024-02-12")
        apply_blend_weight(conn, BlendWeightDecision(0.3, 0.3, False, "within", 0.5, 0.5, 40), "2024-02-13")
        for ticker, latency in latencies.items():
            _signal(conn, "2024-02-14", ticker, "champion", latency, "model-b")
        _signal(conn, "2024-02-15", "DDD", "heuristic_fallback", None, "model-b")
        _signal(conn, "2023-12-01", "OLD", "champion", 500.0, "model-a")  # outside the 30-day window
        conn.execute(sa.text(
            "INSERT INTO drift_reports (as_of, model_id, recommendation, score_psi, drifting_features, ks_statistics,"
            " live_rows, reference_rows, resolved_outcomes, reason) VALUES ('2024-02-15', 'model-b',"
            " 'schedule_retrain', 0.25, '[\"vix_level\", \"spy_return_20d\", \"sector_return_20d\"]', '{}', 80, 900, 0,"
            " '3 features drift')"))
        conn.execute(sa.text("INSERT INTO pipeline_run_failures (run_id, job_name, error, failed_at)"
                             " VALUES ('0123456789ab', 'daily_loop_job', 'boom', '2024-02-14 20:00+00')"))
    assert cli("ml", "disable", "--reason", "latency spike", "--as-of", "2024-02-15").exit_code == 0

    report = json.loads(cli("status", "--as-of", "2024-02-15", "--json").output)
    assert report["champion"]["model_id"] == "model-b" and report["champion"]["since"] == "2024-02-02"
    assert report["champion"]["trigger"] == "manual"
    assert report["blend_weight"]["weight"] == 0.3 and report["blend_weight"]["last_move"]["decided"] == "2024-02-12"
    sla = report["serving_sla"]
    assert sla["end"] == "2024-02-15" and sla["predictions"] == len(latencies)
    assert sla["mean_latency_ms"] == pytest.approx(np.mean(list(latencies.values())))
    assert sla["fallback_rate"] == pytest.approx(1 / 4)
    assert [d["kind"] for d in report["decisions"]] == ["blend weight", "rejected", "manual promotion"]
    assert report["ml"]["enabled"] is False and report["ml"]["reason"] == "latency spike"
    problems = " | ".join(report["health"]["problems"])
    assert report["health"]["status"] == "degraded"
    assert "mean scoring latency 88.3 ms >= 75 ms" in problems and "fallback rate 25.0% >= 10%" in problems
    assert "schedule_retrain" in problems and "1 failed pipeline run(s)" in problems

    before = json.loads(cli("status", "--as-of", "2024-02-01", "--json").output)
    assert before["champion"]["model_id"] == "model-a" and before["ml"]["enabled"] is True
    assert before["pending_deployment"]["model_id"] == "model-b", "decided on 2024-02-01, serving from the next day"
    assert before["blend_weight"]["weight"] == policy.BLEND_WEIGHT_DEFAULT and before["drift"] is None

    text = cli("status", "--as-of", "2024-02-15").output
    for phrase in ("health: degraded", "model-b (version model-b)", "since          2024-02-02 (promote, manual)",
                   "in force    0.30", "decided 2024-02-12: 0.20 -> 0.30", "DISABLED: heuristic alone",
                   "88.33 ms over 3 predictions (target < 75 ms: MISSED)", "25.0% (target < 10%: MISSED)",
                   "2024-02-15 for model-b: schedule_retrain", "daily_loop_job", "01234567"):
        assert phrase in text, (phrase, text)
    engine.dispose()


def _register_with_metrics(engine, model_id, tmp_path, metrics, trained_as_of="2024-01-05"):
    _register(engine, model_id, tmp_path, version=f"v-{model_id}", trained_as_of=trained_as_of, trigger="scheduled",
              config={"horizon_days": 20, "hyperparameters": {"max_depth": 4}}, feature_names=["a", "b"],
              metrics=metrics, training_start="2023-01-05", training_end="2023-12-20")


def test_models_list_is_a_headed_table_filtered_by_status_and_show_is_readable(db_url, monkeypatch, tmp_path):
    cli = _cli(db_url, monkeypatch)
    engine = sa.create_engine(db_url)
    _register_with_metrics(engine, "m-old", tmp_path, {"accuracy": 0.312345, "f1_weighted": 0.29876})
    _register_with_metrics(engine, "m-new", tmp_path, {"accuracy": 0.354321, "f1_weighted": 0.3333,
                                                        "roc_auc_ovr": 0.51234, "holdout_rows": 1234})
    registry.promote(engine, "m-old", as_of="2024-01-08", trigger="scheduled", reason="first champion")
    with engine.begin() as conn:
        registry.record_comparison(
            conn, as_of="2024-01-15", new_model_id="m-new", current_model_id="m-old", new_accuracy=0.354321,
            current_accuracy=0.3012, new_f1=0.3333, current_f1=0.2888, holdout_rows=1234, new_shadow_win_rate=None,
            current_shadow_win_rate=None, promoted=True, reason="accuracy +0.05", details={})
    registry.promote(engine, "m-new", as_of="2024-01-15", trigger="scheduled", reason="accuracy +0.05")

    listing = cli("models", "list").output.splitlines()
    assert listing[0].split() == ["model", "status", "trigger", "trained", "as", "of", "accuracy", "f1", "roc", "auc",
                                  "created"]
    assert set(listing[1]) <= {"-", " "} and listing[-1] == "2 model(s)"
    rows = {line.split()[0]: line.split() for line in listing[2:-1]}
    assert rows["m-new"][1:6] == ["active", "scheduled", "2024-01-05", "0.354", "0.333"] and rows["m-new"][6] == "0.512"
    assert rows["m-old"][1] == "archived" and rows["m-old"][6] == "—", "no roc auc recorded"
    archived = cli("models", "list", "--status", "archived").output
    assert "m-old" in archived and "m-new" not in archived and "1 model(s) with status archived" in archived
    assert "0 model(s)" in cli("models", "list", "--status", "candidate").output
    _one_line_error(cli("models", "list", "--status", "retired"), "'retired' is not one of")

    shown = cli("models", "show", "m-new")
    assert shown.exit_code == 0, shown.output
    for phrase in ("Identity", "Holdout metrics", "Training config", "Deployments", "Comparisons",
                   "accuracy      0.3543", "roc_auc_ovr   0.5123", "brier         —", "holdout_rows  1234",
                   "hyperparameters.max_depth  4", "training window  2023-01-05 .. 2023-12-20"):
        assert phrase in shown.output, (phrase, shown.output)
    comparison = next(line.strip() for line in shown.output.splitlines() if line.strip().startswith("2024-01-15"))
    assert comparison.split()[:10] == ["2024-01-15", "challenger", "m-old", "0.354", "vs", "0.301", "0.333", "vs",
                                       "0.289", "1234"]
    old = cli("models", "show", "m-old").output
    assert any(line.strip().startswith("2024-01-15") and " champion " in line and "m-new" in line for line in old.splitlines())
    assert "2024-01-09" in old and "2024-01-16" not in old, "only m-old's own deployment"

    raw = json.loads(cli("models", "show", "m-new", "--json").output)
    assert raw["model_id"] == "m-new" and raw["metrics"]["accuracy"] == 0.354321 and raw["status"] == "active"
    assert [d["effective_from"] for d in raw["deployments"]] == ["2024-01-16"]
    assert [c["new_model_id"] for c in raw["comparisons"]] == ["m-new"]
    engine.dispose()


@pytest.fixture
def synthetic_db(db_url, monkeypatch):
    """The harness's small synthetic universe (2023-01-02 .. 2024-07-02) ingested; the CLI pointed at it."""
    disclosures, tickers, years = (float(x) for x in SCALE.split(","))
    data = generate(SyntheticConfig.scale(int(disclosures), int(tickers), years, seed=SYNTHETIC_SEED))
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        ingest.write_disclosures(conn, data.disclosures, data.politicians)
        ingest.write_prices(conn, data.prices)
        ingest.write_sectors(conn, data.sectors)
    monkeypatch.setenv(db.DATABASE_URL_ENV, db_url)
    yield engine
    engine.dispose()


def _models_and_events(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.execute(sa.text("SELECT count(*) FROM ml_models")).scalar(),
                conn.execute(sa.text("SELECT count(*) FROM model_retraining_events")).scalar())


@pytest.mark.slow
def test_retrain_refuses_without_enough_new_samples_unless_forced(synthetic_db):
    runner = CliRunner()
    first = runner.invoke(main, ["retrain", "--as-of", "2024-03-01"])
    assert first.exit_code == 0 and "PROMOTED" in first.output, first.output
    assert _models_and_events(synthetic_db) == (1, 1)

    again = runner.invoke(main, ["retrain", "--as-of", "2024-03-01"])
    _one_line_error(again, "only 0 new samples since champion")
    assert f"need {policy.MIN_NEW_SAMPLES_FOR_RETRAIN}" in again.output
    assert _models_and_events(synthetic_db) == (1, 1), "a refused retrain trains and logs nothing"

    forced = runner.invoke(main, ["retrain", "--as-of", "2024-03-01", "--force"])
    assert forced.exit_code == 0 and "no change" in forced.output, forced.output
    assert _models_and_events(synthetic_db) == (1, 2), "forced: trained and decided (it reproduced the champion)"

    # A month later the labels of many more rows have resolved: no refusal, a new challenger is decided on.
    with synthetic_db.connect() as conn:
        champion = registry.active_model(conn)
        later = flow.market_set(conn, "2024-04-01", flow.TrainingConfig()).frame
    assert flow.new_samples_since(later, champion.trained_as_of) >= policy.MIN_NEW_SAMPLES_FOR_RETRAIN
    proceeds = runner.invoke(main, ["retrain", "--as-of", "2024-04-01"])
    assert proceeds.exit_code == 0 and ("PROMOTED" in proceeds.output or "kept as candidate" in proceeds.output)
    assert _models_and_events(synthetic_db) == (2, 3)


def test_the_kill_switch_is_audited_and_serves_the_heuristic_alone(synthetic_db, tmp_path):
    from feedback_loop.defs.loop import ticker_features, trading_signals
    from feedback_loop.defs.resources import DatabaseResource

    runner = CliRunner()
    model, frame = small_model("2023-06-01", "2024-01-31", pd.Timestamp("2024-02-29"))
    with synthetic_db.begin() as conn:
        model_store.store_model(conn, model, model_id="champ", trigger="manual", training_frame=frame,
                                artifact_root=tmp_path)
    registry.promote(synthetic_db, "champ", as_of="2024-02-29", trigger="manual", reason="test champion")

    assert runner.invoke(main, ["ml"]).output.strip() == "ML enabled (never switched)"
    disabled = runner.invoke(main, ["ml", "disable", "--reason", "latency spike", "--as-of", "2024-03-04"])
    assert disabled.exit_code == 0 and "heuristic's alone" in disabled.output, disabled.output
    same = runner.invoke(main, ["ml", "disable", "--reason", "again", "--as-of", "2024-03-05"])
    assert same.exit_code == 0 and "already disabled" in same.output
    _one_line_error(runner.invoke(main, ["ml", "enable", "--reason", "back", "--as-of", "2024-03-01"]),
                    "would precede the latest one")
    _one_line_error(runner.invoke(main, ["ml", "enable", "--reason", "  ", "--as-of", "2024-03-06"]),
                    "a reason is required")
    _one_line_error(runner.invoke(main, ["ml", "enable", "--as-of", "2024-03-06"]), "--reason")
    assert runner.invoke(main, ["ml", "enable", "--reason", "fixed", "--as-of", "2024-03-06"]).exit_code == 0
    with synthetic_db.connect() as conn:
        changes = conn.execute(sa.text(
            "SELECT effective_from::text, old_enabled, new_enabled, reason, changed_by <> '' FROM ml_switch_changes"
            " ORDER BY change_id")).all()
    assert [tuple(c) for c in changes] == [("2024-03-04", True, False, "latency spike", True),
                                            ("2024-03-06", False, True, "fixed", True)]

    with synthetic_db.connect() as conn:
        paths = {day: serving.serve_as_of(conn, day) for day in ("2024-03-01", "2024-03-04", "2024-03-05", "2024-03-06")}
    assert paths["2024-03-01"].serving_path == ServingPath.CHAMPION and paths["2024-03-06"].record.model_id == "champ"
    for day in ("2024-03-04", "2024-03-05"):
        assert paths[day].serving_path == ServingPath.ML_DISABLED and paths[day].model is None
        assert "disabled from 2024-03-04" in paths[day].note and "latency spike" in paths[day].note

    database = DatabaseResource(url=synthetic_db.url.render_as_string(hide_password=False))
    metadata = {}
    for day in ("2024-03-01", "2024-03-04"):
        ticker_features(dg.build_asset_context(partition_key=day), database=database)
        metadata[day] = trading_signals(dg.build_asset_context(partition_key=day), database=database).metadata
    with synthetic_db.connect() as conn:
        stored = {row[0]: tuple(row[1:]) for row in conn.execute(sa.text(
            "SELECT as_of::text, string_agg(DISTINCT serving_path, ','), count(model_id), count(ml_signal_type)"
            " FROM trading_signals GROUP BY as_of"))}
    assert metadata["2024-03-01"]["serving_path"] == "champion" and "serving_note" not in metadata["2024-03-01"]
    assert metadata["2024-03-04"]["serving_path"] == "ml_disabled" and metadata["2024-03-04"]["dagster/row_count"] > 0
    assert "latency spike" in metadata["2024-03-04"]["serving_note"]
    assert stored["2024-03-01"][0] == "champion" and stored["2024-03-01"][1] > 0
    assert stored["2024-03-04"] == ("ml_disabled", 0, 0), "no model shaped a signal while disabled"
