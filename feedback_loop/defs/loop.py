"""The daily loop, one partition per as-of date: features → signals → portfolio → outcomes → performance.

Every asset rebuilds what it needs as of its partition date from Postgres (the champion
and blend weight in force that day, the portfolio at the start of the day), so any past
day can be re-materialized from the UI and reproduces the same rows.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from feedback_loop.defs import checks
from feedback_loop.defs import metadata as md
from feedback_loop.defs.partitions import daily_partitions
from feedback_loop.defs.resources import DatabaseResource
from feedback_loop.lib.frames import MARKET_TICKER
from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.models import checks as model_checks
from feedback_loop.lib.models import registry, serving
from feedback_loop.lib.monitoring import blend_weight as blend_weight_lib
from feedback_loop.lib.plots import png_markdown
from feedback_loop.lib.policy import SERVING_FALLBACK_WINDOW_DAYS, PortfolioPolicy
from feedback_loop.lib.portfolio import checks as portfolio_checks
from feedback_loop.lib.portfolio import loop_store, outcomes, performance
from feedback_loop.lib.portfolio.broker import (
    AlpacaBroker,
    exchange_today,
    read_policy,
    send_live_orders,
)
from feedback_loop.lib.portfolio.paper import PortfolioState, step_portfolio
from feedback_loop.lib.portfolio.shadow import (
    candidate_calls,
    shadow_outcomes_of_candidates,
    shadow_resolution_window,
)
from feedback_loop.lib.signals import checks as signal_checks
from feedback_loop.lib.signals.features import (
    FEATURE_HISTORY_DAYS,
    FEATURE_PRICE_COLUMNS,
    compute_ticker_features,
)
from feedback_loop.lib.signals.heuristic import score_heuristic
from feedback_loop.lib.signals.trading import build_signals
from feedback_loop.lib.vocab import PredictionRole, ServingPath, SignalStatus, TradingMode

OWNERS = ["team:signals"]
#: The persisted portfolio config's defaults, quoted in descriptions (operators may change the config).
DEFAULTS = PortfolioPolicy()
#: The serving fallback rate is reported over this many calendar days.
FALLBACK_RATE_WINDOW_DAYS = SERVING_FALLBACK_WINDOW_DAYS


def previous_day(asset: str) -> dg.AssetDep:
    """Day D of `asset` needs its day D-1: the portfolio and the outcomes carry over, so a backfill
    of many days runs them one after the other in date order."""
    return dg.AssetDep(asset, partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1))


def as_of_date(context: dg.AssetExecutionContext) -> pd.Timestamp:
    return pd.Timestamp(context.partition_key)


def is_trading_day(conn, day: pd.Timestamp) -> bool:
    spy = ingest.read_prices(conn, tickers=[MARKET_TICKER], start=day, end=day)
    return len(spy) > 0


def previous_trading_day(conn, day: pd.Timestamp) -> pd.Timestamp | None:
    spy = ingest.read_prices(conn, tickers=[MARKET_TICKER], start=day - pd.Timedelta(days=14),
                             end=day - pd.Timedelta(days=1))
    return spy["date"].max() if len(spy) else None


def _not_a_trading_day(day: pd.Timestamp, asset_name: str) -> dg.MaterializeResult:
    note = f"{day.date()} has no SPY price: nothing to do"
    return dg.MaterializeResult(metadata={"dagster/row_count": 0, "trading_day": False, "note": note},
                                check_results=checks.not_evaluated(asset_name, note))


def model_link(instance: dg.DagsterInstance | None, model_id: str | None) -> dict:
    """`model_version` as a link to the model's `challenger_model` materialization, when there is one."""
    if instance is None or model_id is None:
        return {}
    for event in instance.fetch_materializations(dg.AssetKey("challenger_model"), limit=500).records:
        materialization = event.asset_materialization
        entry = materialization.metadata.get("model_id") if materialization else None
        if entry is not None and getattr(entry, "value", entry) == model_id:
            return {"model": dg.MetadataValue.url(f"/assets/challenger_model?asOf={int(event.timestamp * 1000)}")}
    return {}


