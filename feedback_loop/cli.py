"""The `feedback-loop` command line."""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
from collections import Counter

import click
import sqlalchemy as sa

from feedback_loop.lib import policy
from feedback_loop.lib.store import db
from feedback_loop.lib.store.pgcluster import PostgresNotFound
from feedback_loop.lib.vocab import ExitPolicy

#: Exit code of every user error (click's own usage errors use it too).
USER_ERROR_EXIT_CODE = 2


class UserError(click.ClickException):
    """A user error reported as one line, exit code 2."""

    exit_code = USER_ERROR_EXIT_CODE


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "error"


def _user_error(exc: Exception) -> UserError | None:
    """The one-line user error for an exception the project raises on bad input or setup, else None.

    ValueError and LookupError are how the library refuses input (unknown model id, a file it
    cannot read, a date before the latest deployment); OSError covers missing/unreadable files;
    JobFailed is a demo job whose step refused (a database holding another history).
    """
    from feedback_loop.demo import JobFailed
    from feedback_loop.lib.models.flow import TrainingSetRejected
    from feedback_loop.lib.portfolio.broker import LiveTradingNotAllowed

    if isinstance(exc, sa.exc.OperationalError):
        return UserError(f"database unreachable: {_first_line(exc.orig or exc)}")
    if isinstance(exc, TrainingSetRejected):
        return UserError(f"training set rejected by its checks: {_first_line(exc)}")
    if isinstance(exc, (PostgresNotFound, LiveTradingNotAllowed, JobFailed, LookupError, ValueError, OSError)):
        return UserError(_first_line(exc))
    return None


class OneLineErrors(click.Group):
    """Every user error, click's usage errors included, is one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            error = _user_error(exc)
            if error is None:
                raise
            raise error from exc

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except click.ClickException as exc:
            click.echo(f"Error: {_first_line(exc.format_message())}", err=True)
            sys.exit(USER_ERROR_EXIT_CODE)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


class IsoDate(click.ParamType):
    """A YYYY-MM-DD date as `datetime.date`; `not_in_future` refuses dates after today."""

    name = "YYYY-MM-DD"

    def __init__(self, not_in_future: bool = False):
        self.not_in_future = not_in_future

    def convert(self, value, param, ctx) -> dt.date:
        if isinstance(value, dt.date):
            day = value
        else:
            try:
                day = dt.datetime.strptime(str(value), "%Y-%m-%d").date()
            except ValueError:
                self.fail(f"{value!r} is not a date YYYY-MM-DD", param, ctx)
        if self.not_in_future and day > dt.date.today():
            self.fail(f"{day} is in the future (today is {dt.date.today()})", param, ctx)
        return day


DATE = IsoDate()
PAST_DATE = IsoDate(not_in_future=True)


@click.group(cls=OneLineErrors)
def main() -> None:
    """feedback_loop: congressional-disclosure signals with a closed ML feedback loop."""


@main.group(name="db")
def db_group() -> None:
    """The project's PostgreSQL (a local cluster under .feedback_loop/ unless FEEDBACK_LOOP_DATABASE_URL is set)."""


@db_group.command("up")
def db_up() -> None:
    """Initialize (first time) and start the local cluster, then create the databases."""
    click.echo(db.ensure_databases())


@db_group.command("down")
def db_down() -> None:
    """Stop the local cluster (does nothing when an external database is configured)."""
    if db.uses_external_database():
        click.echo(f"{db.DATABASE_URL_ENV} is set: no local cluster to stop")
        return
    db.local_cluster().down()


@db_group.command("remove")
@click.confirmation_option(prompt="Delete the local cluster and all its data?")
def db_remove() -> None:
    """Stop the local cluster and delete its data (`make clean`)."""
    if db.uses_external_database():
        raise UserError(f"{db.DATABASE_URL_ENV} is set: no local cluster to remove")
    db.local_cluster().remove()


