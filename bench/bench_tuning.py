"""Benchmark: one 16-trial search run by one, then by two Prefect process workers, against one local
`prefect server` on PostgreSQL, with the Optuna storage on PostgreSQL too.

In a scratch git copy of the project (synthetic data, `dvc repro preprocess` first, untimed), the tune
stage runs twice as `python -m tasks.tune` with TUNE_TRIAL_DEPLOYMENT=tune-trial/workers and the same
params (`tune.threads: 1`, so two workers fit two cores); only the number of `prefect worker start
--pool retail-process --limit 1` processes differs. Printed: the search's wall time (first batch asked
to last trial told) and the whole stage's, their ratio, and whether the chosen hyperparameters, the
trials table, the per-epoch losses table and the model file are the same; also how much of the workers'
time the trials' flow runs spent Running (the rest is flow-run start-up and waiting at batch barriers)
and the machine's load average, since other work on a shared machine slows two workers more than one.
  target: two workers' search <= 0.6 x one worker's
Run with `make bench` or `python -m bench.bench_tuning [rows]` (needs PostgreSQL on 127.0.0.1:5432).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.settings import PREFECT_API_URL, temporary_settings

from bench.bench_orchestration import start_server
from bench.bench_stages import scratch_copy, stage_env
from bench.report import save_results, table

BIN = Path(sys.executable).parent
POSTGRES = "127.0.0.1:5432"
# Trials train on every training row (about 2.4 s an epoch on one thread here), so that a trial's
# training (typically 10-25 s) outweighs a flow run's start-up on a worker (about 6 s).
TUNE = {
    "n_trials": 16,
    "parallel_trials": 8,
    "threads": 1,
    "trial_rows": 0,
    "max_epochs": 8,
    "patience": 3,
    "baseline_max_iter": 20,
}


def _psql(command: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", command],
        check=True, capture_output=True, text=True,
    )  # fmt: skip


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@dataclass
class Tuned:
    search: float  # seconds from the first batch asked to the last trial told
    stage: float  # seconds of the whole `python -m tasks.tune` (final fit and baseline included)
    chosen: dict[str, object]
    trials: dict[str, int]
    model: str  # md5 of models/model.pt
    table: str  # md5 of reports/tune_trials.csv
    epochs: str  # md5 of reports/tune_epochs.csv
    running: float  # seconds the trials' flow runs spent Running (after their process started), summed
    load: float  # the machine's mean 1-minute load average during the search (other engineers' work included)


def _sample_load(loads: list[float], done: threading.Event) -> None:
    while not done.wait(2.0):
        loads.append(os.getloadavg()[0])


def start_worker(workspace: Path, env: dict[str, str], name: str, log: Path) -> subprocess.Popen[bytes]:
    """A process worker of the retail-process pool taking one flow run at a time."""
    return subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", "retail-process", "--limit", "1", "--name", name],
        cwd=workspace, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def tune_with_workers(workspace: Path, env: dict[str, str], workers: int, logs: Path) -> Tuned:
    """Start `workers` process workers, run the tune stage on them; wall times and what it chose."""
    started_workers = [
        start_worker(workspace, env, f"bench-worker-{index}", logs / f"worker-{workers}-{index}.log")
        for index in range(workers)
    ]
    try:
        time.sleep(3)  # let the workers register and poll before the first batch
        tune_env = {**env, "TUNE_RUN_ID": f"bench-{workers}-workers-{uuid.uuid4().hex[:8]}"}
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(BIN / "python"), "-m", "tasks.tune"], cwd=workspace, env=tune_env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        first = last = None
        output: list[str] = []
        loads: list[float] = []
        done = threading.Event()
        sampler = threading.Thread(target=_sample_load, args=(loads, done), daemon=True)
        sampler.start()
        for line in process.stdout:
            output.append(line)
            if line.startswith("tune: study "):
                first = time.perf_counter()
            elif line.startswith("tune: trial "):
                last = time.perf_counter()
        done.set()
        if process.wait() != 0 or first is None or last is None:
            raise SystemExit(f"tune with {workers} worker(s) failed:\n{''.join(output[-30:])}")
        stage_seconds = time.perf_counter() - started
    finally:
        for worker in started_workers:
            worker.terminate()
        for worker in started_workers:
            worker.wait(timeout=60)
    metrics = json.loads((workspace / "metrics/tune.json").read_text())
    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as api:
        study = f"tune-{tune_env['TUNE_RUN_ID']}"
        runs = api.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[study])))
    return Tuned(
        search=last - first,
        stage=stage_seconds,
        chosen=metrics["best_hyperparameters"],
        trials=metrics["trials"],
        model=_md5(workspace / "models/model.pt"),
        table=_md5(workspace / "reports/tune_trials.csv"),
        epochs=_md5(workspace / "reports/tune_epochs.csv"),
        running=sum(run.total_run_time.total_seconds() for run in runs),
        load=sum(loads) / max(len(loads), 1),
    )


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 541_909
    suffix = uuid.uuid4().hex[:8]
    prefect_db, optuna_db = f"bench_prefect_{suffix}", f"bench_optuna_{suffix}"
    port = "4392"
    env = stage_env(
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"postgresql+asyncpg://postgres@{POSTGRES}/{prefect_db}",
        PREFECT_WORKER_QUERY_SECONDS="1",
        BENCH_PORT=port,
        OPTUNA_STORAGE_URL=f"postgresql+psycopg://postgres@{POSTGRES}/{optuna_db}",
        TUNE_TRIAL_DEPLOYMENT="tune-trial/workers",
    )
    for name in (prefect_db, optuna_db):
        _psql(f"CREATE DATABASE {name}")
    try:
        with tempfile.TemporaryDirectory() as scratch, ExitStack() as cleanup:
            workspace, home = Path(scratch, "workspace"), Path(scratch, "prefect")
            workspace.mkdir()
            home.mkdir()
            scratch_copy(workspace, rows)
            params = yaml.safe_load((workspace / "params.yaml").read_text())
            params["tune"].update(TUNE)
            (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            subprocess.run([str(BIN / "dvc"), "repro", "preprocess"], cwd=workspace, env=env, check=True,
                           capture_output=True)  # fmt: skip
            server = start_server(home, env)
            cleanup.callback(server.wait, 30)
            cleanup.callback(server.terminate)
            for command in (
                ["work-pool", "create", "retail-process", "--type", "process"],
                ["--no-prompt", "deploy", "--name", "workers"],
            ):
                subprocess.run([str(BIN / "prefect"), *command], cwd=workspace, env=env, check=True,
                               capture_output=True)  # fmt: skip
            one = tune_with_workers(workspace, env, 1, home)
            two = tune_with_workers(workspace, env, 2, home)
    finally:
        for name in (prefect_db, optuna_db):
            _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    print(
        f"distributed tuning on {rows:,} synthetic rows, 2 cores: {TUNE['n_trials']} trials in batches of "
        f"{TUNE['parallel_trials']}, every training row, at most {TUNE['max_epochs']} epochs, threads 1; "
        "one prefect server and the Optuna storage on PostgreSQL"
    )
    for workers, result in ((1, one), (2, two)):
        print(
            f"  {workers} worker(s)  search {result.search:6.1f} s, whole stage {result.stage:6.1f} s; "
            f"trials Running {result.running:6.1f} s in all, {result.running / (workers * result.search):4.0%} "
            f"of the workers' time; load average {result.load:3.1f}; {result.trials}"
        )
    print("target:")
    print(f"  2 workers / 1 worker, search  {two.search / one.search:5.2f}  (<= 0.6)")
    print(f"  2 workers / 1 worker, whole stage (the final fit and baseline run once)  {two.stage / one.stage:5.2f}")
    print(
        f"  same chosen hyperparameters: {one.chosen == two.chosen}; same trials table: {one.table == two.table}; "
        f"same epochs table: {one.epochs == two.epochs}; same model file: {one.model == two.model}"
    )
    same = one.chosen == two.chosen and one.table == two.table and one.epochs == two.epochs and one.model == two.model
    save_results(
        "bench_tuning",
        f"Distributed tuning: {TUNE['n_trials']} trials in batches of {TUNE['parallel_trials']} on {rows:,} rows",
        [
            table(
                ["workers", "search (s)", "whole stage (s)", "trials Running (s)", "share of the workers' time",
                 "load average"],
                [[workers, round(r.search, 1), round(r.stage, 1), round(r.running, 1),
                  f"{r.running / (workers * r.search):.0%}", round(r.load, 1)] for workers, r in ((1, one), (2, two))],
            ),
            table(
                ["target", "measured", "ratio"],
                [
                    ["two workers' search <= 0.6 x one worker's", f"{two.search:.1f} s vs {one.search:.1f} s",
                     round(two.search / one.search, 2)],
                    ["same chosen hyperparameters, trials table, epochs table and model file",
                     "yes, all four" if same else "NO", ""],
                ],
            ),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
