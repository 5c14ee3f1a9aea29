"""Debian's headless Chromium driven over the DevTools protocol, with no network at all.

Chromium runs in a network namespace of its own (``unshare --net``: only a loopback that is
down), so the page cannot reach anything, and ``--remote-debugging-pipe`` gives the protocol
on file descriptors 3 and 4 (JSON messages ended by a NUL byte): no port, no websocket
library. Every request the page makes is recorded from ``Network.requestWillBeSent``, so a
test can assert that a report fetches nothing but ``file:`` and ``data:`` URLs.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
]


class BrowserError(Exception):
    """Chromium is missing, died, or did not answer a protocol call in time."""


@dataclass
class PageVisit:
    """What loading one page showed: every request it made and every load that failed."""

    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class Browser:
    """One Chromium process with one page; use as a context manager."""

    def __init__(self, profile: Path, *, window: str = "1400,1300") -> None:
        binary = shutil.which("chromium")
        if binary is None:
            raise BrowserError("chromium is not installed: apt-get install -y chromium (make browser)")
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()

        def fds_3_and_4() -> None:  # in the child: its end of each pipe on fd 3 (read) and 4 (write)
            read_end, write_end = os.dup(to_chrome), os.dup(from_chrome)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        command = ["unshare", "--net", binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={window}"]
        self._process = subprocess.Popen(
            [*command, "about:blank"],
            preexec_fn=fds_3_and_4,
            pass_fds=(3, 4),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self._session = ""

    def __enter__(self) -> Browser:
        targets = self.call("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        attached = self.call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}, session=False)
        self._session = attached["sessionId"]
        self.call("Network.enable")
        self.call("Page.enable")
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.kill()
        self._process.wait(timeout=30)
        os.close(self._out)
        os.close(self._in)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True) -> dict[str, Any]:
        """Send one protocol command and return its result; events seen meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            answer = self._read(deadline)
            if answer is None:
                raise BrowserError(f"no answer to {method} within 60 s (chromium exit {self._process.poll()})")
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                return dict(answer.get("result") or {})
            self._events.append(answer)

    def _read(self, deadline: float) -> dict[str, Any] | None:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                return None
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                return None
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))

    def visit(self, url: str, *, settle_s: float = 6.0) -> PageVisit:
        """Open ``url`` and keep listening for ``settle_s`` seconds after the load event."""
        self._events.clear()
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self._events):
            event = self._read(deadline)
            if event is None:
                raise BrowserError(f"{url} did not finish loading within 60 s")
            self._events.append(event)
        quiet_until = time.monotonic() + settle_s
        while (event := self._read(quiet_until)) is not None:
            self._events.append(event)
        visit = PageVisit()
        for event in self._events:
            params = event.get("params") or {}
            if event.get("method") == "Network.requestWillBeSent":
                visit.requests.append(params["request"]["url"])
            elif event.get("method") == "Network.loadingFailed":
                visit.failed.append(f"{params.get('errorText')} ({params.get('type')})")
        return visit

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """A PNG of the page as it is drawn now."""
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path