@db_group.command("url")
@click.option("--dagster", is_flag=True, help="Print the URL of Dagster's storage database instead.")
def db_url(dagster: bool) -> None:
    """Print the application (or Dagster storage) database URL."""
    click.echo(db.dagster_database_url() if dagster else db.app_database_url())


@db_group.command("migrate")
def db_migrate() -> None:
    """Apply sql/ migrations in order; safe to run twice."""
    applied = db.migrate(db.engine_for(db.ensure_databases()))
    click.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


@main.command("env")
def print_env() -> None:
    """Print shell exports for running Dagster tools (`eval "$(feedback-loop env)"`)."""
    db.ensure_databases()
    env = db.dagster_environment()
    for key in ("DAGSTER_HOME", db.DAGSTER_URL_ENV, db.STATE_DIR_ENV):
        click.echo(f"export {key}='{env[key]}'")


@main.command("dev", context_settings={"ignore_unknown_options": True})
@click.argument("dg_args", nargs=-1, type=click.UNPROCESSED)
def dev(dg_args: tuple[str, ...]) -> None:
    """Start the Dagster UI and daemon (`dg dev`) against the project's Postgres."""
    db.migrate(db.engine_for(db.ensure_databases()))
    env = db.dagster_environment()
    dg = os.path.join(os.path.dirname(sys.executable), "dg")
    os.execve(dg, [dg, "dev", *dg_args], env)


def _app_engine():
    engine = db.engine_for(db.ensure_databases())
    db.migrate(engine)
    return engine


AS_OF_OPTION = click.option(
    "--as-of", "as_of", type=PAST_DATE, default=None,
    help="Training date YYYY-MM-DD, not in the future (default: the latest SPY price date).")
USE_OUTCOMES_OPTION = click.option("--use-outcomes", is_flag=True,
                                   help="Blend closed trade outcomes (weight 2x) with market labels.")
NUM_CLASSES_OPTION = click.option("--num-classes", type=click.Choice(["3", "5"]), default="5", show_default=True)


def _train(as_of: dt.date | None, use_outcomes: bool, num_classes: str, *, decide: bool,
           require_new_samples: bool) -> None:
    """`train` and `retrain`: the training job's steps, then (decide) the champion/challenger gate."""
    from feedback_loop.lib.models import flow as training_flow
    from feedback_loop.lib.portfolio.broker import read_policy
    from feedback_loop.lib.training import metrics as metric_fns
    from feedback_loop.lib.training.config import training_config_for

    engine = _app_engine()
    if as_of is None:
        with engine.connect() as conn:
            as_of = training_flow.latest_market_date(conn)
        if as_of is None:
            raise UserError("no SPY prices ingested; materialize the ingest assets first")
    with engine.connect() as conn:
        config = training_config_for(read_policy(conn), use_outcomes=use_outcomes, num_classes=int(num_classes))
    record, model, dropped = training_flow.train_candidate(
        engine, as_of, config, trigger="manual", artifact_root=db.state_dir() / "models",
        require_new_samples=require_new_samples)
    metrics = model.metrics
    click.echo(f"candidate {record.model_id} (as of {as_of}, {metrics['fit_rows']} fit rows, "
               f"{metrics['holdout_rows']} holdout rows)")
    for key in ("accuracy", "f1_weighted", "roc_auc_ovr", "brier", "log_loss", "ece"):
        click.echo(f"  holdout {key}: {metrics[key]:.4f}" if metrics.get(key) is not None else f"  holdout {key}: n/a")
    for key in metric_fns.INTERVAL_KEYS:
        if metrics.get(key) is not None:
            click.echo(f"  holdout {key.removesuffix('_ci')} 95% interval: [{metrics[key][0]:.4f}, {metrics[key][1]:.4f}]")
    click.echo(f"  skill: {metrics.get('skill_verdict', 'no edge detected: no skill interval')}")
    for scheme, averages in metrics.get("fold_averages", {}).items():
        click.echo(f"  {scheme}: accuracy {_num(averages.get('accuracy'))}, "
                   f"f1_weighted {_num(averages.get('f1_weighted'))}")
    click.echo(f"  rows dropped: {dropped}")
    if decide:
        result = training_flow.decide_and_apply(engine, record.model_id, as_of=as_of, trigger="manual")
        click.echo(("PROMOTED: " if result.decision.promote else "kept as candidate: ") + result.decision.reason)