# --------------------------------------------------------------- metadata of each day (both drivers)
def features_metadata(features: pd.DataFrame) -> dict:
    share = (features.drop(columns=["ticker", "as_of"]).notna().mean() if len(features)
             else pd.Series(dtype=float))
    return {"dagster/row_count": len(features),
            "feature_completeness": md.table(share.rename_axis("feature").reset_index(name="share_present"))}


def heuristic_metadata(scored: pd.DataFrame) -> dict:
    types = scored["heuristic_signal_type"] if len(scored) else None
    return {"dagster/row_count": len(scored), "by_type": md.counts(types, "signal_type")}


def signals_metadata(signals: pd.DataFrame, *, blend_weight: float, serving_path: ServingPath,
                     model_version: str | None, shadow_model_version: str | None, fallback_rate: float | None,
                     failures: list | None = None, latency: dict | None = None) -> dict:
    status = signals["status"] if len(signals) else pd.Series(dtype=str)
    queued = signals[status == SignalStatus.QUEUED.value] if len(signals) else signals
    return {
        "dagster/row_count": len(signals),
        **md.numbers({
            "queued": len(queued),
            "blend_weight": blend_weight,
            "fallback": serving_path in (ServingPath.PREVIOUS_CHAMPION, ServingPath.HEURISTIC_FALLBACK),
            f"fallback_rate_{FALLBACK_RATE_WINDOW_DAYS}d": fallback_rate,
            "min_queued_confidence": queued["confidence"].min() if len(queued) else None,
            **{f"scoring_latency_{k}": v for k, v in (latency or {}).items()},
        }),
        "by_status": md.counts(status if len(signals) else None, "status"),
        "serving_path": serving_path.value,
        "model_version": model_version or "none",
        "shadow_model_version": shadow_model_version or "none",
        **({"serving_failures": dg.MetadataValue.json(failures)} if failures else {}),
    }


def positions_metadata(state: PortfolioState, updates: pd.DataFrame | None, day: pd.Timestamp,
                       policy: PortfolioPolicy) -> dict:
    trading_mode = policy.trading_mode
    positions = state.positions
    today = state.equity.iloc[-1]
    fills = (updates.merge(positions[["signal_id", "ticker"]], on="signal_id", how="left")
             if updates is not None and len(updates) else None)
    metadata = {
        "dagster/row_count": len(positions),
        **md.numbers({
            "open_positions": int((positions["status"] == "open").sum()),
            "opened_today": int((positions["entry_date"] == day).sum()),
            "closed_today": int((positions["exit_date"] == day).sum()),
            "equity_usd": today["equity_usd"], "cash_usd": today["cash_usd"],
        }),
        "trading_mode": trading_mode,
        "exit_policy": policy.describe_exits(),
        "fills": md.table(fills),
    }
    if trading_mode == TradingMode.LIVE.value:
        metadata["WARNING"] = dg.MetadataValue.md("**LIVE TRADING IS ON: orders go to the broker with real money.**")
    return metadata


def outcomes_metadata(totals: dict, today: pd.DataFrame | None, recomputed: int, shadow_today: int) -> dict:
    closed = today if today is not None and len(today) else None
    return {
        "dagster/row_count": totals["outcomes"],
        "closed_today": 0 if closed is None else len(closed),
        "recomputed": recomputed,
        "shadow_resolved": totals["shadow_outcomes"],
        "shadow_resolved_today": shadow_today,
        "shadow_of_generated_signals": totals["shadow_outcomes_of_generated_signals"],
        "by_outcome": md.table(pd.DataFrame({"outcome": list(totals["by_outcome"]),
                                             "rows": list(totals["by_outcome"].values())})),
        "today": md.table(closed, ["ticker", "return_pct", "outcome", "exit_reason"]),
    }


def performance_metadata(equity: pd.DataFrame, metrics: dict, png: bytes | None) -> dict:
    return {
        "dagster/row_count": len(equity),
        **md.numbers({k: v for k, v in metrics.items() if isinstance(v, (int, float)) or v is None}),
        **({"equity_curve": dg.MetadataValue.md(png_markdown(png, "equity vs SPY"))} if png else {}),
    }


def champion_metadata(model_id: str | None, version: str | None, since, trained_as_of, link: dict) -> dict:
    if model_id is None:
        return {"model_version": "none", "note": "no champion yet: signals are the heuristic's"}
    return {"model_id": model_id, "model_version": version, "serving_since": str(pd.Timestamp(since).date()),
            "trained_as_of": str(pd.Timestamp(trained_as_of).date()), **link}


