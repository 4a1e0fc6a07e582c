"""The orchestration rules both drivers call: calendar, sensors, merging, lifecycle, what is in force."""

import datetime as dt
import itertools
from types import SimpleNamespace

import dagster as dg
import pandas as pd
from dagster._utils.schedules import cron_string_iterator

from feedback_loop.definitions import defs
from feedback_loop.lib import policy, rules
from feedback_loop.lib.vocab import ModelStatus, RetrainTrigger

T = pd.Timestamp


def test_the_schedules_use_the_rules_cron_strings():
    repo = defs().get_repository_def()
    crons = {s.name: s.cron_schedule for s in repo.schedule_defs}
    assert crons == {
        "daily_loop_schedule": rules.DAILY_LOOP_CRON, "blend_weight_schedule": rules.BLEND_WEIGHT_CRON,
        "market_retrain_schedule": rules.MARKET_RETRAIN_CRON, "outcome_retrain_schedule": rules.OUTCOME_RETRAIN_CRON,
    }
    assert {s.execution_timezone for s in repo.schedule_defs} == {rules.SCHEDULE_TIMEZONE}


def test_scheduled_retrains_between_trading_days_are_the_schedules_ticks():
    """Walking trading days of two months gives exactly the retrain schedules' ticks, each once."""
    days = pd.bdate_range("2024-01-02", "2024-03-01")
    requested = [r for prev, day in itertools.pairwise(days) for r in rules.scheduled_retrains(prev, day)]
    repo = defs().get_repository_def()
    ticks = []
    for name in ("market_retrain_schedule", "outcome_retrain_schedule"):
        schedule = repo.get_schedule_def(name)
        start = dt.datetime(2024, 1, 2, 17, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
        # Dagster's own cron iterator, not croniter: the schedules tick where the rules say.
        for tick in cron_string_iterator(start.timestamp(), schedule.cron_schedule, schedule.execution_timezone):
            if tick.date() > dt.date(2024, 3, 1):
                break
            request = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick)).run_requests[0]
            ticks.append(request.run_key)
    assert sorted(r.training_key for r in requested) == sorted(ticks)
    sundays = [r for r in requested if not r.use_outcomes]
    assert len(sundays) == 8 and all(r.as_of.dayofweek == 5 for r in sundays)  # as of Saturday
    firsts = [r for r in requested if r.use_outcomes]
    assert [r.effective_from for r in firsts] == [T("2024-02-01"), T("2024-03-01")]


def test_a_sunday_retrain_falls_between_friday_and_monday_only():
    assert [r.as_of for r in rules.scheduled_retrains(T("2024-03-08"), T("2024-03-11"))] == [T("2024-03-09")]
    assert rules.scheduled_retrains(T("2024-03-11"), T("2024-03-12")) == []


def test_requests_with_equal_training_inputs_merge_and_the_first_trigger_stays():
    a = rules.RetrainRequest(RetrainTrigger.NEW_OUTCOMES, T("2024-03-11"), True)
    b = rules.RetrainRequest(RetrainTrigger.PERFORMANCE_DEGRADATION, T("2024-03-11"), True)
    c = rules.RetrainRequest(RetrainTrigger.FEATURE_DRIFT, T("2024-03-11"), False)
    assert rules.merge_requests([a, b, c]) == [a, c]
    assert a.training_key == b.training_key != c.training_key


def _outcomes(exits, outcome="loss"):
    return pd.DataFrame({"exit_date": pd.to_datetime(exits), "outcome": outcome})


def test_new_outcomes_counts_closed_outcomes_after_training_known_on_the_day():
    champion = rules.ChampionRef("m1", T("2024-03-01"))
    exits = pd.date_range("2024-03-02", periods=policy.NEW_OUTCOMES_RETRAIN_COUNT)
    outcomes = _outcomes(exits)
    early = rules.new_outcomes_retrain(exits[-2], champion, outcomes, None)
    assert early.request is None and f"{policy.NEW_OUTCOMES_RETRAIN_COUNT - 1} closed" in early.reason
    fired = rules.new_outcomes_retrain(exits[-1], champion, outcomes, None)
    assert fired.request == rules.RetrainRequest(RetrainTrigger.NEW_OUTCOMES, exits[-1], True)
    assert fired.cursor == "m1"
    assert rules.new_outcomes_retrain(exits[-1], champion, outcomes, "m1").request is None