@main.command()
@AS_OF_OPTION
@USE_OUTCOMES_OPTION
@NUM_CLASSES_OPTION
@click.option("--decide/--no-decide", default=False, help="Run the champion/challenger gate afterwards.")
def train(as_of: dt.date | None, use_outcomes: bool, num_classes: str, decide: bool) -> None:
    """Train a challenger as of a date (registered as candidate; training never promotes)."""
    _train(as_of, use_outcomes, num_classes, decide=decide, require_new_samples=False)


@main.command(help=(
    "Train a challenger and run the champion/challenger gate (as `train --decide`); refused with fewer than "
    f"{policy.MIN_NEW_SAMPLES_FOR_RETRAIN} labeled rows resolved since the champion was trained, unless --force."))
@AS_OF_OPTION
@USE_OUTCOMES_OPTION
@NUM_CLASSES_OPTION
@click.option("--force", is_flag=True, help="Retrain even with too few new samples since the champion was trained.")
def retrain(as_of: dt.date | None, use_outcomes: bool, num_classes: str, force: bool) -> None:
    _train(as_of, use_outcomes, num_classes, decide=True, require_new_samples=not force)


def _num(value, digits: int = 3) -> str:
    """A metric for people: rounded, '—' when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}"


def _short(text, width: int = 90) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(rows: list[list], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True) if rows else "  (none)"


def _titled_table(title: str, rows: list[list], headers: list[str]) -> str:
    return "\n".join([title, *("  " + line for line in _table(rows, headers).strip("\n").splitlines())]) if rows \
        else f"{title}\n  (none)"


def _when(moment) -> str:
    return "—" if moment is None else f"{moment:%Y-%m-%d %H:%M %Z}".strip()


def _section(title: str, fields: list[tuple[str, object]]) -> str:
    width = max(len(label) for label, _ in fields)
    return "\n".join([title, *(f"  {label:<{width}}  {value}" for label, value in fields)])


def _echo_json(value) -> None:
    import json

    click.echo(json.dumps(value, indent=2, default=str))


@main.group()
def models() -> None:
    """The model registry: list, show, promote, roll back (manual actions go through the same transaction)."""


@models.command("list")
@click.option("--status", "status", type=click.Choice(["active", "candidate", "archived"]), default=None,
              help="Only models with this status.")
def models_list(status: str | None) -> None:
    """Every registered model, oldest first, as a table."""
    from feedback_loop.lib.models import registry

    with _app_engine().connect() as conn:
        records = [r for r in registry.list_models(conn) if status is None or r.status == status]
    rows = [[r.model_id, r.status, r.trigger or "—", r.trained_as_of, _num(r.metrics.get("accuracy")),
             _num(r.metrics.get("f1_weighted")), _num(r.metrics.get("roc_auc_ovr")), f"{r.created_at:%Y-%m-%d %H:%M}"]
            for r in records]
    click.echo(_table(rows, ["model", "status", "trigger", "trained as of", "accuracy", "f1", "roc auc", "created"]))
    click.echo(f"{len(rows)} model(s)" + (f" with status {status}" if status else ""))


def _flat(config: dict, prefix: str = "") -> list[tuple[str, object]]:
    fields = []
    for key, value in config.items():
        fields += _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]
    return fields


@models.command("show")
@click.argument("model_id")
@click.option("--json", "as_json", is_flag=True, help="The raw record, its deployments and comparisons as JSON.")
def models_show(model_id: str, as_json: bool) -> None:
    """One model: identity, holdout metrics, training config, deployments, comparisons it took part in."""
    import dataclasses

    from feedback_loop.lib.models import registry

    with _app_engine().connect() as conn:
        record = registry.get_model(conn, model_id)
        if record is None:
            raise UserError(f"no model {model_id}")
        deployments = registry.deployments(conn, model_id)
        comparisons = registry.comparisons(conn, model_id)
    if as_json:
        _echo_json({**dataclasses.asdict(record), "deployments": deployments, "comparisons": comparisons})
        return
    r, m = record, record.metrics
    identity = [("model", r.model_id), ("version", r.version), ("status", r.status), ("trigger", r.trigger or "—"),
                ("trained as of", r.trained_as_of), ("training window", f"{r.training_start} .. {r.training_end}"),
                ("classes", r.num_classes), ("features", len(r.feature_names)), ("created", _when(r.created_at)),
                ("promoted", _when(r.promoted_at)), ("archived", _when(r.archived_at)),
                ("artifact", r.artifact_path or "—"), ("sha256", r.artifact_sha256 or "—")]
    metrics = [(key, _num(m.get(key), 4)) for key in ("accuracy", "f1_weighted", "roc_auc_ovr", "brier", "log_loss", "ece")]
    metrics += [(key, m[key]) for key in ("holdout_rows", "fit_rows", "calibration_rows", "purged_rows") if key in m]
    metrics += [(f"{scheme} (folds)", f"accuracy {_num(a.get('accuracy'))}, f1 {_num(a.get('f1_weighted'))}")
                for scheme, a in m.get("fold_averages", {}).items()]
    blocks = [_section("Identity", identity), _section("Holdout metrics", metrics),
              _section("Training config", _flat(r.config) or [("config", "—")])]
    blocks.append(_titled_table(
        "Deployments", [[d["effective_from"], d["action"], d["trigger"], _short(d["reason"])] for d in deployments],
        ["serves from", "action", "trigger", "reason"]))
    rows = []
    for c in comparisons:
        challenger = c["new_model_id"] == model_id
        ours, theirs = ("new", "current") if challenger else ("current", "new")
        rows.append([c["as_of"], "challenger" if challenger else "champion", c[f"{theirs}_model_id"] or "—",
                     f"{_num(c[f'{ours}_accuracy'])} vs {_num(c[f'{theirs}_accuracy'])}",
                     f"{_num(c[f'{ours}_f1'])} vs {_num(c[f'{theirs}_f1'])}", c["holdout_rows"],
                     "promoted" if c["promoted"] else "rejected", _short(c["reason"], 70)])
    blocks.append(_titled_table(
        "Comparisons", rows, ["decided", "as", "against", "accuracy", "f1", "holdout", "result", "reason"]))
    click.echo("\n\n".join(blocks))


@models.command("promote")
@click.argument("model_id")
@click.option("--reason", required=True)
@click.option("--as-of", "as_of", type=PAST_DATE, default=dt.date.today, show_default="today",
              help="Decision date YYYY-MM-DD, not in the future; serves from the next day.")
def models_promote(model_id: str, reason: str, as_of: dt.date) -> None:
    """Make MODEL_ID the champion (manual; logged as a manual retraining event)."""
    from feedback_loop.lib.models import registry

    registry.manual_promote(_app_engine(), model_id, as_of=as_of, reason=reason)
    click.echo(f"{model_id} is the champion from the day after {as_of}")


@models.command("rollback")
@click.option("--reason", required=True)
@click.option("--as-of", "as_of", type=PAST_DATE, default=dt.date.today, show_default="today",
              help="Decision date YYYY-MM-DD, not in the future; serves from the next day.")
def models_rollback(reason: str, as_of: dt.date) -> None:
    """Re-activate the previous champion (manual; logged)."""
    from feedback_loop.lib.models import registry

    restored = registry.manual_rollback(_app_engine(), as_of=as_of, reason=reason)
    click.echo(f"rolled back to {restored.model_id}")


@main.command("trading-mode")
@click.argument("mode", required=False, type=click.Choice(["paper", "live"]))
@click.option("--confirm", is_flag=True, help="Required to switch to live (with FEEDBACK_LOOP_ALLOW_LIVE_TRADING=1).")
@click.option("--reason", default=None)
def trading_mode(mode: str | None, confirm: bool, reason: str | None) -> None:
    """Show the trading mode, or switch it (every switch is recorded in trading_mode_changes)."""
    import getpass

    from feedback_loop.lib.portfolio import broker

    engine = _app_engine()
    if mode is None:
        with engine.connect() as conn:
            click.echo(broker.read_policy(conn).trading_mode)
        return
    # No transaction of ours around the switch: a refused switch's audit row must be committed.
    with engine.connect() as conn:
        changed = broker.switch_trading_mode(conn, mode, confirm=confirm, changed_by=getpass.getuser(),
                                             reason=reason)
    if not changed:
        click.echo(f"trading mode is already {mode}: nothing changed")
        return
    click.echo(f"trading mode is now {mode}" + ("  *** LIVE: orders use real money ***" if mode == "live" else ""))


@main.group(name="ml", invoke_without_command=True)
@click.pass_context
def ml_switch(ctx: click.Context) -> None:
    """The ML kill switch: show it, or `disable` / `enable` ML serving (audited in ml_switch_changes)."""
    if ctx.invoked_subcommand is None:
        from feedback_loop.lib.models import switch

        with _app_engine().connect() as conn:
            click.echo(switch.ml_switch_as_of(conn, dt.date.today()).describe())


def _switch_ml(enabled: bool, reason: str, as_of: dt.date) -> None:
    import getpass

    from feedback_loop.lib.models import switch

    with _app_engine().connect() as conn:
        changed = switch.switch_ml(conn, enabled, as_of=as_of, changed_by=getpass.getuser(), reason=reason)
    state = "enabled" if enabled else "disabled: the signals are the heuristic's alone"
    click.echo(f"ML serving {state} from {as_of}" if changed
               else f"ML serving is already {'enabled' if enabled else 'disabled'}: nothing changed")


SWITCH_AS_OF = click.option("--as-of", "as_of", type=PAST_DATE, default=dt.date.today, show_default="today",
                            help="First day YYYY-MM-DD it applies to (that day's signals included), not in the future.")


@ml_switch.command("disable")
@click.option("--reason", required=True)
@SWITCH_AS_OF
def ml_disable(reason: str, as_of: dt.date) -> None:
    """Serve the heuristic alone (serving path ml_disabled) from AS_OF on."""
    _switch_ml(False, reason, as_of)


@ml_switch.command("enable")
@click.option("--reason", required=True)
@SWITCH_AS_OF
def ml_enable(reason: str, as_of: dt.date) -> None:
    """Serve the champion again from AS_OF on."""
    _switch_ml(True, reason, as_of)


def _status_text(status: dict) -> str:
    """`status` for people: headed sections of aligned fields, decisions and failures as tables."""
    latest = status["latest_loop_day"]
    lines = [f"feedback_loop status as of {status['as_of']} (loop's latest day: {latest or 'none yet'})"]
    verdict = status["health"]
    lines.append(f"health: {verdict['status']}" + "".join(f"\n  - {p}" for p in verdict["problems"]))
    blocks = ["\n".join(lines)]
    champion, pending = status["champion"], status["pending_deployment"]
    if champion is None:
        fields = [("model", "no champion yet: the signals are the heuristic's alone")]
    else:
        fields = [("model", f"{champion['model_id']} (version {champion['version']})"),
                  ("since", f"{champion['since']} ({champion['action']}, {champion['trigger']})"),
                  ("trained as of", champion["trained_as_of"]),
                  ("holdout", f"accuracy {_num(champion['holdout_accuracy'])}, f1 {_num(champion['holdout_f1'])}"),
                  ("reason", _short(champion["reason"]))]
    if pending is not None:
        fields.append(("next", f"{pending['model_id']} ({pending['action']}) serves from {pending['effective_from']}"))
    blocks.append(_section("Champion", fields))
    weight = status["blend_weight"]
    move = weight["last_move"]
    blocks.append(_section("Blend weight (ML share)", [
        ("in force", f"{weight['weight']:.2f}"),
        ("last moved", "never (starting weight {:.2f})".format(weight["starting_weight"]) if move is None else
         f"decided {move['decided']}: {move['old_weight']:.2f} -> {move['new_weight']:.2f}"),
        *([("why", _short(move["reason"]))] if move else [])]))
    ml = status["ml"]
    mode = status["trading_mode"]
    change = mode["last_change"]
    blocks.append(_section("Switches", [
        ("ML serving", "enabled" if ml["enabled"] else "DISABLED: heuristic alone"),
        ("ML switched", "never" if ml["effective_from"] is None
         else f"from {ml['effective_from']} by {ml['changed_by']}: {_short(ml['reason'], 70)}"),
        ("trading mode", mode["mode"] + ("  *** LIVE: orders use real money ***" if mode["mode"] == "live" else "")),
        ("mode changed", "never" if change is None else
         f"{change['old_mode']} -> {change['new_mode']} {change['outcome']} by {change['changed_by']} "
         f"at {_when(change['created_at'])}")]))
    sla = status["serving_sla"]
    if sla["end"] is None:
        fields = [("figures", "no signals yet")]
    else:
        latency, rate = sla["mean_latency_ms"], sla["fallback_rate"]
        fields = [
            ("mean latency", "no model predictions" if latency is None else
             f"{latency:.2f} ms over {sla['predictions']} predictions (target < {sla['target_mean_latency_ms']:.0f} ms: "
             f"{'met' if latency < sla['target_mean_latency_ms'] else 'MISSED'})"),
            ("fallback rate", "no signals" if rate is None else
             f"{rate:.1%} (target < {sla['target_fallback_rate']:.0%}: "
             f"{'met' if rate < sla['target_fallback_rate'] else 'MISSED'})")]
    window = f" {sla['start']} .. {sla['end']}" if sla["end"] else ""
    blocks.append(_section(f"Serving SLA ({sla['window_days']} days{window})", fields))
    report = status["drift"]
    blocks.append(_section("Drift", [("latest report", "none yet")] if report is None else [
        ("latest report", f"{report['as_of']} for {report['model_id']}: {report['recommendation']}"),
        ("score psi", _num(report["score_psi"])),
        ("drifting", ", ".join(report["drifting_features"]) or "no feature"),
        ("reason", _short(report["reason"]))]))
    blocks.append(_titled_table(
        "Recent decisions", [[d["decided"], d["kind"], d["model_id"] or "—", _short(d["reason"], 80)] for d in status["decisions"]],
        ["decided", "decision", "model", "reason"]))
    blocks.append(_titled_table(
        "Recent pipeline failures", [[_when(f["failed_at"]), f["job_name"], f["run_id"][:8], _short(f["error"], 70)]
         for f in status["failures"]], ["failed at", "job", "run", "error"]))
    return "\n\n".join(blocks)


@main.command()
@click.option("--as-of", "as_of", type=PAST_DATE, default=dt.date.today, show_default="today",
              help="Report the state in force on YYYY-MM-DD, not in the future.")
@click.option("--json", "as_json", is_flag=True, help="The same as JSON, for machines.")
def status(as_of: dt.date, as_json: bool) -> None:
    """Champion, blend weight, last decisions, serving SLA, drift, switches, failures: the loop's health."""
    from feedback_loop.lib.loop.status import loop_status

    with _app_engine().connect() as conn:
        report = loop_status(conn, as_of)
    if as_json:
        _echo_json(report)
    else:
        click.echo(_status_text(report))


