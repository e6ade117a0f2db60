"""A headless Chromium driven over the Chrome DevTools Protocol, for the status page tests.

The browser is Debian's `chromium` (installed by scripts/test-tools; never downloaded).
It starts with a fresh profile and a DevTools port of 0; the port it picked is read
from the DevToolsActivePort file it writes. One websocket (the `websockets` sync
client) carries flattened sessions: each Page is a target attached with its own
session id. Every event a page sends is kept, so a test can look for console errors,
exceptions and dialogs after the fact.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

FLAGS = [
    "--headless",
    "--no-sandbox",  # root in CI and here
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a small /dev/shm
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]
STARTUP_S = 60.0  # Chromium writes its port file within a second or two; this is a bound


class Browser:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("chromium")
        assert binary, (
            "chromium is missing: run scripts/test-tools (Debian: apt-get install chromium)"
        )
        self.profile = workdir / "chromium-profile"
        self.profile.mkdir(parents=True)
        self.log = (workdir / "chromium.log").open("wb")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=os.environ | {"TZ": "UTC", "LANG": "en_US.UTF-8"},
        )
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(connect(self._endpoint(), max_size=64 * 1024 * 1024))
        self.ids = itertools.count(1)

    def _endpoint(self) -> str:
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"chromium exited {self.proc.returncode}"
            lines = port_file.read_text().split("\n") if port_file.exists() else []
            if len(lines) >= 2 and lines[0].strip() and lines[1].strip():
                return f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
            time.sleep(0.05)
        raise AssertionError(f"chromium wrote no DevToolsActivePort in {STARTUP_S:.0f}s")

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command; answer its result, keeping the events that arrive meanwhile."""
        msg_id = next(self.ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = self._receive(STARTUP_S)
            if reply.get("id") == msg_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return dict(reply.get("result", {}))

    def _receive(self, timeout: float) -> dict[str, Any]:
        reply = json.loads(self.ws.recv(timeout=timeout))
        if "method" in reply:
            page = Page.sessions.get(reply.get("sessionId", ""))
            if page is not None:
                page.events.append(reply)
        return dict(reply)

    def page(self) -> Page:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        return Page(self, session)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone: the kill below is what matters
            self.call("Browser.close")
        self.stack.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)
        self.log.close()


class Page:
    sessions: dict[str, Page] = {}

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session
        self.events: list[dict[str, Any]] = []
        Page.sessions[session] = self
        for domain in ("Page", "Runtime", "Log", "DOM"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        return self.browser.call(method, self.session, **params)

    def load(self, url: str) -> None:
        """Navigate and wait for the load event (all resources and scripts done)."""
        self.events = [e for e in self.events if e["method"] != "Page.loadEventFired"]
        self.call("Page.navigate", url=url)
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            self.browser._receive(STARTUP_S)

    def js(self, expression: str) -> Any:
        """The value of `expression` in the page (by DevTools, even with page scripts off)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Everything the page reported as an error: console errors, uncaught
        exceptions, browser log errors (a failed load, a CSP violation), dialogs."""
        found = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value")) for a in p["args"]))
            elif e["method"] == "Runtime.exceptionThrown":
                found.append("exception: " + json.dumps(p.get("exceptionDetails"))[:500])
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                found.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
            elif e["method"] == "Page.javascriptDialogOpening":
                found.append(f"dialog: {p.get('message')}")
        return found

    def screenshot(self, path: Path, width: int = 1280) -> None:
        """The whole page, `width` CSS pixels wide, as a PNG."""
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        height = self.call("Page.getLayoutMetrics")["cssContentSize"]["height"]
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=int(height),
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
