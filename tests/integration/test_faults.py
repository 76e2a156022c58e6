"""Faults survived: a run killed mid-tuning resumes to the same bytes; a ledger that cannot be opened
or is locked stops the run before any work, and nothing is promoted without its lineage."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lineage import registry
from lineage.store import LedgerStore
from tests.conftest import locked_outs, run, run_flow, set_params, stage_env

pytestmark = pytest.mark.integration


def test_an_unreachable_ledger_stops_the_run_before_any_work(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINEAGE_DB_URL", "postgresql+psycopg://lineage:hunter2@127.0.0.1:1/lineage")
    lock_before = (built_copy / "dvc.lock").read_bytes()
    state, attempts = run_flow(built_copy, monkeypatch)
    assert state.is_failed()
    assert state.message.startswith("cannot open the lineage ledger at postgresql+psycopg://lineage:***@127.0.0.1:1/")
    assert "hunter2" not in state.message
    assert attempts == {}  # no stage, no push: nothing ran
    assert (built_copy / "dvc.lock").read_bytes() == lock_before


def test_a_locked_ledger_stops_the_run_and_changes_nothing(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = run_flow(built_copy, monkeypatch)
    assert first.is_completed(), first.message
    ledger = built_copy / "lineage.db"
    with LedgerStore(f"sqlite:///{ledger}") as store:
        head, production = store.head(), registry.production(store)
    assert production is not None

    set_params(built_copy, fairness={"mod_threshold": 5.0})  # work the run would do, were it allowed
    holder = sqlite3.connect(ledger, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the ledger
    try:
        state, attempts = run_flow(built_copy, monkeypatch)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert state.is_failed()
    assert state.message == "cannot open the lineage ledger at sqlite:///lineage.db: database is locked"
    assert attempts == {}
    with LedgerStore(f"sqlite:///{ledger}") as store:
        assert store.head() == head
        assert registry.production(store) == production
        assert store.verify().ok


def test_a_run_killed_during_tuning_resumes_to_the_same_hashes(
    built: tuple[Path, str], built_copy: Path, tmp_path: Path
) -> None:
    # The same change in an untouched copy, run to the end: the hashes the resumed run must reach.
    reference = Path(shutil.copytree(built[0], tmp_path / "reference", symlinks=True))
    for clone in (built_copy, reference):
        set_params(clone, tune={"n_trials": 4})
    run(reference, "dvc", "repro")
    lock_before = (built_copy / "dvc.lock").read_bytes()

    env = stage_env(PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    flow = subprocess.Popen(
        [sys.executable, "-m", "flows.pipeline"], cwd=built_copy, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    assert flow.stdout is not None
    seen = []
    for line in flow.stdout:
        seen.append(line)
        if "tune: trial 1 of 4" in line:
            os.killpg(flow.pid, signal.SIGKILL)  # the whole tree: flow, dvc, the stage
            break
    flow.wait(timeout=60)
    assert flow.returncode == -signal.SIGKILL, "".join(seen[-20:])

    # Nothing partial was recorded: dvc.lock as before, no ledger record of the killed run.
    assert (built_copy / "dvc.lock").read_bytes() == lock_before
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        assert store.head().count == 0
    assert yaml.safe_load((built_copy / "params.yaml").read_text())["tune"]["n_trials"] == 4

    resumed = subprocess.run(
        [sys.executable, "-m", "flows.pipeline"], cwd=built_copy, env=env, capture_output=True, text=True, check=False
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Running stage 'etl'" not in resumed.stdout + resumed.stderr  # finished stages are skipped
    assert locked_outs(built_copy) == locked_outs(reference)
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        assert store.verify().ok
        version = registry.production(store)
        assert version is not None
        assert version.properties["model_md5"] == locked_outs(reference)["models/model.pt"]
