import datetime as dt

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from feedback_loop.lib import policy
from feedback_loop.lib.models import registry
from feedback_loop.lib.monitoring.drift import (
    DriftReference,
    drift_report,
    feature_ks,
    population_stability_index,
    write_drift_report,
)
from feedback_loop.lib.vocab import DriftRecommendation

FEATURES = ["f1", "f2", "f3", "f4", "f5"]


def _frame(seed, rows=500, shifted=()):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    for name in shifted:
        frame[name] += 1.0
    return frame


def _scores(seed, rows=500, loc=0.5):
    return np.random.default_rng(seed).normal(loc, 0.1, size=rows)


def _reference():
    return DriftReference.of(_frame(1), _scores(2), FEATURES)


def _report(live, live_scores=None, correct=None, validation_accuracy=None):
    return drift_report(
        _reference(), live, _scores(3, len(live)) if live_scores is None else live_scores,
        correct, validation_accuracy, FEATURES,
    )


def test_three_shifted_features_schedule_a_retrain():
    report = _report(_frame(10, shifted=("f1", "f2", "f3")))
    assert report.recommendation == DriftRecommendation.SCHEDULE_RETRAIN
    assert report.drifting_features == ["f1", "f2", "f3"]
    assert all(report.ks[name].statistic > 0.3 for name in ("f1", "f2", "f3"))
    assert report.ks["f1"].n_ref == 500 and report.ks["f1"].n_live == 500
    assert "3 features with KS > 0.15" in report.reason
    assert report.psi is not None and report.psi < policy.DRIFT_PSI_THRESHOLD


def test_two_shifted_features_are_reported_but_do_not_retrain():
    report = _report(_frame(10, shifted=("f1", "f2")))
    assert report.recommendation == DriftRecommendation.NO_ACTION
    assert report.drifting_features == ["f1", "f2"]


def test_same_distribution_other_seed_is_not_flagged():
    report = _report(_frame(11))
    assert report.recommendation == DriftRecommendation.NO_ACTION
    assert report.drifting_features == []
    assert max(r.statistic for r in report.ks.values()) < policy.DRIFT_KS_THRESHOLD


def test_ten_row_live_window_never_flags():
    live = _frame(12, rows=10, shifted=FEATURES)
    report = _report(live, live_scores=_scores(3, 10, loc=0.9), correct=[False] * 10,
                     validation_accuracy=0.9)
    assert report.recommendation == DriftRecommendation.NO_ACTION
    assert report.drifting_features == [] and report.psi is None
    assert report.live_rows == 10 and report.resolved_outcomes == 10
    assert "KS not evaluated for 5 feature(s)" in report.reason
    assert "PSI not evaluated" in report.reason
    assert "accuracy drop not evaluated: 10 resolved outcomes < 30" in report.reason


def test_empty_live_frame_is_not_evaluated_but_a_missing_column_raises():
    report = _report(pd.DataFrame(), live_scores=[])
    assert report.recommendation == DriftRecommendation.NO_ACTION and report.live_rows == 0
    assert all(r.statistic is None and r.n_live == 0 for r in report.ks.values())
    with pytest.raises(KeyError):
        feature_ks(_reference(), _frame(2).drop(columns="f3"), FEATURES)
    with pytest.raises(KeyError):
        DriftReference.of(_frame(1).drop(columns="f3"), _scores(2), FEATURES)


def test_missing_values_are_dropped_per_feature():
    live = _frame(13)
    live.loc[:459, "f4"] = np.nan  # 40 values left: below the live minimum
    live["f5"] = np.nan
    result = feature_ks(_reference(), live, FEATURES)
    assert result["f4"].n_live == 40 and result["f4"].statistic is not None
    assert result["f5"].statistic is None and result["f5"].n_live == 0
    report = _report(live)
    assert "f4, f5" in report.reason and report.recommendation == DriftRecommendation.NO_ACTION


def test_psi_identical_is_zero_and_shifted_is_large():
    expected = _scores(2, 2000)
    assert population_stability_index(expected, expected) == pytest.approx(0.0, abs=1e-12)
    assert population_stability_index(expected, _scores(5, 2000)) < 0.05
    assert population_stability_index(expected, _scores(5, 2000, loc=0.6)) > policy.DRIFT_PSI_THRESHOLD
    # Scores beyond the expected range land in the open outer bins.
    assert population_stability_index(expected, np.full(100, 5.0)) > 1.0
    with pytest.raises(ValueError):
        population_stability_index(expected, [np.nan])


def test_psi_above_threshold_is_an_emergency():
    report = _report(_frame(11), live_scores=_scores(3, 500, loc=0.6))
    assert report.recommendation == DriftRecommendation.EMERGENCY_RETRAIN
    assert report.psi > policy.DRIFT_PSI_THRESHOLD and "score PSI" in report.reason


def test_accuracy_drop_beyond_five_points_is_an_emergency():
    n = 40
    at_margin = [True] * 24 + [False] * 16  # 0.60 vs 0.65 (0.05000000000000004 in floats)
    beyond = [True] * 21 + [False] * 19  # 0.525 vs 0.60
    assert _report(_frame(11), correct=at_margin, validation_accuracy=0.65).recommendation == (
        DriftRecommendation.NO_ACTION
    )
    report = _report(_frame(11), correct=beyond, validation_accuracy=0.60)
    assert report.recommendation == DriftRecommendation.EMERGENCY_RETRAIN
    assert report.rolling_accuracy == 21 / n and "below validation" in report.reason
    too_few = _report(_frame(11), correct=[False] * 29, validation_accuracy=0.60)
    assert too_few.recommendation == DriftRecommendation.NO_ACTION


def test_write_drift_report_replaces_the_day_whichever_champion_wrote_it(engine):
    as_of = dt.date(2025, 6, 30)
    with engine.begin() as conn:
        for model_id in ("old", "m"):
            registry.register_model(
                conn, model_id=model_id, version=f"v-{model_id}", trained_as_of=as_of, trigger="scheduled",
                num_classes=5, config={}, feature_names=FEATURES, metrics={}, model_card={},
                artifact_path=None, artifact_sha256=None, training_start=None, training_end=None,
            )
        live = _frame(10, shifted=("f1", "f2", "f3"))
        live["f5"] = np.nan
        write_drift_report(conn, _report(_frame(11)), as_of, "old")  # an earlier run served another champion
        write_drift_report(conn, _report(_frame(11)), as_of, "m")
        write_drift_report(conn, _report(live), as_of, "m")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM drift_reports")).all()
    assert len(rows) == 1
    row = rows[0]._mapping
    assert row["model_id"] == "m" and row["recommendation"] == "schedule_retrain"
    assert row["drifting_features"] == ["f1", "f2", "f3"]
    assert row["ks_statistics"]["f1"]["n_live"] == 500 and row["ks_statistics"]["f1"]["statistic"] > 0.3
    assert row["ks_statistics"]["f5"]["statistic"] is None
    assert row["live_rows"] == 500 and row["reference_rows"] == 500 and row["resolved_outcomes"] == 0
    assert row["score_psi"] is not None and row["rolling_accuracy"] is None
