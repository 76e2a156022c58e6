"""The trial runner the tune stage loads (entry point `prefect` of `retail_lineage.trial_runners`, see
pyproject.toml) when TUNE_TRIAL_DEPLOYMENT names a `tune-trial` deployment: each trial of a batch becomes a
flow run of it, on whichever Prefect worker takes it, and the batch ends when all have finished.

The stage executes this module, so dvc.yaml declares it as a dependency of tune.
"""

from __future__ import annotations

import os
import time
from typing import cast
from uuid import UUID

import optuna
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from tasks.tune import TrialJob, TrialRunner
from tasks.tune_settings import OPTUNA_STORAGE_BLOCK_ENV, TUNE_FEATURES_REMOTE_ENV


def prefect_runner(deployment: str, poll_seconds: float = 1.0, report_every: float = 60.0) -> TrialRunner:
    """A TrialRunner that runs each trial of a batch as a flow run of `deployment` (a `tune-trial`
    deployment) and returns once all have finished: the batch barrier. A trial that did not complete
    fails the batch, naming the trial, its flow run and why."""

    def run(_study: optuna.Study, job: TrialJob, numbers: list[int]) -> None:
        common = {
            "study_name": job.study_name,
            "seed": job.seed,
            "tune_params": job.params.model_dump(mode="json"),
            "features": job.features,
            "storage_block": os.environ.get(OPTUNA_STORAGE_BLOCK_ENV) or None,
            "remote": os.environ.get(TUNE_FEATURES_REMOTE_ENV) or None,
        }
        submitted: dict[UUID, int] = {}
        for number in numbers:
            # Prefect's dispatcher runs it synchronously here, so it returns the FlowRun itself.
            created = cast(FlowRun, run_deployment(
                deployment, parameters={**common, "trial_number": number}, timeout=0, as_subflow=False,
                flow_run_name=f"{job.study_name}-trial-{number}", tags=[job.study_name],
            ))  # fmt: skip
            submitted[created.id] = number
        _wait(submitted, deployment, poll_seconds, report_every)

    return run


def _wait(submitted: dict[UUID, int], deployment: str, poll_seconds: float, report_every: float) -> None:
    """Poll the API until every submitted flow run is final; raise if any did not complete."""
    started = last_report = time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(submitted))))
            pending = [r for r in runs if not (r.state and r.state.is_final())]
            if not pending and len(runs) == len(submitted):
                break
            if time.monotonic() - last_report >= report_every:
                last_report = time.monotonic()
                waiting = ", ".join(f"{submitted[r.id]} ({r.state.name if r.state else 'new'})" for r in pending)
                print(f"tune: after {last_report - started:.0f} s still waiting on {deployment} for trials {waiting}")
            time.sleep(poll_seconds)
    failed = sorted((r for r in runs if r.state and not r.state.is_completed()), key=lambda r: submitted[r.id])
    if failed:
        first = failed[0]
        number = submitted[first.id]
        assert first.state is not None
        more = f"; {len(failed) - 1} more trial(s) of the batch failed" if len(failed) > 1 else ""
        why = first.state.message or "no message"
        raise RuntimeError(f"tune: trial {number} (flow run {first.name}) ended {first.state.name}: {why}{more}")
