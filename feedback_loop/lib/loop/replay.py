"""Replay: had the loop been running over a date range, what would it have done?

Every arm runs the engine day by day over the same data and the same causal feature
panel: the heuristic alone, the model with a fixed blend weight and no retraining, and
the full closed loop (weekly market-labeled and monthly outcome-aware retrains, the
new-outcomes/drift/degradation sensors, promotions, blend-weight moves). Each replay
writes into its own Postgres schemas (`replay_<id>_<arm>`), never the operating tables.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from feedback_loop.lib.frames import MARKET_TICKER, DisclosureBatch
from feedback_loop.lib.ingest import parsing
from feedback_loop.lib.ingest import store as ingest
from feedback_loop.lib.loop.engine import (
    ARMS,
    ArmConfig,
    FeaturePanel,
    LoopData,
    LoopEngine,
    LoopState,
    trading_days_between,
)
from feedback_loop.lib.loop.history import persist_history
from feedback_loop.lib.policy import PortfolioPolicy
from feedback_loop.lib.portfolio.broker import write_policy
from feedback_loop.lib.signals.features import FEATURE_HISTORY_DAYS
from feedback_loop.lib.store import db
from feedback_loop.lib.training.config import TrainingConfig, training_config_for
from feedback_loop.lib.vocab import ExitPolicy

#: Price history kept before the replay start: the training lookback, the features' history and label horizons.
HISTORY_BEFORE_START_DAYS = 365 + FEATURE_HISTORY_DAYS + 60


@dataclass
class ReplayInputs:
    data: LoopData
    batch: DisclosureBatch
    description: dict


def check_arguments(start, end, *, disclosure_files: Sequence = (), legislator_files: Sequence = (),
                    price_file=None) -> None:
    """ValueError unless [start, end] is a range and the files make one data set: disclosures and
    prices come together (one without the other would silently mix real and synthetic data)."""
    if pd.Timestamp(start) > pd.Timestamp(end):
        raise ValueError(f"the replay starts ({start}) after it ends ({end})")
    if price_file is not None and not disclosure_files:
        raise ValueError("--prices needs --disclosures (without both, the replay uses the synthetic data)")
    if disclosure_files and price_file is None:
        raise ValueError("--disclosures needs --prices")
    if legislator_files and not disclosure_files:
        raise ValueError("--legislators needs --disclosures and --prices")


def load_inputs(start, end, *, disclosure_files: Sequence[Path] = (), legislator_files: Sequence[Path] = (),
                price_file: Path | None = None) -> ReplayInputs:
    """Real files when given (all three kinds), else the synthetic demo data; trimmed to what the range needs."""
    check_arguments(start, end, disclosure_files=disclosure_files, legislator_files=legislator_files,
                    price_file=price_file)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if disclosure_files:
        from feedback_loop.lib.ingest.sources import FileDisclosureSource

        batch = FileDisclosureSource(list(disclosure_files), list(legislator_files)).load_disclosures()
        prices = parsing.read_price_file(price_file)
        sectors = pd.DataFrame(columns=["ticker", "sector"])
        source = {"disclosures": [str(p) for p in disclosure_files], "legislators": [str(p) for p in legislator_files],
                  "prices": str(price_file)}
    else:
        from feedback_loop.lib.ingest.synthetic import (
            SyntheticConfig,
            SyntheticDisclosureSource,
            SyntheticPriceSource,
        )

        config = SyntheticConfig()
        batch = SyntheticDisclosureSource(config).load_disclosures()
        prices = SyntheticPriceSource(config).load_prices()
        sectors = SyntheticPriceSource(config).load_sectors()
        source = {"synthetic": {"seed": config.seed, "start": str(config.start.date()), "end": str(config.end.date())}}
    disclosures = batch.disclosures[batch.disclosures["disclosure_date"] <= end]
    traded = set(disclosures["ticker"].dropna()) | {MARKET_TICKER}
    prices = prices[prices["ticker"].isin(traded) & (prices["date"] <= end)
                    & (prices["date"] >= start - pd.Timedelta(days=HISTORY_BEFORE_START_DAYS))]
    description = {
        "source": source, "start": str(start.date()), "end": str(end.date()),
        "disclosures_accepted": len(batch.disclosures), "disclosures_until_end": len(disclosures),
        "rejected": len(batch.rejects),
        "accounting": {k: vars(v) for k, v in batch.stats.items()},
        "tickers_traded": len(traded) - 1, "tickers_priced": int(prices["ticker"].nunique()) - 1,
        "price_rows": len(prices),
    }
    return ReplayInputs(LoopData(disclosures.reset_index(drop=True), prices.reset_index(drop=True), sectors,
                                 batch.politicians), batch, description)


def run_arms(inputs: ReplayInputs, start, end, *, arms: Sequence[ArmConfig] = ARMS,
             progress: Callable[[str, int], Callable[[pd.Timestamp, dict], None]] | None = None,
             training_config: TrainingConfig | None = None,
             portfolio_policy: PortfolioPolicy | None = None,
             panel: FeaturePanel | None = None, processes: int = 1,
             persist_to: ReplayTarget | None = None) -> dict[str, LoopState]:
    """Run every arm on the same data and feature panel (built here unless given: `feature_panel`);
    `progress(arm, days)` returns a per-day callback. With `persist_to`, each arm is written to
    its schema as soon as it has run (`persist_arm`).

    With `processes` > 1 the arms run side by side in that many worker processes, each on its own
    copy of the data. An arm depends on nothing but its inputs, so its state is the same as in one
    process (`test_replay_parity.py` replays both ways)."""
    policy = portfolio_policy or PortfolioPolicy()
    config = training_config or training_config_for(policy)
    panel = panel or feature_panel(inputs, start, end, config)
    job = _ArmJob(inputs.data, inputs.batch, panel, policy, config, start, end, persist_to)
    if processes <= 1 or len(arms) <= 1:
        return {arm.name: job.run(arm, progress(arm.name, len(job.days())) if progress else None) for arm in arms}
    return _run_in_processes(job, arms, processes, progress)


@dataclass(frozen=True)
class _ArmJob:
    """What every arm of one replay shares; picklable, so a worker process can run an arm of it."""

    data: LoopData
    batch: DisclosureBatch | None
    panel: FeaturePanel
    policy: PortfolioPolicy
    config: TrainingConfig
    start: object
    end: object
    target: ReplayTarget | None

    def days(self) -> pd.DatetimeIndex:
        return trading_days_between(self.data.prices, self.start, self.end)

    def run(self, arm: ArmConfig, progress: Callable[[pd.Timestamp, dict], None] | None) -> LoopState:
        # Without fold validation (it only adds fold metrics to the model records; decisions are the same).
        engine = LoopEngine(self.data, arm, start=self.start, end=self.end, portfolio_policy=self.policy,
                            training_config=self.config, panel=self.panel, validate_models=False)
        state = engine.run(progress)
        if self.target is not None:
            persist_arm(self.target, arm.name, state, self.batch, self.data, self.policy)
        return state


#: The worker process's job and progress queue, set once per process by `_start_worker`.
_worker: dict = {}


def _start_worker(job: _ArmJob, updates) -> None:
    _worker.update(job=job, updates=updates)


def _run_arm_in_worker(arm: ArmConfig) -> LoopState:
    updates = _worker["updates"]
    report = (lambda day, figures: updates.put((arm.name, day, figures))) if updates is not None else None
    return _worker["job"].run(arm, report)


def _run_in_processes(job: _ArmJob, arms: Sequence[ArmConfig], processes: int, progress) -> dict[str, LoopState]:
    """The arms in `processes` spawned workers (a fork would inherit the parent's OpenMP threads,
    which XGBoost's runtime does not survive), the retraining arms first: they take longest.
    The per-day progress comes back through a queue and is reported here, in the caller's process."""
    context = multiprocessing.get_context("spawn")
    updates = context.Queue() if progress else None
    callbacks = {arm.name: progress(arm.name, len(job.days())) for arm in arms} if progress else {}

    def report_progress() -> None:
        while updates is not None:
            try:
                name, day, figures = updates.get_nowait()
            except queue.Empty:
                return
            callbacks[name](day, figures)

    with ProcessPoolExecutor(max_workers=min(processes, len(arms)), mp_context=context,
                             initializer=_start_worker, initargs=(job, updates)) as pool:
        futures = {arm.name: pool.submit(_run_arm_in_worker, arm)
                   for arm in sorted(arms, key=lambda arm: not arm.retrain)}
        pending = set(futures.values())
        while pending:
            _, pending = wait(pending, timeout=0.2)
            report_progress()
    report_progress()
    return {arm.name: futures[arm.name].result() for arm in arms}


def feature_panel(inputs: ReplayInputs, start, end, config: TrainingConfig) -> FeaturePanel:
    """The causal feature panel of a replay over [start, end] (90-day feature window)."""
    days = trading_days_between(inputs.data.prices, start, end)
    if len(days) == 0:
        raise ValueError(f"no trading days with {MARKET_TICKER} prices between {start} and {end}")
    return FeaturePanel.build(inputs.data, days, config, window_days=90)


def compare_exit_policies(inputs: ReplayInputs, start, end, exit_policies: Sequence[str], *,
                          arms: Sequence[ArmConfig] = ARMS,
                          progress: Callable[[str, int], Callable[[pd.Timestamp, dict], None]] | None = None,
                          ) -> dict[str, dict[str, LoopState]]:
    """exit policy → arm → final state: the same arms on the same data and feature panel under each
    named exit policy (every other rule as PortfolioPolicy()); the label horizon is hold_days throughout."""
    policies = {name: dataclasses.replace(PortfolioPolicy(), exit_policy=ExitPolicy(name).value)
                for name in exit_policies}
    panel = feature_panel(inputs, start, end, training_config_for(PortfolioPolicy()))
    return {name: run_arms(inputs, start, end, arms=arms, portfolio_policy=policy, panel=panel,
                           progress=(lambda arm, days, name=name: progress(f"{name}/{arm}", days)) if progress else None)
            for name, policy in policies.items()}


@dataclass(frozen=True)
class ReplayTarget:
    """Where a replay is written: each arm into schema `replay_<id>_<arm>` of the database at `url`,
    its model artifacts under `artifact_root/<arm>`."""

    url: str
    replay_id: str
    artifact_root: Path

    def schema(self, arm: str) -> str:
        return f"replay_{self.replay_id}_{arm}"


def persist_arm(target: ReplayTarget, arm: str, state: LoopState, batch: DisclosureBatch, data: LoopData,
                policy: PortfolioPolicy) -> str:
    """Write one arm into its own schema (ingested data and the portfolio policy it ran under
    included); return the schema."""
    schema = target.schema(arm)
    engine = db.schema_engine(target.url, schema)
    db.migrate(engine)
    with engine.begin() as conn:
        write_policy(conn, policy)
        ingest.write_batch(conn, batch)
        ingest.write_prices(conn, data.prices)
        ingest.write_sectors(conn, data.sectors)
    persist_history(engine, state, target.artifact_root / arm)
    engine.dispose()
    return schema
