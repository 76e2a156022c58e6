"""Headless Chromium driven over its DevTools protocol, for evidence packs: the lineage graph drawn by viz.js
in the browser (the drawing is awaited, not guessed at with a timer) and the document printed to PDF by
Chromium's own Page.printToPDF, so the PDF is what a browser shows.

The protocol runs over a pipe (`--remote-debugging-pipe`: JSON messages ending in NUL, on the browser's
descriptors 3 and 4), never over a port other local users could connect to. Chromium is Debian's
`chromium` (or Chrome) on PATH, or the executable LINEAGE_CHROMIUM names.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lineage.errors import LineageError

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# No network, no first-run or background services, no GPU; --no-sandbox because CI runs as root.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--no-default-browser-check",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--remote-debugging-pipe",
]  # fmt: skip
WAIT_SECONDS = 120  # for any one answer: a browser that hangs is a failure, not a wait forever


class ChromiumError(LineageError):
    """No Chromium, or Chromium could not do what was asked; one line."""


def find() -> str:
    """The Chromium executable: LINEAGE_CHROMIUM, else the first of NAMES on PATH."""
    named = os.environ.get("LINEAGE_CHROMIUM")
    found = shutil.which(named) if named else next(filter(None, map(shutil.which, NAMES)), None)
    if found is None:
        raise ChromiumError(
            f"no Chromium: install Debian's chromium (apt install chromium), or set LINEAGE_CHROMIUM"
            f"{f' ({named} is not executable)' if named else ''}"
        )
    return found


class Page:
    """One tab, spoken to through the browser's pipe."""

    def __init__(self, to_browser: int, from_browser: int) -> None:
        self._out, self._in = to_browser, from_browser
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []  # what the browser said unasked, in order
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.call("Page.enable")

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._out, data) :]

    def _receive(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], WAIT_SECONDS)
            chunk = os.read(self._in, 1 << 20) if ready else b""
            if not chunk:
                raise ChromiumError(
                    "Chromium stopped answering" if ready else f"Chromium gave no answer in {WAIT_SECONDS} s"
                )
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(message))

    def _call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next += 1
        request: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        self._send(request)
        while True:
            message = self._receive()
            if message.get("id") == self._next:
                if "error" in message:
                    raise ChromiumError(f"Chromium refused {method}: {message['error'].get('message')}")
                return dict(message.get("result") or {})
            if "method" in message:
                self.events.append(message)

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A DevTools command in this tab; its result."""
        return self._call(method, params, self._session)

    def open(self, url: str) -> None:
        """Load `url` and wait for its load event."""
        self.events.clear()
        self.call("Page.navigate", {"url": url})
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            message = self._receive()
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression, promises awaited."""
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise ChromiumError(
                f"JavaScript failed: {(details.get('exception') or {}).get('description') or details.get('text')}"
            )
        return result["result"].get("value")

    def close_browser(self) -> None:
        """Ask the browser to shut down (its helpers with it) and wait until it closes its end of the pipe."""
        self._next += 1
        try:
            self._send({"id": self._next, "method": "Browser.close"})
            while True:
                ready, _, _ = select.select([self._in], [], [], WAIT_SECONDS)
                if not ready or not os.read(self._in, 1 << 20):
                    return
        except OSError:  # it had gone already
            return

    def pdf(self) -> bytes:
        """The page printed as Chromium prints it: A4, backgrounds, the page's own print styles."""
        result = self.call(
            "Page.printToPDF",
            {"printBackground": True, "preferCSSPageSize": True, "paperWidth": 8.27, "paperHeight": 11.69,
             "marginTop": 0.5, "marginBottom": 0.5, "marginLeft": 0.5, "marginRight": 0.5,
             "generateDocumentOutline": True},
        )  # fmt: skip
        return base64.b64decode(result["data"])


@contextmanager
def page() -> Iterator[Page]:
    """A tab in a fresh headless Chromium with an empty profile, closed afterwards."""
    executable = find()
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    # (A profile folder left half-written by a browser that did not close cleanly is not worth an error.)
    with tempfile.TemporaryDirectory(prefix="lineage-chromium-", ignore_cleanup_errors=True) as profile:
        null = os.open(os.devnull, os.O_RDWR)
        actions = [
            (os.POSIX_SPAWN_DUP2, to_r, 3),  # what Chromium reads commands from
            (os.POSIX_SPAWN_DUP2, from_w, 4),  # where it writes answers
            (os.POSIX_SPAWN_DUP2, null, 0),
            (os.POSIX_SPAWN_DUP2, null, 1),
            (os.POSIX_SPAWN_DUP2, null, 2),
        ]
        try:
            # posix_spawn rather than subprocess: the descriptors must be 3 and 4 exactly, and a preexec
            # function is not safe in a threaded server (the console builds packs in worker threads).
            pid = os.posix_spawn(
                executable, [executable, *FLAGS, f"--user-data-dir={profile}"], os.environ, file_actions=actions
            )
        except OSError as error:
            raise ChromiumError(f"cannot start {executable}: {error.strerror}") from None
        finally:
            for fd in (to_r, from_w, null):
                os.close(fd)
        tab: Page | None = None
        try:
            tab = Page(to_w, from_r)
            yield tab
        finally:
            if tab is not None:  # a clean shutdown: Chromium stops and reaps its own helper processes
                tab.close_browser()
            os.close(to_w)
            os.close(from_r)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # (no-op when it closed)
            os.waitpid(pid, 0)


def draw(tab: Page, dot: str) -> str:
    """Graphviz DOT drawn as SVG by the vendored viz.js, in `tab`."""
    script = Path(__file__).parent / "console" / "static" / "viz-global.js"
    with tempfile.TemporaryDirectory(prefix="lineage-graph-") as scratch:
        # viz.js finds itself by its page's URL (about:blank has none) and holds its WebAssembly as UTF-8 text.
        holder = Path(scratch) / "graph.html"
        holder.write_text(
            f'<!doctype html><meta charset="utf-8"><script src="{script.resolve().as_uri()}"></script>',
            encoding="utf-8",
        )
        tab.open(holder.as_uri())
        return str(tab.evaluate(f"Viz.instance().then(viz => viz.renderString({json.dumps(dot)}, {{format: 'svg'}}))"))
