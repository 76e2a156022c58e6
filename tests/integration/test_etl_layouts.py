"""etl writes the same bytes whatever the engine layout: in memory, out of core on this machine with tiny
partitions, on a Dask cluster of 2 worker processes, and of 3 with another partition count; a worker killed
mid-stage changes nothing; a cluster that cannot be reached fails in one line, at once, writing nothing. The
lineage-pipeline flow given a cluster locks the bytes a local `dvc repro` locks, and the ledger says where it ran."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from distributed import LocalCluster, WorkerPlugin

from lineage.store import Kind, LedgerStore
from tasks.data import generate_transactions
from tasks.engine import IN_MEMORY_ROWS_ENV, PARTITION_ROWS_ENV, SCHEDULER_ENV
from tasks.params import DriftInjection
from tasks.stage import EXIT_BAD_INPUT
from tests.conftest import STAGES, free_port, locked_outs, run_flow, run_module, write_params

pytestmark = pytest.mark.integration

OUTPUTS = ("data/transactions.parquet", "data/processed.parquet", "metrics/etl.json")
ROWS = 60_000
DRIFT = {"start": "2011-09-01", "price_factor": 1.5, "non_uk_share": 0.35}
OUT_OF_CORE = {IN_MEMORY_ROWS_ENV: "1", PARTITION_ROWS_ENV: "7000"}  # everything out of core, 9 partitions


def _workspace(path: Path, **data: object) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    write_params(path, data={"rows": ROWS, "inject_drift": DRIFT, **data})
    (path / "data" / "raw").mkdir(parents=True, exist_ok=True)
    return path


def _etl(workspace: Path, **env: str) -> dict[str, str]:
    """Run the stage; the md5 of each output (what dvc.lock records), and the line it printed."""
    done = run_module(workspace, "tasks.etl", **env)
    assert done.returncode == 0, done.stderr[-3000:]
    md5s = {name: hashlib.md5((workspace / name).read_bytes()).hexdigest() for name in OUTPUTS}
    return md5s | {"said": done.stdout.strip().splitlines()[-1]}


@pytest.fixture(scope="module")
def in_memory(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _etl(_workspace(tmp_path_factory.mktemp("in-memory")))


@pytest.fixture(scope="module")
def two_workers() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster


def _same(result: dict[str, str], reference: dict[str, str]) -> None:
    assert {k: result[k] for k in OUTPUTS} == {k: reference[k] for k in OUTPUTS}


def test_in_memory_run_is_in_memory(in_memory: dict[str, str]) -> None:
    assert "out of core" not in in_memory["said"], in_memory["said"]
    assert "cluster" not in in_memory["said"], in_memory["said"]


def test_out_of_core_on_this_machine_gives_the_in_memory_bytes(in_memory: dict[str, str], tmp_path: Path) -> None:
    result = _etl(_workspace(tmp_path), **OUT_OF_CORE)
    assert result["said"].endswith("on this machine, out of core"), result["said"]
    _same(result, in_memory)


def test_two_worker_cluster_gives_the_in_memory_bytes(
    in_memory: dict[str, str], two_workers: LocalCluster, tmp_path: Path
) -> None:
    result = _etl(_workspace(tmp_path), **{SCHEDULER_ENV: two_workers.scheduler_address})
    assert f"on the Dask cluster at {two_workers.scheduler_address} (2 workers)" in result["said"], result["said"]
    _same(result, in_memory)


def test_three_worker_cluster_with_other_partitions_gives_the_in_memory_bytes(
    in_memory: dict[str, str], tmp_path: Path
) -> None:
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        result = _etl(_workspace(tmp_path), **{SCHEDULER_ENV: cluster.scheduler_address, PARTITION_ROWS_ENV: "13000"})
    assert "(3 workers)" in result["said"], result["said"]
    _same(result, in_memory)


class KillOnce(WorkerPlugin):
    """Ends its worker's process as the worker starts its `after`-th task, once (a marker file says so)."""

    def __init__(self, marker: str, after: int) -> None:
        self.marker, self.after, self.started = marker, after, 0

    def transition(self, key: object, start: str, finish: str, **kwargs: object) -> None:
        if finish != "executing" or os.path.exists(self.marker):
            return
        self.started += 1
        if self.started == self.after:
            Path(self.marker).write_text(str(key))
            os._exit(1)  # as a machine lost or an OOM kill: no goodbye to the scheduler


def test_a_worker_killed_mid_stage_is_replaced_and_the_bytes_hold(in_memory: dict[str, str], tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        cluster.get_client().register_plugin(KillOnce(str(marker), after=6))
        result = _etl(_workspace(tmp_path / "w"), **{SCHEDULER_ENV: cluster.scheduler_address, **OUT_OF_CORE})
    assert marker.exists(), "no worker was killed: the test proved nothing"
    _same(result, in_memory)


def test_an_unreachable_cluster_fails_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path)
    address = f"tcp://127.0.0.1:{free_port()}"
    done = run_module(
        workspace, "tasks.etl", **{SCHEDULER_ENV: address, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}
    )
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    expected = f"etl: error: environment: {SCHEDULER_ENV}: cannot reach the Dask scheduler at {address}: "
    assert lines[0].startswith(expected), lines[0]
    assert not any((workspace / name).exists() for name in OUTPUTS[1:])


