import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.lib.models import registry, serving
from feedback_loop.lib.models.registry import ModelRecord
from feedback_loop.lib.signals.features import FEATURE_NAMES
from feedback_loop.lib.training.artifact import BOOSTER_FILE, HOLDOUT_FILE, MODEL_FILE, save_model
from feedback_loop.lib.vocab import PredictionRole, ServingPath
from feedback_loop_tests.harness import small_model

AS_OF = pd.Timestamp("2026-03-02")


@pytest.fixture(scope="module")
def trained():
    return small_model("2024-01-02", "2025-12-31", AS_OF)[0]


def _record(model, model_id, path, sha256):
    return ModelRecord(
        model_id=model_id, version=f"{model.version}-{model_id}", status="active",
        trained_as_of=AS_OF.date(), trigger="scheduled", num_classes=model.num_classes,
        training_start=None, training_end=None, config=model.config.to_dict(),
        feature_names=model.feature_names, metrics={}, model_card={}, artifact_path=str(path),
        artifact_sha256=sha256, created_at=dt.datetime(2026, 3, 2), promoted_at=None, archived_at=None,
    )


def _saved(trained, tmp_path, model_id):
    path, sha256 = save_model(trained, tmp_path / model_id)
    return _record(trained, model_id, path, sha256)


def _tamper(record):
    booster = f"{record.artifact_path}/{BOOSTER_FILE}"
    with open(booster, "ab") as handle:
        handle.write(b"\0")


def _features(rows=6):
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
    frame.loc[0, "vix_level"] = np.nan
    return frame.assign(ticker=[f"T{i}" for i in range(rows)], as_of=AS_OF,
                        signal_id=[f"2026-03-02:T{i}" for i in range(rows)])


def test_tampered_artifacts_fall_back_to_previous_champion_then_heuristic(trained, tmp_path):
    champion, previous = _saved(trained, tmp_path, "champ"), _saved(trained, tmp_path, "prev")
    candidates = [(champion, "champion"), (previous, "previous_champion")]

    served = serving.load_for_serving(candidates)
    assert served.serving_path == ServingPath.CHAMPION and served.record is champion
    assert served.failures == [] and served.model.version == trained.version

    _tamper(champion)
    served = serving.load_for_serving(candidates)
    assert served.serving_path == ServingPath.PREVIOUS_CHAMPION and served.record is previous
    assert len(served.failures) == 1 and "champion champ" in served.failures[0]
    assert "sha256" in served.failures[0]

    _tamper(previous)
    served = serving.load_for_serving(candidates)
    assert served.serving_path == ServingPath.HEURISTIC_FALLBACK
    assert served.model is None and served.record is None and len(served.failures) == 2

    assert serving.load_for_serving([]).serving_path == ServingPath.NO_CHAMPION


def _unreadable_eio(path):
    """A booster whose read fails with EIO (reading /proc/self/mem from offset 0), even for root."""
    (path / BOOSTER_FILE).unlink()
    (path / BOOSTER_FILE).symlink_to("/proc/self/mem")


def _directory_in_place(path):
    (path / MODEL_FILE).unlink()
    (path / MODEL_FILE).mkdir()


def _truncated(path):
    (path / HOLDOUT_FILE).write_bytes((path / HOLDOUT_FILE).read_bytes()[:10])


def _removed(path):
    (path / MODEL_FILE).unlink()


@pytest.mark.parametrize(("damage", "reason"), [
    (_unreadable_eio, "Input/output error"), (_directory_in_place, "Is a directory"),
    (_truncated, "sha256"), (_removed, "lacks"),
])
def test_unreadable_artifacts_fall_back_with_the_reason(trained, tmp_path, damage, reason):
    champion, previous = _saved(trained, tmp_path, "champ"), _saved(trained, tmp_path, "prev")
    damage(Path(champion.artifact_path))
    served = serving.load_for_serving([(champion, "champion"), (previous, "previous_champion")])
    assert served.serving_path == ServingPath.PREVIOUS_CHAMPION and served.record is previous
    assert len(served.failures) == 1 and "champion champ" in served.failures[0]
    assert reason in served.failures[0]
    damage(Path(previous.artifact_path))
    served = serving.load_for_serving([(champion, "champion"), (previous, "previous_champion")])
    assert served.serving_path == ServingPath.HEURISTIC_FALLBACK and served.model is None
    assert len(served.failures) == 2 and reason in served.failures[1]


def test_the_model_is_built_from_the_bytes_that_were_hashed(trained, tmp_path, monkeypatch):
    """Each artifact file is read once per load: a file swapped after hashing cannot be loaded."""
    from feedback_loop.lib.training import artifact

    record = _saved(trained, tmp_path, "champ")
    reads = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self.name) or original(self))
    assert serving.load_for_serving([(record, "champion")]).serving_path == ServingPath.CHAMPION
    assert sorted(reads) == artifact.ARTIFACT_FILES


def test_record_without_artifact_is_a_failure_not_a_crash(trained, tmp_path):
    record = _record(trained, "bare", None, None)
    served = serving.load_for_serving([(record, "champion")])
    assert served.serving_path == ServingPath.HEURISTIC_FALLBACK
    assert "no recorded artifact" in served.failures[0]


