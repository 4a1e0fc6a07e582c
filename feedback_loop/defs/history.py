"""The history run: the batch driver's days of a partition range, recorded in Dagster as they are made.

One run of `loop_history_job` steps the trading days of [start, end] in date order with the
batch driver (`lib.loop.engine`, the rules and lib functions every driver calls; the parity test
holds it to the daily partition runs row for row). After each day it records what the live runs
would have recorded for that day: a materialization of every daily asset for the day's partition,
with the metadata builders those assets use and their check results; each retrain as
materializations of the training assets, `challenger_model` and `promotion_decision`; each
blend-weight evaluation as a materialization of `blend_weight`. At the end the rows land in
Postgres (`lib.loop.history`) and the retrain sensors' cursors are stored where the daemon reads
them, so a daemon started afterwards does not ask again for a retrain the history made.
"""


import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import sqlalchemy as sa

# The daemon keeps each sensor's cursor in its instigator state; no public API writes it.
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.remote_origin import (
    InProcessCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    SensorInstigatorData,
)
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from feedback_loop.defs import checks
from feedback_loop.defs import loop as loop_defs
from feedback_loop.defs import monitoring as monitoring_defs
from feedback_loop.defs import training as training_defs
from feedback_loop.defs.automation import DAILY_LOOP_TAG
from feedback_loop.defs.resources import DatabaseResource
from feedback_loop.lib.frames import MARKET_TICKER
from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.loop.engine import (
    CLOSED_LOOP_ARM,
    DayRecord,
    LoopData,
    LoopEngine,
    RetrainRecord,
)
from feedback_loop.lib.loop.history import persist_history
from feedback_loop.lib.models import checks as model_checks
from feedback_loop.lib.models import store as model_store
from feedback_loop.lib.monitoring import checks as monitoring_checks
from feedback_loop.lib.portfolio import checks as portfolio_checks
from feedback_loop.lib.portfolio import loop_store, performance
from feedback_loop.lib.portfolio.broker import read_policy
from feedback_loop.lib.portfolio.loop_store import OUTCOME_COLUMNS
from feedback_loop.lib.portfolio.paper import POSITION_COLUMNS
from feedback_loop.lib.signals import checks as signal_checks
from feedback_loop.lib.signals.heuristic import score_heuristic
from feedback_loop.lib.store import db
from feedback_loop.lib.training.artifact import artifact_sha256

#: The code location and repository the daemon knows the sensors by (workspace.yaml, `@dg.definitions`).
CODE_LOCATION = "feedback_loop.definitions"
REPOSITORY = "__repository__"


class HistoryConfig(dg.Config):
    """The range of days the run steps (YYYY-MM-DD, both included)."""

    start: str
    end: str
    #: Fold validation adds fold metrics to each model's record; every decision is the same without it.
    validate_models: bool = False


def load_loop_data(engine: sa.Engine, end) -> LoopData:
    with engine.connect() as conn:
        return LoopData(disclosures=ingest.read_disclosures(conn, as_of=end), prices=ingest.read_prices(conn, end=end),
                        sectors=ingest.read_sectors(conn), politicians=ingest.read_politicians(conn))


def _materialization(asset: str, metadata: dict, day: "pd.Timestamp | None" = None) -> dg.AssetMaterialization:
    return dg.AssetMaterialization(asset_key=asset, partition=f"{day:%Y-%m-%d}" if day is not None else None,
                                   metadata=metadata)


def _check_evaluations(asset: str, outcomes, day: "pd.Timestamp | None" = None) -> list[dg.AssetCheckEvaluation]:
    """The lib check outcomes of one asset as the check evaluations a live run of it records."""
    return [dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey(asset), check_name=result.check_name, passed=result.passed,
        metadata=result.metadata or {}, severity=result.severity,
        partition=f"{day:%Y-%m-%d}" if day is not None else None) for result in checks.results(outcomes)]


