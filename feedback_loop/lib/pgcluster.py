"""A local PostgreSQL cluster owned by the project, living under its state folder.

The cluster listens on loopback only. The server binaries are looked up on PATH and then
in the usual Debian/Ubuntu/Homebrew install locations.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

APP_DATABASE = "feedback_loop"
DAGSTER_DATABASE = "dagster"
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
_SEARCH_GLOBS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/local/pgsql/bin",
    "/opt/homebrew/opt/postgresql*/bin",
    "/usr/local/opt/postgresql*/bin",
    "/usr/pgsql-*/bin",
)


class PostgresNotFound(RuntimeError):
    pass


def find_server_bin_dir() -> Path:
    """Directory holding initdb, pg_ctl and postgres; PATH first, then usual install places."""
    on_path = [shutil.which(name) for name in SERVER_BINARIES]
    if all(on_path):
        return Path(on_path[0]).resolve().parent
    candidates = sorted(
        (p for pattern in _SEARCH_GLOBS for p in Path("/").glob(pattern.lstrip("/"))),
        reverse=True,
    )
    for directory in candidates:
        if all((directory / name).exists() for name in SERVER_BINARIES):
            return directory
    missing = [name for name, found in zip(SERVER_BINARIES, on_path) if not found]
    raise PostgresNotFound(
        f"PostgreSQL server binaries not found: {', '.join(missing)} are not on PATH nor in "
        f"{', '.join(_SEARCH_GLOBS)}. Install the PostgreSQL server (e.g. `apt-get install "
        "postgresql`) or set FEEDBACK_LOOP_DATABASE_URL to an existing database."
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LocalCluster:
    """A cluster whose data directory, port and socket live under `state_dir`."""

    state_dir: Path

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "pgdata"

    @property
    def port_file(self) -> Path:
        return self.state_dir / "pgport"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "postgres.log"

    @property
    def user(self) -> str:
        return "postgres" if os.geteuid() == 0 else getpass.getuser()

    @property
    def port(self) -> int:
        if not self.port_file.exists():
            raise RuntimeError(f"no cluster initialized under {self.state_dir}; run `feedback-loop db up`")
        return int(self.port_file.read_text().strip())

    def url(self, database: str = APP_DATABASE) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        env = dict(os.environ, LC_ALL="C", LANG="C")
        cmd = [str(find_server_bin_dir() / args[0]), *args[1:]]
        if os.geteuid() == 0:
            # The server refuses to run as root: run it as an unprivileged system user.
            cmd = ["runuser", "-u", _unprivileged_user(), "--", *cmd]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, **kwargs)

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.data_dir)).returncode == 0

    def up(self) -> str:
        """Initialize (first time) and start the cluster; create both databases. Idempotent."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.state_dir, _unprivileged_user())
        if not (self.data_dir / "PG_VERSION").exists():
            result = self._run(
                "initdb", "-D", str(self.data_dir), "-U", self.user, "--auth=trust",
                "--encoding=UTF8", "--no-sync",
            )
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
            self.port_file.write_text(str(_free_port()))
        if not self.is_running():
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories='{self.state_dir.resolve()}' "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=200"
            )
            result = self._run(
                "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
                "-l", str(self.log_file), "-o", options,
            )
            if result.returncode != 0:
                log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
                raise RuntimeError(f"pg_ctl start failed:\n{result.stderr}\n{log}")
        for database in (APP_DATABASE, DAGSTER_DATABASE):
            create_database_if_missing(self.url(database))
        return self.url()

    def down(self) -> None:
        if self.is_running():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))


def _unprivileged_user() -> str:
    user = "postgres"
    if subprocess.run(["id", "-u", user], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", user], check=True)
    return user


def create_database_if_missing(url: str, attempts: int = 30) -> None:
    """Create the database named in `url` (connecting to the `postgres` maintenance DB)."""
    import sqlalchemy as sa

    target = sa.engine.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        for attempt in range(attempts):
            try:
                with admin.connect() as conn:
                    exists = conn.execute(
                        sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}
                    ).scalar()
                    if not exists:
                        conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
                return
            except sa.exc.OperationalError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5)
    finally:
        admin.dispose()