def test_score_with_logging_rows(trained, tmp_path):
    record = _saved(trained, tmp_path, "champ")
    features = _features()
    predictions, log = serving.score_with_logging(
        trained, record, features, PredictionRole.CHAMPION, ServingPath.PREVIOUS_CHAMPION)

    expected = trained.predict_signals(features)
    assert list(predictions.columns) == serving.PREDICTION_COLUMNS
    assert predictions["ml_signal_type"].tolist() == expected["ml_signal_type"].tolist()
    np.testing.assert_allclose(predictions["ml_confidence"], expected["ml_confidence"])

    assert list(log.columns) == serving.PREDICTION_LOG_COLUMNS
    assert log["signal_id"].tolist() == features["signal_id"].tolist()
    assert set(log["role"]) == {"champion"} and set(log["serving_path"]) == {"previous_champion"}
    assert set(log["model_id"]) == {"champ"} and set(log["model_version"]) == {record.version}
    first = {name: (None if name == "vix_level" else float(features.loc[0, name])) for name in FEATURE_NAMES}
    assert log.loc[0, "feature_hash"] == hashlib.sha256(json.dumps(first, sort_keys=True).encode()).hexdigest()
    assert log["feature_hash"].nunique() == len(features)
    for probabilities, predicted in zip(log["probabilities"], log["predicted_class"]):
        assert set(probabilities) == {c.value for c in trained.classes}
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert predicted == max(probabilities, key=probabilities.get)
    # One call scores the batch; each row is served when the call returns, so each carries its time.
    assert log["latency_ms"].nunique() == 1 and log.loc[0, "latency_ms"] > 0
    summary = serving.latency_summary(log)
    assert summary["p50_ms"] == summary["p99_ms"] == log.loc[0, "latency_ms"]

    # Without signal_id the trading_signals key is built from as_of and ticker.
    _, log = serving.score_with_logging(trained, record, features.drop(columns="signal_id"),
                                        PredictionRole.SHADOW, ServingPath.CHAMPION)
    assert log["signal_id"].tolist() == features["signal_id"].tolist()


def test_scoring_a_batch_gives_each_row_what_scoring_it_alone_gives(trained):
    features = _features(rows=300)
    batch = trained.predict_signals(features)
    alone = pd.concat([trained.predict_signals(features.iloc[[i]]) for i in range(len(features))])
    pd.testing.assert_frame_equal(batch, alone, check_exact=True)


def _register(conn, record):
    registry.register_model(
        conn, model_id=record.model_id, version=record.version, trained_as_of=record.trained_as_of,
        trigger="scheduled", num_classes=record.num_classes, config=record.config,
        feature_names=record.feature_names, metrics={}, model_card={}, artifact_path=record.artifact_path,
        artifact_sha256=record.artifact_sha256, training_start=None, training_end=None,
    )


def test_serving_from_the_registry_and_logging_predictions(trained, tmp_path, engine):
    first, second = _saved(trained, tmp_path, "first"), _saved(trained, tmp_path, "second")
    day = AS_OF.date()
    for record in (first, second):
        with engine.begin() as conn:
            _register(conn, record)
    with engine.connect() as conn:
        # Both trained on AS_OF, neither deployed: the newer is the shadow candidate from the next day.
        assert serving.candidate_as_of(conn, day).record is None
        assert serving.candidate_as_of(conn, day + dt.timedelta(days=1)).record.model_id == "second"
        assert serving.serve_as_of(conn, day).serving_path == ServingPath.NO_CHAMPION
    registry.promote(engine, "first", as_of=day, trigger="scheduled", reason="first")
    registry.promote(engine, "second", as_of=day + dt.timedelta(days=1), trigger="scheduled", reason="better")
    _tamper(second)
    with engine.connect() as conn:
        on_day_two = serving.serve_as_of(conn, day + dt.timedelta(days=1))
        on_day_three = serving.serve_as_of(conn, day + dt.timedelta(days=2))
        assert serving.candidate_as_of(conn, day + dt.timedelta(days=2)).record is None
    assert on_day_two.serving_path == ServingPath.CHAMPION and on_day_two.record.model_id == "first"
    assert on_day_three.serving_path == ServingPath.PREVIOUS_CHAMPION
    assert on_day_three.record.model_id == "first" and "second" in on_day_three.failures[0]

    features = _features(3)
    _, log = serving.score_with_logging(on_day_three.model, on_day_three.record, features,
                                        PredictionRole.CHAMPION, on_day_three.serving_path)
    with engine.begin() as conn:
        for signal_id, ticker in zip(features["signal_id"], features["ticker"]):
            conn.execute(sa.text(
                "INSERT INTO trading_signals (signal_id, as_of, ticker, signal_type, confidence,"
                " heuristic_signal_type, heuristic_confidence, blend_weight, blend_case, ml_enhanced,"
                " serving_path, status, features) VALUES (:s, :d, :t, 'buy', 0.8, 'buy', 0.8, 0.2,"
                " 'agree', TRUE, 'previous_champion', 'queued', '{}')"
            ), {"s": signal_id, "d": day, "t": ticker})
        serving.write_predictions(conn, log)
        serving.write_predictions(conn, log)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT * FROM ml_predictions ORDER BY signal_id")).all()
    assert len(stored) == 3
    row = stored[0]._mapping
    assert row["serving_path"] == "previous_champion" and row["model_id"] == "first"
    assert row["probabilities"] == log.loc[0, "probabilities"]
    assert row["feature_hash"] == log.loc[0, "feature_hash"] and row["as_of"] == day
