"""The `lineage-pipeline` flow: each DVC stage as its own retried Prefect task, gates enforced, results pushed.

DVC owns the graph and the versions: the stage order comes from DVC's own graph of dvc.yaml, and
each stage runs as `dvc repro --single-item <stage>`, so DVC skips what has not changed and writes
dvc.lock. Prefect owns when, retries, logs and the artifacts people read in the UI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from typing import Any, TypeVar

from openlineage.client.event_v2 import RunState
from prefect import allow_failure, flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from common.redact import redact_text
from flows.configuration import deployment_configuration
from flows.dvc_ops import Pushed, prepare_workspace, push, run_stage, share_tuning_inputs
from flows.live_lineage import LiveLineage
from flows.publish import publish
from flows.record import check_signing, publish_ledger_head, record_lineage, run_info
from flows.retry import GATE_FAILED
from flows.settings import RunSettings, command_line_run, resolve_settings
from flows.summary import read_metrics
from flows.workspace import NotStarted, check_before_work, numeric_platform, workspace_lock
from gates.table import Overrides, overrides, stop_reason
from lineage.entities import ActionStatus
from lineage.objects import configure_s3_remote
from lineage.recorder import StageRun

T = TypeVar("T")


class RunStopped(Exception):
    """Why a run ended Failed when the pipeline stopped it on purpose: a gate's verdict, bad input, a push
    that failed. Its state says why in one line; unlike a crash, it is logged without a traceback."""


def stopped(reason: str) -> State[Any]:
    reason = redact_text(reason)  # the run's final message, in the UI and every log
    return Failed(message=reason, data=RunStopped(reason))


class _NoTracebackForStoppedRuns(logging.Filter):
    """Prefect logs every Failed flow run it executes for a deployment as an "unexpected exception", with
    the traceback of the state's exception; for a RunStopped, the state's message has said all there is."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], RunStopped))


logging.getLogger("prefect.flow_runs").addFilter(_NoTracebackForStoppedRuns())


@flow(name="lineage-pipeline", log_prints=True)
def lineage_pipeline(
    remote: str | None = None,
    aws_credentials_block: str | None = None,
    lineage_db_block: str | None = None,
    tune_trial_deployment: str | None = None,
    optuna_storage_block: str | None = None,
    wait_for_workspace: float = 600.0,
    signing_key_block: str | None = None,
    openlineage_api_key_block: str | None = None,
    dask_scheduler: str | None = None,
) -> State[Any]:
    """Weekly retrain: pull, run each DVC stage with its gates, push outputs and the run record, record
    the run's lineage and promote the model only if every gate passed. Each stage's OpenLineage events
    go out as it runs where a transport is configured (OPENLINEAGE_URL, openlineage.yml). `dask_scheduler`: the
    Dask cluster etl runs on (else DASK_SCHEDULER_ADDRESS, else this machine; docs/scaling.md)."""
    started = _now()
    configuration = deployment_configuration()  # as the server holds it now, for the ledger's history
    settings = resolve_settings(
        remote, aws_credentials_block, lineage_db_block, tune_trial_deployment, optuna_storage_block, dask_scheduler
    )
    try:
        with workspace_lock(wait_for_workspace):
            stages, params = check_before_work(settings.ledger_url)
            allowed = overrides(params)
            check_signing(settings.ledger_url, signing_key_block)
            configure_s3_remote()
            live = LiveLineage.start(openlineage_api_key_block, settings.remote)
            prepared = prepare_workspace(settings.remote, return_state=True)
            changed, failure = _settle(prepared)
            last: State[Any] = prepared
            platform = None
            if changed and not failure:  # stages will compute: what their numbers can depend on, for the ledger
                probed = numeric_platform(settings.stage_env(), return_state=True, wait_for=[prepared])
                platform, failure = _settle(probed)
                last = probed
            try:
                runs, last, failure = run_stages(stages, changed or set(), settings, allowed, failure, last, live)
            finally:
                live.close()
            pushed, last, failure = push_outputs(runs, settings.remote, failure, last)
            info = run_info(runs, started, failure, pushed, allowed, platform, configuration)
            # After a failure too: allow_failure keeps the edge in the run graph and runs the task anyway.
            recorded = record_lineage(
                info, settings.ledger_url, signing_key_block, return_state=True, wait_for=[allow_failure(last)]
            )
            if pushed:
                publish_ledger_head(settings.remote, recorded.result(), wait_for=[recorded])
            publish(runs, failure, pushed, recorded.result(), settings.ledger_url, allowed)
    except NotStarted as error:  # busy, bad params, a broken dvc.yaml, a ledger that will not open
        return stopped(str(error))
    if failure:
        return stopped(failure)
    ran = [run.stage for run in runs if run.status == ActionStatus.COMPLETED]
    return Completed(message=f"ran {', '.join(ran) or 'nothing (all up to date)'}; every gate passed")


