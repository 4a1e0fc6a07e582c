"""Challenger training, calibration, metrics and artifacts on a synthetic planted-signal set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from scipy.special import softmax
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    f1_score,
    log_loss,
    roc_auc_score,
)

from feedback_loop.lib.signals.features import FEATURE_NAMES
from feedback_loop.lib.training.artifact import (
    ArtifactIntegrityError,
    artifact_sha256,
    load_model,
    save_model,
)
from feedback_loop.lib.training.config import Hyperparameters, TrainingConfig
from feedback_loop.lib.training.labels import LABELED_COLUMNS, label_from_return
from feedback_loop.lib.training.metrics import (
    classification_metrics,
    expected_calibration_error,
)
from feedback_loop.lib.training.model import fit_temperature, train_challenger
from feedback_loop.lib.vocab import SignalType

AS_OF = pd.Timestamp("2026-03-02")
SMALL = Hyperparameters(n_estimators=30, max_depth=3, learning_rate=0.2)


def planted_frame(n: int = 1200, seed: int = 0, num_classes: int = 5) -> pd.DataFrame:
    """Rows over two years; the forward return is 3·f0 − 2·f1 + noise, so f0/f1 carry the signal."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2024-01-02", "2025-12-31")
    t0 = pd.Series(np.sort(rng.choice(days, n)))
    frame = pd.DataFrame({"ticker": rng.choice(["AAA", "BBB", "CCC"], n), "t0": t0,
                          "t1": t0 + pd.Timedelta(days=28)})
    x = rng.normal(size=(n, len(FEATURE_NAMES)))
    frame[FEATURE_NAMES] = x
    forward = 3 * x[:, 0] - 2 * x[:, 1] + rng.normal(scale=2, size=n)
    label = label_from_return(forward, TrainingConfig(num_classes=num_classes))
    return frame.assign(forward_return_pct=forward, label=label, source="market",
                        weight=1.0)[LABELED_COLUMNS]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return planted_frame()


@pytest.fixture(scope="module")
def model(frame):
    return train_challenger(frame, TrainingConfig(hyperparameters=SMALL), AS_OF, validate=True)


def test_challenger_learns_the_planted_signal(model):
    majority = model.holdout["label"].value_counts(normalize=True).max()
    assert model.metrics["accuracy"] > majority + 0.1
    assert model.metrics["roc_auc_ovr"] > 0.75
    top_two = sorted(model.feature_importance, key=model.feature_importance.get)[-2:]
    assert set(top_two) == {FEATURE_NAMES[0], FEATURE_NAMES[1]}
    assert set(model.feature_importance) == set(FEATURE_NAMES)


def test_slices_are_cut_in_time_with_an_embargo(model, frame):
    embargo = pd.Timedelta(days=model.config.embargo_days)
    assert model.training_end < model.holdout["t0"].min() - embargo
    m = model.metrics
    assert m["holdout_rows"] == len(model.holdout) >= 0.2 * len(frame)
    assert m["fit_rows"] + m["calibration_rows"] + m["holdout_rows"] + m["purged_rows"] == len(frame)
    assert m["purged_rows"] > 0
    assert model.model_card["rows_by_source"] == {"market": len(frame), "outcome": 0}
    assert model.model_card["training_window"]["end"] == model.training_end.date().isoformat()


