"""The daily loop over a range of trading days, in memory, with the functions the assets call.

Each trading day D, in the order the schedules and sensors would run it:

1. scheduled retrains whose run time falls between the previous trading day and D
   (weekly market-labeled on Sunday, monthly outcome-aware on the 1st), each trained as
   of the last complete day before its run and, if promoted, serving from its run date;
2. the paper portfolio fills the signals queued at the previous close at D's open and
   checks exits at D's close; closed positions become outcomes; shadow outcomes resolve;
3. signals for D: features → heuristic → the champion in force on D (and a candidate in
   shadow) → blend with the weight in force on D → thresholds → queue;
4. after the close: performance, blend-weight evaluation, drift report, and the sensors
   (new outcomes, drift, degradation), whose retrains are trained as of D and serve from D+1.

Nothing computed for D reads a disclosure filed after D or a price dated after D: the
feature panel is computed by the causal feature function, labels are cut at the
training date, and the portfolio only sees prices up to D.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from feedback_loop.lib import policy as P
from feedback_loop.lib import rules
from feedback_loop.lib.frames import MARKET_TICKER
from feedback_loop.lib.models.flow import comparison_record
from feedback_loop.lib.models.promotion import compare_on_holdout
from feedback_loop.lib.monitoring import blend_weight as blend_weight_lib
from feedback_loop.lib.monitoring import drift as drift_lib
from feedback_loop.lib.portfolio import outcomes as outcomes_lib
from feedback_loop.lib.portfolio.loop_store import OUTCOME_COLUMNS
from feedback_loop.lib.portfolio.paper import PortfolioState, step_portfolio
from feedback_loop.lib.portfolio.shadow import (
    candidate_calls,
    shadow_outcomes_of_candidates,
    shadow_resolution_window,
)
from feedback_loop.lib.signals.features import FEATURE_NAMES, compute_ticker_features
from feedback_loop.lib.signals.heuristic import score_heuristic
from feedback_loop.lib.signals.trading import build_signals
from feedback_loop.lib.training.config import (
    TrainingConfig,
    check_label_matches_exits,
    training_config_for,
)
from feedback_loop.lib.training.labels import (
    blended_training_set,
    market_labeled_set,
    outcome_labeled_set,
    training_pairs,
    training_set_checks,
)
from feedback_loop.lib.training.model import TrainedModel, train_challenger
from feedback_loop.lib.vocab import RetrainTrigger, ServingPath, SignalStatus


@dataclass(frozen=True)
class ArmConfig:
    """One way of running the loop; a replay compares several on the same data."""

    name: str
    use_model: bool = True
    #: Weekly/monthly retrains and sensor-triggered retrains; False trains once at the start.
    retrain: bool = True
    adapt_blend_weight: bool = True


HEURISTIC_ARM = ArmConfig("heuristic_only", use_model=False, retrain=False, adapt_blend_weight=False)
FIXED_MODEL_ARM = ArmConfig("fixed_model", use_model=True, retrain=False, adapt_blend_weight=False)
CLOSED_LOOP_ARM = ArmConfig("closed_loop")
ARMS = (HEURISTIC_ARM, FIXED_MODEL_ARM, CLOSED_LOOP_ARM)


@dataclass(frozen=True)
class LoopData:
    disclosures: pd.DataFrame
    prices: pd.DataFrame
    sectors: pd.DataFrame
    politicians: pd.DataFrame | None = None


@dataclass
class ModelEntry:
    model_id: str
    model: TrainedModel
    trigger: RetrainTrigger
    trained_as_of: pd.Timestamp
    reference_features: pd.DataFrame
    #: The drift tests' reference (sorted feature values, top-class scores), prepared once.
    drift_reference: drift_lib.DriftReference
    status: str = "candidate"


@dataclass
class LoopState:
    """Everything the loop has produced so far; persisted to Postgres by `lib.loop_store`."""

    portfolio: PortfolioState
    blend_weight: float
    signals: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Every heuristic candidate with the serving model's call, generated as a signal or not.
    candidates: pd.DataFrame = field(default_factory=pd.DataFrame)
    outcomes: list[pd.DataFrame] = field(default_factory=list)
    shadow: pd.DataFrame | None = None
    models: dict[str, ModelEntry] = field(default_factory=dict)
    #: (effective_from, model_id, action, trigger, reason)
    deployments: list[tuple] = field(default_factory=list)
    candidate_id: str | None = None
    retrain_events: list[dict] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    #: The blend-weight decisions that moved the weight, and every day's decision (as logged).
    blend_weight_path: list[dict] = field(default_factory=list)
    blend_weight_decisions: list[dict] = field(default_factory=list)
    drift_reports: list[dict] = field(default_factory=list)
    skipped_requests: list[dict] = field(default_factory=list)
    sensor_cursors: dict[str, str] = field(default_factory=dict)
    queued: pd.DataFrame | None = None
    #: The weight before any decision: the persisted portfolio config's `ml_blend_weight`.
    starting_blend_weight: float = P.BLEND_WEIGHT_DEFAULT

    def champion_id(self, as_of: pd.Timestamp) -> str | None:
        return rules.champion_in_force(((d[0], d[1]) for d in self.deployments), as_of)

    def blend_weight_on(self, day: pd.Timestamp) -> float:
        decisions = [(move["as_of"], move["decision"].new_weight) for move in self.blend_weight_path]
        return rules.blend_weight_in_force(decisions, day, self.starting_blend_weight)

    def all_signals(self) -> pd.DataFrame:
        return self.signals

    def all_outcomes(self) -> pd.DataFrame:
        if not self.outcomes:
            return pd.DataFrame(columns=OUTCOME_COLUMNS)
        return pd.concat(self.outcomes, ignore_index=True)


@dataclass
class RetrainRecord:
    """One training run of the loop: its request, labeled sets, checks and, if trained, the decision."""

    request: rules.RetrainRequest
    market: object  # LabeledSet
    outcome: object | None  # LabeledSet or None
    training: pd.DataFrame
    checks: list
    event: dict
    model_id: str | None = None
    comparison: dict | None = None


@dataclass
class DayRecord:
    """What the loop did on one trading day, in the order the drivers do it: what a recorder needs
    to report the day as the assets' materializations (`defs.history`)."""

    day: pd.Timestamp
    retrains: list[RetrainRecord] = field(default_factory=list)
    queued: pd.DataFrame | None = None
    updates: pd.DataFrame | None = None
    closed_positions: pd.DataFrame | None = None
    closed: pd.DataFrame | None = None
    shadow_resolved: pd.DataFrame | None = None
    features: pd.DataFrame | None = None
    heuristic: pd.DataFrame | None = None
    signals: pd.DataFrame | None = None
    serving_path: ServingPath | None = None
    shadow_model_id: str | None = None
    blend: tuple | None = None  # (BlendWeightDecision, counts)
    drift: dict | None = None
    drift_skipped: str | None = None


