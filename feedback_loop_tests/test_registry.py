import datetime as dt
import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa

from feedback_loop.lib.models import registry
from feedback_loop.lib.models.registry import NoPreviousChampionError
from feedback_loop.lib.training.artifact import ARTIFACT_FILES, artifact_sha256

D = dt.date(2025, 3, 3)


def _register(conn, model_id, trained_as_of=D):
    return registry.register_model(
        conn,
        model_id=model_id,
        version=f"v-{model_id}",
        trained_as_of=trained_as_of,
        trigger="scheduled",
        num_classes=5,
        config={"max_depth": 4},
        feature_names=["a", "b"],
        metrics={"accuracy": 0.6},
        model_card={"note": model_id},
        artifact_path=f"/models/{model_id}.ubj",
        artifact_sha256="0" * 64,
        training_start=D - dt.timedelta(days=365),
        training_end=D - dt.timedelta(days=30),
    )


def _statuses(engine):
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT model_id, status FROM ml_models")).all())


def _deployments(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT model_id, action, effective_from FROM model_deployments ORDER BY deployment_id"
        )).all()


def test_register_inserts_candidate_and_reads_back(engine):
    with engine.begin() as conn:
        assert _register(conn, "m1") == "m1"
    with engine.connect() as conn:
        record = registry.get_model(conn, "m1")
        assert registry.get_model(conn, "nope") is None
        assert [m.model_id for m in registry.list_models(conn)] == ["m1"]
        assert registry.active_model(conn) is None
    assert record.status == "candidate"
    assert record.trained_as_of == D
    assert record.feature_names == ["a", "b"]
    assert record.config == {"max_depth": 4}
    assert record.metrics == {"accuracy": 0.6}
    assert record.promoted_at is None


def test_register_rejects_unknown_trigger(engine):
    with engine.begin() as conn, pytest.raises(ValueError):
        registry.register_model(
            conn, model_id="m", version="v", trained_as_of=D, trigger="whim", num_classes=3,
            config={}, feature_names=[], metrics={}, model_card={}, artifact_path=None,
            artifact_sha256=None, training_start=None, training_end=None,
        )


def test_promotion_archives_old_champion_and_takes_effect_next_day(engine):
    with engine.begin() as conn:
        _register(conn, "a")
        _register(conn, "b")
    registry.promote(engine, "a", as_of=D, trigger="scheduled", reason="first")
    registry.promote(engine, "b", as_of=D + dt.timedelta(days=10), trigger="manual", reason="better")

    assert _statuses(engine) == {"a": "archived", "b": "active"}
    assert _deployments(engine) == [
        ("a", "promote", D + dt.timedelta(days=1)),
        ("b", "promote", D + dt.timedelta(days=11)),
    ]
    with engine.connect() as conn:
        assert registry.champion_as_of(conn, D) is None
        assert registry.champion_as_of(conn, D + dt.timedelta(days=1)).model_id == "a"
        assert registry.champion_as_of(conn, D + dt.timedelta(days=10)).model_id == "a"
        assert registry.champion_as_of(conn, D + dt.timedelta(days=11)).model_id == "b"
        assert registry.previous_champion(conn, D + dt.timedelta(days=10)) is None
        assert registry.previous_champion(conn, D + dt.timedelta(days=11)).model_id == "a"
        a = registry.get_model(conn, "a")
        assert a.archived_at is not None and a.promoted_at is not None


def test_promote_is_idempotent_and_refuses_bad_inputs(engine):
    with engine.begin() as conn:
        _register(conn, "a")
        _register(conn, "f")
        conn.execute(sa.text("UPDATE ml_models SET status = 'failed' WHERE model_id = 'f'"))
    registry.promote(engine, "a", as_of=D, trigger="scheduled", reason="first")
    registry.promote(engine, "a", as_of=D, trigger="scheduled", reason="re-run")
    assert len(_deployments(engine)) == 1
    with pytest.raises(LookupError):
        registry.promote(engine, "ghost", as_of=D, trigger="manual", reason="x")
    with pytest.raises(ValueError, match="failed"):
        registry.promote(engine, "f", as_of=D, trigger="manual", reason="x")
    with engine.begin() as conn:
        _register(conn, "b")
    with pytest.raises(ValueError, match="precede"):
        registry.promote(engine, "b", as_of=D - dt.timedelta(days=5), trigger="manual", reason="x")
    assert _statuses(engine) == {"a": "active", "f": "failed", "b": "candidate"}


