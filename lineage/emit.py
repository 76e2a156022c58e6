"""Live OpenLineage emission: RunEvents go out while the pipeline runs, without ever failing or slowing it.

Configured the standard OpenLineage way, read by openlineage-python's own loaders: an `openlineage.yml`
(`OPENLINEAGE_CONFIG`, else the working directory, else `~/.openlineage/`) over `OPENLINEAGE__TRANSPORT__...`
variables, else `OPENLINEAGE_URL` (+ `OPENLINEAGE_ENDPOINT`) for HTTP. `OPENLINEAGE_DISABLED=true` or no
configuration at all turns emission off. An HTTP transport without `auth` of its own sends the API key (the
caller's, e.g. read from a Prefect Secret block, else `OPENLINEAGE_API_KEY`) as `Authorization: Bearer`.

`Emitter.emit` only queues; one daemon thread sends in order through the transport (never through
OpenLineageClient.emit, which adds facets and reads the git remote, credentials included). The first failure
is logged in one line and opens a circuit breaker: later events are counted, not sent. `close` waits at most
`budget` seconds. Nothing is lost for good: the ledger holds every event, `lineage export openlineage` sends
them again.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

import yaml
from openlineage.client.client import OpenLineageClient
from openlineage.client.event_v2 import RunEvent
from openlineage.client.transport import Transport, get_default_factory
from openlineage.client.transport.file import FileTransport
from openlineage.client.transport.http import HttpTransport
from openlineage.client.utils import deep_merge_dicts

from common.redact import redact_text, redact_url
from lineage.errors import LineageError

log = logging.getLogger("lineage.emit")

DEFAULT_BUDGET = 0.5
DEFAULT_ENDPOINT = "api/v1/lineage"
# Unless the configuration sets its own: a hung receiver holds the sending thread (never the run) for 2 s
# once, then the breaker opens. No retries (openlineage's default is 5 per event, with backoff, and urllib3
# logs a warning per retry): the ledger, not the transport, is what makes delivery eventually complete.
HTTP_TIMEOUT = 2.0
HTTP_RETRY: dict[str, Any] = {
    "total": 0,
    "connect": 0,
    "read": 0,
    "status": 0,
    "other": 0,
    "backoff_factor": 0,
    "status_forcelist": [],
    "allowed_methods": ["POST"],
}
LEDGER_NOTE = "the ledger keeps every event: `lineage export openlineage` sends them again"


class _NoUrlCredentials(logging.Filter):
    """Masks URL credentials in a record: openlineage-python logs its HTTP transport's URL at DEBUG as given."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        shown = redact_text(message)
        if shown != message:
            record.msg, record.args = shown, None
        return True


logging.getLogger("openlineage.client.transport.http").addFilter(_NoUrlCredentials())


class _ConfigError(LineageError):
    """The OpenLineage configuration cannot be used; the message is one line without secrets."""


@dataclass(frozen=True)
class EmitReport:
    """What an Emitter did: events sent, the one that failed (the breaker then opened), those never sent."""

    sent: int
    failed: int
    dropped: int
    error: str | None = None

    @property
    def undelivered(self) -> int:
        """Events the receiver did not get (or that were not confirmed before `close` gave up)."""
        return self.failed + self.dropped