class Recorder:
    """Turns the batch driver's day records into the assets' materializations and check evaluations."""

    def __init__(self, context: dg.OpExecutionContext, engine: sa.Engine, loop: LoopEngine):
        self.context, self.engine, self.loop = context, engine, loop
        self.policy = loop.policy
        self.spy = loop.data.prices[loop.data.prices["ticker"] == MARKET_TICKER]
        self.model_links: dict[str, dict] = {}
        self.performance_rows: list[tuple] = []

    # ------------------------------------------------------------ retrains
    def retrain(self, retrain: RetrainRecord) -> Iterator:
        as_of = retrain.request.as_of
        yield _materialization("market_labeled_set", training_defs.labeled_metadata(retrain.market, as_of, True))
        if retrain.outcome is not None:
            yield _materialization("outcome_labeled_set",
                                   training_defs.labeled_metadata(retrain.outcome, as_of, False))
        yield _materialization("blended_training_set", training_defs.blended_metadata(
            retrain.training, as_of, retrain.request.use_outcomes))
        yield from _check_evaluations("blended_training_set", retrain.checks)
        if retrain.model_id is None or retrain.comparison is None:
            return
        entry = self.loop.state.models[retrain.model_id]
        with self.engine.begin() as conn:
            record = model_store.store_model(conn, entry.model, model_id=entry.model_id, trigger=entry.trigger.value,
                                             training_frame=entry.reference_features,
                                             artifact_root=db.state_dir() / "models")
        yield _materialization("challenger_model", training_defs.model_metadata(entry.model, record))
        yield from _check_evaluations("challenger_model", model_checks.challenger_model_checks(
            record.artifact_sha256, artifact_sha256(Path(record.artifact_path)), len(entry.model.holdout),
            entry.model.metrics))
        latest = self.context.instance.fetch_materializations(dg.AssetKey("challenger_model"), limit=1).records
        if latest:
            self.model_links[retrain.model_id] = {
                "model": dg.MetadataValue.url(f"/assets/challenger_model?asOf={int(latest[0].timestamp * 1000)}")}
        comparison = retrain.comparison
        yield _materialization("promotion_decision", training_defs.promotion_metadata(
            comparison["promoted"], comparison["reason"], comparison["details"]["new"],
            comparison["details"]["current"], comparison["holdout_rows"], comparison=comparison))
        statuses = {model_id: m.status for model_id, m in self.loop.state.models.items()}
        yield from _check_evaluations("promotion_decision", model_checks.promotion_decision_checks(
            comparison, statuses, retrain.model_id, comparison["promoted"]))

    # ------------------------------------------------------------ the day
    def day(self, record: DayRecord, last: bool) -> Iterator:
        day, state = record.day, self.loop.state
        for retrain in record.retrains:
            if retrain.request.as_of < day:  # scheduled retrains run before the day's loop
                yield from self.retrain(retrain)
        yield _materialization("portfolio_positions", loop_defs.positions_metadata(
            state.portfolio, record.updates, day, self.policy), day)
        yield from _check_evaluations("portfolio_positions", portfolio_checks.portfolio_positions_checks(
            state.portfolio, record.queued if record.queued is not None else pd.DataFrame(), day), day)
        outcomes = state.all_outcomes()  # every outcome closed so far, built once for the day
        yield _materialization("signal_outcomes", self._outcomes_metadata(record, outcomes), day)
        closed = record.closed if record.closed is not None else pd.DataFrame(columns=OUTCOME_COLUMNS)
        positions = record.closed_positions if record.closed_positions is not None else pd.DataFrame(
            columns=POSITION_COLUMNS)
        yield from _check_evaluations("signal_outcomes", portfolio_checks.signal_outcomes_checks(closed, positions), day)
        features = record.features if record.features is not None else pd.DataFrame(columns=["ticker", "as_of"])
        yield _materialization("ticker_features", loop_defs.features_metadata(features), day)
        yield from _check_evaluations("ticker_features", signal_checks.ticker_features_checks(features, day), day)
        heuristic = record.heuristic if record.heuristic is not None else score_heuristic(features)
        yield _materialization("heuristic_signals", loop_defs.heuristic_metadata(heuristic), day)
        yield from _check_evaluations("heuristic_signals", signal_checks.heuristic_signals_checks(heuristic), day)
        champion = state.champion_id(day)
        yield _materialization("champion_in_service", self._champion_metadata(champion, day), day)
        yield from _check_evaluations("champion_in_service", self._champion_checks(champion, day), day)
        signals_metadata, fallback = self._signals_metadata(record, champion)
        yield _materialization("trading_signals", signals_metadata, day)
        signals = record.signals if record.signals is not None else pd.DataFrame()
        yield from _check_evaluations("trading_signals", signal_checks.trading_signals_checks(
            signals, self.policy, None, fallback), day)
        performance_metadata, metrics = self._performance_metadata(day, champion, outcomes, last)
        yield _materialization("portfolio_performance", performance_metadata, day)
        yield from _check_evaluations("portfolio_performance", portfolio_checks.portfolio_performance_checks(metrics),
                                      day)
        if record.blend is not None:
            yield _materialization("blend_weight", monitoring_defs.blend_metadata(*record.blend), day)
            yield from _check_evaluations("blend_weight", monitoring_checks.blend_weight_checks(record.blend[0]), day)
        yield _materialization("feature_drift", self._drift_metadata(record), day)
        report = record.drift["report"] if record.drift is not None else None
        yield from _check_evaluations("feature_drift", monitoring_checks.feature_drift_checks(
            report, record.drift_skipped or ""), day)
        for retrain in record.retrains:
            if retrain.request.as_of >= day:  # the sensors' retrains run after the day's loop
                yield from self.retrain(retrain)

    def _outcomes_metadata(self, record: DayRecord, outcomes: pd.DataFrame) -> dict:
        day, state = record.day, self.loop.state
        closed = outcomes[pd.to_datetime(outcomes["exit_date"]) <= day] if len(outcomes) else outcomes
        shadow = state.shadow if state.shadow is not None else pd.DataFrame(columns=["exit_date", "generated"])
        resolved = shadow[pd.to_datetime(shadow["exit_date"]) <= day]
        totals = {"outcomes": len(closed),
                  "by_outcome": closed["outcome"].value_counts().sort_index().to_dict() if len(closed) else {},
                  "shadow_outcomes": len(resolved),
                  "shadow_outcomes_of_generated_signals": int(resolved["generated"].astype(bool).sum())}
        today = record.closed if record.closed is not None else None
        shadow_today = 0 if record.shadow_resolved is None else len(record.shadow_resolved)
        return loop_defs.outcomes_metadata(totals, today, 0 if today is None else len(today), shadow_today)

    def _since(self, champion: str, day: pd.Timestamp):
        return max(d[0] for d in self.loop.state.deployments if d[1] == champion and pd.Timestamp(d[0]) <= day)

    def _champion_checks(self, champion: str | None, day: pd.Timestamp) -> list:
        if champion is None:
            return model_checks.champion_in_service_checks(day, None, None)
        return model_checks.champion_in_service_checks(day, self.loop.state.models[champion].trained_as_of,
                                                       self._since(champion, day))

    def _champion_metadata(self, champion: str | None, day: pd.Timestamp) -> dict:
        if champion is None:
            return loop_defs.champion_metadata(None, None, None, None, {})
        since = self._since(champion, day)
        entry = self.loop.state.models[champion]
        return loop_defs.champion_metadata(champion, entry.model.version, since, entry.trained_as_of,
                                           self.model_links.get(champion, {}))

    def _signals_metadata(self, record: DayRecord, champion: str | None) -> tuple[dict, float | None]:
        """The metadata, and the fallback rate of the window the serving SLA is measured over."""
        state, day = self.loop.state, record.day
        signals = record.signals if record.signals is not None else pd.DataFrame()
        window = state.signals[state.signals["as_of"] > day - pd.Timedelta(days=loop_defs.FALLBACK_RATE_WINDOW_DAYS)] \
            if len(state.signals) else state.signals
        shadow = record.shadow_model_id
        fallback = loop_store.fallback_share(window["serving_path"]) if len(window) else None
        return {
            **loop_defs.signals_metadata(
                signals, blend_weight=state.blend_weight_on(day), serving_path=record.serving_path
                or loop_defs.ServingPath.NO_CHAMPION, model_version=state.models[champion].model.version
                if champion else None, shadow_model_version=state.models[shadow].model.version if shadow else None,
                fallback_rate=fallback),
            **(self.model_links.get(champion, {}) if champion else {}),
        }, fallback

    def _performance_metadata(self, day: pd.Timestamp, champion: str | None, outcomes: pd.DataFrame,
                              last: bool) -> tuple[dict, dict]:
        equity = self.loop.state.portfolio.equity
        metrics = performance.portfolio_metrics(equity, outcomes, self.spy[self.spy["date"] <= day])
        self.performance_rows.append((day, metrics, champion))
        # The equity curve is drawn for the last day only: a PNG per day would cost a second each.
        png = performance.equity_curve_png({"portfolio": equity}, self.spy[self.spy["date"] <= day]) if last else None
        return loop_defs.performance_metadata(equity, metrics, png), metrics

    def _drift_metadata(self, record: DayRecord) -> dict:
        if record.drift is None:
            return {"recommendation": "no_action", "reason": record.drift_skipped or "no drift report"}
        model = self.loop.state.models[record.drift["model_id"]].model
        return monitoring_defs.drift_metadata(record.drift["report"], model.version)


