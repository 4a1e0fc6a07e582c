"""Checks of the model assets: challenger_model, promotion_decision and champion_in_service.

Inputs are values both drivers hold after a retrain: the trained model's holdout and metrics and
its artifact's recorded and recomputed sha256 (the Dagster asset right after storing it, the
history after persisting the engine's models); the comparison as logged (`flow.comparison_record`)
and every model's status after the decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from feedback_loop.lib import policy
from feedback_loop.lib.checks import ERROR, Check, CheckOutcome
from feedback_loop.lib.training.metrics import SCALAR_METRICS
from feedback_loop.lib.vocab import ModelStatus

#: Undefined by design when the holdout lacks a class to score one-vs-rest (see training.metrics).
MAY_BE_UNDEFINED = frozenset({"roc_auc_ovr"})

ARTIFACT_VERIFIED = Check("challenger_model_artifact_verified", ERROR,
                          "The stored artifact's sha256 equals the one registered with the model.")
HOLDOUT_LARGE_ENOUGH = Check("challenger_model_holdout_has_enough_rows", ERROR,
                             f"The holdout has at least {policy.MIN_HOLDOUT_ROWS} rows.")
METRICS_FINITE = Check("challenger_model_metrics_finite", ERROR,
                       f"Every holdout metric ({', '.join(SCALAR_METRICS)}) is a finite number "
                       "(roc_auc_ovr may be undefined when a class is absent).")
SAME_HOLDOUT = Check("promotion_decision_compared_on_same_holdout", ERROR,
                     "The logged comparison scored challenger and champion on the same holdout rows.")
ONE_CHAMPION = Check("promotion_decision_leaves_one_champion", ERROR,
                     "Exactly one model is active after the decision, and it is the challenger when promoted.")
CHAMPION_SERVES_A_TRAINED_MODEL = Check(
    "champion_in_service_was_trained_before_it_serves", ERROR,
    "The model in service on a day was trained as of a day before it (a promotion decided on D serves from D+1).")
CHECKS = {
    "challenger_model": [ARTIFACT_VERIFIED, HOLDOUT_LARGE_ENOUGH, METRICS_FINITE],
    "promotion_decision": [SAME_HOLDOUT, ONE_CHAMPION],
    "champion_in_service": [CHAMPION_SERVES_A_TRAINED_MODEL],
}


def champion_in_service_checks(day, trained_as_of, serving_since) -> list[CheckOutcome]:
    """`trained_as_of` and `serving_since` of the champion in force on `day` (None before the first)."""
    if trained_as_of is None:
        return [CHAMPION_SERVES_A_TRAINED_MODEL.not_evaluated("no champion yet")]
    trained, since, day = (pd.Timestamp(v) for v in (trained_as_of, serving_since, day))
    return [CHAMPION_SERVES_A_TRAINED_MODEL.outcome(trained < since <= day, trained_as_of=str(trained.date()),
                                                    serving_since=str(since.date()))]


def challenger_model_checks(recorded_sha256: str | None, artifact_sha256: str | None, holdout_rows: int,
                            metrics: Mapping) -> list[CheckOutcome]:
    """`recorded_sha256`: the registry's; `artifact_sha256`: recomputed from the files on disk
    (`training.artifact.artifact_sha256`), None when they cannot be read; `metrics`: the holdout metrics."""
    not_finite = sorted(
        k for k in SCALAR_METRICS
        if not (isinstance(metrics.get(k), (int, float)) and math.isfinite(metrics[k]))
        and not (k in MAY_BE_UNDEFINED and metrics.get(k) is None))
    return [
        ARTIFACT_VERIFIED.outcome(bool(recorded_sha256) and recorded_sha256 == artifact_sha256,
                                  recorded_sha256=recorded_sha256, artifact_sha256=artifact_sha256),
        HOLDOUT_LARGE_ENOUGH.outcome(holdout_rows >= policy.MIN_HOLDOUT_ROWS, holdout_rows=holdout_rows,
                                     min_holdout_rows=policy.MIN_HOLDOUT_ROWS),
        METRICS_FINITE.outcome(not not_finite, not_finite=not_finite,
                               **{k: metrics.get(k) for k in SCALAR_METRICS}),
    ]


def promotion_decision_checks(comparison: Mapping | None, statuses: Mapping[str, str], challenger_id: str,
                              promoted: bool) -> list[CheckOutcome]:
    """`comparison`: the logged comparison (`flow.comparison_record`: holdout_rows, details.new/current
    metrics with their `rows`), None when the retrain reproduced the model in service and nothing was
    compared; `statuses`: model_id -> status of every registered model after the decision."""
    if comparison is None:
        same = SAME_HOLDOUT.not_evaluated("no comparison: the retrain reproduced the model in service")
    else:
        expected, details = comparison["holdout_rows"], comparison["details"]
        new_rows = details["new"].get("rows")
        champion_rows = details["current"].get("rows") if details.get("current") else None
        same = SAME_HOLDOUT.outcome(
            expected > 0 and new_rows == expected and (not details.get("current") or champion_rows == expected),
            holdout_rows=expected, challenger_rows=new_rows, champion_rows=champion_rows)
    active = sorted(m for m, s in statuses.items() if s == ModelStatus.ACTIVE.value)
    one = ONE_CHAMPION.outcome(len(active) == 1 and (not promoted or active == [challenger_id]),
                               active_models=active, promoted=promoted, challenger=challenger_id)
    return [same, one]
