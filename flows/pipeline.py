"""The `lineage-pipeline` flow: each DVC stage as its own retried Prefect task, gates enforced, results pushed.

DVC owns the graph and the versions: the stage order comes from DVC's own graph of dvc.yaml, and
each stage runs as `dvc repro --single-item <stage>`, so DVC skips what has not changed and writes
dvc.lock. Prefect owns when, retries, logs and the artifacts people read in the UI.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import networkx as nx
import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.client.schemas.objects import State, TaskRun
from prefect.runtime import flow_run
from prefect.states import Completed, Failed
from prefect.tasks import Task, exponential_backoff

from flows.summary import read_metrics, summary
from tasks.stage import EXIT_BAD_INPUT, EXIT_GATE_REFUSED

LOCK_FILE = Path("dvc.lock")
PARAMS_FILE = Path("params.yaml")
_TRIAL_LINE = re.compile(r"^tune: trial (\d+) of (\d+) ")


class StageRejected(Exception):
    """A stage failed deterministically (bad input, or a gate refused): retrying cannot help."""


class TransientFailure(Exception):
    """A failure that may pass on retry: network, S3, a DVC lock held by another process."""


@dataclass
class StageOutcome:
    stage: str
    ran: bool  # False when DVC found nothing changed and skipped it
    outs: dict[str, str] = field(default_factory=dict)  # path -> md5, from dvc.lock


def pipeline_stages(root: Path = Path(".")) -> list[str]:
    """dvc.yaml's stages in DVC's own dependency order (upstream first)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        order = list(reversed(list(nx.lexicographical_topological_sort(graph, key=lambda s: s.addressing))))
        return [stage.name for stage in order if getattr(stage, "name", None)]


def _dvc_repro(stage: str, on_line: Callable[[str], None] | None = None) -> tuple[int, str]:
    """`dvc repro --single-item <stage>`, streaming its output to the run logger (and `on_line`)."""
    logger = get_run_logger()
    # dvc.yaml's commands call `python`: make it this interpreter, whatever PATH the worker had.
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    process = subprocess.Popen(
        [str(Path(bin_dir) / "dvc"), "repro", "--single-item", stage], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    )  # fmt: skip
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip()
        if not line:
            continue
        lines.append(line)
        logger.info(line)
        if on_line is not None:
            on_line(line)
    return process.wait(), "\n".join(lines)


def _only_transient(_task: Task[..., Any], _task_run: TaskRun, state: State[Any]) -> bool:
    """Retry condition: never retry a deterministic rejection."""
    try:
        state.result()
    except StageRejected:
        return False
    except Exception:
        return True
    return True


def locked_outs(stage: str) -> dict[str, str]:
    """A stage's outputs and their md5 as dvc.lock records them."""
    if not LOCK_FILE.is_file():
        return {}
    locked = (yaml.safe_load(LOCK_FILE.read_text(encoding="utf-8")) or {}).get("stages", {}).get(stage, {})
    return {out["path"]: out["md5"] for out in locked.get("outs", [])}


@task(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.2,
    retry_condition_fn=_only_transient,
)
def run_stage(stage: str, known_unchanged: bool = False) -> StageOutcome:
    """Run one DVC stage; DVC skips it when its deps, params and outs are unchanged.

    `known_unchanged`: `dvc status` already said so and nothing upstream ran, so skip without
    starting DVC again (a run with nothing to do stays close to a bare `dvc repro`).
    """
    if known_unchanged:
        get_run_logger().info("Stage '%s' didn't change, skipping", stage)
        return StageOutcome(stage=stage, ran=False, outs=locked_outs(stage))
    on_line = _tune_progress() if stage == "tune" else None
    code, output = _dvc_repro(stage, on_line=on_line)
    if code != 0:
        exited = re.search(r"exited with (\d+)", output)
        if exited and int(exited.group(1)) in (EXIT_BAD_INPUT, EXIT_GATE_REFUSED):
            raise StageRejected(_stage_message(output) or f"{stage} rejected its input (exit {exited.group(1)})")
        raise TransientFailure(f"{stage}: dvc repro exited {code}: {output.splitlines()[-1] if output else ''}")
    return StageOutcome(stage=stage, ran=f"Running stage '{stage}'" in output, outs=locked_outs(stage))


def _stage_message(output: str) -> str | None:
    """The stage's own one-line error or refusal, if it printed one."""
    found = re.findall(r"^\w+: (?:error|refused): .*$", output, flags=re.MULTILINE)
    return found[-1] if found else None


def _tune_progress() -> Callable[[str], None]:
    """A progress artifact that follows the `tune: trial k of n` lines."""
    # Prefect's artifact helpers dispatch sync or async; inside this sync task they return the UUID.
    artifact_id = cast(
        UUID, create_progress_artifact(progress=0.0, key="tuning-progress", description="Tuning trials finished")
    )

    def update(line: str) -> None:
        match = _TRIAL_LINE.match(line)
        if match:
            update_progress_artifact(artifact_id, progress=100.0 * int(match.group(1)) / int(match.group(2)))

    return update


