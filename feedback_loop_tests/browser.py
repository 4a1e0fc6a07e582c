"""Headless Chromium driven over the Chrome DevTools protocol: open a page, wait until it shows what
it should, read its text, save a PNG. Debian's `chromium` and the `websockets` client, nothing else."""

from __future__ import annotations

import base64
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from websockets.sync.client import connect

from feedback_loop_tests.processes import stop_process_group

CHROMIUM = "chromium"
#: Flags that work as root in a closed network (no sandbox, no GPU, no phoning home).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-port=0"]
START_TIMEOUT = 30


class BrowserError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium with a fresh profile and one page; a context manager that always ends it."""

    def __init__(self, width: int = 1600, height: int = 1000, local_storage: dict[str, str] | None = None):
        """`local_storage`: items set in every page before its scripts run (a web app's remembered choices)."""
        binary = shutil.which(CHROMIUM)
        if binary is None:
            raise BrowserError(f"{CHROMIUM} is not installed (Debian: apt-get install chromium)")
        self.profile = Path(tempfile.mkdtemp(prefix="feedback-loop-chromium-"))
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self._ids = itertools.count(1)
        try:
            self.socket = connect(self._page_socket_url(), max_size=None, open_timeout=START_TIMEOUT)
            self.call("Page.enable")
            if local_storage:
                items = "".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});" for k, v in local_storage.items())
                self.call("Page.addScriptToEvaluateOnNewDocument", {"source": items})
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.close()
            raise

    def _page_socket_url(self) -> str:
        """The page's DevTools socket: Chromium names its port in the profile's DevToolsActivePort."""
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while not (active.exists() and active.read_text().strip()):
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with {self.process.returncode} on start")
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium did not open its DevTools port within {START_TIMEOUT}s")
            time.sleep(0.2)
        port, browser_path = active.read_text().split()[:2]
        with connect(f"ws://127.0.0.1:{port}{browser_path}", open_timeout=START_TIMEOUT) as browser:
            browser.send(json.dumps({"id": 1, "method": "Target.getTargets"}))
            targets = json.loads(browser.recv(timeout=START_TIMEOUT))["result"]["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        return f"ws://127.0.0.1:{port}/devtools/page/{page['targetId']}"

    def call(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        """One DevTools command and its result (events in between are dropped)."""
        call_id = next(self._ids)
        self.socket.send(json.dumps({"id": call_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.socket.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                return message["result"]

    def text(self) -> str:
        """What the page shows as text (`document.body.innerText`)."""
        result = self.call("Runtime.evaluate", {"expression": "document.body ? document.body.innerText : ''",
                                                "returnByValue": True})
        return result["result"].get("value", "")

    def open(self, url: str, shows: list[str | re.Pattern], timeout: float = 90, settle: float = 2) -> str:
        """Navigate to `url` and wait until its text contains every string or pattern of `shows`, then
        `settle` seconds more for late renders (charts, layout); returns the page's text."""
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            missing = [s for s in shows if not (s.search(text) if isinstance(s, re.Pattern) else s in text)]
            if not missing:
                break
            if time.monotonic() > deadline:
                shown = " ".join(text.split())[:300]
                raise BrowserError(f"{url} did not show {missing[0]!r} within {timeout:.0f}s (it shows: {shown!r})")
            time.sleep(0.5)
        time.sleep(settle)
        return self.text()

    def press(self, key: str, alt: bool = False) -> None:
        """A key stroke (a letter key), as the user types it: Dagster's shortcuts listen for these."""
        event = {"modifiers": 1 if alt else 0, "key": key, "code": f"Key{key.upper()}",
                 "windowsVirtualKeyCode": ord(key.upper())}
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", {"type": kind, **event})

    def click_text(self, text: str) -> bool:
        """Click the first button whose text is `text`; False when the page has none."""
        script = ("(() => { const b = [...document.querySelectorAll('button')]"
                  f".find(e => e.innerText.trim() === {json.dumps(text)}); if (b) b.click(); return !!b; }})()")
        return self.call("Runtime.evaluate", {"expression": script, "returnByValue": True})["result"]["value"]

    def screenshot(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        socket = getattr(self, "socket", None)
        if socket is not None:
            socket.close()
        stop_process_group(self.process, grace=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
