"""The prediction endpoint (`retail-serve`) and batch scoring (`python -m flows.score`) on a pipeline run's
production version. Targets: single-row `POST /predict` p99 <= 25 ms at 8 concurrent clients; batch scoring
of the test split <= 1.5 x the inference stage's prediction time for the same rows.

retail-serve runs as its own process on a free port, measured once /health answers 200. Each client is a
thread with its own keep-alive connection: a warm-up, then (all clients together) a fixed number of requests,
each a different test-split row; p50, p99 and requests/s at 1, 8 and 32 clients, then rows/s for 1,000-row
batches at 1 and 2 clients. Batch scoring times the whole `python -m flows.score data/splits/test.parquet`
command (a temporary local Prefect API, files fetched by md5, `dvc add`, a Prediction in the workspace's
ledger) and the scoring time its `tasks.score` step logs (features, transform, predict: one cold call). The
inference stage's prediction is timed in process on the production version's files (the preprocessor's
transform, then `predict`, median of 3), and `tasks.score.Scorer.score` (history features too) beside it.
`python -m bench.bench_serving [--workspace PATH] [--requests N] [--batches N] [--warmup N]`: without
--workspace, a scratch git copy of the project (as bench_reproduce makes one) runs `python -m flows.pipeline`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.bench_stages import scratch_copy, stage_env
from bench.report import Cell, Table, save_results, table

BIN = Path(sys.executable).parent
TEST, SCORES = "data/splits/test.parquet", "data/scores/bench.parquet"
COLUMNS = ["stock_code", "unit_price", "invoice_date", "country", "customer_id"]
CLIENTS, BATCH_CLIENTS, BATCH_ROWS = (1, 8, 32), (1, 2), 1000
TARGET_P99_MS, TARGET_RATIO = 25.0, 1.5


def env_for(workspace: Path) -> dict[str, str]:
    return stage_env(LINEAGE_DB_URL=f"sqlite:///{workspace / 'lineage.db'}", PREFECT_SERVER_ANALYTICS_ENABLED="false")


def run(command: list[str], workspace: Path) -> tuple[float, str]:
    """Wall seconds and output of a command that must succeed."""
    began = time.perf_counter()
    done = subprocess.run(command, cwd=workspace, env=env_for(workspace), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-3000:]}")
    return time.perf_counter() - began, done.stdout + done.stderr


def build_workspace(root: Path, rows: int) -> Path:
    """A scratch git copy of the project on `rows` synthetic rows, after one pipeline run."""
    scratch_copy(root, rows)
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "commit", "-qm", "bench"], root)
    seconds, _ = run([str(BIN / "python"), "-m", "flows.pipeline"], root)
    print(f"workspace {root}: pipeline run in {seconds:.0f} s")
    return root


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(process: subprocess.Popen[bytes], port: int, seconds: float = 300) -> dict[str, Any]:
    """/health's body once it answers 200; SystemExit if the server exits or `seconds` pass first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"retail-serve exited {process.returncode}")
        health = f"http://127.0.0.1:{port}/health"  # refused while binding, 503 (an HTTPError) while loading
        with contextlib.suppress(OSError), urllib.request.urlopen(health, timeout=5) as response:
            return dict(json.load(response))
        time.sleep(0.2)
    raise SystemExit(f"retail-serve: /health not 200 within {seconds:.0f} s")


def post(connection: http.client.HTTPConnection, body: bytes) -> float:
    """Seconds one `POST /predict` took; RuntimeError unless it answered 200."""
    began = time.perf_counter()
    connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = response.read()
    seconds = time.perf_counter() - began
    if response.status != 200:
        raise RuntimeError(f"POST /predict: {response.status} {answer[:200]!r}")
    return seconds


def load(port: int, bodies: list[list[bytes]], warmup: int) -> tuple[list[float], float]:
    """Each client (a thread, its own keep-alive connection) posts its first `warmup` bodies, waits for the
    others, then posts the rest: every measured latency (s) and the measured phase's wall time."""
    start = threading.Barrier(len(bodies) + 1)
    latencies: list[list[float]] = [[] for _ in bodies]
    errors: list[BaseException] = []

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            for body in bodies[index][:warmup]:
                post(connection, body)
            start.wait()
            latencies[index] = [post(connection, body) for body in bodies[index][warmup:]]
        except BaseException as error:
            errors.append(error)
            start.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    if errors:
        raise SystemExit(f"a client failed: {errors[0]}")
    return [s for client_latencies in latencies for s in client_latencies], wall