@dataclass(frozen=True)
class FeaturePanel:
    """Causal features precomputed once: daily scoring rows and per-filing training rows."""

    daily: pd.DataFrame
    filings: pd.DataFrame

    @classmethod
    def build(cls, data: LoopData, trading_days: pd.DatetimeIndex, config: TrainingConfig,
              window_days: int) -> FeaturePanel:
        daily = compute_ticker_features(
            data.disclosures, data.prices, as_of_dates=trading_days,
            window_days=window_days, sectors=data.sectors,
        )
        earliest = trading_days[0] - pd.Timedelta(days=config.lookback_days + 2 * config.embargo_days)
        pairs = training_pairs(data.disclosures, earliest, trading_days[-1])
        filings = compute_ticker_features(
            data.disclosures, data.prices, pairs=pairs, window_days=window_days, sectors=data.sectors,
        )
        return cls(daily=daily, filings=filings)


def trading_days_between(prices: pd.DataFrame, start, end) -> pd.DatetimeIndex:
    spy_dates = prices.loc[prices["ticker"] == MARKET_TICKER, "date"]
    days = pd.DatetimeIndex(sorted(spy_dates.unique()))
    return days[(days >= pd.Timestamp(start)) & (days <= pd.Timestamp(end))]


class LoopEngine:
    """Runs one arm of the loop over trading days; `run()` returns the final state."""

    def __init__(self, data: LoopData, arm: ArmConfig, *, start, end,
                 portfolio_policy: P.PortfolioPolicy | None = None,
                 training_config: TrainingConfig | None = None,
                 panel: FeaturePanel | None = None, window_days: int = 90,
                 validate_models: bool = True, artifact_dir: Path | None = None):
        self.data = data
        self.arm = arm
        self.policy = portfolio_policy or P.PortfolioPolicy()
        self.config = training_config or training_config_for(self.policy)
        check_label_matches_exits(self.config, self.policy)
        self.days = trading_days_between(data.prices, start, end)
        if len(self.days) == 0:
            raise ValueError(f"no SPY trading days between {start} and {end}")
        self.panel = panel or FeaturePanel.build(data, self.days, self.config, window_days)
        self.validate_models = validate_models
        self.artifact_dir = artifact_dir
        self.state = LoopState(portfolio=PortfolioState.initial(self.policy),
                               blend_weight=self.policy.ml_blend_weight,
                               starting_blend_weight=self.policy.ml_blend_weight)
        self._daily_by_date = dict(tuple(self.panel.daily.groupby("as_of", sort=False)))
        self._price_dates = pd.to_datetime(data.prices["date"]).to_numpy("datetime64[ns]")
        self._price_rows = data.prices.groupby("ticker", sort=False).indices
        self._score_cache: dict[tuple[str, pd.Timestamp], np.ndarray] = {}
        self._shadow_done: set[str] = set()

    # ---------------------------------------------------------------- the day
    def run(self, progress: Callable[[pd.Timestamp, dict], None] | None = None) -> LoopState:
        for record in self.step_days():
            if progress:
                progress(record.day, self.key_figures())
        return self.state

    def step_days(self) -> Iterator[DayRecord]:
        """Step the days in date order, yielding each day's record after its last step."""
        self.record = DayRecord(self.days[0])
        if self.arm.use_model:
            self._retrain(rules.RetrainRequest(RetrainTrigger.SCHEDULED, self.days[0] - pd.Timedelta(days=1),
                                               use_outcomes=False))
        previous = None
        for day in self.days:
            if day != self.record.day:
                self.record = DayRecord(day)
            if self.arm.retrain and previous is not None:
                self._scheduled_retrains(previous, day)
            self._trade(day)
            self._signals(day)
            if self.arm.adapt_blend_weight:
                self._evaluate_blend_weight(day)
            if self.arm.retrain:
                self._drift(day)
                self._sensors(day)
            yield self.record
            previous = day

    def key_figures(self) -> dict:
        equity = self.state.portfolio.equity
        outcomes = self.state.all_outcomes()
        closed = outcomes[outcomes["outcome"] != "open"] if len(outcomes) else outcomes
        return {
            "equity": float(equity["equity_usd"].iloc[-1]) if len(equity) else self.policy.initial_capital,
            "trades": len(closed),
            "win_rate": float((closed["outcome"] == "win").mean()) if len(closed) else None,
            "blend_weight": self.state.blend_weight,
            "models": len(self.state.models),
        }

    def _prices_until(self, day: pd.Timestamp) -> pd.DataFrame:
        return self.data.prices[self.data.prices["date"] <= day]

    def _prices_of(self, tickers, day: pd.Timestamp, after: pd.Timestamp | None = None) -> pd.DataFrame:
        """The price rows of `tickers` dated after `after` (when given) through `day`, in their order in
        the data: what the portfolio and outcome functions would keep of all prices until `day`."""
        rows = [self._price_rows[t] for t in set(tickers) if t in self._price_rows]
        if not rows:
            return self.data.prices.iloc[:0]
        rows = np.sort(np.concatenate(rows))
        dates = self._price_dates[rows]
        keep = dates <= day.to_datetime64()
        if after is not None:
            keep &= dates > after.to_datetime64()
        return self.data.prices.iloc[rows[keep]]

    def _trade(self, day: pd.Timestamp) -> None:
        queued = self.state.queued if self.state.queued is not None else pd.DataFrame()
        self.record.queued = queued
        before = self.state.portfolio.positions
        closed_before = set(before.loc[before["status"] == "closed", "position_id"]) if len(before) else set()
        # step_portfolio reads the queued signals' and the open positions' tickers only.
        tickers = set(before.loc[before["status"] == "open", "ticker"]) if len(before) else set()
        if len(queued):
            tickers |= set(queued["ticker"])
        self.state.portfolio, updates = step_portfolio(self.state.portfolio, day, queued,
                                                       self._prices_of(tickers, day), self.policy)
        self.state.queued = None
        self._apply_status_updates(updates, day)
        self.record.updates = updates
        positions = self.state.portfolio.positions
        newly_closed = positions[(positions["status"] == "closed") & ~positions["position_id"].isin(closed_before)]
        self.record.closed_positions = newly_closed
        if len(newly_closed):
            # Outcomes read SPY's prices only (the market return over each trade).
            self.record.closed = outcomes_lib.outcomes_from_positions(
                newly_closed, self.state.all_signals(), self._prices_of({MARKET_TICKER}, day))
            self.state.outcomes.append(self.record.closed)
        self._resolve_shadow(day)

    def _resolve_shadow(self, day: pd.Timestamp) -> None:
        """Shadow outcomes of candidates that can resolve today (`shadow_resolution_window`) and have not yet."""
        candidates = self.state.candidates
        if not len(candidates):
            return
        horizon = self.policy.hold_days
        oldest, youngest = shadow_resolution_window(day, horizon)
        window = candidates[(candidates["as_of"] > oldest) & (candidates["as_of"] <= youngest)]
        # Set lookups: `isin` would turn the ever-growing set into an array every day.
        done = self._shadow_done
        pending = window[[signal_id not in done for signal_id in window["signal_id"]]]
        if not len(pending):
            return
        # Shadow outcomes read the candidates' tickers and SPY (the market return).
        recent_prices = self._prices_of(set(pending["ticker"]) | {MARKET_TICKER}, day, after=oldest)
        resolved = shadow_outcomes_of_candidates(pending, recent_prices, day, horizon)
        if len(resolved):
            self.record.shadow_resolved = resolved
            self._shadow_done.update(resolved["signal_id"])
            self.state.shadow = pd.concat([self.state.shadow, resolved], ignore_index=True)

    def _apply_status_updates(self, updates: pd.DataFrame, day: pd.Timestamp) -> None:
        """The portfolio acts on the signals queued at the previous close: only recent rows can change."""
        if updates is None or not len(updates):
            return
        status = updates.set_index("signal_id")["status"]
        signals = self.state.signals
        recent = signals.index[signals["as_of"] >= day - pd.Timedelta(days=14)]
        hit = recent[signals.loc[recent, "signal_id"].isin(status.index).to_numpy()]
        signals.loc[hit, "status"] = signals.loc[hit, "signal_id"].map(status)

    def _signals(self, day: pd.Timestamp) -> None:
        features = self._daily_by_date.get(day)
        self.record.features = features
        if features is None or not len(features):
            return
        heuristic = score_heuristic(features)
        self.record.heuristic = heuristic
        if not len(heuristic):
            return
        ml, challenger, model_id, version = None, None, None, None
        path = ServingPath.HEURISTIC_ARM
        if self.arm.use_model:
            path = ServingPath.NO_CHAMPION
            champion = self.state.champion_id(day)
            if champion is not None:
                entry = self.state.models[champion]
                ml = self._predict(entry.model, heuristic)
                model_id, version, path = champion, entry.model.version, ServingPath.CHAMPION
            if self.state.candidate_id is not None:
                challenger = self._predict(self.state.models[self.state.candidate_id].model, heuristic)
        self.record.serving_path, self.record.shadow_model_id = path, self.state.candidate_id
        signals = build_signals(heuristic, ml, blend_weight=self.state.blend_weight_on(day), policy=self.policy,
                                serving_path=path, model_id=model_id, model_version=version,
                                challenger=challenger)
        self.state.candidates = pd.concat(
            [self.state.candidates, candidate_calls(heuristic, ml, model_id, challenger, signals)], ignore_index=True)
        self.record.signals = signals
        if not len(signals):
            return
        self.state.signals = pd.concat([self.state.signals, signals], ignore_index=True)
        queued = signals[signals["status"] == SignalStatus.QUEUED.value]
        self.state.queued = queued if len(queued) else None

    @staticmethod
    def _predict(model: TrainedModel, rows: pd.DataFrame) -> pd.DataFrame:
        predictions = model.predict_signals(rows[FEATURE_NAMES])
        return pd.DataFrame({"ticker": rows["ticker"].to_numpy(), "as_of": rows["as_of"].to_numpy(),
                             "ml_signal_type": predictions["ml_signal_type"].to_numpy(),
                             "ml_confidence": predictions["ml_confidence"].to_numpy()})

    # ---------------------------------------------------------------- models
    def _scheduled_retrains(self, previous: pd.Timestamp, day: pd.Timestamp) -> None:
        """The retrain schedules' runs between the loops of two trading days, merged by training inputs."""
        for request in rules.merge_requests(rules.scheduled_retrains(previous, day)):
            self._retrain(request)

    def _skip(self, as_of, trigger: RetrainTrigger, reason: str) -> None:
        self.state.skipped_requests.append({"as_of": as_of, "trigger": trigger.value, "reason": reason})

    def _labeled_sets(self, as_of: pd.Timestamp, config: TrainingConfig):
        """(market-labeled set, outcome-labeled set or None, blended training set) as of `as_of`."""
        filings = self.panel.filings[self.panel.filings["as_of"] <= as_of]
        market = market_labeled_set(filings, self._prices_until(as_of), as_of, config)
        outcome = None
        if config.use_outcomes:
            outcome = outcome_labeled_set(self.state.all_outcomes(), as_of, config)
        return market, outcome, blended_training_set(market, outcome, config)

    def _retrain(self, request: rules.RetrainRequest) -> None:
        as_of, trigger, effective_from = request.as_of, request.trigger, request.effective_from
        config = self.config.model_copy(update={"use_outcomes": request.use_outcomes})
        market, outcome, training = self._labeled_sets(as_of, config)
        event = {"as_of": as_of, "trigger": trigger.value, "use_outcomes": request.use_outcomes,
                 "rows": len(training)}
        checks = training_set_checks(training, config, as_of)
        record = RetrainRecord(request, market, outcome, training, checks, event)
        self.record.retrains.append(record)
        accepted, why = rules.training_set_accepted(checks)
        if not accepted:
            record.event = {**event, "deployed": False, "new_model_id": None,
                            "reason": f"training set rejected: {why}"}
            self.state.retrain_events.append(record.event)
            return
        model = train_challenger(training, config, as_of, validate=self.validate_models)
        model_id = f"{self.arm.name}-{model.version}"
        current_id = self.state.champion_id(effective_from)
        if model_id == current_id:
            record.event = {**event, "new_model_id": model_id, "old_model_id": current_id,
                            "deployed": False, "reason": "no change: retrained the model in service"}
            self.state.retrain_events.append(record.event)
            return
        reference = training[FEATURE_NAMES].reset_index(drop=True)
        drift_reference = drift_lib.DriftReference.of(reference, model.predict_proba(reference).max(axis=1),
                                                      FEATURE_NAMES)
        self.state.models[model_id] = ModelEntry(model_id, model, trigger, as_of, reference, drift_reference)
        compared = compare_on_holdout(model, self.state.models[current_id].model if current_id else None,
                                      model.holdout)
        new_metrics, current_metrics, decision = compared.new_metrics, compared.current_metrics, compared.decision
        record.model_id = model_id
        record.comparison = comparison_record(
            as_of, model_id, current_id, new_metrics, current_metrics, len(model.holdout), decision,
            self._shadow_until(as_of))
        self.state.comparisons.append(record.comparison)
        record.event = {
            **event, "new_model_id": model_id, "old_model_id": current_id, "deployed": decision.promote,
            "accuracy_improvement": decision.accuracy_gain, "f1_improvement": decision.f1_gain,
            "new_metrics": new_metrics, "old_metrics": current_metrics, "reason": decision.reason,
        }
        self.state.retrain_events.append(record.event)
        candidates = [m.model_id for m in self.state.models.values() if m.status == "candidate"]
        for changed_id, status in rules.model_statuses_after_decision(
                model_id, decision.promote, current_id, candidates).items():
            self.state.models[changed_id].status = status.value
        if decision.promote:
            self.state.deployments.append((effective_from, model_id, "promote", trigger.value, decision.reason))
        self.state.candidate_id = next(
            (m.model_id for m in self.state.models.values() if m.status == "candidate"), None)

    def _shadow_until(self, day: pd.Timestamp) -> pd.DataFrame | None:
        """Shadow outcomes resolved on or before `day` (what a training run as of `day` reads)."""
        shadow = self.state.shadow
        return shadow[shadow["exit_date"] <= day] if shadow is not None else None

    # ---------------------------------------------------------------- after the close
    def _evaluate_blend_weight(self, day: pd.Timestamp) -> None:
        shadow = self.state.shadow
        if shadow is None:
            shadow = pd.DataFrame(columns=outcomes_lib.SHADOW_OUTCOME_COLUMNS)
        since = rules.days_since_blend_move((move["as_of"] for move in self.state.blend_weight_path), day)
        current = self.state.blend_weight_on(day)
        decision, counts = blend_weight_lib.decide_blend_weight(shadow, day, current, since)
        self.record.blend = (decision, counts)
        logged = {"as_of": day, "decision": decision, "window_days": blend_weight_lib.WINDOW_DAYS}
        self.state.blend_weight_decisions.append(logged)
        if decision.changed:
            self.state.blend_weight_path.append(logged)
            self.state.blend_weight = decision.new_weight

    def _drift(self, day: pd.Timestamp) -> None:
        champion = self.state.champion_id(day)
        if champion is None:
            self.record.drift_skipped = "no champion in service"
            return
        entry = self.state.models[champion]
        since = drift_lib.live_window_start(day, entry.trained_as_of)
        window = self.days[(self.days > since) & (self.days <= day)]
        live_days = sum(d in self._daily_by_date for d in window)
        if (too_few := drift_lib.too_few_live_days(live_days)) is not None:
            self.record.drift_skipped = too_few
            return
        rows = [self._daily_by_date[d] for d in window if d in self._daily_by_date]
        live = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=FEATURE_NAMES)
        scores = [self._live_scores(entry, d) for d in window if d in self._daily_by_date]
        resolved_correct = drift_lib.champion_hits(self.state.shadow, champion, day, self.config)
        report = drift_lib.drift_report(
            entry.drift_reference, live[FEATURE_NAMES],
            np.concatenate(scores) if scores else np.array([]),
            resolved_correct, entry.model.metrics["accuracy"], FEATURE_NAMES,
        )
        self.state.drift_reports.append({"as_of": day, "model_id": champion, "report": report})
        self.record.drift = self.state.drift_reports[-1]

    def _live_scores(self, entry: ModelEntry, day: pd.Timestamp) -> np.ndarray:
        """Top-class probability of the champion on one day's feature rows (cached per model and day)."""
        key = (entry.model_id, day)
        if key not in self._score_cache:
            self._score_cache[key] = entry.model.predict_proba(self._daily_by_date[day][FEATURE_NAMES]).max(axis=1)
        return self._score_cache[key]

    def _sensors(self, day: pd.Timestamp) -> None:
        """The three retrain sensors after the loop of `day`; requests with equal training inputs merge."""
        champion_id = self.state.champion_id(day + pd.Timedelta(days=1))
        champion = (rules.ChampionRef(champion_id, self.state.models[champion_id].trained_as_of)
                    if champion_id else None)
        reports = self.state.drift_reports
        drift = (rules.DriftRef(reports[-1]["as_of"], reports[-1]["model_id"],
                                reports[-1]["report"].recommendation.value) if reports else None)
        decisions = rules.sensor_decisions(day, champion, self.state.all_outcomes(), drift, self.state.sensor_cursors)
        requests = []
        for sensor, decision in decisions.items():
            if decision.request is not None:
                self.state.sensor_cursors[sensor] = decision.cursor
                requests.append(decision.request)
        merged = rules.merge_requests(requests)
        for request in requests:
            if request not in merged:
                self._skip(day, request.trigger, f"merged into the retrain {request.training_key}")
        for request in merged:
            self._retrain(request)
