"""The run's OpenLineage events as it goes: each stage's START before it runs, COMPLETE or FAIL after.

Events are built from the workspace with the content `lineage export openlineage` later builds from the
ledger (lineage/openlineage.py `stage_event`) and sent in the background (lineage/emit.py) to the transport
configured the standard way: OPENLINEAGE_URL or openlineage.yml, HTTP or file, the API key from
OPENLINEAGE_API_KEY or a Prefect Secret block. Nothing here can fail the run, and a receiver that is down
or hangs costs it at most the emitter's close budget: a failure is one line in the run's log, and the
ledger still holds every event for a later `lineage export openlineage`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

from openlineage.client.event_v2 import RunState
from prefect import get_run_logger
from prefect.runtime import flow_run

from common.redact import redact_text
from flows.settings import read_secret
from lineage.emit import Emitter
from lineage.objects import Objects
from lineage.openlineage import stage_event
from lineage.recorder import Provenance
from tasks.etl import COLUMN_LINEAGE


class _ToRunLog(logging.Handler):
    """Puts the emitter's lines (logged from its sending thread too) into the flow run's log."""

    def __init__(self, run_log: Any) -> None:
        super().__init__()
        self.run_log = run_log

    def emit(self, record: logging.LogRecord) -> None:
        self.run_log.log(record.levelno, "OpenLineage: %s", record.getMessage())


class LiveLineage:
    """One run's live OpenLineage emission; without a configured transport every call does nothing."""

    def __init__(self) -> None:
        self.emitter: Emitter | None = None  # None: no transport configured, or it could not be set up
        self.remote_url: str | None = None  # the DVC remote the run pushes to: where outputs are named
        self.flow_run_id = str(flow_run.get_id() or "local")  # the ledger's PipelineRun name (flows/record.py)
        self.spent = 0.0  # seconds the run itself spent on emission: building, queueing, closing
        self.provenance: Provenance | None = None  # commit and image, read once: git costs ~20 ms a call
        self._log = get_run_logger()
        self._forward = _ToRunLog(self._log)

    @classmethod
    def start(cls, api_key_block: str | None, remote: str | None) -> LiveLineage:
        """Emission to the configured transport, if any, for a run that pushes to DVC remote `remote`."""
        began = time.perf_counter()
        live = cls()
        logging.getLogger("lineage.emit").addHandler(live._forward)
        try:
            api_key = read_secret(api_key_block) if api_key_block else None
            live.emitter = Emitter.from_config(api_key=api_key)
            if live.emitter is not None:
                live.remote_url = Objects(Path("."), remote).remote()
                live.provenance = Provenance.read(Path("."))
                live._log.info("OpenLineage: each stage's events go to %s as it runs", live.emitter.describe())
        except Exception as error:  # a missing Secret block, an unreadable DVC config: never stop the run
            live._log.warning("OpenLineage: no events sent: %s", redact_text(" ".join(str(error).split())))
            live.emitter = None
        live.spent += time.perf_counter() - began
        return live

    def stage(
        self, state: RunState, stage: str, when: dt.datetime, failure: str | None = None, skipped: bool = False
    ) -> None:
        """Emit `stage` reaching `state` at `when` (the times the ledger records, so both agree)."""
        if self.emitter is None:
            return
        began = time.perf_counter()
        try:
            event = stage_event(
                state, stage, self.flow_run_id, when, Path("."), self.remote_url,
                failure=failure, column_lineage=COLUMN_LINEAGE, skipped=skipped, provenance=self.provenance,
            )  # fmt: skip
            self.emitter.emit(event)
        except Exception as error:  # a workspace it cannot read: the ledger still records the stage
            self._log.warning("OpenLineage: no %s event for %s: %s", state.value, stage, redact_text(str(error)))
        self.spent += time.perf_counter() - began

    def close(self) -> None:
        """Wait a bounded time for the events in flight, then say in one line what was delivered."""
        logging.getLogger("lineage.emit").removeHandler(self._forward)
        if self.emitter is None:
            return
        began = time.perf_counter()
        report = self.emitter.close()
        self.spent += time.perf_counter() - began
        self._log.info(
            "OpenLineage: %d of %d events delivered to %s; the run spent %.3f s on emission",
            report.sent, report.sent + report.undelivered, self.emitter.describe(), self.spent,
        )  # fmt: skip
