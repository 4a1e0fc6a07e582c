"""Proof in a real browser: `feedback-loop dev` on a database, then the global asset lineage, an asset's
partitions page and an asset's checks page opened in headless Chromium; what they show is read back,
compared with the webserver's GraphQL answers, and saved as PNGs.

`make screenshots` runs it on the demo database (after `make demo`) and writes docs/screenshots/;
test_browser.py runs it on a short history of its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from feedback_loop_tests.browser import BrowserError, Chromium
from feedback_loop_tests.processes import free_port, stop_process_group

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT_DIR = PROJECT_ROOT / "docs" / "screenshots"
ASSET = "trading_signals"
LOOP_INPUTS = ("promotion_decision", "blend_weight")
YEAR = 2024
DEV_START_TIMEOUT = 300
PAGE_TIMEOUT = 120
#: The UI's community sign-up dialog covers every page on localhost until dismissed; the browser
#: remembers the dismissal as the UI itself does.
DISMISSED_DIALOGS = {"communityNux": '"1"'}
MATERIALIZED = re.compile(r"Materialized \(([\d,]+)\)")

ASSETS_QUERY = """
{ assetNodes { assetKey { path } groupName dependencyKeys { path }
    partitionStats { numMaterialized numPartitions }
    assetChecksOrError { __typename ... on AssetChecks { checks { name } } } } }
"""
PARTITIONS_QUERY = """
query Partitions($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename
    ... on AssetNode { assetPartitionStatuses { __typename
        ... on TimePartitionStatuses { ranges { startKey endKey status } } } } } }