def run_stages(
    stages: list[str],
    changed: set[str],
    settings: RunSettings,
    allowed: Overrides,
    failure: str | None,
    upstream: State[Any],
    live: LiveLineage,
) -> tuple[list[StageRun], State[Any], str | None]:
    """Run the stages in order, each task waiting on the one before (the run graph is the pipeline), until
    one fails or a gate stops the run (or, given a `failure`, none); after a gate's stage, its verdict and
    override (`allowed`) decide (gates/table.py).

    `changed`: the stages `dvc status` named before the run; `upstream`: the task the first stage waits
    on; `live`: where each stage's OpenLineage START and COMPLETE or FAIL go as it runs. Returns each
    stage as the ledger records it (NotRun after a stop), the last task's state, and why the run
    stopped, if it did.
    """
    if not failure:
        get_run_logger().info("stages to rerun: %s", ", ".join(s for s in stages if s in changed) or "none")
    runs: list[StageRun] = []
    upstream_ran = False
    for stage in stages:
        if failure:
            runs.append(StageRun(stage, ActionStatus.NOT_RUN))
            continue
        start = _now()
        features_remote = None
        if stage == "tune" and (upstream_ran or stage in changed) and settings.tune_trial_deployment:
            upstream = share_tuning_inputs(settings.remote, return_state=True, wait_for=[upstream])
            features_remote, failure = _settle(upstream)
            if failure:
                failure = f"tune: could not share its inputs with trial workers: {failure}"
                runs.append(StageRun(stage, ActionStatus.NOT_RUN))
                continue
        live.stage(RunState.START, stage, start)
        task = run_stage.with_options(name=stage, task_run_name=stage)
        env = settings.stage_env(features_remote)
        state: State[Any] = task(
            stage, env, stage in changed, upstream_ran, allowed, return_state=True, wait_for=[upstream]
        )
        upstream = state
        task_run_id = str(state.state_details.task_run_id) if state.state_details.task_run_id else None
        ran: bool | None
        if state.name == GATE_FAILED:  # the stage ran or was skipped; its verdict stops the run below
            ran = state.result(raise_on_failure=False) is True
        else:  # a Rejected stage, or a transient failure that outlived its retries
            ran, failure = _settle(state)
        status = ActionStatus.FAILED if failure else ActionStatus.COMPLETED if ran else ActionStatus.SKIPPED
        runs.append(StageRun(stage, status, start, end := _now(), task_run_id))
        live.stage(RunState.FAIL if failure else RunState.COMPLETE, stage, end, failure, status == ActionStatus.SKIPPED)
        upstream_ran = upstream_ran or bool(ran)
        failure = failure or stop_reason(stage, read_metrics([stage])[stage], allowed)
    return runs, upstream, failure


def push_outputs(
    runs: list[StageRun], remote: str | None, failure: str | None, upstream: State[Any]
) -> tuple[Pushed | None, State[Any], str | None]:
    """Push what ran, verdicts included, even after a failure; a failed push keeps the model from promotion."""
    if all(run.status == ActionStatus.NOT_RUN for run in runs):
        return None, upstream, failure  # preparing failed: nothing to push
    state = push(remote, return_state=True, wait_for=[allow_failure(upstream)])
    pushed, push_failure = _settle(state)
    if push_failure:
        failure = failure or f"push failed, the model is not promoted: {push_failure}"
    return pushed, state, failure


def _settle(state: State[T]) -> tuple[T, None] | tuple[None, str]:
    """A task's result, or why it failed after its retries: the run goes on to record what happened."""
    try:
        return state.result(), None
    except Exception as error:
        return None, redact_text(str(error))  # it goes to the ledger, OpenLineage and the run's state


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)  # run times go to the ledger only, never into versioned outputs


if __name__ == "__main__":
    # `python -m flows.pipeline [--remote NAME]`: one run on this checkout. Without PREFECT_API_URL,
    # Prefect starts a temporary local API for the run; with it, the run shows in that server's UI.
    parser = argparse.ArgumentParser(description=lineage_pipeline.description)
    parser.add_argument("--remote", default=None, help="DVC remote to pull from and push to (default: the default)")
    parser.add_argument("--aws-credentials-block", default=None, help="prefect-aws AwsCredentials block name")
    parser.add_argument("--lineage-db-block", default=None, help="Prefect Secret block holding LINEAGE_DB_URL")
    parser.add_argument("--tune-trial-deployment", default=None, help="run tuning trials on this deployment's workers")
    parser.add_argument("--optuna-storage-block", default=None, help="Prefect Secret block holding OPTUNA_STORAGE_URL")
    parser.add_argument("--signing-key-block", default=None, help="Prefect Secret block holding the pipeline's SSH key")
    parser.add_argument(
        "--openlineage-api-key-block", default=None, help="Prefect Secret block holding the OpenLineage API key"
    )
    parser.add_argument("--dask-scheduler", default=None, help="run etl on this Dask cluster (tcp://host:8786)")
    parser.add_argument(
        "--wait-for-workspace", type=float, default=600.0, metavar="SECONDS",
        help="how long to wait while another run holds this workspace before stopping (default 600)",
    )  # fmt: skip
    arguments = parser.parse_args()
    with command_line_run("pipeline"):
        final = lineage_pipeline(
            arguments.remote, arguments.aws_credentials_block, arguments.lineage_db_block,
            arguments.tune_trial_deployment, arguments.optuna_storage_block, arguments.wait_for_workspace,
            arguments.signing_key_block, arguments.openlineage_api_key_block, arguments.dask_scheduler,
            return_state=True,
        )  # fmt: skip
    sys.exit(0 if final.is_completed() else 1)