@pytest.mark.parametrize(("name", "value"), [(PARTITION_ROWS_ENV, "lots"), (IN_MEMORY_ROWS_ENV, "0")])
def test_a_bad_layout_setting_is_one_line(name: str, value: str, tmp_path: Path) -> None:
    done = run_module(_workspace(tmp_path), "tasks.etl", **{name: value})
    assert done.returncode == EXIT_BAD_INPUT
    assert done.stderr.strip() == f"etl: error: environment: {name}: '{value}' is not a positive whole number of rows"


def test_a_parquet_source_out_of_core_gives_the_in_memory_bytes(tmp_path: Path) -> None:
    """A real source read a row group at a time (seven of them), one product kept (data.stockcode)."""
    frame = generate_transactions(40_000, seed=9, drift=DriftInjection())
    stockcode = frame["StockCode"].value_counts().index[0]
    results = []
    for name, env in (("memory", {}), ("out-of-core", OUT_OF_CORE)):
        workspace = _workspace(tmp_path / name, source="data/raw/sales.parquet", stockcode=stockcode)
        frame.to_parquet(workspace / "data/raw/sales.parquet", row_group_size=6000)
        results.append(_etl(workspace, **env))
        metrics = json.loads((workspace / "metrics/etl.json").read_text())
        assert metrics["rows"]["read"] == 40_000
        assert 0 < metrics["rows"]["written"] < 5000, metrics
        assert set(pd.read_parquet(workspace / "data/processed.parquet")["stock_code"]) == {stockcode}
    _same(results[1], results[0])


def test_a_bad_row_out_of_core_is_one_line_naming_the_column(tmp_path: Path) -> None:
    frame = generate_transactions(20_000, seed=9, drift=DriftInjection())
    frame["UnitPrice"] = frame["UnitPrice"].astype(str)  # as an export that wrote prices as text
    frame.loc[15_000, "UnitPrice"] = "free"
    workspace = _workspace(tmp_path, source="data/raw/sales.parquet")
    frame.to_parquet(workspace / "data/raw/sales.parquet", row_group_size=6000)
    done = run_module(workspace, "tasks.etl", **OUT_OF_CORE)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("etl: error: data/raw/sales.parquet: column 'UnitPrice'"), line
    assert not any((workspace / name).exists() for name in OUTPUTS)


def test_unknown_stockcode_out_of_core_is_one_line(tmp_path: Path) -> None:
    done = run_module(_workspace(tmp_path, stockcode="99999Z"), "tasks.etl", **OUT_OF_CORE)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert done.stderr.strip() == "etl: error: params.yaml: data.stockcode: '99999Z' has no sales rows in synthetic"
    assert not (tmp_path / "data/processed.parquet").exists()


def test_the_in_memory_path_imports_no_dask() -> None:
    """Importing the stage and its out-of-core half loads no Dask: the 1x run pays nothing for it."""
    probe = "import sys, tasks.etl, tasks.etl_out_of_core; print(sorted({m.split('.')[0] for m in sys.modules}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "'dask'" not in done.stdout
    assert "'distributed'" not in done.stdout


def test_the_flow_on_a_cluster_locks_what_a_local_run_locks_and_records_where_it_ran(
    harness: None,
    built: tuple[Path, str],
    built_copy: Path,
    two_workers: LocalCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every stage runs again, etl on the cluster: no lock entries, and no run cache to restore them from.
    (built_copy / "dvc.lock").unlink()
    shutil.rmtree(built_copy / ".dvc/cache/runs")
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")
    unreachable = f"tcp://127.0.0.1:{free_port()}"
    refused, attempts = run_flow(built_copy, monkeypatch, dask_scheduler=unreachable)
    assert refused.is_failed()
    assert refused.message.startswith(
        f"numeric_platform: error: environment: {SCHEDULER_ENV}: cannot reach the Dask scheduler at {unreachable}: "
    ), refused.message
    assert "\n" not in refused.message
    assert attempts["numeric-platform"] == 1  # refused, never retried
    assert not set(STAGES) & set(attempts)  # no stage started

    address = two_workers.scheduler_address
    scheduler = two_workers.scheduler
    assert scheduler is not None
    before = scheduler.transition_counter
    ran, attempts = run_flow(built_copy, monkeypatch, dask_scheduler=address)
    assert ran.is_completed(), ran.message
    assert scheduler.transition_counter > before + 100  # etl's tasks went through the cluster
    assert set(STAGES) <= set(attempts)
    assert locked_outs(built_copy) == locked_outs(built[0])
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        (platform,) = store.find(Kind.ARTIFACT, "Platform")
    facts = platform.properties  # type: ignore[union-attr]
    assert (facts["dask_scheduler"], facts["dask_workers"]) == (address, "2")
    assert f"dask {facts['version.dask']}" in str(facts["dask_worker_versions"])