def request_rows(workspace: Path) -> list[dict[str, Any]]:
    """The test split's rows as /predict takes them."""
    test = pd.read_parquet(workspace / TEST, columns=COLUMNS)
    return [
        {"stock_code": s, "unit_price": float(p), "invoice_date": d.isoformat(), "country": c,
         "customer_id": None if pd.isna(i) else str(i)}
        for s, p, d, c, i in test.itertuples(index=False)
    ]  # fmt: skip


def bodies(rows: list[dict[str, Any]], clients: int, per_client: int, size: int) -> list[list[bytes]]:
    """Request bodies of `size` rows each, every request its own rows (wrapping around the table)."""

    def body(n: int) -> bytes:
        return json.dumps({"rows": [rows[(n * size + k) % len(rows)] for k in range(size)]}).encode()

    return [[body(c * per_client + r) for r in range(per_client)] for c in range(clients)]


def flow_seconds(log: str) -> tuple[float, int]:
    """The seconds tasks.score spent scoring (history features, transform, predict) and the rows, from its line."""
    scored = re.search(r"score: (\d+) rows scored by \S+ in ([\d.]+) s", log)
    if scored is None:
        raise SystemExit(f"no `score: N rows scored by ... in S s` line in the score flow's log:\n{log[-2000:]}")
    return float(scored.group(2)), int(scored.group(1))


def median_of_3(step: Callable[[], object]) -> float:
    times = []
    for _ in range(3):
        began = time.perf_counter()
        step()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def in_process(workspace: Path) -> tuple[str, float, float, int]:
    """The production version, the inference stage's prediction time and Scorer.score's (median of 3 each)
    for the test split, on that version's files read from the workspace's DVC storage, and the rows."""
    import torch

    from lineage import registry
    from lineage.diff import view
    from lineage.objects import Objects
    from lineage.predictions import scoring_files
    from lineage.store import LedgerStore
    from tasks.data import load_transactions
    from tasks.score import FILES, REQUIRED, Scorer

    with LedgerStore(f"sqlite:///{workspace / 'lineage.db'}", read_only=True) as store:
        version = registry.production(store)
        if version is None:
            raise SystemExit(f"{workspace}: no model version is in production")
        md5s = {role: a.md5 for role, a in scoring_files(store, version.name, FILES).items()}
        params = view(store, version.name).params
    torch.set_num_threads(int(params.get("tune.threads") or (params.get("tune") or {}).get("threads") or 1))
    objects = Objects(workspace)
    files = {role: objects.read(md5) for role, md5 in md5s.items()}
    found = {role: data for role, data in files.items() if data is not None}
    if len(found) != len(files):
        raise SystemExit(f"{version.name}: {sorted(set(files) - set(found))} not in the workspace's DVC storage")
    scorer = Scorer.load(version.name, found, md5s)
    test = pd.read_parquet(workspace / TEST)  # every column of the split: the model's features included
    rows = load_transactions(str(workspace / TEST), REQUIRED)
    inference = median_of_3(lambda: scorer.quantities(test))  # the inference stage's transform + predict
    return version.name, inference, median_of_3(lambda: scorer.score(rows, TEST)), len(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, help="a checkout where a pipeline run promoted a version")
    parser.add_argument("--rows", type=int, default=541_909, help="synthetic rows, when building the workspace")
    parser.add_argument("--requests", type=int, default=200, help="measured single-row requests per client")
    parser.add_argument("--batches", type=int, default=10, help="measured 1,000-row batches per client")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up requests per client")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_serving-") as scratch:
        workspace = (arguments.workspace or build_workspace(Path(scratch), arguments.rows)).resolve()
        measure(workspace, arguments.requests, arguments.batches, arguments.warmup, arguments.workspace is None)


