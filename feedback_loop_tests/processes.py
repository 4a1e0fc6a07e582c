"""Helpers for tests that start servers: free loopback ports, the project's code server, clean
process-group shutdown."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process_group(process: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM the process group a test started, then SIGKILL whatever of it outlives the grace
    (code servers and run workers it spawned included)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


def _wait_for_code_server(server: subprocess.Popen, port: int, timeout: float) -> None:
    """Until the Dagster code server `server` answers a ping on 127.0.0.1:`port`."""
    from dagster._core.errors import DagsterUserCodeUnreachableError
    from dagster._grpc.client import DagsterGrpcClient

    client = DagsterGrpcClient(port=port, host="127.0.0.1")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the code server exited with {server.returncode}"
        try:
            client.ping("")
            return
        except DagsterUserCodeUnreachableError:
            time.sleep(0.5)
    raise AssertionError(f"the code server did not answer on port {port} within {timeout}s")


@contextlib.contextmanager
def project_code_server(project_root: Path, folder: Path) -> Iterator[Path]:
    """A code server of the project, in its own process group with the run workers it launches, all
    stopped on exit; yields a workspace.yaml (written in `folder`) that points at it. The server
    and its run workers get this process's environment."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "api", "grpc", "-m", "feedback_loop.definitions", "-d", str(project_root),
         "-h", "127.0.0.1", "-p", str(port), "--location-name", "feedback_loop"],
        cwd=project_root, env=dict(os.environ), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_code_server(server, port, timeout=60)
        workspace_file = folder / "workspace.yaml"
        workspace_file.write_text(
            f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {port}\n"
            "      location_name: feedback_loop\n")
        yield workspace_file
    finally:
        stop_process_group(server)
