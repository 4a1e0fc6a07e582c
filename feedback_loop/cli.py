"""The `feedback-loop` command line."""

from __future__ import annotations

import os
import sys

import click

from feedback_loop.lib import db
from feedback_loop.lib.pgcluster import PostgresNotFound


@click.group()
def main() -> None:
    """feedback_loop: congressional-disclosure signals with a closed ML feedback loop."""


@main.group(name="db")
def db_group() -> None:
    """The project's PostgreSQL (a local cluster under .feedback_loop/ unless FEEDBACK_LOOP_DATABASE_URL is set)."""


@db_group.command("up")
def db_up() -> None:
    """Initialize (first time) and start the local cluster, then create the databases."""
    try:
        url = db.ensure_databases()
    except PostgresNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(url)


@db_group.command("down")
def db_down() -> None:
    """Stop the local cluster (does nothing when an external database is configured)."""
    if db.uses_external_database():
        click.echo(f"{db.DATABASE_URL_ENV} is set: no local cluster to stop")
        return
    db.local_cluster().down()


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


def dagster_environment() -> dict[str, str]:
    """Environment for Dagster processes: DAGSTER_HOME is the project root (dagster.yaml)."""
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(db.PROJECT_ROOT)
    env[db.DAGSTER_URL_ENV] = db.dagster_database_url()
    env.setdefault(db.STATE_DIR_ENV, str(db.state_dir()))
    return env


@main.command("env")
def print_env() -> None:
    """Print shell exports for running Dagster tools (`eval "$(feedback-loop env)"`)."""
    db.ensure_databases()
    env = dagster_environment()
    for key in ("DAGSTER_HOME", db.DAGSTER_URL_ENV, db.STATE_DIR_ENV):
        click.echo(f"export {key}='{env[key]}'")


@main.command("dev", context_settings={"ignore_unknown_options": True})
@click.argument("dg_args", nargs=-1, type=click.UNPROCESSED)
def dev(dg_args: tuple[str, ...]) -> None:
    """Start the Dagster UI and daemon (`dg dev`) against the project's Postgres."""
    db.migrate(db.engine_for(db.ensure_databases()))
    env = dagster_environment()
    dg = os.path.join(os.path.dirname(sys.executable), "dg")
    os.execve(dg, [dg, "dev", *dg_args], env)


@main.command()
def demo() -> None:
    """Set up, simulate 12 months of synthetic history, materialize the final day through Dagster."""
    from feedback_loop.demo import run_demo

    try:
        run_demo(echo=click.echo)
    except PostgresNotFound as exc:
        raise click.ClickException(str(exc)) from exc


if __name__ == "__main__":
    main()