def _remote_name(repo: Any, remote: str | None) -> str:
    return remote or str(repo.config["core"].get("remote", "(none configured)"))


@task(
    name="prepare-workspace",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.2,
)
def prepare_workspace(remote: str | None) -> set[str]:
    """Refresh imported raw sources (`dvc update`), pull the DVC cache, and return the stages to rerun.

    The pull lets a fresh container skip what earlier runs built; `dvc status` afterwards names
    the stages whose code, params or data changed. One DVC repository serves all three steps.
    """
    from dvc.repo import Repo

    logger = get_run_logger()
    with Repo(".") as repo:
        name = _remote_name(repo, remote)
        sources = sorted(stage.relpath for stage in repo.index.stages if stage.is_import)
        try:
            if sources:
                repo.update(targets=sources)
                logger.info("refreshed imported sources: %s", ", ".join(sources))
            fetched = repo.pull(remote=remote, allow_missing=True)["stats"]["fetched"]
        except Exception as error:  # network, credentials, S3: worth a retry
            raise TransientFailure(f"dvc update/pull with remote '{name}' failed: {error}") from error
        logger.info("pulled %d file(s) from DVC remote '%s'", fetched, name)
        return {stage for stage in repo.status() if not stage.endswith(".dvc")}


@dataclass
class Pushed:
    record: str  # where the run's dvc.lock and params.yaml were stored
    drift_report: str | None  # where the remote keeps reports/drift.html, if the run has one


@task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2), retry_jitter_factor=0.2)
def push(remote: str | None) -> Pushed:
    """Push every output to the DVC remote, then the run's dvc.lock and params.yaml beside it."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        name = _remote_name(repo, remote)
        try:
            pushed = repo.push(remote=remote)
            record = _store_run_record(repo, remote, flow_run.get_id() or "local")
        except Exception as error:  # network, credentials, S3: worth a retry
            raise TransientFailure(f"dvc push to remote '{name}' failed: {error}") from error
        report = locked_outs("drift_check").get("reports/drift.html")
        report_url = _cache_url(repo, remote, report) if report else None
    get_run_logger().info("pushed %d file(s) to DVC remote '%s'; run record at %s", pushed, name, record)
    return Pushed(record=record, drift_report=report_url)


def _store_run_record(repo: Any, remote: str | None, run_id: str) -> str:
    """Copy dvc.lock and params.yaml to `<remote>/runs/<flow run id>/`.

    A container's working copy vanishes with it; this keeps, next to the data it describes, the
    record of which versions this run produced, so any run can be checked out again.
    """
    target = repo.cloud.get_remote(remote)
    folder = target.fs.join(target.path, "runs", run_id)
    target.fs.makedirs(folder, exist_ok=True)
    for local in (LOCK_FILE, PARAMS_FILE):
        target.fs.put_file(str(local), target.fs.join(folder, local.name))
    return str(target.fs.unstrip_protocol(folder))


def gate_failure(stage: str) -> str | None:
    """After drift_check or fairness: why the run must stop (and the model not be promoted), if it must."""
    metrics = read_metrics()
    if stage == "drift_check" and (drift := metrics["drift_check"]) and drift["drift_detected"]:
        allowed = (yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8")).get("drift") or {}).get("allow", False)
        if not allowed:
            return f"drift detected in {', '.join(drift['drifted_columns'])}; see {drift['report']}"
    if stage == "fairness" and (fairness := metrics["fairness"]) and not fairness["passed"]:
        return f"fairness check failed: {fairness['reason']}; the model is not promoted"
    return None


def publish(outcomes: list[StageOutcome], stages: list[str], failure: str | None, pushed: Pushed) -> None:
    """The UI's view of the run: a summary, the metrics table and a link to the drift report."""
    done = {outcome.stage: outcome for outcome in outcomes}
    rows = ["| stage | result | outputs (md5) |", "| --- | --- | --- |"]
    for stage in stages:
        outcome = done.get(stage)
        result = "not run" if outcome is None else ("ran" if outcome.ran else "skipped (unchanged)")
        outs = "<br>".join(f"`{path}` {md5[:12]}" for path, md5 in (outcome.outs if outcome else {}).items())
        rows.append(f"| {stage} | {result} | {outs} |")
    verdict = f"**Run failed:** {failure}" if failure else "**Both gates passed.**"
    stored = f"\n\nRun record (dvc.lock, params.yaml): `{pushed.record}`"
    create_markdown_artifact(
        key="pipeline-summary",
        markdown=f"# Lineage pipeline\n\n{verdict}\n\n" + "\n".join(rows) + f"\n\n```\n{summary()}\n```{stored}",
        description="Stages run or skipped, their outputs, and both gate verdicts",
    )
    table = [
        {"stage": stage, "metric": name, "value": value}
        for stage, metrics in read_metrics().items()
        if metrics
        for name, value in _headline(stage, metrics).items()
    ]
    if table:
        create_table_artifact(key="pipeline-metrics", table=table, description="Headline metrics per stage")
    if pushed.drift_report:
        create_link_artifact(
            key="drift-report",
            link=pushed.drift_report,
            link_text="Evidently drift report",
            description="reports/drift.html as the DVC remote stores it",
        )