def test_failure_mid_promotion_leaves_previous_champion_active(engine, monkeypatch):
    with engine.begin() as conn:
        _register(conn, "a")
        _register(conn, "b")
    registry.promote(engine, "a", as_of=D, trigger="scheduled", reason="first")

    def boom(conn, model_id):
        raise RuntimeError("crash after archiving the old champion")

    monkeypatch.setattr(registry, "_activate", boom)
    with pytest.raises(RuntimeError):
        registry.promote(engine, "b", as_of=D + dt.timedelta(days=1), trigger="manual", reason="x")

    assert _statuses(engine) == {"a": "active", "b": "candidate"}
    assert [row.model_id for row in _deployments(engine)] == ["a"]


def test_racing_promotions_leave_exactly_one_active(db_url, engine, monkeypatch):
    with engine.begin() as conn:
        for model_id in ("a", "b", "c"):
            _register(conn, model_id)
    registry.promote(engine, "a", as_of=D, trigger="scheduled", reason="first")

    # Hold each promotion open between archive and activate so the two overlap.
    archive = registry._archive_active

    def slow_archive(conn):
        archive(conn)
        time.sleep(0.3)

    monkeypatch.setattr(registry, "_archive_active", slow_archive)
    engines = [sa.create_engine(db_url), sa.create_engine(db_url)]
    barrier = threading.Barrier(2)
    errors = []

    def run(eng, model_id):
        try:
            barrier.wait()
            registry.promote(eng, model_id, as_of=D + dt.timedelta(days=1), trigger="manual", reason="race")
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e, m)) for e, m in zip(engines, ["b", "c"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for e in engines:
        e.dispose()

    assert errors == []
    statuses = _statuses(engine)
    assert sorted(statuses.values()) == ["active", "archived", "archived"]
    deployments = _deployments(engine)
    assert len(deployments) == 3
    # The champion in force is the model of the last deployment, which is the active one.
    with engine.connect() as conn:
        assert registry.champion_as_of(conn, D + dt.timedelta(days=2)).model_id == deployments[-1].model_id
        assert registry.active_model(conn).model_id == deployments[-1].model_id


def test_rollback_restores_previous_champion(engine):
    with engine.begin() as conn:
        _register(conn, "a")
        _register(conn, "b")
    registry.promote(engine, "a", as_of=D, trigger="scheduled", reason="first")
    with pytest.raises(NoPreviousChampionError):
        registry.rollback(engine, as_of=D, reason="nothing earlier")
    assert _statuses(engine) == {"a": "active", "b": "candidate"}

    registry.promote(engine, "b", as_of=D + dt.timedelta(days=5), trigger="scheduled", reason="better")
    restored = registry.rollback(engine, as_of=D + dt.timedelta(days=5), reason="bad live results")

    assert restored.model_id == "a" and restored.status == "active" and restored.archived_at is None
    assert _statuses(engine) == {"a": "active", "b": "archived"}
    assert _deployments(engine)[-1] == ("a", "rollback", D + dt.timedelta(days=6))
    with engine.connect() as conn:
        # b was promoted and rolled back on the same day: it never served.
        assert registry.champion_as_of(conn, D + dt.timedelta(days=6)).model_id == "a"
        # After the rollback the stack holds only a: b is not a fallback.
        assert registry.previous_champion(conn, D + dt.timedelta(days=6)) is None
    with pytest.raises(NoPreviousChampionError):
        registry.rollback(engine, as_of=D + dt.timedelta(days=7), reason="again")
    assert _statuses(engine) == {"a": "active", "b": "archived"}


def test_comparison_and_retraining_event_rows(engine):
    with engine.begin() as conn:
        _register(conn, "a")
        _register(conn, "b")
        comparison_id = registry.record_comparison(
            conn, as_of=D, new_model_id="b", current_model_id="a", new_accuracy=0.63,
            current_accuracy=0.61, new_f1=0.5, current_f1=0.49, holdout_rows=400,
            new_shadow_win_rate=0.55, current_shadow_win_rate=0.5, promoted=True,
            reason="accuracy +0.0200 >= 0.02",
            details={"holdout_start": D, "roc_auc": np.float64("nan"), "n": np.int64(3),
                     "per_class": np.array([0.5, 0.25])},
        )
        event_id = registry.record_retraining_event(
            conn, as_of=D, trigger="feature_drift", dagster_run_id="run-1", old_model_id="a",
            new_model_id="b", old_metrics={"accuracy": 0.61}, new_metrics={"accuracy": 0.63},
            accuracy_improvement=0.02, f1_improvement=0.01, deployed=True, reason="promoted",
        )
        with pytest.raises(ValueError):
            registry.record_retraining_event(
                conn, as_of=D, trigger="bored", dagster_run_id=None, old_model_id=None,
                new_model_id=None, old_metrics=None, new_metrics=None, accuracy_improvement=None,
                f1_improvement=None, deployed=False, reason="x",
            )
    with engine.connect() as conn:
        comparison = conn.execute(sa.text(
            "SELECT * FROM ml_model_comparisons WHERE comparison_id = :i"), {"i": comparison_id}
        ).one()._mapping
        event = conn.execute(sa.text(
            "SELECT * FROM model_retraining_events WHERE event_id = :i"), {"i": event_id}
        ).one()._mapping
    assert comparison["as_of"] == D and comparison["holdout_rows"] == 400
    assert comparison["current_shadow_win_rate"] == 0.5 and comparison["promoted"] is True
    assert comparison["details"] == {
        "holdout_start": "2025-03-03", "roc_auc": None, "n": 3, "per_class": [0.5, 0.25]}
    assert event["trigger"] == "feature_drift" and event["dagster_run_id"] == "run-1"
    assert event["old_metrics"] == {"accuracy": 0.61} and event["new_metrics"] == {"accuracy": 0.63}
    assert event["accuracy_improvement"] == 0.02 and event["deployed"] is True


# --- manual promotion and rollback: the audit in the same transaction -------------------

def _register_with_artifact(conn, tmp_path, model_id):
    """A registered candidate whose artifact files exist and match the recorded sha256."""
    path = tmp_path / model_id
    path.mkdir()
    for name in ARTIFACT_FILES:
        (path / name).write_bytes(f"{model_id}:{name}".encode())
    registry.register_model(
        conn, model_id=model_id, version=f"v-{model_id}", trained_as_of=D, trigger="manual", num_classes=5,
        config={}, feature_names=[], metrics={}, model_card={}, artifact_path=str(path),
        artifact_sha256=artifact_sha256(path), training_start=None, training_end=None)
    return path


def _events(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT old_model_id, new_model_id, deployed, reason FROM model_retraining_events ORDER BY event_id"
        )).all()


def test_concurrent_manual_promotions_and_rollbacks_log_the_true_previous_model(db_url, engine, tmp_path):
    models = ["a", "b", "c", "d"]
    with engine.begin() as conn:
        for model_id in models:
            _register_with_artifact(conn, tmp_path, model_id)
    registry.manual_promote(engine, "a", as_of=D, reason="first")
    workers, actions_each = 16, 5
    pool = sa.create_engine(db_url, pool_size=workers, max_overflow=0)
    barrier = threading.Barrier(workers)
    refused, errors = [], []

    def operator(seed):
        rng = np.random.default_rng(seed)
        barrier.wait()
        for _ in range(actions_each):
            try:
                if rng.random() < 0.3:
                    registry.manual_rollback(pool, as_of=D, reason=f"op{seed}")
                else:
                    registry.manual_promote(pool, str(rng.choice(models)), as_of=D, reason=f"op{seed}")
            except (registry.AlreadyChampionError, registry.NoPreviousChampionError) as exc:
                refused.append(exc)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=operator, args=(seed,)) for seed in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pool.dispose()

    assert errors == []
    events, deployments = _events(engine), _deployments(engine)
    assert len(events) + len(refused) == workers * actions_each + 1
    assert [e.new_model_id for e in events] == [d.model_id for d in deployments]
    in_service = None
    for event in events:
        assert event.old_model_id == in_service, "each event names the model in service just before it"
        assert event.deployed
        in_service = event.new_model_id
    with engine.connect() as conn:
        assert registry.active_model(conn).model_id == in_service