def store_sensor_cursors(instance: dg.DagsterInstance, cursors: dict[str, str | None]) -> None:
    """Each retrain sensor's cursor as the daemon stores it ({"model_id": ...}, see `automation._cursor`)."""
    repository = RemoteRepositoryOrigin(
        InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name=CODE_LOCATION), location_name=CODE_LOCATION),
        REPOSITORY)
    known = {state.selector_id: state for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)}
    for rule, model_id in cursors.items():
        origin = RemoteInstigatorOrigin(repository, f"{rule}_sensor")
        cursor = json.dumps({"model_id": model_id})
        stored = known.get(origin.get_selector().get_id())
        if stored is None:
            instance.add_instigator_state(InstigatorState(
                origin, InstigatorType.SENSOR, InstigatorStatus.DECLARED_IN_CODE, SensorInstigatorData(cursor=cursor)))
        else:
            data = stored.instigator_data or SensorInstigatorData()
            instance.update_instigator_state(stored.with_data(data._replace(cursor=cursor)))


def refuse_foreign_history(engine: sa.Engine, start: pd.Timestamp, end: pd.Timestamp) -> None:
    """A history writes the models, deployments and rows of its range; it can replace an earlier run
    of itself, never merge into another history (a live champion, or a history of other dates)."""
    prefix = f"{CLOSED_LOOP_ARM.name}-"
    with engine.connect() as conn:
        foreign = conn.execute(sa.text(
            "SELECT model_id FROM ml_models WHERE model_id NOT LIKE :p OR trained_as_of < :s OR trained_as_of > :e"
            " LIMIT 1"), {"p": prefix + "%", "s": (start - pd.Timedelta(days=1)).date(), "e": end.date()}).scalar()
    if foreign is not None:
        raise dg.Failure(f"the database already holds model {foreign}, not one a history of {start.date()} .. "
                         f"{end.date()} makes: run the history on a fresh database (feedback-loop db remove --yes)")


