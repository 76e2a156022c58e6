"""Benchmark: the Prefect flow against a bare `dvc repro` of the same pipeline, side by side.

Two scratch git copies of the project on the 541,909-row default: one runs `dvc repro`, the other
`python -m flows.pipeline` against a local `prefect server` started for the benchmark. Each runs
once from scratch and once more with nothing changed. Targets:
  full run: flow <= 1.10 x bare dvc repro
  no-op run: flow <= 10 s and <= 2 x a bare no-op dvc repro
The flow is timed two ways: the whole command (interpreter, imports, API calls) and the flow run's
own duration as the Prefect server recorded it.
Run with `make bench` or `python -m bench.bench_orchestration [rows]`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings

from bench.bench_stages import scratch_copy, stage_env
from bench.report import save_results, table

BIN = Path(sys.executable).parent


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def last_flow_run_seconds(api_url: str) -> float:
    """Duration of the newest flow run, start to end, as the server recorded it."""
    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as api:
        (run,) = api.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
        if run.start_time is None or run.end_time is None:
            raise SystemExit(f"flow run {run.id} has no start or end time")
        return (run.end_time - run.start_time).total_seconds()


def start_server(home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", env["BENCH_PORT"]],
        env={**env, "PREFECT_HOME": str(home)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(240):
        try:
            with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/health", timeout=1):
                return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("prefect server did not start")


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 541_909
    port = "4391"
    env = stage_env(
        PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_API_URL=f"http://127.0.0.1:{port}/api", BENCH_PORT=port
    )
    with tempfile.TemporaryDirectory() as scratch:
        bare, orchestrated, home = Path(scratch, "bare"), Path(scratch, "flow"), Path(scratch, "prefect")
        for workspace in (bare, orchestrated, home):
            workspace.mkdir()
        scratch_copy(bare, rows)
        scratch_copy(orchestrated, rows)
        server = start_server(home, env)
        try:
            bare_full = timed([str(BIN / "dvc"), "repro"], bare, env)
            bare_noop = timed([str(BIN / "dvc"), "repro"], bare, env)
            flow = [str(BIN / "python"), "-m", "flows.pipeline"]
            flow_full = timed(flow, orchestrated, env)
            flow_full_run = last_flow_run_seconds(env["PREFECT_API_URL"])
            flow_noop = timed(flow, orchestrated, env)
            flow_noop_run = last_flow_run_seconds(env["PREFECT_API_URL"])
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"orchestration overhead on {rows:,} synthetic rows, 2 cores, local prefect server (SQLite)")
    for label, bare_s, command_s, run_s in (
        ("full run ", bare_full, flow_full, flow_full_run),
        ("no-op run", bare_noop, flow_noop, flow_noop_run),
    ):
        print(f"  {label}  bare dvc repro {bare_s:7.1f} s | flow command {command_s:7.1f} s, flow run {run_s:7.1f} s")
    print("targets:")
    print(f"  full: flow command / bare     {flow_full / bare_full:5.2f}  (<= 1.10)")
    print(f"  full: flow run / bare         {flow_full_run / bare_full:5.2f}  (<= 1.10)")
    for label, seconds in (("flow command", flow_noop), ("flow run    ", flow_noop_run)):
        print(f"  no-op: {label}  {seconds:5.1f} s (<= 10 s), / bare {seconds / bare_noop:5.2f} (<= 2)")
    save_results(
        "bench_orchestration",
        "The flow against a bare dvc repro",
        [
            table(
                ["run", "bare dvc repro (s)", "flow command (s)", "flow run (s)", "flow run / bare", "target"],
                [
                    ["full, from scratch", round(bare_full, 1), round(flow_full, 1), round(flow_full_run, 1),
                     round(flow_full_run / bare_full, 2), "<= 1.10x"],
                    ["nothing changed", round(bare_noop, 1), round(flow_noop, 1), round(flow_noop_run, 1),
                     round(flow_noop_run / bare_noop, 2), "<= 10 s and <= 2x"],
                ],
            )
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
