"""Drift of the champion: live features vs its training data, live scores vs its
validation scores, and rolling accuracy on resolved outcomes vs validation accuracy.

Decision tree (reference document, with this project's thresholds from `policy`):

1. score PSI > DRIFT_PSI_THRESHOLD, or rolling accuracy more than DRIFT_ACCURACY_DROP
   below validation accuracy  -> emergency_retrain
2. >= DRIFT_FEATURES_FOR_RETRAIN features with KS statistic > DRIFT_KS_THRESHOLD
                                                              -> schedule_retrain
3. otherwise                                                  -> no_action

Each test runs only on enough data (DRIFT_MIN_LIVE_ROWS, DRIFT_MIN_REFERENCE_ROWS,
DRIFT_MIN_RESOLVED_OUTCOMES); a test below its minimum is not evaluated, cannot flag,
and the reason says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy.stats import ks_2samp

from feedback_loop.lib import policy
from feedback_loop.lib.store import db
from feedback_loop.lib.training.config import TrainingConfig
from feedback_loop.lib.training.labels import label_from_return
from feedback_loop.lib.vocab import DriftRecommendation

#: Share given to a PSI bin that holds no observation on one side, so ln(a/e) is finite.
#: With 10 bins an empty bin then contributes about 0.1 * ln(0.1 / 1e-4) ~ 0.7, i.e.
#: a bin that empties out is by itself a drift signal — as it should be.
PSI_EPSILON = 1e-4


RULE_DESCRIPTION = (
    f"Live feature distributions ({policy.DRIFT_LIVE_WINDOW_DAYS} days, at least {policy.DRIFT_MIN_LIVE_DAYS} live "
    f"days since the champion was trained) against the champion's training data: KS per feature "
    f"(> {policy.DRIFT_KS_THRESHOLD} drifts), PSI of the score distribution (> {policy.DRIFT_PSI_THRESHOLD}), rolling "
    "accuracy on resolved outcomes vs validation. Recommends emergency_retrain, schedule_retrain or no_action; "
    "the drift sensor acts on it."
)


def live_window_start(day, trained_as_of) -> pd.Timestamp:
    """Live rows are those after this date: the recent window, and only what the champion has seen in service."""
    return max(pd.Timestamp(day) - pd.Timedelta(days=policy.DRIFT_LIVE_WINDOW_DAYS), pd.Timestamp(trained_as_of))


def too_few_live_days(live_days: int) -> str | None:
    """Why no drift report is made on this few live days (market-wide features are one value per day), or None."""
    if live_days >= policy.DRIFT_MIN_LIVE_DAYS:
        return None
    return f"{live_days} live days since the champion was trained; drift needs {policy.DRIFT_MIN_LIVE_DAYS}"


class KsResult(NamedTuple):
    statistic: float | None
    pvalue: float | None
    n_ref: int
    n_live: int


@dataclass(frozen=True)
class DriftReport:
    recommendation: DriftRecommendation
    reason: str
    ks: dict[str, KsResult]
    drifting_features: list[str]
    psi: float | None
    rolling_accuracy: float | None
    validation_accuracy: float | None
    live_rows: int
    reference_rows: int
    resolved_outcomes: int


def _values(frame: pd.DataFrame, name: str) -> np.ndarray:
    if not len(frame):
        return np.array([], dtype=float)
    return pd.to_numeric(frame[name], errors="coerce").dropna().to_numpy(dtype=float)


@dataclass(frozen=True)
class DriftReference:
    """The champion's side of every drift test, prepared once per champion (the loop tests it daily):
    each feature's non-missing values, sorted as the KS test would sort them, and the top-class scores."""

    values: dict[str, np.ndarray]
    scores: np.ndarray
    rows: int

    @classmethod
    def of(cls, features: pd.DataFrame, scores, feature_names) -> DriftReference:
        """From the champion's training features and its scores on them; a missing feature column raises KeyError."""
        return cls({name: np.sort(_values(features, name)) for name in feature_names},
                   np.asarray(scores, dtype=float), len(features))


def feature_ks(reference: DriftReference, live: pd.DataFrame, feature_names) -> dict[str, KsResult]:
    """Two-sample KS test per feature on the non-missing values of each side.

    A feature with no value on either side gets statistic and p-value None. An empty frame
    may lack the columns; a non-empty frame without a feature column raises KeyError.
    """
    results = {}
    for name in feature_names:
        ref, cur = reference.values[name], _values(live, name)
        if len(ref) == 0 or len(cur) == 0:
            results[name] = KsResult(None, None, len(ref), len(cur))
            continue
        test = ks_2samp(ref, cur, method="asymp")  # exact is O(n*m): too slow daily
        results[name] = KsResult(float(test.statistic), float(test.pvalue), len(ref), len(cur))
    return results