def _one_line(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` on one line, with URL credentials and every secret masked."""
    return redact_text(" ".join(text.split()), secrets)


def describe(transport: Transport) -> str:
    """Where `transport` sends events, in a few words without credentials (for a start-of-run log line)."""
    if isinstance(transport, HttpTransport):
        return redact_url(urljoin(transport.url, transport.endpoint))
    if isinstance(transport, FileTransport):
        path = transport.config.log_file_path
        return f"file {path}" if transport.config.append else f"files {path}-<time>.json"
    return f"{transport.kind or type(transport).__name__} transport"


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise _ConfigError(f"{path}: cannot read the OpenLineage config ({error.strerror})") from None
    except yaml.YAMLError as error:
        # Not str(error): its snippet of the offending line may hold an API key.
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise _ConfigError(f"{path}: the OpenLineage config is not valid YAML: {problem}{where}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise _ConfigError(f"{path}: the OpenLineage config must be a mapping, got {type(loaded).__name__}")
    return loaded


def _load_config() -> dict[str, Any]:
    """The configuration as OpenLineageClient merges it: the YAML file over the OPENLINEAGE__ variables."""
    named = os.environ.get("OPENLINEAGE_CONFIG")
    if named and not (os.path.isfile(named) and os.access(named, os.R_OK)):
        # openlineage-python falls back to the other places silently; a wrong explicit path deserves a line.
        log.warning("OPENLINEAGE_CONFIG=%s: no readable file there; looking in the usual places", named)
    path = OpenLineageClient._find_yaml_config_path()
    from_file = _read_yaml(path) if path else {}
    return deep_merge_dicts(OpenLineageClient._load_config_from_env_variables() or {}, from_file)


def _transport_settings(config: dict[str, Any], api_key: str | None) -> dict[str, Any] | None:
    """The transport's settings as the factory takes them, with our key, timeout and retry; None if none."""
    transport = config.get("transport")
    if transport is not None and not isinstance(transport, dict):
        raise _ConfigError(f"OpenLineage config `transport` must be a mapping, got {type(transport).__name__}")
    if transport and transport.get("type"):
        settings = dict(transport)
    elif url := os.environ.get("OPENLINEAGE_URL"):
        settings = {"type": "http", "url": url, "endpoint": os.environ.get("OPENLINEAGE_ENDPOINT", DEFAULT_ENDPOINT)}
    else:
        return None
    if settings["type"] == "http":
        # The caller's key (a Prefect Secret's value) always wins; the environment's only fills a missing auth.
        key = api_key or (None if settings.get("auth") else os.environ.get("OPENLINEAGE_API_KEY"))
        if key:
            settings["auth"] = {"type": "api_key", "apiKey": key}
        settings.setdefault("timeout", HTTP_TIMEOUT)
        settings.setdefault("retry", dict(HTTP_RETRY))
    return settings


def _secrets(settings: dict[str, Any], api_key: str | None) -> list[str]:
    """Every string a log line must not show: the keys given and each value of the transport's `auth`."""
    auth = settings.get("auth")
    values = [v for k, v in auth.items() if k != "type"] if isinstance(auth, dict) else [auth]
    found = [api_key, os.environ.get("OPENLINEAGE_API_KEY"), *values]
    return sorted({s for s in found if isinstance(s, str) and s}, key=len, reverse=True)


class Emitter:
    """Sends RunEvents in order from a background thread; never raises, never blocks the caller for long."""

    def __init__(self, transport: Transport, budget: float = DEFAULT_BUDGET, secrets: Iterable[str] = ()) -> None:
        if budget < 0:
            raise ValueError(f"Emitter budget must be >= 0 seconds, got {budget}")
        self._transport = transport
        self._budget = budget
        self._secrets = tuple(s for s in secrets if s)
        self._where = _one_line(describe(transport), self._secrets)
        self._queue: queue.SimpleQueue[RunEvent | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closing = threading.Lock()  # one close() at a time: one report, one line
        self._emitted = self._sent = self._failed = 0
        self._error: str | None = None
        self._closed = False  # no more events are taken
        self._abandoned = False  # close() has returned: the thread stops sending and logging
        self._report: EmitReport | None = None
        self._thread = threading.Thread(target=self._work, name="lineage-emit", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, api_key: str | None = None, budget: float = DEFAULT_BUDGET) -> Emitter | None:
        """An Emitter for the configured transport, or None when emission is disabled, not configured or
        misconfigured (then one warning line says why). `api_key`: e.g. a Prefect Secret block's value."""
        if budget < 0:
            raise ValueError(f"Emitter budget must be >= 0 seconds, got {budget}")
        if os.environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
            log.debug("OPENLINEAGE_DISABLED=true: no OpenLineage events are sent")
            return None
        try:
            settings = _transport_settings(_load_config(), api_key)
        except _ConfigError as error:
            log.warning("%s; no OpenLineage events are sent (%s)", error, LEDGER_NOTE)
            return None
        except Exception as error:  # never fail the run over lineage: whatever else the loaders raise
            problem = _one_line(f"{type(error).__name__}: {error}", [api_key or ""])
            log.warning("cannot read the OpenLineage config: %s; no events are sent (%s)", problem, LEDGER_NOTE)
            return None
        if settings is None:
            log.debug("no OpenLineage transport configured (OPENLINEAGE_URL, openlineage.yml): no events are sent")
            return None
        secrets = _secrets(settings, api_key)
        kind = str(settings["type"])
        factory = get_default_factory()
        if kind not in factory.transports and "." not in kind:  # not a class path either: say what exists
            known = ", ".join(sorted(factory.transports))
            log.warning(
                "unknown OpenLineage transport type %r (known: %s); no events sent (%s)", kind, known, LEDGER_NOTE
            )
            return None
        try:
            transport = factory.create(settings)
        except Exception as error:  # each transport validates its settings its own way
            problem = _one_line(f"{type(error).__name__}: {error}", secrets)
            log.warning("OpenLineage %s transport misconfigured, no events sent: %s (%s)", kind, problem, LEDGER_NOTE)
            return None
        if transport.kind == "noop":
            return None
        return cls(transport, budget=budget, secrets=secrets)

    def describe(self) -> str:
        """Where events go: the URL without credentials, or the file path."""
        return self._where

    def emit(self, event: RunEvent) -> None:
        """Queue `event` for sending and return at once; after a failure or `close`, only count it."""
        with self._lock:
            if self._closed:
                log.debug("an OpenLineage event after close() is not sent")
                return
            self._emitted += 1
            if self._error is not None:
                return  # the breaker is open: counted as dropped
        self._queue.put(event)

    def close(self) -> EmitReport:
        """Wait for the queue to drain, at most `budget` seconds, then report (once; later calls repeat it)."""
        with self._closing:
            if self._report is None:
                self._report = self._finish()
            return self._report

    def _finish(self) -> EmitReport:
        with self._lock:
            self._closed = True
        self._queue.put(None)
        self._thread.join(self._budget)
        with self._lock:
            self._abandoned = True
            gave_up = self._thread.is_alive()
            dropped = self._emitted - self._sent - self._failed
            error = self._error or (f"no answer within the {self._budget:g} s close budget" if gave_up else None)
            report = EmitReport(self._sent, self._failed, dropped, error)
            failure_logged = self._error is not None
        if report.undelivered:
            # One warning per run: when the failure already had its line, the totals are only info.
            level = logging.INFO if failure_logged else logging.WARNING
            why = "after a failure" if failure_logged else f"({error})"
            total = report.sent + report.undelivered
            message = "%d of %d OpenLineage events not delivered to %s %s; %s"
            log.log(level, message, report.undelivered, total, self._where, why, LEDGER_NOTE)
        return report

    def __enter__(self) -> Emitter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _work(self) -> None:
        while (event := self._queue.get()) is not None:
            with self._lock:
                skip = self._error is not None or self._abandoned
            if skip:
                continue
            try:
                self._transport.emit(event)
            except Exception as error:  # requests' ConnectionError, HTTPError, Timeout; file errors; any other
                self._trip(error)
            else:
                with self._lock:
                    self._sent += 1
        try:
            self._transport.close(self._budget)
        except Exception as error:
            log.debug("closing the OpenLineage transport failed: %s", _one_line(str(error), self._secrets))

    def _trip(self, error: Exception) -> None:
        """Count the failure, keep its line, open the breaker; log it unless close() has already returned."""
        line = _one_line(f"{type(error).__name__}: {error}", self._secrets)
        with self._lock:
            self._failed += 1
            self._error = line
            quiet = self._abandoned
        if not quiet:
            log.warning("OpenLineage events to %s stopped after a failure: %s; %s", self._where, line, LEDGER_NOTE)