def test_promoting_the_champion_again_is_refused_and_logs_nothing(engine, tmp_path):
    with engine.begin() as conn:
        _register_with_artifact(conn, tmp_path, "a")
    assert registry.manual_promote(engine, "a", as_of=D, reason="first") is None
    with pytest.raises(registry.AlreadyChampionError, match="already the champion"):
        registry.manual_promote(engine, "a", as_of=D, reason="again")
    assert len(_events(engine)) == 1 and len(_deployments(engine)) == 1


@pytest.mark.parametrize("damage", ["tamper", "remove"])
def test_manual_promotion_refuses_an_artifact_failing_its_sha256(engine, tmp_path, damage):
    with engine.begin() as conn:
        _register_with_artifact(conn, tmp_path, "a")
        path = _register_with_artifact(conn, tmp_path, "b")
    registry.manual_promote(engine, "a", as_of=D, reason="first")
    if damage == "tamper":
        (path / ARTIFACT_FILES[0]).write_bytes(b"changed")
    else:
        (path / ARTIFACT_FILES[0]).unlink()
    with pytest.raises(registry.PromotionRefused, match="not promoted"):
        registry.manual_promote(engine, "b", as_of=D, reason="x")
    assert _statuses(engine) == {"a": "active", "b": "candidate"}
    assert len(_events(engine)) == 1 and len(_deployments(engine)) == 1