"""


class ProofError(AssertionError):
    pass


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    response.raise_for_status()
    body = response.json()
    if "errors" in body:
        raise ProofError(f"GraphQL: {body['errors'][0].get('message')}")
    return body["data"]


@contextmanager
def dev_server(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`feedback-loop dev` (webserver + daemon) on a free loopback port, in its own process group,
    stopped with everything it started; yields the UI's URL once the project's code location is loaded."""
    port = free_port()
    with open(log_path, "wb") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "feedback-loop"), "dev", "-h", "127.0.0.1", "-p", str(port)],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + DEV_START_TIMEOUT
        while not _loaded(url):
            if process.poll() is not None:
                raise ProofError(f"feedback-loop dev exited with {process.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise ProofError(f"the UI did not load the project within {DEV_START_TIMEOUT}s; see {log_path}")
            time.sleep(1)
        yield url
    finally:
        stop_process_group(process)


def _loaded(url: str) -> bool:
    try:
        return bool(graphql(url, ASSETS_QUERY)["assetNodes"])
    except (requests.RequestException, ProofError, ValueError):
        return False


def _year_count(ranges: list[dict], year: int) -> int:
    """Materialized daily partitions of `year` in the UI's ranges of partition keys."""
    first, last = dt.date(year, 1, 1), dt.date(year, 12, 31)
    count = 0
    for r in ranges:
        if r["status"] == "MATERIALIZED":
            start = max(dt.date.fromisoformat(r["startKey"]), first)
            end = min(dt.date.fromisoformat(r["endKey"]), last)
            count += max((end - start).days + 1, 0)
    return count


def _upstream(nodes: dict[str, dict], asset: str) -> set[str]:
    seen: set[str] = set()
    todo = [asset]
    while todo:
        for dep in nodes[todo.pop()]["dependencyKeys"]:
            name = "/".join(dep["path"])
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def _label_shown(name: str, lines: set[str]) -> bool:
    """The lineage graph shortens long names to `head…tail`."""
    return name in lines or any(
        "…" in line and name.startswith(line.split("…")[0]) and name.endswith(line.split("…")[1])
        for line in lines)


@dataclass
class Proof:
    assets: list[str]
    checks: list[str]
    ui_materialized: int
    materialized: int
    partitions: int
    materialized_in_year: int
    loop_inputs_upstream: list[str]
    screenshots: list[Path]


def capture(url: str, out_dir: Path, asset: str = ASSET, checks_asset: str = ASSET) -> Proof:
    """Open the three pages, check each shows what the webserver's GraphQL says, save PNGs in `out_dir`."""
    nodes = {"/".join(n["assetKey"]["path"]): n for n in graphql(url, ASSETS_QUERY)["assetNodes"]}
    for name in (asset, checks_asset):
        if name not in nodes:
            raise ProofError(f"the UI serves no asset {name!r}")
    checks_node = nodes[checks_asset]["assetChecksOrError"]
    checks = sorted(c["name"] for c in checks_node.get("checks", []))
    if not checks:
        raise ProofError(f"{checks_asset} has no asset checks")
    stats = nodes[asset]["partitionStats"]
    if stats is None:
        raise ProofError(f"{asset} is not partitioned")
    statuses = graphql(url, PARTITIONS_QUERY, {"key": {"path": asset.split("/")}})["assetNodeOrError"]
    groups = sorted({n["groupName"] for n in nodes.values()})
    shots = []
    with Chromium(local_storage=DISMISSED_DIALOGS) as browser:
        browser.open(f"{url}/asset-groups", ["Global asset lineage", *groups], timeout=PAGE_TIMEOUT)
        browser.click_text("Hide navigation")
        browser.press("e", alt=True)  # the graph's own shortcut: expand all groups
        deadline = time.monotonic() + PAGE_TIMEOUT
        while missing := [n for n in nodes if not _label_shown(n.split("/")[-1], set(browser.text().splitlines()))]:
            if time.monotonic() > deadline:
                raise ProofError(f"the lineage graph does not show {missing}")
            time.sleep(0.5)
        time.sleep(2)  # edges are drawn after the nodes
        shots.append(browser.screenshot(out_dir / "lineage.png"))

        text = browser.open(f"{url}/assets/{asset}?view=partitions", [MATERIALIZED, "Partitions Selected"],
                            timeout=PAGE_TIMEOUT)
        ui_materialized = int(MATERIALIZED.search(text).group(1).replace(",", ""))
        shots.append(browser.screenshot(out_dir / "partitions.png"))

        browser.open(f"{url}/assets/{checks_asset}?view=checks", checks, timeout=PAGE_TIMEOUT)
        shots.append(browser.screenshot(out_dir / "checks.png"))
    if ui_materialized != stats["numMaterialized"]:
        raise ProofError(f"the partitions page shows {ui_materialized} materialized, GraphQL "
                         f"{stats['numMaterialized']}")
    return Proof(assets=sorted(nodes), checks=checks, ui_materialized=ui_materialized,
                 materialized=stats["numMaterialized"], partitions=stats["numPartitions"],
                 materialized_in_year=_year_count(statuses["assetPartitionStatuses"]["ranges"], YEAR),
                 loop_inputs_upstream=sorted(set(LOOP_INPUTS) & _upstream(nodes, asset)), screenshots=shots)


def main() -> None:
    """`make screenshots`: the proof on the project's own (demo) database; reports what the UI shows."""
    from feedback_loop.lib.store import db

    parser = argparse.ArgumentParser(prog="python -m feedback_loop_tests.ui_proof", description=main.__doc__)
    parser.add_argument("--asset", default=ASSET, help="the asset whose partitions page is shown")
    parser.add_argument("--checks-asset", default=ASSET, help="the asset whose checks page is shown")
    args = parser.parse_args()
    try:
        db.ensure_databases()
        env = db.dagster_environment()
        log_path = Path(tempfile.mkdtemp(prefix="feedback-loop-ui-")) / "dev.log"
        with dev_server(env, log_path) as url:
            proof = capture(url, SCREENSHOT_DIR, args.asset, args.checks_asset)
    except (ProofError, BrowserError, OSError, requests.RequestException) as exc:
        print(f"screenshots: {str(exc).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    print(f"{args.asset}: the partitions page shows {proof.ui_materialized} of {proof.partitions} partitions "
          f"materialized ({proof.materialized_in_year} in {YEAR})")
    print(f"{args.checks_asset} checks shown: {', '.join(proof.checks)}")
    print(f"lineage: {len(proof.assets)} assets; of {', '.join(LOOP_INPUTS)} upstream of {args.asset}: "
          f"{', '.join(proof.loop_inputs_upstream) or 'none'}")
    print("screenshots: " + ", ".join(str(p.relative_to(PROJECT_ROOT)) for p in proof.screenshots))


if __name__ == "__main__":
    main()