def test_degradation_needs_enough_closed_outcomes_and_a_low_win_rate():
    champion = rules.ChampionRef("m1", T("2024-01-01"))
    day = T("2024-03-29")
    n = policy.DEGRADATION_MIN_OUTCOMES
    exits = [day - pd.Timedelta(days=i % 25) for i in range(n)]
    wins = int(policy.DEGRADATION_WIN_RATE * n)  # exactly the threshold: not degraded
    at = pd.DataFrame({"exit_date": exits, "outcome": ["win"] * wins + ["loss"] * (n - wins)})
    assert rules.degradation_retrain(day, champion, at, None).request is None
    below = at.assign(outcome=["win"] * (wins - 1) + ["loss"] * (n - wins + 1))
    assert rules.degradation_retrain(day, champion, below, None).request.trigger == RetrainTrigger.PERFORMANCE_DEGRADATION
    still_open = below.assign(outcome="open")
    assert rules.degradation_retrain(day, champion, still_open, None).request is None


def test_drift_acts_only_on_the_day_report_of_the_champion():
    champion = rules.ChampionRef("m1", T("2024-01-01"))
    day = T("2024-03-06")
    report = rules.DriftRef(day, "m1", "schedule_retrain")
    assert rules.drift_retrain(day, champion, report, None).request.use_outcomes is False
    assert rules.drift_retrain(day + pd.Timedelta(days=1), champion, report, None).request is None
    assert rules.drift_retrain(day, rules.ChampionRef("m2", day), report, None).request is None
    assert rules.drift_retrain(day, champion, rules.DriftRef(day, "m1", "no_action"), None).request is None


def test_training_set_acceptance_needs_every_blocking_check():
    ok = SimpleNamespace(name="a", passed=True, severity="ERROR", metadata={})
    warn = SimpleNamespace(name="b", passed=False, severity="WARN", metadata={})
    bad = SimpleNamespace(name="c", passed=False, severity="ERROR", metadata={"rows": 3})
    assert rules.training_set_accepted([ok, warn])[0]
    accepted, why = rules.training_set_accepted([ok, warn, bad])
    assert not accepted and "c failed" in why


def test_candidate_lifecycle():
    promoted = rules.model_statuses_after_decision("new", True, "champ", ["old_candidate", "new"])
    assert promoted == {"old_candidate": ModelStatus.ARCHIVED, "champ": ModelStatus.ARCHIVED,
                        "new": ModelStatus.ACTIVE}
    parked = rules.model_statuses_after_decision("new", False, "champ", ["old_candidate", "new"])
    assert parked == {"old_candidate": ModelStatus.ARCHIVED, "new": ModelStatus.CANDIDATE}
    assert rules.model_statuses_after_decision("champ", True, "champ", ["x"]) == {}


def test_champion_and_blend_weight_in_force_on_a_date():
    deployments = [(T("2024-01-02"), "a"), (T("2024-02-01"), "b"), (T("2024-02-01"), "c")]
    assert rules.champion_in_force(deployments, T("2024-01-01")) is None
    assert rules.champion_in_force(deployments, T("2024-01-31")) == "a"
    assert rules.champion_in_force(deployments, T("2024-02-01")) == "c"  # the later recording wins
    decisions = [(T("2024-03-01"), 0.3), (T("2024-04-01"), 0.4)]
    assert rules.blend_weight_in_force(decisions, T("2024-03-01"), 0.2) == 0.2  # decided that day: from the next
    assert rules.blend_weight_in_force(decisions, T("2024-03-02"), 0.2) == 0.3
    assert rules.days_since_blend_move([T("2024-03-01")], T("2024-03-11")) == 10
    assert rules.days_since_blend_move([T("2024-03-01")], T("2024-03-01")) is None