def ks_evaluable(result: KsResult) -> bool:
    """Whether a KS result rests on enough values on both sides to flag drift."""
    return (
        result.statistic is not None
        and result.n_ref >= policy.DRIFT_MIN_REFERENCE_ROWS
        and result.n_live >= policy.DRIFT_MIN_LIVE_ROWS
    )


def population_stability_index(expected_scores, actual_scores, bins: int = 10) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins of the expected distribution.

    Bin edges are the quantiles of `expected_scores` (equal-mass bins; tied quantiles are
    merged, so discrete scores give fewer bins), with open outer bins so actual scores
    outside the expected range still count. An empty bin gets share PSI_EPSILON.
    Missing values are dropped; raises ValueError when either side is empty.
    """
    expected = np.asarray(expected_scores, dtype=float)
    actual = np.asarray(actual_scores, dtype=float)
    expected, actual = expected[~np.isnan(expected)], actual[~np.isnan(actual)]
    if len(expected) == 0 or len(actual) == 0:
        raise ValueError("PSI needs at least one expected and one actual score")
    inner_edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1))[1:-1])
    n_bins = len(inner_edges) + 1

    def shares(values: np.ndarray) -> np.ndarray:
        counts = np.bincount(np.searchsorted(inner_edges, values, side="right"), minlength=n_bins)
        return np.maximum(counts / len(values), PSI_EPSILON)

    e, a = shares(expected), shares(actual)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(
    reference: DriftReference,
    live_features: pd.DataFrame,
    live_scores,
    resolved_correct,
    validation_accuracy: float | None,
    feature_names,
) -> DriftReport:
    """Measure drift and recommend an action (see the module doc).

    `reference` comes from the champion's training data, `live_features`/`live_scores` from
    the recent window; `resolved_correct` holds one bool per resolved live prediction (was
    the predicted class right), or None.
    """
    notes: list[str] = []
    flags: list[str] = []

    ks = feature_ks(reference, live_features, feature_names)
    evaluable = [name for name, result in ks.items() if ks_evaluable(result)]
    drifting = [
        name for name in evaluable
        if round(ks[name].statistic, policy.THRESHOLD_DECIMALS) > policy.DRIFT_KS_THRESHOLD
    ]
    skipped = [name for name in ks if name not in evaluable]
    if skipped:
        notes.append(
            f"KS not evaluated for {len(skipped)} feature(s) with fewer than "
            f"{policy.DRIFT_MIN_REFERENCE_ROWS} reference / {policy.DRIFT_MIN_LIVE_ROWS} live "
            f"values: {', '.join(skipped)}"
        )

    reference_scores = reference.scores
    live_scores = np.asarray(live_scores, dtype=float)
    n_ref_scores = int((~np.isnan(reference_scores)).sum())
    n_live_scores = int((~np.isnan(live_scores)).sum())
    psi = None
    if n_ref_scores >= policy.DRIFT_MIN_REFERENCE_ROWS and n_live_scores >= policy.DRIFT_MIN_LIVE_ROWS:
        psi = population_stability_index(reference_scores, live_scores)
        if round(psi, policy.THRESHOLD_DECIMALS) > policy.DRIFT_PSI_THRESHOLD:
            flags.append(f"score PSI {psi:.4f} > {policy.DRIFT_PSI_THRESHOLD}")
    else:
        notes.append(
            f"PSI not evaluated: {n_ref_scores} reference / {n_live_scores} live scores, need "
            f"{policy.DRIFT_MIN_REFERENCE_ROWS} / {policy.DRIFT_MIN_LIVE_ROWS}"
        )

    correct = np.asarray([] if resolved_correct is None else resolved_correct, dtype=bool)
    resolved = len(correct)
    rolling_accuracy = float(correct.mean()) if resolved else None
    if validation_accuracy is None:
        notes.append("accuracy drop not evaluated: no validation accuracy")
    elif resolved < policy.DRIFT_MIN_RESOLVED_OUTCOMES:
        notes.append(
            f"accuracy drop not evaluated: {resolved} resolved outcomes < "
            f"{policy.DRIFT_MIN_RESOLVED_OUTCOMES}"
        )
    else:
        drop = round(validation_accuracy - rolling_accuracy, policy.THRESHOLD_DECIMALS)
        if drop > policy.DRIFT_ACCURACY_DROP:
            flags.append(
                f"rolling accuracy {rolling_accuracy:.4f} is {drop:.4f} below validation "
                f"{validation_accuracy:.4f} (> {policy.DRIFT_ACCURACY_DROP})"
            )

    if flags:
        recommendation = DriftRecommendation.EMERGENCY_RETRAIN
        findings = flags
    elif len(drifting) >= policy.DRIFT_FEATURES_FOR_RETRAIN:
        recommendation = DriftRecommendation.SCHEDULE_RETRAIN
        findings = [(
            f"{len(drifting)} features with KS > {policy.DRIFT_KS_THRESHOLD} "
            f"(>= {policy.DRIFT_FEATURES_FOR_RETRAIN}): {', '.join(drifting)}"
        )]
    else:
        recommendation = DriftRecommendation.NO_ACTION
        findings = [
            f"no drift: {len(drifting)} of {len(evaluable)} evaluated features with KS > "
            f"{policy.DRIFT_KS_THRESHOLD}" + (f" ({', '.join(drifting)})" if drifting else "")
        ]
    return DriftReport(
        recommendation=recommendation,
        reason="; ".join(findings + notes),
        ks=ks,
        drifting_features=drifting,
        psi=psi,
        rolling_accuracy=rolling_accuracy,
        validation_accuracy=validation_accuracy,
        live_rows=len(live_features),
        reference_rows=reference.rows,
        resolved_outcomes=resolved,
    )


def _finite_or_none(value):
    return None if value is None or math.isnan(value) else value


def latest_drift_report(conn: sa.Connection, as_of) -> dict | None:
    """The newest drift_reports row dated on or before `as_of`, or None."""
    row = conn.execute(sa.text(
        "SELECT as_of, model_id, recommendation, score_psi, drifting_features, rolling_accuracy,"
        " validation_accuracy, live_rows, reference_rows, reason FROM drift_reports WHERE as_of <= :d"
        " ORDER BY as_of DESC, model_id LIMIT 1"), {"d": pd.Timestamp(as_of).date()}).first()
    return dict(row._mapping) if row is not None else None


def clear_drift_reports(conn: sa.Connection, as_of) -> None:
    """A re-run of a day replaces its report, whichever champion the earlier run measured."""
    conn.execute(sa.text("DELETE FROM drift_reports WHERE as_of = :d"), {"d": pd.Timestamp(as_of).date()})


def write_drift_report(conn: sa.Connection, report: DriftReport, as_of, model_id: str) -> None:
    """Write the report as the day's drift_reports row, replacing any earlier run's."""
    clear_drift_reports(conn, as_of)
    row = {
        "as_of": pd.Timestamp(as_of).date(),
        "model_id": model_id,
        "recommendation": report.recommendation.value,
        "score_psi": report.psi,
        "drifting_features": report.drifting_features,
        "ks_statistics": {
            name: {
                "statistic": _finite_or_none(result.statistic),
                "pvalue": _finite_or_none(result.pvalue),
                "n_ref": result.n_ref,
                "n_live": result.n_live,
            }
            for name, result in report.ks.items()
        },
        "rolling_accuracy": report.rolling_accuracy,
        "validation_accuracy": report.validation_accuracy,
        "live_rows": report.live_rows,
        "reference_rows": report.reference_rows,
        "resolved_outcomes": report.resolved_outcomes,
        "reason": report.reason,
    }
    db.upsert_frame(conn, "drift_reports", pd.DataFrame([row]), ["as_of", "model_id"])


def champion_hits(shadow: pd.DataFrame | None, champion_id: str, day: pd.Timestamp, config: TrainingConfig,
                  window_days: int = policy.DRIFT_LIVE_WINDOW_DAYS) -> np.ndarray | None:
    """Whether the champion's class matched the realized label, on the candidates it called
    whose shadow outcome resolved in (day - window_days, day]; None when there are none."""
    if shadow is None or not len(shadow):
        return None
    resolved = shadow[(shadow["model_id"] == champion_id) & (shadow["exit_date"] > day - pd.Timedelta(days=window_days))
                      & (shadow["exit_date"] <= day) & shadow["ml_signal_type"].notna()]
    if not len(resolved):
        return None
    return_pct = resolved["return_pct"].to_numpy(dtype=float)
    if config.excess_over_spy:
        return_pct = return_pct - resolved["spy_return_pct"].fillna(0.0).to_numpy(dtype=float)
    classes = np.asarray([c.value for c in config.classes()])
    return classes[label_from_return(return_pct, config)] == resolved["ml_signal_type"].to_numpy()
