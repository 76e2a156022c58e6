"""Faults survived: a run killed mid-tuning resumes to the same bytes; two runs on one workspace do not
mix; S3 or the Prefect server going away is survived or reported; a ledger that cannot be opened or is
locked stops the run before any work, and nothing is promoted without its lineage."""

from __future__ import annotations

import ast
import datetime as dt
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.settings import PREFECT_API_URL, temporary_settings

from lineage import registry
from lineage.store import Kind, LedgerStore
from tests.conftest import (
    SwitchableProxy,
    locked_outs,
    prefect_server,
    prefect_server_env,
    run,
    run_flow,
    set_params,
    start_prefect_server,
    stop_prefect_server,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One real `prefect server` for the flows these tests run as separate processes; yields their environment."""
    with prefect_server(tmp_path_factory.mktemp("prefect")) as env:
        yield env


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
    api_env: dict[str, str], built: tuple[Path, str], built_copy: Path, tmp_path: Path
) -> None:
    # The same change in an untouched copy, run to the end: the hashes the resumed run must reach.
    reference = Path(shutil.copytree(built[0], tmp_path / "reference", symlinks=True))
    for clone in (built_copy, reference):
        set_params(clone, tune={"n_trials": 4})
    run(reference, "dvc", "repro")
    lock_before = (built_copy / "dvc.lock").read_bytes()

    flow = _start_flow(built_copy, api_env)
    seen = _read_until(flow, "tune: trial 1 of 4")
    os.killpg(flow.pid, signal.SIGKILL)  # the whole tree: flow, dvc, the stage
    flow.wait(timeout=60)
    assert flow.returncode == -signal.SIGKILL, "".join(seen[-20:])

    # Nothing partial was recorded: dvc.lock as before, no ledger record of the killed run.
    assert (built_copy / "dvc.lock").read_bytes() == lock_before
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        assert store.head().count == 0
    assert yaml.safe_load((built_copy / "params.yaml").read_text())["tune"]["n_trials"] == 4

    resumed = subprocess.run(
        [sys.executable, "-m", "flows.pipeline"], cwd=built_copy, env=api_env,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Running stage 'etl'" not in resumed.stdout + resumed.stderr  # finished stages are skipped
    assert locked_outs(built_copy) == locked_outs(reference)
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        assert store.verify().ok
        version = registry.production(store)
        assert version is not None
        assert version.properties["model_md5"] == locked_outs(reference)["models/model.pt"]


def _start_flow(workspace: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.pipeline", *args], cwd=workspace, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def final_message(output: str) -> str:
    """The message of the flow run's final state, as its log prints it."""
    found = re.search(r"""Flow run '.*' - Finished in state \w+\(('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\)""", output)
    assert found, output[-3000:]
    return str(ast.literal_eval(found.group(1)))  # the log shows the message's repr


def _read_until(process: subprocess.Popen[str], marker: str) -> list[str]:
    """Lines of `process` up to and including the first containing `marker`."""
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return seen
    raise AssertionError(f"{marker!r} never appeared:\n{''.join(seen[-30:])}")


def test_two_runs_by_hand_on_one_workspace_never_overlap(api_env: dict[str, str], built_copy: Path) -> None:
    set_params(built_copy, tune={"n_trials": 6})  # tune onward reruns: the first run holds the workspace a while
    first = _start_flow(built_copy, api_env)
    _read_until(first, "stages to rerun: ")
    impatient = subprocess.run(
        [sys.executable, "-m", "flows.pipeline", "--wait-for-workspace", "0"],
        cwd=built_copy, env=api_env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert first.poll() is None, "the first run ended before the second was refused: the test proves nothing"
    patient = _start_flow(built_copy, api_env, "--wait-for-workspace", "600")
    first_output = first.communicate(timeout=600)[0]
    patient_output = patient.communicate(timeout=600)[0]

    assert first.returncode == 0, first_output[-3000:]
    assert impatient.returncode == 1
    stopped = final_message(impatient.stdout + impatient.stderr)
    assert stopped.startswith(f"workspace {built_copy} is in use by flow run ")
    assert stopped.endswith("waited 0 s; nothing was run (try again when it finishes, or raise wait_for_workspace)")
    assert "Running stage" not in impatient.stdout + impatient.stderr
    assert patient.returncode == 0, patient_output[-3000:]
    assert "workspace in use by flow run" in patient_output  # it waited for the first run
    assert "Running stage" not in patient_output  # then found everything up to date
    assert "Data and pipelines are up to date" in run(built_copy, "dvc", "status")  # dvc.lock is valid
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        assert store.verify().ok
        runs = store.find(Kind.CONTEXT, "PipelineRun")
        assert len(runs) == 2  # the first and the patient run; the refused one recorded nothing


def test_a_run_waits_a_bounded_time_for_dvc_s_lock(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dvc.repo import Repo

    set_params(built_copy, fairness={"mod_threshold": 5.0})
    with Repo(str(built_copy)) as repo:
        repo.lock.lock()  # another DVC process (`dvc repro` by hand, say) holds the repository throughout
        try:
            state, attempts = run_flow(built_copy, monkeypatch)
        finally:
            repo.lock.unlock()
    assert state.is_failed()
    assert state.message == (
        "dvc update/pull with remote 'local' failed: another DVC process holds this repository's lock (.dvc/tmp/lock)"
    )
    assert attempts["prepare-workspace"] == 4  # retried with backoff, then given up
    assert set(attempts) == {name for name in attempts if name.startswith(("prepare-workspace", "record-lineage"))}

    released: list[dt.datetime] = []

    def release() -> None:
        repo.lock.unlock()
        released.append(dt.datetime.now(dt.UTC))

    with Repo(str(built_copy)) as repo:
        repo.lock.lock()
        threading.Timer(4, release).start()  # the other process finishes while the run waits
        state, attempts = run_flow(built_copy, monkeypatch)
    assert state.is_completed(), state.message
    assert attempts["fairness"] == 1
    with get_client(sync_client=True) as api:
        task_runs = api.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    (prepared,) = [task_run for task_run in task_runs if task_run.name.startswith("prepare-workspace")]
    assert prepared.end_time is not None
    assert prepared.end_time >= released[0]  # it waited for the lock, then went on


def test_s3_unreachable_during_pull_and_push_then_a_later_run_completes(
    api_env: dict[str, str], s3_server: str, built_copy: Path
) -> None:
    secret = "never-printed-" + "0123456789abcdef" * 2
    proxy = SwitchableProxy(int(s3_server.rsplit(":", 1)[1]))
    proxy.up()
    boto3.client(
        "s3", endpoint_url=s3_server, aws_access_key_id="testing", aws_secret_access_key=secret, region_name="us-east-1"
    ).create_bucket(Bucket="lineage-flaky")
    run(built_copy, "dvc", "remote", "modify", "--local", "s3", "url", "s3://lineage-flaky/dvc")
    run(built_copy, "dvc", "remote", "modify", "--local", "s3", "endpointurl", f"http://127.0.0.1:{proxy.port}")
    env = {
        **api_env,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",  # Prefect's retries, not botocore's, do the waiting
    }  # fmt: skip
    flow = [sys.executable, "-m", "flows.pipeline", "--remote", "s3"]

    def run_flow_process() -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            flow, cwd=built_copy, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
        )
        assert secret not in done.stdout  # credentials are never printed
        return done

    assert run_flow_process().returncode == 0  # a production model, its outputs in the bucket
    ledger = f"sqlite:///{built_copy / 'lineage.db'}"
    with LedgerStore(ledger) as store:
        head, production = store.head(), registry.production(store)

    proxy.down()  # S3 unreachable for the whole pull
    set_params(built_copy, fairness={"mod_threshold": 5.0})
    pulled = run_flow_process()
    assert pulled.returncode == 1
    failure = final_message(pulled.stdout)
    assert failure.startswith("dvc update/pull with remote 's3' failed: ")
    assert "Task run 'prepare-workspace' - Task run failed" in pulled.stdout
    assert pulled.stdout.count("Retries are exhausted") == 1  # retried with backoff, then given up
    assert "Running stage" not in pulled.stdout

    proxy.up()  # reachable for the pull and the stage; gone again before the push
    pushing = _start_flow(built_copy, env, "--remote", "s3")
    _read_until(pushing, "Running stage 'fairness'")
    proxy.down()
    output = pushing.communicate(timeout=300)[0]
    assert secret not in output
    assert pushing.returncode == 1
    assert final_message(output).startswith("push failed, the model is not promoted: dvc push to remote 's3' failed: ")
    with LedgerStore(ledger) as store:
        assert store.verify(head).ok  # earlier records untouched; the failed runs appended after them
        assert registry.production(store) == production

    proxy.up()
    assert run_flow_process().returncode == 0
    status = subprocess.run(
        ["dvc", "status", "--cloud", "--remote", "s3"], cwd=built_copy, env=env, capture_output=True, text=True
    )
    assert "Cache and remote 's3' are in sync" in status.stdout, status.stdout + status.stderr
    proxy.down()


def test_a_prefect_server_restart_during_a_run_is_survived(built_copy: Path, tmp_path: Path) -> None:
    (tmp_path / "prefect").mkdir()
    env = prefect_server_env(tmp_path / "prefect")
    server = start_prefect_server(env)
    try:
        set_params(built_copy, tune={"n_trials": 4})
        flow = _start_flow(built_copy, env)
        _read_until(flow, "Running stage 'tune'")
        stop_prefect_server(server)  # the API goes away mid-stage ...
        server = start_prefect_server(env)  # ... and comes back on the same port and database
        output = flow.communicate(timeout=600)[0]
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            with get_client(sync_client=True) as api:
                (interrupted,) = api.read_flow_runs()
            assert interrupted.state is not None
            # Completed, or marked Crashed: never left Running for ever.
            assert interrupted.state.type.value in ("COMPLETED", "CRASHED"), output[-3000:]
            if interrupted.state.type.value == "COMPLETED":
                assert flow.returncode == 0, output[-3000:]

            rerun = subprocess.run(
                [sys.executable, "-m", "flows.pipeline"], cwd=built_copy, env=env, capture_output=True, text=True
            )
            assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
            with get_client(sync_client=True) as api:
                states = {run.id: run.state.type.value for run in api.read_flow_runs() if run.state}
            assert len(states) == 2
            assert states.pop(interrupted.id) == interrupted.state.type.value
            assert list(states.values()) == ["COMPLETED"]
    finally:
        stop_prefect_server(server)
    assert "Data and pipelines are up to date" in run(built_copy, "dvc", "status")
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        assert store.verify().ok
        version = registry.production(store)
        assert version is not None
        assert version.properties["model_md5"] == locked_outs(built_copy)["models/model.pt"]
