"""Ledger targets on a ledger holding 10,000 recorded runs: an ascendants query of one model at depth 10
(<= 100 ms), `lineage diff production previous` (<= 200 ms), `lineage verify --full` (<= 10 s), `lineage
verify` of what one more run appended (<= 1 s), and recording one more run (<= 1 s).

Each run is recorded the way the flow records it (`record_run` on a stand-in workspace whose data and
model change every week), so the ledger has the real shape: shared code artifacts, new data, a model
version and a promotion decision per run. `python -m bench.bench_lineage [--runs N] [--db URL]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.report import save_results, table
from lineage.diff import diff
from lineage.query import Direction, query_lineage
from lineage.store import LedgerStore
from lineage.verification import check_decisions
from tests.lineage_workspace import record_week

TARGETS = {"query": 0.100, "diff": 0.200, "verify": 10.0, "since": 1.0, "record": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default: a SQLite file in a temp dir)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        with LedgerStore(arguments.db or f"sqlite:///{root / 'lineage.db'}") as store:
            began = time.perf_counter()
            times = [record_week(store, root, week) for week in range(arguments.runs)]
            built = time.perf_counter() - began
            head = store.head()
            print(f"ledger: {arguments.runs:,} runs, {head.count:,} records, built in {built:.1f} s")
            print(f"record one run while filling: median {statistics.median(times) * 1000:.1f} ms")

            record = max(record_week(store, root, arguments.runs + extra) for extra in range(3))
            queries = []
            for _ in range(5):
                began = time.perf_counter()
                graph = query_lineage(store, "production", Direction.ASCENDANTS, depth=10)
                queries.append(time.perf_counter() - began)
            query = statistics.median(queries)
            print(f"ascendants of the production model, depth 10: {len(graph.vertices)} vertices, "
                  f"{len(graph.edges)} edges")  # fmt: skip
            diffs = []
            for _ in range(5):
                began = time.perf_counter()
                changed = diff(store, "production", "previous", root)
                diffs.append(time.perf_counter() - began)
            compared = statistics.median(diffs)
            artifacts = sum(len(rows) for rows in changed["artifacts"].values())
            print(f"diff production previous: {artifacts} artifacts, {len(changed['metrics'])} metrics changed")
            began = time.perf_counter()  # what `lineage verify --full` does: the chain, then every signature
            result = store.verify()
            signatures = check_decisions(store)
            verify = time.perf_counter() - began
            assert result.ok, str(result)
            assert signatures.ok, str(signatures)
            verified = store.head()  # then one more run, and what `lineage verify` does from there
            record_week(store, root, arguments.runs + 3)
            began = time.perf_counter()
            result = store.verify(since=verified)
            signatures = check_decisions(store, verified.count)
            since = time.perf_counter() - began
            assert result.ok, str(result)
            assert signatures.ok, str(signatures)
    measured = {"query": query, "diff": compared, "verify": verify, "since": since, "record": record}
    for name, seconds in measured.items():
        target = TARGETS[name]
        print(f"{name:<7} {seconds * 1000:10.1f} ms   target {target * 1000:8.0f} ms   ratio {seconds / target:.2f}")
    runs = f"{arguments.runs:,}-run ledger ({head.count:,} records)"
    save_results(
        "bench_lineage",
        f"The ledger: {runs}",
        [
            table(
                ["target", "measured", "ratio"],
                [
                    [f"ascendants of one model at depth 10, {runs} <= 100 ms",
                     f"{query * 1000:.1f} ms ({len(graph.vertices)} vertices, {len(graph.edges)} edges)",
                     round(query / TARGETS["query"], 2)],
                    ["`lineage diff production previous` on that ledger <= 200 ms",
                     f"{compared * 1000:.1f} ms ({artifacts} artifacts, {len(changed['metrics'])} metrics changed)",
                     round(compared / TARGETS["diff"], 2)],
                    ["`lineage verify --full` of that ledger (chain, current state, signatures) <= 10 s",
                     f"{verify:.1f} s", round(verify / TARGETS["verify"], 2)],
                    ["`lineage verify` after one more run (from the last verification) <= 1 s",
                     f"{since * 1000:.0f} ms", round(since / TARGETS["since"], 2)],
                    ["recording one more run <= 1 s",
                     f"{record * 1000:.0f} ms ({statistics.median(times) * 1000:.0f} ms median while filling)",
                     round(record / TARGETS["record"], 2)],
                ],
            )
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