def test_a_crash_while_logging_undoes_the_promotion(engine, tmp_path, monkeypatch):
    with engine.begin() as conn:
        _register_with_artifact(conn, tmp_path, "a")
        _register_with_artifact(conn, tmp_path, "b")
    registry.manual_promote(engine, "a", as_of=D, reason="first")
    registry.manual_promote(engine, "b", as_of=D, reason="second")

    def crash(conn, **event):
        raise RuntimeError("crash before the event is written")

    monkeypatch.setattr(registry, "record_retraining_event", crash)
    with pytest.raises(RuntimeError):
        registry.manual_promote(engine, "a", as_of=D, reason="x")
    with pytest.raises(RuntimeError):
        registry.manual_rollback(engine, as_of=D, reason="x")
    assert _statuses(engine) == {"a": "archived", "b": "active"}
    assert len(_events(engine)) == 2 and len(_deployments(engine)) == 2


def test_a_comparison_record_carries_the_gates_test_interval_and_p_value(engine):
    from feedback_loop.lib.models.flow import comparison_record
    from feedback_loop.lib.models.promotion import GateEvidence, decide_promotion

    evidence = GateEvidence("paired bootstrap", 0.04, (0.01, 0.07), 0.03, (0.005, 0.055), 0.012, 80, 1.5, 0.4)
    new, current = {"accuracy": 0.64, "f1_weighted": 0.5}, {"accuracy": 0.60, "f1_weighted": 0.5}
    decision = decide_promotion(new, current, evidence)
    with engine.begin() as conn:
        _register(conn, "a")
        _register(conn, "b")
        comparison_id = registry.record_comparison(conn, **comparison_record(D, "b", "a", new, current, 400,
                                                                             decision, None))
        first_id = registry.record_comparison(conn, **comparison_record(
            D, "a", None, current, None, 400, decide_promotion(current, None), None))
    with engine.connect() as conn:
        rows = {r.comparison_id: r._mapping for r in conn.execute(sa.text("SELECT * FROM ml_model_comparisons"))}
    row = rows[comparison_id]
    assert row["promoted"] is True and row["gate_test"] == "paired bootstrap" and row["p_value"] == 0.012
    assert (row["accuracy_gain_ci_low"], row["accuracy_gain_ci_high"]) == (0.01, 0.07)
    assert (row["log_loss_gain"], row["log_loss_gain_ci_low"], row["log_loss_gain_ci_high"]) == (0.03, 0.005, 0.055)
    assert (row["new_queue_excess_pct"], row["current_queue_excess_pct"]) == (1.5, 0.4)
    assert row["details"]["evidence"]["supported"] is True and "p=0.012" in row["reason"]
    assert rows[first_id]["gate_test"] is None and rows[first_id]["p_value"] is None