def show(figures: Table) -> None:
    """Print one table, each column as wide as its widest cell."""
    cells = [figures["columns"], *([str(c) for c in row] for row in figures["rows"])]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(figures["columns"]))]
    print(f"\n{figures['title']}")
    for row in cells:
        print(
            "  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )


def measure(workspace: Path, requests: int, batches: int, warmup: int, built: bool) -> None:
    """Serve, load, score and time inference on `workspace`; print the tables and save them."""
    rows = request_rows(workspace)
    port = free_port()
    entry = BIN / "retail-serve"  # `python -m serving.cli` where the venv predates the entry point
    command = [str(entry)] if entry.exists() else [str(BIN / "python"), "-m", "serving.cli"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--poll-seconds", "2"]
    with tempfile.TemporaryFile() as output:
        server = subprocess.Popen([*command, "--repository", str(workspace)], cwd=workspace, env=env_for(workspace),
                                  stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            served = wait_healthy(server, port)["model_version"]
            single = {n: load(port, bodies(rows, n, warmup + requests, 1), warmup) for n in CLIENTS}
            batch = {n: load(port, bodies(rows, n, 2 + batches, BATCH_ROWS), 2) for n in BATCH_CLIENTS}
        except BaseException:
            output.seek(0)
            print(output.read().decode(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            server.terminate()
            server.wait(timeout=30)
    flow, log = run([str(BIN / "python"), "-m", "flows.score", TEST, "--output", SCORES], workspace)
    step, scored = flow_seconds(log)
    imports, _ = run([str(BIN / "python"), "-c", "import tasks.score"], workspace)
    version, inference, scorer, test_rows = in_process(workspace)

    latency: list[list[Cell]] = []
    for n, (seconds, wall) in single.items():
        p50, p99 = (round(float(v) * 1000, 2) for v in np.percentile(seconds, [50, 99]))
        goal, ratio = (f"p99 <= {TARGET_P99_MS:.0f} ms", round(p99 / TARGET_P99_MS, 2)) if n == 8 else ("", "")
        latency.append([n, len(seconds), p50, p99, round(len(seconds) / wall, 1), goal, ratio])
    throughput: list[list[Cell]] = [
        [n, len(seconds), round(statistics.median(seconds) * 1000, 1), round(len(seconds) * BATCH_ROWS / wall)]
        for n, (seconds, wall) in batch.items()
    ]
    goal = f"<= {TARGET_RATIO} x inference"
    scoring: list[list[Cell]] = [
        [label, round(s, 3), target, round(s / inference, 2)]
        for label, s, target in [
            ("inference stage's prediction: transform + predict, in process, median of 3", inference, ""),
            ("`Scorer.score`: history features + transform + predict, in process, median of 3", scorer, ""),
            ("the score flow's scoring in `tasks.score` (features + transform + predict, from its log)", step, goal),
            ("a new interpreter's `import tasks.score`, which the flow's step also pays (timed alone)", imports, ""),
            ("`python -m flows.score` (whole command)", flow, goal),
        ]
    ]
    tables = [
        table(["clients", "requests", "p50 ms", "p99 ms", "requests/s", "target", "ratio"], latency,
              f"Single-row `POST /predict` ({served})"),
        table(["clients", "batches", "p50 ms per batch", "rows/s"], throughput, f"{BATCH_ROWS:,}-row batches"),
        table(["measured", "seconds", "target", "ratio to inference"], scoring,
              f"Batch scoring of the test split ({test_rows:,} rows, {scored:,} scored by the flow)"),
    ]  # fmt: skip
    for figures in tables:
        show(figures)
    where = "a scratch copy's pipeline run" if built else "the given workspace"
    notes = [
        f"Model version {version} ({where}). Clients are threads of the benchmark's process on the same machine as"
        " retail-serve (which runs torch on one thread per request), so both share its cores.",
        "The score flow's time includes starting a temporary local Prefect API, fetching the version's files by md5,"
        " `dvc add` of the predictions and a Prediction record in the workspace's ledger; the `tasks.score` step"
        " includes its interpreter start and imports, reading the files, the history features and the Parquet write.",
    ]
    for note in notes:
        print(f"note: {note}")
    save_results("bench_serving", "The prediction endpoint and batch scoring", tables, notes=notes)


if __name__ == "__main__":
    main()