def hold_event_log_connection(instance: dg.DagsterInstance) -> None:
    """Dagster's Postgres event log opens a new connection for every event (NullPool), each one a
    scram-sha-256 handshake with the local cluster; a history writes thousands of events, so its run
    holds a pooled connection, as the webserver does (4-6x faster per event, measured)."""
    instance.event_log_storage.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=2)


@dg.op(description=__doc__.split("\n\n")[1].replace("\n", " "), out={})
def step_history_days(context: dg.OpExecutionContext, config: HistoryConfig, database: DatabaseResource):
    engine = database.get_engine()
    start, end = pd.Timestamp(config.start), pd.Timestamp(config.end)
    refuse_foreign_history(engine, start, end)
    hold_event_log_connection(context.instance)
    with engine.connect() as conn:
        policy = read_policy(conn)
    loop = LoopEngine(load_loop_data(engine, end), CLOSED_LOOP_ARM, start=start, end=end, portfolio_policy=policy,
                      validate_models=config.validate_models)
    recorder = Recorder(context, engine, loop)
    last_day = loop.days[-1]
    for record in loop.step_days():
        yield from recorder.day(record, last=record.day == last_day)
        context.log.info(f"{record.day:%Y-%m-%d}: {loop.key_figures()}")
    written = persist_history(engine, loop.state, db.state_dir() / "models")
    with engine.begin() as conn:
        for day, metrics, champion in recorder.performance_rows:
            loop_store.write_performance_history(conn, day, "portfolio", metrics, champion)
    store_sensor_cursors(context.instance, loop.state.sensor_cursors)
    context.log.info(f"{len(loop.days)} days recorded; wrote {written}")


@dg.job(tags={DAILY_LOOP_TAG: "history"},
        description="A range of days stepped in date order in one run, each day recorded as the daily assets' "
                    "materializations (the demo's history; `feedback-loop run-days`).")
def loop_history_job():
    step_history_days()
