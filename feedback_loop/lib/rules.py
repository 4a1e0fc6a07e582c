"""The loop's orchestration rules, each defined once for both drivers.

The live driver (Dagster schedules and sensors) and the batch driver (the engine behind the
demo history and the replay) call these functions and nothing else to decide:

- when the schedules fire (`schedule_fire_times`, from the cron strings the schedules use);
- which retrains are due after a day and with which training inputs (`scheduled_retrains`,
  the three sensor rules, `due_sensor_retrains`);
- how requests with the same training inputs merge into one training run
  (`merge_requests`, keyed by `RetrainRequest.training_key`);
- whether a training set may be trained on (`training_set_accepted`);
- the candidate lifecycle (`model_statuses_after_decision`);
- the champion and the blend weight in force on a date (`champion_in_force`,
  `blend_weight_in_force`, `days_since_blend_move`).

Everything here is pure: the callers read their state (Postgres rows or the engine's memory)
into the plain values these functions take.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pandas as pd
from croniter import croniter

from feedback_loop.lib import policy
from feedback_loop.lib.vocab import DriftRecommendation, ModelStatus, Outcome, RetrainTrigger

SCHEDULE_TIMEZONE = "America/New_York"
#: Weekdays after the close: one partition of the daily loop.
DAILY_LOOP_CRON = "30 17 * * 1-5"
#: Weekdays after the daily loop: the blend-weight decision of the day.
BLEND_WEIGHT_CRON = "30 18 * * 1-5"
#: Sundays 02:00: market-labeled retrain as of Saturday.
MARKET_RETRAIN_CRON = "0 2 * * 0"
#: The 1st of each month, 03:00: outcome-aware retrain as of the last day of the month before.
OUTCOME_RETRAIN_CRON = "0 3 1 * *"
#: Scheduled retrains: cron string → whether the training set includes trade outcomes.
SCHEDULED_RETRAINS = {MARKET_RETRAIN_CRON: False, OUTCOME_RETRAIN_CRON: True}

#: Sensor names (their Dagster names without `_sensor`) and the trigger each records.
NEW_OUTCOMES = "new_outcomes"
FEATURE_DRIFT = "feature_drift"
DEGRADATION = "degradation"
SENSOR_TRIGGERS = {
    NEW_OUTCOMES: RetrainTrigger.NEW_OUTCOMES,
    FEATURE_DRIFT: RetrainTrigger.FEATURE_DRIFT,
    DEGRADATION: RetrainTrigger.PERFORMANCE_DEGRADATION,
}

SENSOR_DESCRIPTIONS = {
    NEW_OUTCOMES: (f">= {policy.NEW_OUTCOMES_RETRAIN_COUNT} closed outcomes since the model in service was trained "
                   "→ outcome-aware retrain, once per champion."),
    FEATURE_DRIFT: ("The day's drift report of the champion recommending a retrain → market-labeled retrain, "
                    "once per champion."),
    DEGRADATION: (f"Win rate < {policy.DEGRADATION_WIN_RATE:.0%} over {policy.DEGRADATION_WINDOW_DAYS} days with "
                  f">= {policy.DEGRADATION_MIN_OUTCOMES} closed outcomes → outcome-aware retrain, once per champion."),
}


# ------------------------------------------------------------------- requests
@dataclass(frozen=True)
class RetrainRequest:
    """One requested training run: trained as of `as_of`; if promoted, it serves from the next day."""

    trigger: RetrainTrigger
    as_of: pd.Timestamp
    use_outcomes: bool

    @property
    def effective_from(self) -> pd.Timestamp:
        return self.as_of + pd.Timedelta(days=1)

    @property
    def training_key(self) -> str:
        """Equal keys mean equal training inputs: one training run serves them all (the run key)."""
        return f"retrain-{self.as_of:%Y-%m-%d}-{'outcome' if self.use_outcomes else 'market'}"


def merge_requests(requests: Iterable[RetrainRequest]) -> list[RetrainRequest]:
    """One request per training key, the first of each key kept (its trigger is recorded)."""
    merged: dict[str, RetrainRequest] = {}
    for request in requests:
        merged.setdefault(request.training_key, request)
    return list(merged.values())


# ------------------------------------------------------------------- calendar
def _local(day, time: dt.time) -> dt.datetime:
    return dt.datetime.combine(pd.Timestamp(day).date(), time, tzinfo=ZoneInfo(SCHEDULE_TIMEZONE))


def schedule_fire_times(cron: str, after: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    """Fire times of `cron` (in SCHEDULE_TIMEZONE) in (after, until]."""
    times = croniter(cron, after.astimezone(ZoneInfo(SCHEDULE_TIMEZONE)))
    fired = []
    while (nxt := times.get_next(dt.datetime)) <= until:
        fired.append(nxt)
    return fired


def run_time(cron: str, day) -> dt.datetime:
    """When a daily schedule of `cron` runs on `day` (its time of day)."""
    minute, hour = cron.split()[:2]
    return _local(day, dt.time(int(hour), int(minute)))


def loop_run_time(day) -> dt.datetime:
    """When the daily loop of `day` runs (the daily schedule's time of day)."""
    return run_time(DAILY_LOOP_CRON, day)


def scheduled_request(cron: str, fire_time: dt.datetime) -> RetrainRequest:
    """The retrain a retrain schedule asks for at `fire_time`: as of the day before, serving from its day."""
    run_day = pd.Timestamp(fire_time.date())
    return RetrainRequest(RetrainTrigger.SCHEDULED, run_day - pd.Timedelta(days=1), SCHEDULED_RETRAINS[cron])


def retrain_ticks(previous_day, day) -> list[tuple[dt.datetime, str]]:
    """(fire time, cron) of the retrain schedules' ticks after the loop of `previous_day` and up to
    the loop of `day`, in time order."""
    after, until = loop_run_time(previous_day), loop_run_time(day)
    return sorted((t, cron) for cron in SCHEDULED_RETRAINS for t in schedule_fire_times(cron, after, until))


def scheduled_retrains(previous_day, day) -> list[RetrainRequest]:
    """Scheduled retrains that fire after the loop of `previous_day` and before the loop of `day`."""
    return [scheduled_request(cron, t) for t, cron in retrain_ticks(previous_day, day)]


# ------------------------------------------------------------------- sensors
@dataclass(frozen=True)
class ChampionRef:
    model_id: str
    trained_as_of: pd.Timestamp


@dataclass(frozen=True)
class DriftRef:
    as_of: pd.Timestamp
    model_id: str
    recommendation: str


@dataclass(frozen=True)
class SensorDecision:
    """A sensor's answer: a request (and the cursor to store), or why not."""

    request: RetrainRequest | None
    reason: str
    cursor: str | None


def _fire(sensor: str, day, use_outcomes: bool, champion_id: str, reason: str) -> SensorDecision:
    day = pd.Timestamp(day)
    request = RetrainRequest(SENSOR_TRIGGERS[sensor], day, use_outcomes)
    return SensorDecision(request, reason, champion_id)


def _closed(outcomes: pd.DataFrame, day) -> pd.DataFrame:
    """Closed outcomes (exit_date, outcome) known after the loop of `day`."""
    if not len(outcomes):
        return outcomes
    exits = pd.to_datetime(outcomes["exit_date"])
    return outcomes[(outcomes["outcome"] != Outcome.OPEN.value) & (exits <= pd.Timestamp(day))]


def new_outcomes_retrain(day, champion: ChampionRef | None, outcomes: pd.DataFrame,
                         cursor: str | None) -> SensorDecision:
    """>= NEW_OUTCOMES_RETRAIN_COUNT outcomes closed after the champion's training date → one outcome-aware retrain per champion."""
    if champion is None:
        return SensorDecision(None, "no model in service", cursor)
    if cursor == champion.model_id:
        return SensorDecision(None, f"already requested a retrain for {champion.model_id}", cursor)
    closed = _closed(outcomes, day)
    count = int((pd.to_datetime(closed["exit_date"]) > champion.trained_as_of).sum()) if len(closed) else 0
    need = policy.NEW_OUTCOMES_RETRAIN_COUNT
    if count < need:
        return SensorDecision(None, f"{count} closed outcomes since {champion.trained_as_of:%Y-%m-%d}, need {need}",
                              cursor)
    return _fire(NEW_OUTCOMES, day, True, champion.model_id, f"{count} closed outcomes since the champion's training")


def drift_retrain(day, champion: ChampionRef | None, report: DriftRef | None, cursor: str | None) -> SensorDecision:
    """The drift report of `day` recommending a retrain → one market-labeled retrain per champion.

    Market features of a 30-day window differ from a year of training rows for weeks on end;
    retraining on every such report would retrain daily, hence once per model in service.
    """
    if champion is None:
        return SensorDecision(None, "no model in service", cursor)
    if report is None or report.as_of != pd.Timestamp(day) or report.model_id != champion.model_id:
        return SensorDecision(None, f"no drift report of the champion for {pd.Timestamp(day):%Y-%m-%d}", cursor)
    if report.recommendation == DriftRecommendation.NO_ACTION.value:
        return SensorDecision(None, f"drift on {report.as_of:%Y-%m-%d}: no_action", cursor)
    if cursor == champion.model_id:
        return SensorDecision(None, f"already requested a drift retrain for {champion.model_id}", cursor)
    return _fire(FEATURE_DRIFT, day, False, champion.model_id, f"drift report: {report.recommendation}")


def degradation_retrain(day, champion: ChampionRef | None, outcomes: pd.DataFrame,
                        cursor: str | None) -> SensorDecision:
    """Win rate < DEGRADATION_WIN_RATE over the DEGRADATION_WINDOW_DAYS to `day` (closed outcomes only,
    at least DEGRADATION_MIN_OUTCOMES) → one outcome-aware retrain per champion."""
    if champion is None:
        return SensorDecision(None, "no model in service", cursor)
    closed = _closed(outcomes, day)
    start = pd.Timestamp(day) - pd.Timedelta(days=policy.DEGRADATION_WINDOW_DAYS)
    recent = closed[pd.to_datetime(closed["exit_date"]) > start] if len(closed) else closed
    window = policy.DEGRADATION_WINDOW_DAYS
    if len(recent) < policy.DEGRADATION_MIN_OUTCOMES:
        return SensorDecision(None, f"{len(recent)} outcomes in {window} days, "
                                    f"need {policy.DEGRADATION_MIN_OUTCOMES}", cursor)
    win_rate = float((recent["outcome"] == Outcome.WIN.value).mean())
    if win_rate >= policy.DEGRADATION_WIN_RATE:
        return SensorDecision(None, f"win rate {win_rate:.1%} >= {policy.DEGRADATION_WIN_RATE:.0%}", cursor)
    if cursor == champion.model_id:
        return SensorDecision(None, f"already requested a retrain for {champion.model_id}", cursor)
    return _fire(DEGRADATION, day, True, champion.model_id,
                 f"win rate {win_rate:.1%} < {policy.DEGRADATION_WIN_RATE:.0%} over {window} days")


def sensor_decisions(day, champion: ChampionRef | None, outcomes: pd.DataFrame, drift: DriftRef | None,
                     cursors: dict[str, str | None]) -> dict[str, SensorDecision]:
    """Every retrain sensor's decision after the loop of `day`, in evaluation order."""
    return {
        NEW_OUTCOMES: new_outcomes_retrain(day, champion, outcomes, cursors.get(NEW_OUTCOMES)),
        FEATURE_DRIFT: drift_retrain(day, champion, drift, cursors.get(FEATURE_DRIFT)),
        DEGRADATION: degradation_retrain(day, champion, outcomes, cursors.get(DEGRADATION)),
    }


# ------------------------------------------------------------------- training and models
def training_set_accepted(checks: Sequence) -> tuple[bool, str]:
    """A training set is trained on only when every blocking (ERROR) check passes, on every path."""
    failed = [c for c in checks if not c.passed and c.severity == "ERROR"]
    if not failed:
        return True, "every blocking training-set check passed"
    return False, "; ".join(f"{c.name} failed ({c.metadata})" for c in failed)


def model_statuses_after_decision(new_id: str, promoted: bool, champion_id: str | None,
                                  candidate_ids: Iterable[str]) -> dict[str, ModelStatus]:
    """The candidate lifecycle: the status changes a champion/challenger decision makes.

    Promoted: the new model becomes active, the previous champion and every other candidate
    are archived (they lost to the old champion or were never compared with the new one).
    Not promoted: the new model is the one candidate scoring in shadow; earlier candidates
    are archived. A model compared with itself (a retrain that reproduced the champion)
    changes nothing.
    """
    if new_id == champion_id:
        return {}
    changes = {model_id: ModelStatus.ARCHIVED for model_id in candidate_ids if model_id != new_id}
    if promoted:
        if champion_id is not None:
            changes[champion_id] = ModelStatus.ARCHIVED
        changes[new_id] = ModelStatus.ACTIVE
    else:
        changes[new_id] = ModelStatus.CANDIDATE
    return changes


def champion_in_force(deployments: Iterable[tuple], day) -> str | None:
    """The model of the latest deployment (effective_from, model_id), in recording order, effective on `day`.

    A rollback is recorded as a deployment of the model it restores, so this is the
    champion on any date, past or future, whatever the current `ml_models.status`.
    """
    day = pd.Timestamp(day)
    live = [model_id for effective_from, model_id in deployments if pd.Timestamp(effective_from) <= day]
    return live[-1] if live else None


def blend_weight_in_force(decisions: Iterable[tuple], day, starting_weight: float) -> float:
    """The weight signals of `day` are blended with: the last weight decided (analysis_date, weight)
    before `day`, else the starting weight from the persisted portfolio config."""
    earlier = [weight for decided, weight in sorted(decisions) if pd.Timestamp(decided) < pd.Timestamp(day)]
    return float(earlier[-1]) if earlier else float(starting_weight)


def days_since_blend_move(moves: Iterable, day) -> int | None:
    """Calendar days from the last move decided before `day` to `day` (the cooldown's clock)."""
    earlier = [pd.Timestamp(d) for d in moves if pd.Timestamp(d) < pd.Timestamp(day)]
    return (pd.Timestamp(day) - max(earlier)).days if earlier else None