def _headline(stage: str, metrics: dict[str, Any]) -> dict[str, object]:
    picks: dict[str, Callable[[dict[str, Any]], dict[str, object]]] = {
        "etl": lambda m: {"rows_read": m["rows"]["read"], "rows_kept": m["rows"]["written"]},
        "drift_check": lambda m: {"drift_detected": m["drift_detected"], "drifted_share": m["drifted_share"]},
        "preprocess": lambda m: {**m["rows"], "drift_overridden": m["drift_gate"]["overridden"]},
        "tune": lambda m: {"val_rmsle": m["validation"]["rmsle"], **m["trials"]},
        "inference": lambda m: {"test_rmsle": m["test"]["rmsle"], "baseline_test_rmsle": m["baseline_test"]["rmsle"]},
        "fairness": lambda m: {"passed": m["passed"], "mean_outcome_difference": m["mean_outcome_difference"]},
    }
    return picks[stage](metrics) if stage in picks else {}


def _cache_url(repo: Any, remote: str | None, md5: str) -> str:
    """Where the DVC remote keeps the object with this md5 (DVC 3 layout: files/md5/ab/cdef...)."""
    target = repo.cloud.get_remote(remote)
    return str(target.fs.unstrip_protocol(target.fs.join(target.path, "files", "md5", md5[:2], md5[2:])))


def configure_s3_remote() -> None:
    """Apply DVC_REMOTE_S3_URL and DVC_REMOTE_S3_ENDPOINTURL to the `s3` remote (workspace-local config).

    The worker image carries no .dvc/config.local; the deployment hands bucket, prefix and endpoint
    in through these variables instead.
    """
    from dvc.repo import Repo

    overrides = {
        option: os.environ[variable]
        for option, variable in (("url", "DVC_REMOTE_S3_URL"), ("endpointurl", "DVC_REMOTE_S3_ENDPOINTURL"))
        if os.environ.get(variable)
    }
    if overrides:
        with Repo(".") as repo, repo.config.edit("local") as config:
            config["remote"].setdefault("s3", {}).update(overrides)


def use_aws_credentials_block(name: str) -> None:
    """Hand a prefect-aws AwsCredentials block to the dvc subprocesses through their environment."""
    from prefect_aws import AwsCredentials

    block = cast(AwsCredentials, AwsCredentials.load(name))  # sync call: the block itself
    secret = block.aws_secret_access_key
    values = {
        "AWS_ACCESS_KEY_ID": block.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": secret.get_secret_value() if secret else None,
        "AWS_SESSION_TOKEN": block.aws_session_token,
        "AWS_DEFAULT_REGION": block.region_name,
    }
    os.environ.update({key: value for key, value in values.items() if value})


@flow(name="lineage-pipeline", log_prints=True)
def lineage_pipeline(remote: str | None = None, aws_credentials_block: str | None = None) -> State[Any]:
    """Weekly retrain: pull, run each DVC stage with its gates, push outputs and the run record."""
    logger = get_run_logger()
    if aws_credentials_block:
        use_aws_credentials_block(aws_credentials_block)
    configure_s3_remote()
    stages = pipeline_stages()
    changed = prepare_workspace(remote)
    logger.info("stages to rerun: %s", ", ".join(s for s in stages if s in changed) or "none")
    outcomes: list[StageOutcome] = []
    failure: str | None = None
    for stage in stages:
        unchanged = stage not in changed and not any(outcome.ran for outcome in outcomes)
        try:
            outcomes.append(run_stage.with_options(name=stage, task_run_name=stage)(stage, unchanged))
        except StageRejected as rejected:
            failure = str(rejected)
            break
        failure = gate_failure(stage)
        if failure:
            break
    pushed = push(remote)  # versions what this run produced, verdicts included, even when a gate failed
    publish(outcomes, stages, failure, pushed)
    if failure:
        return Failed(message=failure)
    ran = [outcome.stage for outcome in outcomes if outcome.ran]
    return Completed(message=f"ran {', '.join(ran) or 'nothing (all up to date)'}; both gates passed")


if __name__ == "__main__":
    # `python -m flows.pipeline [--remote NAME]`: one run on this checkout. Without PREFECT_API_URL,
    # Prefect starts a temporary local API for the run; with it, the run shows in that server's UI.
    parser = argparse.ArgumentParser(description=lineage_pipeline.description)
    parser.add_argument("--remote", default=None, help="DVC remote to pull from and push to (default: the default)")
    parser.add_argument("--aws-credentials-block", default=None, help="prefect-aws AwsCredentials block name")
    arguments = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    final = lineage_pipeline(arguments.remote, arguments.aws_credentials_block, return_state=True)
    sys.exit(0 if final.is_completed() else 1)
