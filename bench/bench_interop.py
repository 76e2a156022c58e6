"""Lineage for other tools and environments: what live OpenLineage emission costs a run, exporting events
and bundles from a ledger holding 10,000 runs, and importing a bundle.

- Live emission: the twelve events of a six-stage run built from this checkout's workspace
  (`stage_event`: dvc.lock, Parquet schemas, git) and sent by `Emitter`, as flows/live_lineage.py does;
  the time the run itself spends, to a loopback receiver that answers, to a closed port and to a receiver
  that never answers. Target: <= 1 s in all with the receiver down (the issue's bound).
- On a bulk ledger of `--runs` runs (tests/bulk_ledger.py): `lineage export openlineage --flow-run <the
  production version's run>` (events built and validated against the vendored schemas) <= 1 s, and the
  production version's bundle (`lineage export bundle`: ascendants, records, unsigned) <= 2 s.
- Import: a dev ledger of `--weeks` runs with real objects (tests/bundle_world.py), the last promoted
  version's signed bundle imported into an empty prod ledger (every check: hashes, signature and trust,
  decisions, every object's bytes) <= 5 s, then imported again (adds nothing).
Median of 5 (import: of 3, each into a fresh ledger). `python -m bench.bench_interop [--runs N] [--weeks W]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from openlineage.client.event_v2 import RunState

from bench.report import save_results, table
from lineage import bundle, openlineage, registry
from lineage.authority import register
from lineage.emit import Emitter
from lineage.objects import Objects
from lineage.recorder import Provenance
from lineage.signatures import Signer, read_public_key
from lineage.store import LedgerStore
from tests.bulk_ledger import build
from tests.bundle_world import dvc_repository, record_weeks
from tests.lineage_workspace import REPO, STAGES

TARGETS = {"down": 1.0, "events": 1.0, "bundle": 2.0, "import": 5.0}
REPEAT = 5


def median(measure: Callable[[], float], repeat: int = REPEAT) -> float:
    return statistics.median(measure() for _ in range(repeat))


@contextmanager
def receiver(answer: bool) -> Iterator[str]:
    """A loopback OpenLineage receiver that answers 201 (or, `answer=False`, accepts and never answers)."""
    if not answer:
        listener = socket.create_server(("127.0.0.1", 0))
        held: list[socket.socket] = []
        thread = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
        listener.close()
        return

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def live_run(url: str, workspace: Path) -> tuple[float, float, int]:
    """One run's twelve events from `workspace` to `url`: the seconds the run spends, of which building
    them, and how many were delivered."""
    os.environ["OPENLINEAGE_URL"] = url
    began = time.perf_counter()
    emitter = Emitter.from_config()
    assert emitter is not None
    building = 0.0
    now = dt.datetime(2026, 12, 7, 6, tzinfo=dt.UTC)
    provenance = Provenance.read(workspace)  # once per run, as flows/live_lineage.py reads it
    for stage in STAGES:
        for state in (RunState.START, RunState.COMPLETE):
            built = time.perf_counter()
            event = openlineage.stage_event(
                state, stage, "bench-run", now, workspace, None, skipped=True, provenance=provenance
            )
            building += time.perf_counter() - built
            emitter.emit(event)
    report = emitter.close()
    return time.perf_counter() - began, building, report.sent


def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def exports(url: str) -> tuple[float, float, int, int]:
    """The production version's run's events (built and validated) and its bundle: seconds, and their sizes."""
    with LedgerStore(url, read_only=True) as store:
        version = registry.production(store)
        assert version is not None
        flow_run_id = str(version.properties["flow_run_id"])

        def events() -> float:
            began = time.perf_counter()
            for line in openlineage.to_json_lines(openlineage.run_events(store, flow_run_id)).splitlines():
                openlineage.validate(json.loads(line))
            return time.perf_counter() - began

        def export() -> float:
            began = time.perf_counter()
            bundle.to_bytes(bundle.build_bundle(store, "production"))
            return time.perf_counter() - began

        count = len(openlineage.run_events(store, flow_run_id))
        records = len(bundle.build_bundle(store, "production")["records"])
        return median(events), median(export), count, records


def imports(folder: Path, weeks: int) -> tuple[float, float, int, int]:
    """A signed bundle of dev's last promoted version imported into a fresh prod ledger (median of 3), then
    again: seconds, the records appended and the objects checked."""
    keys = {}
    (folder / "keys").mkdir()
    for name in ("dev", "prod"):
        keys[name] = folder / "keys" / name
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(keys[name])], check=True)
    with LedgerStore(f"sqlite:///{folder / 'dev.db'}") as dev:
        register(dev, "dev", read_public_key(keys["dev"].with_suffix(".pub")), Signer("dev", keys["dev"]))
        root = folder / "workspace"
        root.mkdir()
        versions = record_weeks(dev, root, folder / "remote", None, *([True] * weeks))
        path = folder / "version.bundle.json"
        bundle.export_bundle(dev, versions[-1][0], path, Signer("dev", keys["dev"]))
    repository = dvc_repository(folder / "prod", folder / "remote")
    times, again, appended = [], 0.0, 0
    for attempt in range(3):
        with LedgerStore(f"sqlite:///{folder / f'prod{attempt}.db'}") as prod:
            prod_signer = Signer("prod", keys["prod"])
            register(prod, "prod", read_public_key(keys["prod"].with_suffix(".pub")), prod_signer)
            register(prod, "dev-exporter", read_public_key(keys["dev"].with_suffix(".pub")), prod_signer)
            began = time.perf_counter()
            done = bundle.import_bundle(prod, path, Objects(repository))
            times.append(time.perf_counter() - began)
            appended = done.appended
            began = time.perf_counter()
            if bundle.import_bundle(prod, path, Objects(repository)).appended != 0:
                raise RuntimeError("a second import appended records")
            again = time.perf_counter() - began
    objects = sum(1 for item in (folder / "remote" / "files").rglob("*") if item.is_file())
    return statistics.median(times), again, appended, objects


def row(label: str, seconds: float, target: float | None = None) -> list[str | float]:
    shown = f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
    goal = "" if target is None else f"<= {target:g} s"
    return [label, shown, goal, "" if target is None else round(seconds / target, 2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--weeks", type=int, default=20, help="runs in the dev ledger of the import")
    parser.add_argument(
        "--workspace", type=Path, default=REPO, help="a checkout after a run (its outputs present: Parquet schemas)"
    )
    arguments = parser.parse_args()

    workspace = arguments.workspace.resolve()
    schemas = sum(1 for path in workspace.glob("data/**/*.parquet"))
    live = {}
    with receiver(answer=True) as up:
        live["up"] = median(lambda: live_run(up, workspace)[0])
        _, building, sent = live_run(up, workspace)
    live["down"] = median(lambda: live_run(closed_port(), workspace)[0])
    with receiver(answer=False) as hung:
        live["hung"] = median(lambda: live_run(hung, workspace)[0])
    print(f"live: {sent} events delivered; building them took {building * 1000:.1f} ms")

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        url = f"sqlite:///{root / 'lineage.db'}"
        head = build(url, arguments.runs, root, lambda line: print(f"  {line}", flush=True))
        print(f"ledger: {arguments.runs:,} runs, {head.count:,} records")
        events, exported, count, records = exports(url)
    with tempfile.TemporaryDirectory() as scratch:
        imported, again, appended, objects = imports(Path(scratch), arguments.weeks)

    rows = [
        row("live: a run's 12 events, receiver answering (build, queue, close)", live["up"]),
        row("live: the same, receiver down (connection refused)", live["down"], TARGETS["down"]),
        row("live: the same, receiver that never answers", live["hung"], TARGETS["down"]),
        row("live: building the 12 events from the workspace (dvc.lock, Parquet schemas)", building),
        row(f"`lineage export openlineage --flow-run` at {arguments.runs:,} runs ({count} events, validated)",
            events, TARGETS["events"]),
        row(f"`lineage export bundle production` at {arguments.runs:,} runs ({records} records)",
            exported, TARGETS["bundle"]),
        row(f"`lineage import bundle`, {appended} records, {objects} objects checked", imported, TARGETS["import"]),
        row("the same bundle imported again (appends nothing)", again),
    ]  # fmt: skip
    print(f"\n{'measure':<84} {'median':>10} {'target':>8} {'ratio':>6}")
    for cells in rows:
        print(f"{cells[0]:<84} {cells[1]:>10} {cells[2]:>8} {cells[3]!s:>6}")
    notes = [
        f"Bulk ledger: {arguments.runs:,} runs, {head.count:,} records (SQLite). The import's dev ledger holds"
        f" {arguments.weeks} runs recorded on the stand-in workspace with real bytes for every file; the prod"
        " ledger is a fresh SQLite one each time. Live emission is measured in process on the"
        f" workspace {workspace} ({schemas} Parquet files present to read schemas from), with the same Emitter"
        " the flow uses (a 0.5 s close budget, no HTTP retries).",
    ]
    save_results(
        "bench_interop",
        "OpenLineage emission and export, bundles between ledgers",
        [table(["measure", "median", "target", "ratio"], rows)],
        notes,
    )


if __name__ == "__main__":
    main()