def test_validation_folds_and_their_averages(model):
    folds, averages = model.metrics["folds"], model.metrics["fold_averages"]
    assert set(folds) == {"walk_forward_rolling", "walk_forward_expanding", "purged_kfold"}
    assert len(folds["walk_forward_rolling"]) == 4 and len(folds["purged_kfold"]) == 5
    for scheme, rows in folds.items():
        assert averages[scheme]["accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in rows]))
        assert all(r["train_rows"] > 0 and r["test_rows"] > 0 for r in rows)
    expanding = [r["train_rows"] for r in folds["walk_forward_expanding"]]
    assert expanding == sorted(expanding)


def test_predict_proba_is_calibrated_probabilities_and_accepts_nan(model, frame):
    rows = frame.tail(50).copy()
    rows.loc[rows.index[:10], FEATURE_NAMES[0]] = np.nan
    proba = model.predict_proba(rows)
    assert proba.shape == (50, 5)
    assert np.allclose(proba.sum(axis=1), 1.0) and np.isfinite(proba).all()
    with pytest.raises(ValueError, match="missing"):
        model.predict_proba(rows.drop(columns=[FEATURE_NAMES[3]]))


def test_predict_signals_confidence_is_the_probability_of_the_direction_given_a_move(model):
    proba = model.predict_proba(model.holdout)
    signals = model.predict_signals(model.holdout)
    names = [c.value for c in model.classes]
    buy_side, sell_side, hold = proba[:, 3] + proba[:, 4], proba[:, 0] + proba[:, 1], proba[:, 2]
    # Side first (by total probability), then the strength within the side.
    for row, call in zip(proba, signals["ml_signal_type"]):
        sides = {"buy": row[3] + row[4], "sell": row[0] + row[1], "hold": row[2]}
        side = max(sides, key=sides.get)
        within = {"buy": (3, 4), "sell": (0, 1), "hold": (2,)}[side]
        assert call == names[max(within, key=lambda k: row[k])]
    expected = np.select(
        [(buy_side >= sell_side) & (buy_side > hold), (sell_side > buy_side) & (sell_side > hold)],
        [buy_side / (buy_side + sell_side), sell_side / (buy_side + sell_side)], default=hold)
    directional = signals["ml_signal_type"] != "hold"
    assert directional.any()
    assert (signals["ml_confidence"][directional] >= 0.5).all(), "the called side is the more likely one"
    assert np.allclose(signals["ml_confidence"], expected)
    assert signals["probabilities"].iloc[0] == pytest.approx(dict(zip(names, proba[0])))


def test_evaluate_reproduces_the_holdout_metrics(model):
    scored = model.evaluate(model.holdout.copy())  # not the holdout itself: computed again
    for name in ("accuracy", "f1_weighted", "roc_auc_ovr", "brier", "log_loss", "ece"):
        assert scored[name] == pytest.approx(model.metrics[name])
    # The holdout's own metrics come from training, equal to computing them again, and as a copy.
    kept = model.evaluate(model.holdout)
    assert kept == scored
    kept["per_class"]["buy"]["support"] = -1
    assert model.evaluate(model.holdout) == scored


def test_calibration_png_is_a_png(model):
    assert model.calibration_png.startswith(b"\x89PNG\r\n\x1a\n")


def test_labels_resolving_after_as_of_are_refused(frame):
    with pytest.raises(ValueError, match="after as_of"):
        train_challenger(frame, TrainingConfig(hyperparameters=SMALL), frame["t1"].max()
                         - pd.Timedelta(days=1), validate=False)


def test_a_3_class_model_trains():
    frame3 = planted_frame(num_classes=3)
    model3 = train_challenger(frame3, TrainingConfig(num_classes=3, hyperparameters=SMALL), AS_OF,
                              validate=False)
    assert model3.classes == [SignalType.SELL, SignalType.HOLD, SignalType.BUY]
    assert model3.predict_proba(frame3.head(5)).shape == (5, 3)
    assert model3.metrics["folds"] == {} and model3.metrics["accuracy"] > 0.5


def test_sample_weights_reach_xgboost(frame):
    config = TrainingConfig(hyperparameters=SMALL)
    base = train_challenger(frame, config, AS_OF, validate=False)
    rng = np.random.default_rng(3)
    reweighted = train_challenger(frame.assign(weight=rng.uniform(0.2, 5.0, len(frame))), config,
                                  AS_OF, validate=False)
    rows = base.holdout
    assert not np.allclose(base.predict_proba(rows), reweighted.predict_proba(rows))
    strong_buy = frame["label"] == 4
    ignored = train_challenger(frame.assign(weight=np.where(strong_buy, 0.0, 1.0)), config, AS_OF,
                               validate=False)
    assert ignored.predict_proba(rows)[:, 4].mean() < 0.5 * base.predict_proba(rows)[:, 4].mean()


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(5)
    margins = rng.normal(scale=3.0, size=(4000, 5))
    y = np.array([rng.choice(5, p=p) for p in softmax(margins / 2.0, axis=1)])
    fitted = fit_temperature(margins, y, np.ones(len(y)))
    assert fitted.temperature == pytest.approx(2.0, rel=0.1)


# --- metrics ---------------------------------------------------------------------------


def test_classification_metrics_equal_scikit_learn():
    rng = np.random.default_rng(11)
    proba = rng.dirichlet(np.ones(5), size=400)
    y = np.array([rng.choice(5, p=p) for p in proba])
    result = classification_metrics(y, proba, list(SignalType))
    predicted = proba.argmax(axis=1)
    assert result["accuracy"] == accuracy_score(y, predicted)
    assert result["f1_weighted"] == f1_score(y, predicted, average="weighted")
    assert result["roc_auc_ovr"] == roc_auc_score(y, proba, multi_class="ovr")
    assert result["log_loss"] == pytest.approx(log_loss(y, proba))
    one_hot = np.eye(5)[y]
    assert result["brier"] == pytest.approx(((proba - one_hot) ** 2).sum(axis=1).mean())
    assert result["brier"] == pytest.approx(brier_score_loss(y, proba, scale_by_half=False))
    assert result["per_class"]["strong_buy"]["support"] == (y == 4).sum()
    absent = classification_metrics(np.where(y == 4, 3, y), proba, list(SignalType))  # no strong_buy left
    assert absent["f1_weighted"] == f1_score(np.where(y == 4, 3, y), predicted, labels=range(5),
                                             average="weighted", zero_division=0)


def test_roc_auc_over_present_classes_when_one_is_absent():
    rng = np.random.default_rng(12)
    proba = rng.dirichlet(np.ones(5), size=300)
    y = rng.choice([0, 1, 2, 3], size=300)  # no strong_buy
    result = classification_metrics(y, proba, list(SignalType))
    expected = np.mean([roc_auc_score(y == k, proba[:, k]) for k in range(4)])
    assert result["roc_auc_ovr"] == pytest.approx(expected)
    assert result["roc_auc_classes"] == ["strong_sell", "sell", "hold", "buy"]


def test_ece_is_small_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(13)
    proba = rng.dirichlet(np.ones(5) * 0.5, size=20000)
    y = (rng.random(20000)[:, None] > proba.cumsum(axis=1)).sum(axis=1)
    assert expected_calibration_error(y, proba) < 0.02
    sharpened = softmax(np.log(proba) * 4, axis=1)
    assert expected_calibration_error(y, sharpened) > 0.1


# --- artifacts -------------------------------------------------------------------------


def test_save_then_load_reproduces_predictions_exactly(model, frame, tmp_path):
    path, sha = save_model(model, tmp_path)
    loaded = load_model(path, sha)
    assert np.array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    assert loaded.version == model.version and loaded.classes == model.classes
    assert loaded.config == model.config and loaded.metrics["accuracy"] == model.metrics["accuracy"]
    pd.testing.assert_frame_equal(loaded.holdout, model.holdout, check_dtype=False)
    assert artifact_sha256(path) == sha
    _, sha_again = save_model(model, tmp_path / "again")
    assert sha_again == sha


def test_one_changed_byte_fails_the_sha256_check(model, tmp_path):
    path, sha = save_model(model, tmp_path)
    booster = path / "booster.ubj"
    content = bytearray(booster.read_bytes())
    content[len(content) // 2] ^= 0xFF
    booster.write_bytes(bytes(content))
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        load_model(path, sha)


def test_a_missing_file_is_reported(model, tmp_path):
    path, sha = save_model(model, tmp_path)
    (path / "model.json").unlink()
    with pytest.raises(ArtifactIntegrityError, match="lacks"):
        load_model(path, sha)


def test_storing_the_same_model_twice_returns_its_record(model, frame, engine, tmp_path):
    """A retrain re-run on the same data yields the same version: no duplicate, no failure."""
    from feedback_loop.lib.models import store as model_store

    training = frame.assign(weight=1.0)
    with engine.begin() as conn:
        first = model_store.store_model(conn, model, model_id=f"model-{model.version}", trigger="manual",
                                        training_frame=training, artifact_root=tmp_path)
    with engine.begin() as conn:
        again = model_store.store_model(conn, model, model_id=f"model-{model.version}", trigger="scheduled",
                                        training_frame=training, artifact_root=tmp_path / "elsewhere")
        assert again == first
        assert conn.execute(sa.text("SELECT count(*) FROM ml_models")).scalar() == 1
        other = train_challenger(frame, TrainingConfig(hyperparameters=SMALL.model_copy(update={"seed": 7})),
                                 AS_OF, validate=False)
        assert other.version != model.version
        with pytest.raises(ValueError, match="already holds version"):
            model_store.store_model(conn, other, model_id=f"model-{model.version}", trigger="manual",
                                    training_frame=training, artifact_root=tmp_path)
