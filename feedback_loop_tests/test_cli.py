"""The operator commands: manual promotion and rollback through the registry's transaction, logged as manual."""

import sqlalchemy as sa
from click.testing import CliRunner

from feedback_loop.cli import main
from feedback_loop.lib.models import registry
from feedback_loop.lib.store import db
from feedback_loop.lib.training.artifact import ARTIFACT_FILES, artifact_sha256


def _register(engine, model_id: str, artifact_root) -> None:
    path = artifact_root / model_id
    path.mkdir()
    for name in ARTIFACT_FILES:
        (path / name).write_bytes(model_id.encode())
    with engine.begin() as conn:
        registry.register_model(
            conn, model_id=model_id, version=model_id, trained_as_of="2024-01-05", trigger="manual", num_classes=5,
            config={}, feature_names=[], metrics={"accuracy": 0.3}, model_card={}, artifact_path=str(path),
            artifact_sha256=artifact_sha256(path), training_start=None, training_end=None)


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
