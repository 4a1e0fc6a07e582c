"""A local PostgreSQL cluster owned by the project, living under its state folder.

The cluster listens on loopback only and asks every connection (TCP and Unix socket) for the
password generated at initialization (scram-sha-256; kept in the state folder, mode 600);
replication connections are refused. The server binaries are looked up on PATH and then in
the usual Debian/Ubuntu/Homebrew install locations.

Run as root, the server runs as the unprivileged `postgres` user, which may be unable to
traverse the state folder (under root's home, a `mktemp -d` folder). Its data directory,
socket and log then live in /var/tmp/feedback-loop-<hash of the state folder>, owned by
`postgres`, mode 700, and a pointer file in the state folder names that place.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

APP_DATABASE = "feedback_loop"
DAGSTER_DATABASE = "dagster"
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
#: Where a root-run cluster's server-owned files go (see the module docstring).
ROOT_RUNTIME_PARENT = Path("/var/tmp")
#: Only loopback TCP and the cluster's own socket, each with the password; no replication line.
PG_HBA = """\
# Written by feedback_loop: password (scram-sha-256) for every connection; replication refused.
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""
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
    def runtime_pointer_file(self) -> Path:
        return self.state_dir / "pgruntime"

    @property
    def runtime_dir(self) -> Path:
        """The folder of the server's own files (data directory, socket, log)."""
        if self.runtime_pointer_file.exists():
            return Path(self.runtime_pointer_file.read_text().strip())
        return self.state_dir

    @property
    def data_dir(self) -> Path:
        return self.runtime_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.runtime_dir.resolve()

    @property
    def port_file(self) -> Path:
        return self.state_dir / "pgport"

    @property
    def password_file(self) -> Path:
        return self.state_dir / "pgpassword"

    @property
    def log_file(self) -> Path:
        return self.runtime_dir / "postgres.log"

    @property
    def user(self) -> str:
        return "postgres" if os.geteuid() == 0 else getpass.getuser()

    @property
    def port(self) -> int:
        if not self.port_file.exists():
            raise RuntimeError(f"no cluster initialized under {self.state_dir}; run `feedback-loop db up`")
        return int(self.port_file.read_text().strip())

    @property
    def password(self) -> str | None:
        """The superuser's password (None for a cluster initialized before passwords)."""
        return self.password_file.read_text().strip() if self.password_file.exists() else None

    def url(self, database: str = APP_DATABASE) -> str:
        credentials = self.user if self.password is None else f"{self.user}:{self.password}"
        return f"postgresql+psycopg2://{credentials}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        env = dict(os.environ, LC_ALL="C", LANG="C")
        cmd = [str(find_server_bin_dir() / args[0]), *args[1:]]
        if os.geteuid() == 0:
            # The server refuses to run as root: run it as an unprivileged system user.
            cmd = ["runuser", "-u", _unprivileged_user(), "--", *cmd]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, **kwargs)

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.data_dir)).returncode == 0

    def up(self) -> str:
        """Initialize (first time) and start the cluster; create both databases. Idempotent."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not (self.data_dir / "PG_VERSION").exists():
            self._init()
        if not self.is_running():
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories='{self.socket_dir}' "
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

    def _init(self) -> None:
        """initdb with a generated superuser password and the project's pg_hba.conf."""
        if os.geteuid() == 0:
            self._claim_root_runtime_dir()
        self.password_file.touch(mode=0o600)
        self.password_file.chmod(0o600)
        self.password_file.write_text(secrets.token_urlsafe(32))
        # initdb runs as the server's user: the password reaches it through a file of its own.
        pwfile = self.runtime_dir / "initdb-password"
        pwfile.touch(mode=0o600)
        pwfile.write_text(self.password)
        self._give_to_server(pwfile)
        try:
            result = self._run(
                "initdb", "-D", str(self.data_dir), "-U", self.user, f"--pwfile={pwfile}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync",
            )
        finally:
            pwfile.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(PG_HBA)
        self._give_to_server(hba)
        self.port_file.write_text(str(_free_port()))

    def _claim_root_runtime_dir(self) -> None:
        """A folder the server's user owns and can reach, named by the state folder; pointed to from it."""
        tag = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:16]
        runtime = ROOT_RUNTIME_PARENT / f"feedback-loop-{tag}"
        if runtime.exists():  # left by a removed state folder: its data belongs to nobody now
            if (runtime / "pgdata" / "PG_VERSION").exists():
                self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(runtime / "pgdata"))
            shutil.rmtree(runtime)
        runtime.mkdir(mode=0o700)
        self._give_to_server(runtime)
        self.runtime_pointer_file.write_text(str(runtime))

    def _give_to_server(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, _unprivileged_user())

    def down(self) -> None:
        if self.is_running():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))

    def remove(self) -> None:
        """Stop the cluster and delete its files, the state folder's cluster files included."""
        self.down()
        runtime = self.runtime_dir
        if runtime != self.state_dir:
            shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        for path in (self.runtime_pointer_file, self.port_file, self.password_file, self.log_file):
            path.unlink(missing_ok=True)


def _unprivileged_user() -> str:
    user = "postgres"
    if subprocess.run(["id", "-u", user], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", user], check=True)
    return user


#: Advisory lock key (taken in the `postgres` maintenance database) serializing CREATE DATABASE.
CREATE_DATABASE_LOCK_KEY = 727273


def create_database_if_missing(url: str, attempts: int = 30) -> None:
    """Create the database named in `url` (connecting to the `postgres` maintenance DB).

    Safe when many processes do it at once: the check and the CREATE run under one
    advisory lock, and a database created meanwhile by anyone else counts as created.
    """
    import sqlalchemy as sa
    from psycopg2 import errors

    target = sa.engine.make_url(url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        for attempt in range(attempts):
            try:
                with admin.connect() as conn:
                    conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": CREATE_DATABASE_LOCK_KEY})
                    try:
                        exists = conn.execute(
                            sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": target.database}
                        ).scalar()
                        if not exists:
                            conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
                    except sa.exc.ProgrammingError as exc:
                        if not isinstance(exc.orig, errors.DuplicateDatabase):
                            raise
                    finally:
                        conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": CREATE_DATABASE_LOCK_KEY})
                return
            except sa.exc.OperationalError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.5)
    finally:
        admin.dispose()