@dg.asset(
    group_name="signals", kinds={"python", "postgres"}, owners=OWNERS, partitions_def=daily_partitions,
    deps=["disclosures", "market_prices"], check_specs=checks.specs("ticker_features"),
    description=("Model features of every ticker traded in the trailing 90 days, as of the partition date, "
                 "from disclosures filed on or before it and prices dated on or before it. The same function "
                 "builds training rows."),
)
def ticker_features(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    day = as_of_date(context)
    engine = database.get_engine()
    with engine.connect() as conn:
        if not is_trading_day(conn, day):
            return _not_a_trading_day(day, "ticker_features")
        history_start = day - pd.Timedelta(days=FEATURE_HISTORY_DAYS)
        disclosures = ingest.read_disclosures(conn, as_of=day, filed_after=history_start)
        prices = ingest.read_prices(conn, start=history_start, end=day, columns=FEATURE_PRICE_COLUMNS)
        sectors = ingest.read_sectors(conn)
    features = compute_ticker_features(disclosures, prices, as_of_dates=[day], sectors=sectors)
    with engine.begin() as conn:
        loop_store.replace_features(conn, day, features)
    return dg.MaterializeResult(metadata=features_metadata(features),
                                check_results=checks.results(signal_checks.ticker_features_checks(features, day)))


@dg.asset(
    group_name="signals", kinds={"python", "postgres"}, owners=OWNERS, partitions_def=daily_partitions,
    deps=[ticker_features], check_specs=checks.specs("heuristic_signals"),
    description="The rule-based scorer of the original system applied to the day's features (holds dropped).",
)
def heuristic_signals(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    day = as_of_date(context)
    engine = database.get_engine()
    with engine.connect() as conn:
        features = loop_store.read_features(conn, day, day)
    scored = score_heuristic(features) if len(features) else features
    with engine.begin() as conn:
        loop_store.replace_heuristic(conn, day, scored)
    return dg.MaterializeResult(metadata=heuristic_metadata(scored),
                                check_results=checks.results(signal_checks.heuristic_signals_checks(scored)))


@dg.asset(
    group_name="signals", kinds={"python", "postgres"}, owners=["team:ml"], partitions_def=daily_partitions,
    deps=["promotion_decision"], check_specs=checks.specs("champion_in_service"),
    description=("The model serving the signals of the partition date: the latest deployment effective on or before "
                 "it (a promotion decided on D serves from D+1; a rollback restores the model before)."),
)
def champion_in_service(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    day = as_of_date(context)
    with database.get_engine().connect() as conn:
        record = registry.champion_as_of(conn, day)
        since = registry.champion_since(conn, day)
    outcomes = model_checks.champion_in_service_checks(day, record.trained_as_of if record else None, since)
    if record is None:
        return dg.MaterializeResult(metadata=champion_metadata(None, None, None, None, {}),
                                    check_results=checks.results(outcomes))
    return dg.MaterializeResult(metadata=champion_metadata(
        record.model_id, record.version, since, record.trained_as_of, model_link(context.instance, record.model_id)),
        check_results=checks.results(outcomes))


@dg.asset(
    group_name="signals", kinds={"python", "xgboost", "postgres"}, owners=OWNERS, partitions_def=daily_partitions,
    deps=[heuristic_signals, champion_in_service, previous_day("blend_weight")],
    check_specs=checks.specs("trading_signals"),
    description=("Heuristic blended with the champion in force on the partition date (sha256-verified; falls back "
                 "to the previous champion, then to heuristic only). Signals under the persisted min_signal_confidence "
                 f"(default {DEFAULTS.min_signal_confidence}) are not generated, under min_queue_confidence (default "
                 f"{DEFAULTS.min_queue_confidence}) not queued; direction disagreements never queued. A candidate model "
                 "scores in shadow."),
)
def trading_signals(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    day = as_of_date(context)
    engine = database.get_engine()
    with engine.connect() as conn:
        features = loop_store.read_features(conn, day, day)
        policy = read_policy(conn)
        weight = blend_weight_lib.blend_weight_as_of(conn, day)
        served = serving.serve_as_of(conn, day)
        candidate = serving.candidate_as_of(conn, day)
    heuristic = score_heuristic(features) if len(features) else features
    if not len(heuristic):
        with engine.begin() as conn:
            loop_store.replace_signals(conn, day, pd.DataFrame(), pd.DataFrame())
        return dg.MaterializeResult(metadata={**signals_metadata(
            heuristic, blend_weight=weight, serving_path=served.serving_path, model_version=None,
            shadow_model_version=None, fallback_rate=None), **({"serving_note": served.note} if served.note else {})},
            check_results=checks.not_evaluated("trading_signals", "no heuristic signal today"))
    ml, log = None, []
    if served.model is not None:
        ml, champion_log = serving.score_with_logging(served.model, served.record, heuristic,
                                                      PredictionRole.CHAMPION, served.serving_path)
        log.append(champion_log)
    challenger = None
    if candidate.model is not None:
        challenger, shadow_log = serving.score_with_logging(candidate.model, candidate.record, heuristic,
                                                            PredictionRole.SHADOW, served.serving_path)
        log.append(shadow_log)
    signals = build_signals(
        heuristic, ml, blend_weight=weight, policy=policy, serving_path=served.serving_path,
        model_id=served.record.model_id if served.record else None,
        model_version=served.record.version if served.record else None, challenger=challenger,
    )
    predictions = pd.concat(log, ignore_index=True) if log else pd.DataFrame()
    calls = candidate_calls(heuristic, ml, served.record.model_id if served.record else None, challenger, signals)
    with engine.begin() as conn:
        logged = predictions[predictions["signal_id"].isin(set(signals["signal_id"]))] if len(predictions) else predictions
        loop_store.replace_signals(conn, day, calls, signals)
        if len(logged):
            serving.write_predictions(conn, logged)
        rate = loop_store.fallback_rate(conn, day - pd.Timedelta(days=FALLBACK_RATE_WINDOW_DAYS - 1), day)
    latency = serving.latency_summary(predictions) if len(predictions) else {}
    return dg.MaterializeResult(metadata={
        **signals_metadata(signals, blend_weight=weight, serving_path=served.serving_path,
                           model_version=served.record.version if served.record else None,
                           shadow_model_version=candidate.record.version if candidate.record else None,
                           fallback_rate=rate, failures=served.failures, latency=latency),
        **({"serving_note": served.note} if served.note else {}),
        **model_link(context.instance, served.record.model_id if served.record else None),
    }, check_results=checks.results(signal_checks.trading_signals_checks(signals, policy, predictions, rate)))


@dg.asset(
    group_name="portfolio", kinds={"python", "postgres"}, owners=["team:trading"], partitions_def=daily_partitions,
    deps=["market_prices", previous_day("portfolio_positions")], check_specs=checks.specs("portfolio_positions"),
    description=("Paper executor: signals queued at the previous close (trading_signals of the previous trading day, "
                 "read from Postgres: declaring that edge would close a cycle in the asset graph) fill at this day's "
                 "open; the exits of the persisted exit policy are checked at the close (by default "
                 f"{DEFAULTS.describe_exits()}). Live mode goes to the broker only when explicitly enabled."),
)
def portfolio_positions(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    day = as_of_date(context)
    engine = database.get_engine()
    with engine.connect() as conn:
        if not is_trading_day(conn, day):
            return _not_a_trading_day(day, "portfolio_positions")
        policy = read_policy(conn)
        previous = previous_trading_day(conn, day)
        previous_signals = loop_store.read_signals(conn, previous, previous) if previous is not None else pd.DataFrame()
        queued = loop_store.queued_for(previous_signals) if previous is not None else pd.DataFrame()
        prices = loop_store.portfolio_prices(conn, day, queued, policy)
        state = loop_store.portfolio_at_start_of(conn, day, prices, policy)
    # The queue filled today was gated yesterday, in another run: the portfolio holds back a queue
    # whose gate failed (the edge trading_signals(D-1) -> portfolio_positions(D) cannot be declared).
    if len(previous_signals):
        gate = signal_checks.trading_signals_checks(previous_signals, policy, None, None)[0]
        if not gate.passed:
            raise dg.Failure(f"the signals queued on {previous.date()} failed their gate {gate.name} "
                             f"({gate.metadata}): nothing is filled until they are re-materialized")
    state, updates = step_portfolio(state, day, queued, prices, policy)
    live_orders = {}
    if policy.trading_mode == TradingMode.LIVE.value:
        state.positions, live_orders = send_live_orders(
            engine, lambda: AlpacaBroker.from_env(policy.trading_mode), state.positions, day,
            today=exchange_today(dt.datetime.now(dt.UTC)), trading_mode=policy.trading_mode)
    with engine.begin() as conn:
        loop_store.replace_portfolio_day(conn, day, previous, state, updates)
    return dg.MaterializeResult(
        metadata={**positions_metadata(state, updates, day, policy), **live_orders},
        check_results=checks.results(portfolio_checks.portfolio_positions_checks(state, queued, day)))


@dg.asset(
    group_name="portfolio", kinds={"python", "postgres"}, owners=["team:trading"], partitions_def=daily_partitions,
    deps=[portfolio_positions, previous_day("signal_outcomes")], check_specs=checks.specs("signal_outcomes"),
    description=(f"One outcome per closed position ({outcomes.LABEL_RULE}) with the signal's feature "
                 "vector and model; plus shadow outcomes of every heuristic candidate over the holding horizon. Only "
                 "what can change is computed: positions closed that day or whose outcome is missing or stale, and "
                 "candidates of the shadow resolution window not yet resolved."),
)
def signal_outcomes(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    day = as_of_date(context)
    engine = database.get_engine()
    with engine.begin() as conn:  # one transaction: what an earlier run of the day wrote is computed again
        loop_store.clear_outcomes_of(conn, day)
        policy = read_policy(conn)
        closed = loop_store.positions_due_outcomes(conn, day)
        signals = loop_store.read_signals_by_id(conn, closed["signal_id"])
        oldest, youngest = shadow_resolution_window(day, policy.hold_days)
        candidates = loop_store.unresolved_candidates(conn, oldest, youngest)
        prices = loop_store.outcome_prices(conn, day, closed, candidates, oldest)
        outcome_rows = outcomes.outcomes_from_positions(closed, signals, prices)
        shadow = shadow_outcomes_of_candidates(candidates, prices, day, policy.hold_days)
        loop_store.write_outcomes(conn, outcome_rows)
        loop_store.write_shadow(conn, shadow)
        totals = loop_store.outcome_totals(conn, day)
    today = outcome_rows[outcome_rows["exit_date"] == day] if len(outcome_rows) else outcome_rows
    return dg.MaterializeResult(metadata=outcomes_metadata(totals, today, len(outcome_rows), len(shadow)),
                                check_results=checks.results(portfolio_checks.signal_outcomes_checks(outcome_rows, closed)))


@dg.asset(
    group_name="portfolio", kinds={"python", "postgres"}, owners=["team:trading"], partitions_def=daily_partitions,
    deps=[signal_outcomes], check_specs=checks.specs("portfolio_performance"),
    description=("Win rate (breakevens separate), average return, Sharpe and Sortino annualized from the daily equity "
                 "curve, max drawdown, profit factor and excess return over SPY, with the equity curve vs SPY."),
)
def portfolio_performance(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    day = as_of_date(context)
    engine = database.get_engine()
    with engine.connect() as conn:
        equity = loop_store.read_equity(conn, day)
        closed = loop_store.read_outcomes(conn, day)
        spy = ingest.read_prices(conn, tickers=[MARKET_TICKER], end=day)
        champion = registry.champion_as_of(conn, day)
    if not len(equity):
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, "note": "no equity history yet"},
                                    check_results=checks.not_evaluated("portfolio_performance", "no equity history yet"))
    metrics = performance.portfolio_metrics(equity, closed, spy)
    png = performance.equity_curve_png({"portfolio": equity}, spy)
    with engine.begin() as conn:
        loop_store.write_performance_history(conn, day, "portfolio", metrics,
                                             champion.model_id if champion else None)
    return dg.MaterializeResult(metadata=performance_metadata(equity, metrics, png),
                                check_results=checks.results(portfolio_checks.portfolio_performance_checks(metrics)))
