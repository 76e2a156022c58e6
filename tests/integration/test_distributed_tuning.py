"""Distributed tuning end to end: the lineage-pipeline flow on a `prefect server` backed by PostgreSQL (the
ledger and the Optuna storage there too) runs the tune stage's trials as flow runs of `tune-trial/workers`
on two process workers, and produces the bytes an in-process `dvc repro tune` produces."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterTags
from prefect.settings import PREFECT_API_URL, temporary_settings

from deployments.bootstrap import ensure_work_pools
from tests.conftest import (
    POSTGRES_ASYNCPG,
    POSTGRES_PSYCOPG,
    VENV_BIN,
    locked_outs,
    postgres_database,
    prefect,
    prefect_server,
    set_params,
    stage_env,
)

pytestmark = pytest.mark.integration

TUNE: dict[str, object] = {"n_trials": 4, "parallel_trials": 2}  # two batches of two: each batch can use both workers
TUNE_OUTS = ("models/model.pt", "metrics/tune.json", "reports/tune_trials.csv", "reports/tune_epochs.csv")
WORKERS = ("tune-worker-a", "tune-worker-b")


def _worker(name: str, checkout: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A process worker taking one flow run at a time, running it in `checkout` (where it was deployed)."""
    return subprocess.Popen(
        [str(VENV_BIN / "prefect"), "worker", "start", "--pool", "retail-process", "--limit", "1", "--name", name],
        cwd=checkout, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_trials_on_two_workers_give_the_in_process_bytes(
    built: tuple[Path, str], built_copy: Path, tmp_path: Path
) -> None:
    reference = Path(shutil.copytree(built[0], tmp_path / "reference", symlinks=True))
    for workspace in (built_copy, reference):
        set_params(workspace, tune=TUNE)
    # In process (no worker processes either), with an in-memory study: no server, no storage. Runs while the
    # server starts.
    in_process = subprocess.Popen(
        [str(VENV_BIN / "dvc"), "repro", "tune"], cwd=reference, env=stage_env(TUNE_WORKERS="1"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    home = tmp_path / "prefect-home"
    home.mkdir()
    with (
        postgres_database("tune_prefect") as prefect_db,
        postgres_database("tune_optuna") as optuna_db,
        prefect_server(
            home,
            PREFECT_SERVER_DATABASE_CONNECTION_URL=POSTGRES_ASYNCPG.format(database=prefect_db),
            LINEAGE_DB_URL=POSTGRES_PSYCOPG.format(database=prefect_db),
        ) as env,
    ):
        storage = POSTGRES_PSYCOPG.format(database=optuna_db)
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            ensure_work_pools()  # deployments/bootstrap.py: retail-process (and retail-docker)
        prefect(env, built_copy, "--no-prompt", "deploy", "--name", "workers")
        # The storage URL as production keeps it, in a Secret block: neither workers nor flow get it otherwise.
        save = f"from prefect.blocks.system import Secret; Secret(value={storage!r}).save('optuna-storage')"
        subprocess.run([sys.executable, "-c", save], cwd=built_copy, env=env, check=True, capture_output=True)
        workers = [_worker(name, built_copy, env, tmp_path / f"{name}.log") for name in WORKERS]
        try:
            flow = subprocess.run(
                [sys.executable, "-m", "flows.pipeline", "--tune-trial-deployment", "tune-trial/workers",
                 "--optuna-storage-block", "optuna-storage"],
                cwd=built_copy, env=env, capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
        finally:
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=30)
        output = flow.stdout + flow.stderr
        assert flow.returncode == 0, output[-4000:]
        assert "share-tuning-inputs" in output
        assert "trials run by deployment tune-trial/workers" in output

        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as api:
            (pipeline_run,) = api.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["lineage-pipeline"])))
            study_name = f"tune-{pipeline_run.id}"  # one study per run, keyed by the flow run id
            trial_runs = api.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[study_name])))
        assert sorted(r.name for r in trial_runs) == [f"{study_name}-trial-{n}" for n in range(4)]
        assert all(r.state is not None and r.state.is_completed() for r in trial_runs)

        study = optuna.load_study(study_name=study_name, storage=storage)
        assert len(study.trials) == 4
        assert all(t.state.is_finished() for t in study.trials)
        assert {t.user_attrs["outcome"]["worker"] for t in study.trials} == set(WORKERS)  # both workers ran trials

    reference_output = in_process.communicate(timeout=600)[0]
    assert in_process.returncode == 0, reference_output[-3000:]
    assert "tune: study tune-local-" in reference_output
    assert "trials run in this process" in reference_output
    distributed, local = locked_outs(built_copy), locked_outs(reference)
    assert {out: distributed[out] for out in TUNE_OUTS} == {out: local[out] for out in TUNE_OUTS}
    chosen = json.loads((built_copy / "metrics/tune.json").read_text())["best_hyperparameters"]
    assert chosen == json.loads((reference / "metrics/tune.json").read_text())["best_hyperparameters"]
