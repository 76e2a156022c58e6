"""The lineage console and evidence packs on a ledger holding 10,000 recorded runs: the production version's
page (`GET /models/production`, HTML, the summary graph) <= 300 ms, the models page (`GET /models`, HTML,
first page) <= 200 ms, and the evidence pack of the production version (`lineage evidence production`)
<= 10 s. Also reported, without targets: the version page's JSON twin and its full graph, a run page,
/ledger, the first `lineage verify --full` and an evidence pack built with `--full`.

The ledger is built by tests/bulk_ledger.py, then verified once and logged as `lineage verify --full`
does, since a pack verifies only the records appended after the last logged verification. Pages are
measured on the server side, in process: FastAPI's TestClient around `create_app` on the ledger opened
read-only, one warm-up request, then the median (and the max) of 15, each response checked to be 200.
Evidence packs (headless Chromium; skipped without it) are written into fresh folders. With
`--real-ledger PATH --real-repo PATH` (a real pipeline run's ledger and its repository, with its DVC
cache), the version page is also measured there, where it reads the stored trials, chart and SHAP files.
`python -m bench.bench_console [--runs N] [--db URL] [--real-ledger PATH --real-repo PATH]`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from bench.report import save_results, table
from lineage import chromium, evidence
from lineage.console.app import create_app
from lineage.objects import Objects
from lineage.store import LedgerStore, Verification
from lineage.verification import check_decisions
from tests.bulk_ledger import build

# The pages measured (path -> label), first the two with targets.
PAGES = {
    "/models/production": "`GET /models/production` (HTML, summary graph)",
    "/models": "`GET /models` (HTML, first page)",
    "/models/production?format=json": "`GET /models/production?format=json`",
    "/models/production?graph=full": "`GET /models/production?graph=full` (HTML)",
    "/runs/{run}": "`GET /runs/<production's run>` (HTML)",
    "/ledger": "`GET /ledger` (HTML, nothing appended since the verification)",
}
TARGETS = {"/models/production": 0.300, "/models": 0.200, "evidence": 10.0}
REPEAT = 15
Timing = tuple[float, float]  # median, max (seconds)


def timed_get(client: TestClient, path: str) -> Timing:
    """One warm-up GET of `path`, then the median and max of REPEAT; every response must be 200."""

    def once() -> float:
        began = time.perf_counter()
        response = client.get(path)
        seconds = time.perf_counter() - began
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:200]}")
        return seconds

    once()
    samples = [once() for _ in range(REPEAT)]
    return statistics.median(samples), max(samples)


def pages(
    url: str, objects: Objects | None, repository: Path, paths: dict[str, str]
) -> tuple[dict[str, Timing], dict[str, Any]]:
    """Each page of `paths` (label -> path; `{run}` is the production version's run) timed on the console,
    and the production version's JSON twin (what the page showed)."""
    with LedgerStore(url, read_only=True) as store:
        client = TestClient(create_app(store, objects, repository), base_url="http://127.0.0.1")
        found = client.get("/models/production?format=json")
        if found.status_code != 200:
            raise RuntimeError(f"GET /models/production?format=json: {found.status_code} {found.text[:200]}")
        shown = found.json()
        run = shown["run"]["flow_run_id"]
        return {label: timed_get(client, path.format(run=run)) for label, path in paths.items()}, shown


def verify_and_log(url: str) -> float:
    """What `lineage verify --full` does: the chain, every signature, then the verification logged."""
    with LedgerStore(url) as store:
        began = time.perf_counter()
        result = store.verify()
        signatures = check_decisions(store)
        ok = result.ok and signatures.ok
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        logged = Verification(
            from_count=0,
            record_count=result.count,
            head_hash=result.head_hash,
            ok=ok,
            result=f"{result}; {signatures}",
            verified_at=now,
        )
        store.record_verification(logged)
        seconds = time.perf_counter() - began
    if not ok:
        raise RuntimeError(f"the bulk ledger does not verify: {result}; {signatures}")
    return seconds


def packs(url: str, repository: Path) -> dict[str, float]:
    """The production version's evidence pack, twice from the logged verification, then once with `full`."""
    times = {}
    with LedgerStore(url, read_only=True) as store, tempfile.TemporaryDirectory() as scratch:
        for label, full in (("evidence", False), ("evidence again", False), ("evidence --full", True)):
            began = time.perf_counter()
            pack = evidence.build(store, "production", Path(scratch) / label, None, repository, full=full)
            times[label] = time.perf_counter() - began
            if not pack.verified:
                raise RuntimeError(f"the evidence pack of {pack.name} says the ledger does not verify")
    return times


def real_page(ledger: Path, repository: Path) -> tuple[Timing, str]:
    """The version page on a real pipeline run's ledger, with its DVC storage, and a note saying what it showed."""
    url = f"sqlite:///{ledger.resolve()}"
    timings, shown = pages(url, Objects(repository), repository, {"version": "/models/production"})
    read = {
        "the trials table": shown["tuning"]["trials"],
        "the losses per epoch": shown["tuning"]["epochs"],
        "the SHAP importance": shown["shap"]["importance"],
    }
    with LedgerStore(url, read_only=True) as store:
        records = store.head().count
    shown_there = [k for k, v in read.items() if v] or ["none of them"]
    missing = [k for k, v in read.items() if not v]
    unread = f" (not shown there: {_and(missing)})" if missing else ""
    note = (
        f" The version page was also measured on a real pipeline run's ledger ({ledger}, {records:,} records, with"
        f" its DVC cache), where it read {_and(shown_there)} from stored files{unread} (the tuning chart they"
        " draw is the page's image, its own request, not timed here);"
        " that ledger is small, so this says nothing of how those parts scale with the ledger's size."
    )
    return timings["version"], note


def _and(items: list[str]) -> str:
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def row(label: str, seconds: float, most: float | None = None, target: float | None = None) -> list[str | float]:
    """A table row: milliseconds under a second, else seconds; the ratio to the target if there is one."""

    def shown(value: float) -> str:
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.1f} s"

    goal = "" if target is None else f"<= {target * 1000:.0f} ms" if target < 1 else f"<= {target:.0f} s"
    return [
        label,
        shown(seconds),
        "" if most is None else shown(most),
        goal,
        "" if target is None else round(seconds / target, 2),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL of an empty ledger (default: a temp SQLite)")
    parser.add_argument("--real-ledger", type=Path, default=None, help="a real pipeline run's ledger (SQLite)")
    parser.add_argument("--real-repo", type=Path, default=None, help="its repository, with its DVC cache")
    arguments = parser.parse_args()
    if (arguments.real_ledger is None) != (arguments.real_repo is None):
        parser.error("--real-ledger and --real-repo go together")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        url = arguments.db or f"sqlite:///{root / 'lineage.db'}"
        began = time.perf_counter()
        head = build(url, arguments.runs, root, lambda line: print(f"  {line}", flush=True))
        print(f"ledger: {arguments.runs:,} runs, {head.count:,} records, built in {time.perf_counter() - began:.1f} s")
        verified = verify_and_log(url)
        print(f"first `lineage verify --full` (logged): {verified:.1f} s")
        measured, _ = pages(url, None, root, {path: path for path in PAGES})
        try:
            chromium.find()
            built: dict[str, float] | None = packs(url, root)
        except chromium.ChromiumError as error:
            print(f"evidence packs: skipped ({error})")
            built = None
    real_note = " The version page was not measured on a real ledger with its stored files (no --real-ledger)."
    rows = [row(label, *measured[path], target=TARGETS.get(path)) for path, label in PAGES.items()]
    if arguments.real_ledger is not None:
        real, real_note = real_page(arguments.real_ledger, arguments.real_repo)
        rows.append(
            row("the same page on a real run's ledger, with its DVC cache", *real, TARGETS["/models/production"])
        )
    rows.append(row("first `lineage verify --full` (chain, signatures, logged)", verified))
    if built is not None:
        rows += [
            row(
                "evidence pack of production (incremental verification)", built["evidence"], target=TARGETS["evidence"]
            ),
            row("the same again, into a fresh folder", built["evidence again"], target=TARGETS["evidence"]),
            row("evidence pack with `full` (rehashes every record)", built["evidence --full"]),
        ]
    print(f"\n{'name':<72} {'median':>10} {'max':>10} {'target':>10} {'ratio':>6}")
    for cells in rows:
        print(f"{cells[0]:<72} {cells[1]:>10} {cells[2]:>10} {cells[3]:>10} {cells[4]!s:>6}")

    notes = [
        "The bulk ledger's runs have no files in a DVC cache (their md5s are synthetic), so its pages were measured"
        " with no DVC storage: without the trials table, the tuning chart and the SHAP importance, which read"
        " stored files; the evidence packs likewise carry no stored reports and no published anchor." + real_note,
        "Pages are timed on the server side, in process (FastAPI's TestClient): no network, no browser rendering,"
        " no static files; the version page's graph is drawn by viz.js in the browser and that is not measured.",
        "Before the pages and packs, the ledger was verified once and the verification logged, as `lineage verify"
        " --full` does; the packs then verify only what was appended since (nothing), /ledger likewise.",
    ]
    if built is None:
        notes.append("Evidence packs were not measured: no headless Chromium on this machine.")
    for note in notes:
        print(f"note: {note}")
    runs = f"{arguments.runs:,}-run ledger ({head.count:,} records)"
    save_results(
        "bench_console",
        f"The lineage console and evidence packs: {runs}",
        [table(["measured", f"median of {REPEAT}", "max", "target", "ratio"], rows)],
        notes=notes,
    )


if __name__ == "__main__":
    main()