@main.command()
@click.option("--start", required=True, type=DATE, help="First day YYYY-MM-DD.")
@click.option("--end", required=True, type=DATE, help="Last day YYYY-MM-DD (not before --start).")
@click.option("--disclosures", "disclosure_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="House/Senate stock-watcher file (repeatable; needs --prices). Without any: the synthetic data.")
@click.option("--legislators", "legislator_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="congress-legislators CSV (repeatable; needs --disclosures).")
@click.option("--prices", "price_file", type=click.Path(exists=True, dir_okay=False),
              help="Long-format daily prices, CSV or Parquet (needs --disclosures).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Report folder (default reports/replay-<id>).")
@click.option("--persist/--no-persist", default=True, show_default=True,
              help="Write every arm into its own Postgres schema replay_<id>_<arm>.")
@click.option("--exit-policy", type=click.Choice([p.value for p in ExitPolicy]),
              default=policy.PortfolioPolicy().exit_policy, show_default=True,
              help="The paper portfolio's exit policy (lib/policy.EXIT_RULES); its timeout is the label horizon.")
@click.option("--processes", type=click.IntRange(min=1), default=min(3, os.cpu_count() or 1), show_default=True,  # 3 arms
              help="Worker processes running the arms side by side (1: every arm in this process, one after the other).")
def replay(start, end, disclosure_files, legislator_files, price_file, report_dir, persist, exit_policy,
           processes) -> None:
    """Run the loop day by day over [START, END] for every arm and write the comparison report."""
    import dataclasses
    from pathlib import Path

    from tqdm import tqdm

    from feedback_loop.lib.loop import replay as replay_lib
    from feedback_loop.lib.loop.replay_report import build_report, write_report

    try:
        replay_lib.check_arguments(start, end, disclosure_files=disclosure_files,
                                   legislator_files=legislator_files, price_file=price_file)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    replay_id = dt.datetime.now().strftime("%Y%m%d%H%M%S")
    out = Path(report_dir or db.PROJECT_ROOT / "reports" / f"replay-{replay_id}")
    inputs = replay_lib.load_inputs(start, end, disclosure_files=[Path(p) for p in disclosure_files],
                                    legislator_files=[Path(p) for p in legislator_files],
                                    price_file=Path(price_file) if price_file else None)
    click.echo(f"replay {replay_id}: {inputs.description['disclosures_until_end']} disclosures, "
               f"{inputs.description['tickers_priced']} priced tickers")
    bars = []

    def progress(arm: str, days: int):
        bar = tqdm(total=days, desc=f"{arm:15}", unit="day", disable=None)
        bars.append(bar)

        def update(day, figures):
            win = "-" if figures["win_rate"] is None else f"{figures['win_rate']:.0%}"
            bar.set_postfix_str(f"{day.date()} equity ${figures['equity']:,.0f} trades {figures['trades']} "
                                f"win {win} w={figures['blend_weight']:.2f} models {figures['models']}", refresh=False)
            bar.update()
        return update

    portfolio_policy = dataclasses.replace(policy.PortfolioPolicy(), exit_policy=exit_policy)
    target = replay_lib.ReplayTarget(db.ensure_databases(), replay_id, out / "models") if persist else None
    states = replay_lib.run_arms(inputs, start, end, progress=progress, portfolio_policy=portfolio_policy,
                                 processes=processes, persist_to=target)
    for bar in bars:
        bar.close()
    if target is not None:
        click.echo(f"  wrote schemas {', '.join(target.schema(arm) for arm in states)}")
    report = build_report(states, inputs.data.prices, start=start, end=end, data_description=inputs.description,
                          policy=portfolio_policy)
    written = write_report(report, states, inputs.data.prices, out)
    click.echo(f"report: {', '.join(str(p) for p in written)}")
    verdict = report.get("verdict", {})
    for key, value in verdict.items():
        click.echo(f"  {key}: {value}")


@main.command()
@click.option("--disclosures", type=click.IntRange(min=policy.BENCH_MIN_DISCLOSURES), default=100_000,
              show_default=True, help="Synthetic disclosures.")
@click.option("--tickers", type=click.IntRange(min=policy.BENCH_MIN_TICKERS), default=1_000, show_default=True,
              help="Synthetic tickers (SPY comes on top).")
@click.option("--years", type=click.FloatRange(min=policy.BENCH_MIN_YEARS, max=policy.BENCH_MAX_YEARS),
              default=10.0, show_default=True, help="Years of history (ending 2025-12-31).")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed runs per stage after one warm-up.")
@click.option("--scaling", is_flag=True, help="Run at 10k, 100k and 1M disclosures and report the growth.")
@click.option("--json", "json_path", is_flag=False, flag_value="-", default=None,
              help="Write the result as JSON to FILE ('-' or no value: standard output).", metavar="[FILE]")
def bench(disclosures: int, tickers: int, years: float, repeats: int, scaling: bool, json_path: str | None) -> None:
    """Time every stage (parse, ingest, features, labels, training, gate, scoring, loop, replay) at a scale."""
    import json
    import subprocess
    import tempfile
    from pathlib import Path

    from feedback_loop import bench as bench_lib

    log = (lambda line: click.echo(line, err=True)) if json_path == "-" else click.echo
    if scaling:
        runs = []
        for size in bench_lib.SCALING_DISCLOSURES:
            # One process per size: each peak-memory figure is its own.
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                subprocess.run([sys.executable, "-m", "feedback_loop.cli", "bench", "--disclosures", str(size),
                                "--tickers", str(tickers), "--years", str(years), "--repeats", str(repeats),
                                "--json", out.name], check=True, stdout=sys.stderr if json_path == "-" else None)
                runs.append(json.loads(Path(out.name).read_text()))
        result = bench_lib.scaling_summary(runs)
        for name, growth in result["growth"].items():
            values = "  ".join(f"{v:10.4f}" for v in growth["values"])
            ratios = "  ".join(f"x{r}" for r in growth["ratios"])
            log(f"  {name:<20} {growth['metric']:<8} {values}   growth {ratios}")
    else:
        result = bench_lib.run_bench(bench_lib.BenchScale(disclosures, tickers, years), repeats=repeats, log=log)
        log(f"peak memory {result['peak_memory_mb']:,.0f} MB; total {result['total_seconds']:.0f} s")
        for name, target in result["targets"].items():
            log(f"  target {name:<24} {target['value']:>10} <= {target['target']:<8} {'met' if target['met'] else 'MISSED'}")
    saved = bench_lib.save_result(result)
    log(f"saved {saved}")
    if json_path == "-":
        click.echo(json.dumps(result, indent=2, default=str))
    elif json_path:
        bench_lib.write_json(result, Path(json_path))


@main.command("run-days")
@click.option("--start", required=True, type=PAST_DATE, help="First day YYYY-MM-DD.")
@click.option("--end", required=True, type=PAST_DATE, help="Last day YYYY-MM-DD (not before --start).")
def run_days(start: dt.date, end: dt.date) -> None:
    """Run the loop over [START, END] through Dagster, day after day, as the schedules and sensors would."""
    import dagster as dg
    from tqdm import tqdm

    from feedback_loop import batch
    from feedback_loop.definitions import defs

    if start > end:
        raise click.UsageError(f"--start {start} is after --end {end}")
    db.migrate(db.engine_for(db.ensure_databases()))
    os.environ.update(db.dagster_environment())
    definitions = defs()
    days = batch.trading_days(definitions, start, end)
    if not len(days):
        raise UserError(f"no trading days (SPY prices in the price source) between {start} and {end}")
    with dg.DagsterInstance.get() as instance, tqdm(total=len(days), unit="day", disable=None) as bar:
        try:
            result = batch.run_days(definitions, instance, start, end,
                                    progress=lambda day: bar.set_postfix_str(str(day.date())) or bar.update())
        except batch.BatchRunFailed as exc:
            raise UserError(str(exc)) from exc
    runs = Counter(job for job, _ in result.runs)
    click.echo(f"{len(result.days)} trading days {days[0].date()} .. {days[-1].date()}: "
               + ", ".join(f"{n} {job}" for job, n in sorted(runs.items())))


@main.command()
def demo() -> None:
    """Set up, simulate 12 months of synthetic history, materialize the final day through Dagster."""
    from feedback_loop.demo import run_demo

    run_demo(echo=click.echo)


if __name__ == "__main__":
    main()
