"""The `lineage-pipeline` flow: each DVC stage as its own retried Prefect task, gates enforced, results pushed.

DVC owns the graph and the versions: the stage order comes from DVC's own graph of dvc.yaml, and
each stage runs as `dvc repro --single-item <stage>`, so DVC skips what has not changed and writes
dvc.lock. Prefect owns when, retries, logs and the artifacts people read in the UI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
from prefect.runtime import deployment, flow_run
from prefect.states import Completed, Failed
from prefect.tasks import Task, exponential_backoff

from flows.summary import read_metrics, summary
from lineage.entities import ActionStatus
from lineage.query import query_lineage
from lineage.recorder import Recorded, RunInfo, StageRun, record_run
from lineage.store import LedgerError, LedgerStore
from tasks.params import load_params
from tasks.stage import (
    EXIT_BAD_INPUT,
    EXIT_GATE_REFUSED,
    OPTUNA_STORAGE_BLOCK_ENV,
    OPTUNA_STORAGE_URL_ENV,
    TUNE_FEATURES_REMOTE_ENV,
    TUNE_RUN_ID_ENV,
    TUNE_TRIAL_DEPLOYMENT_ENV,
    InputError,
    file_md5,
)

LOCK_FILE = Path("dvc.lock")
PARAMS_FILE = Path("params.yaml")
_TRIAL_LINE = re.compile(r"^tune: trial (\d+) of (\d+) ")
TUNING_INPUTS = ("data/features/train.parquet", "data/features/val.parquet")  # what trial workers read
_DVC_LOCK_ERROR = "Unable to acquire lock"  # DVC's message when another process holds .dvc/tmp/lock
_DVC_LOCKED = "another DVC process holds this repository's lock (.dvc/tmp/lock)"  # what we say instead


class Rejected(Exception):
    """A deterministic failure (bad input, a workspace changed outside DVC, a gate refusal): retrying
    cannot help."""


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
    if flow_run.get_id():  # tune names its Optuna study after the run (and a retried stage reuses the name)
        env[TUNE_RUN_ID_ENV] = str(flow_run.get_id())
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


def retry_unless(*final: type[Exception]) -> Callable[[Task[..., Any], TaskRun, State[Any]], bool]:
    """A retry condition: retry any failure but these deterministic ones, which retrying cannot mend."""

    def condition(_task: Task[..., Any], _task_run: TaskRun, state: State[Any]) -> bool:
        try:
            state.result()
        except final:
            return False
        except Exception:
            return True
        return True

    return condition


def _lock_stages() -> dict[str, Any]:
    if not LOCK_FILE.is_file():
        return {}
    return dict((yaml.safe_load(LOCK_FILE.read_text(encoding="utf-8")) or {}).get("stages", {}))


def _outs(locked: dict[str, Any]) -> dict[str, str]:
    return {out["path"]: out["md5"] for out in locked.get("outs", [])}


def locked_outs(stage: str) -> dict[str, str]:
    """A stage's outputs and their md5 as dvc.lock records them."""
    return _outs(_lock_stages().get(stage, {}))


@task(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.2,
    retry_condition_fn=retry_unless(Rejected),
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
            raise Rejected(_stage_message(output) or f"{stage} rejected its input (exit {exited.group(1)})")
        if _DVC_LOCK_ERROR in output:  # DVC waited its 3 s; Prefect's retries wait longer
            raise TransientFailure(f"{stage}: {_DVC_LOCKED}")
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
    retry_condition_fn=retry_unless(Rejected),
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
        sources = [stage for stage in repo.index.stages if stage.is_data_source or stage.is_import]
        imports = sorted(stage.relpath for stage in sources if stage.is_import)
        try:
            if imports:
                repo.update(targets=imports)
                logger.info("refreshed imported sources: %s", ", ".join(imports))
            fetched = repo.pull(remote=remote, allow_missing=True)["stats"]["fetched"]
        except Exception as error:
            if "unsaved files without confirmation" in str(error):  # a tracked file was changed by hand
                raise Rejected(_changed_outside_dvc(str(error))) from None
            # network, credentials, S3: worth a retry
            raise TransientFailure(f"dvc update/pull with remote '{name}' failed: {_first_line(error)}") from error
        logger.info("pulled %d file(s) from DVC remote '%s'", fetched, name)
        for out in (out for stage in sources for out in stage.outs):
            if not os.path.exists(out.fs_path):  # a raw input no stage can rebuild
                raise Rejected(
                    f"{out}: missing from DVC remote '{name}' and from this workspace (md5 {out.hash_info.value}); "
                    "push it from a workspace that has it"
                )
        return {stage for stage in repo.status() if not stage.endswith(".dvc")}


def _changed_outside_dvc(error: str) -> str:
    """One line naming each tracked file that differs from what dvc.lock records, and how to restore it."""
    paths = [os.path.relpath(line.strip()) for line in error.splitlines()[1:] if line.strip()]
    recorded = {path: md5 for stage in _lock_stages().values() for path, md5 in _outs(stage).items()}
    found = [f"{path}: md5 {file_md5(Path(path))} differs from {recorded.get(path, 'none')}" for path in paths]
    return (
        f"{', '.join(found)} recorded in dvc.lock (changed outside DVC); refusing to overwrite or use it; "
        f"restore it with `dvc checkout --force {' '.join(paths)}`"
    )


def _first_line(error: BaseException) -> str:
    """An exception as one line; DVC's lock error as what it means here."""
    if _DVC_LOCK_ERROR in str(error):
        return _DVC_LOCKED
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


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
            raise TransientFailure(f"dvc push to remote '{name}' failed: {_first_line(error)}") from error
        report = locked_outs("drift_check").get("reports/drift.html")
        report_url = _cache_url(repo, remote, report) if report else None
    get_run_logger().info("pushed %d file(s) to DVC remote '%s'; run record at %s", pushed, name, record)
    return Pushed(record=record, drift_report=report_url)


@task(
    name="share-tuning-inputs", retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.2,
)  # fmt: skip
def share_tuning_inputs(remote: str | None) -> str:
    """Push the features tune's trials read to the DVC remote, so workers elsewhere can fetch them by md5."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        name = _remote_name(repo, remote)
        try:
            pushed = repo.push(targets=list(TUNING_INPUTS), remote=remote)
        except Exception as error:  # network, credentials, S3: worth a retry
            reason = _first_line(error)
            raise TransientFailure(f"dvc push of the tuning inputs to remote '{name}' failed: {reason}") from error
    os.environ[TUNE_FEATURES_REMOTE_ENV] = name  # the tune stage hands it on to the trials
    get_run_logger().info("tuning inputs in DVC remote '%s' (%d file(s) pushed) for trial workers", name, pushed)
    return name


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


@task(name="record-lineage", retries=2, retry_delay_seconds=5)
def record_lineage(info: RunInfo) -> Recorded:
    """Append the run to the lineage ledger (LINEAGE_DB_URL) and decide on promotion, in one transaction.

    A retry is safe: a failed append leaves nothing behind.
    """
    with LedgerStore() as store:
        recorded = record_run(store, info)
    get_run_logger().info(
        "recorded in the lineage ledger: model version %s, decision %s; ledger head %d %s",
        recorded.model_version.name if recorded.model_version else "none",
        recorded.decision or "none",
        recorded.head.count,
        recorded.head.head_hash,
    )
    return recorded


@task(name="publish-ledger-head", retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2))
def publish_ledger_head(remote: str | None, recorded: Recorded) -> str:
    """Store the ledger's head beside the run record: an anchor `lineage verify` can check a rewritten
    ledger against, kept outside the database."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        target = repo.cloud.get_remote(remote)
        path = target.fs.join(target.path, "runs", recorded.run.name, "ledger-head.json")
        text = json.dumps({"record_count": recorded.head.count, "head_hash": recorded.head.head_hash})
        try:
            target.fs.pipe_file(path, text.encode())
        except Exception as error:  # network, credentials, S3: worth a retry
            name = _remote_name(repo, remote)
            raise TransientFailure(f"storing the ledger head in remote '{name}' failed: {error}") from error
        return str(target.fs.unstrip_protocol(path))


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


def publish(
    outcomes: list[StageOutcome], stages: list[str], failure: str | None, pushed: Pushed | None, recorded: Recorded
) -> None:
    """The UI's view of the run: a summary with the model's lineage graph, the metrics table and a link
    to the drift report."""
    done = {outcome.stage: outcome for outcome in outcomes}
    rows = ["| stage | result | outputs (md5) |", "| --- | --- | --- |"]
    for stage in stages:
        outcome = done.get(stage)
        result = "not run" if outcome is None else ("ran" if outcome.ran else "skipped (unchanged)")
        outs = "<br>".join(f"`{path}` {md5[:12]}" for path, md5 in (outcome.outs if outcome else {}).items())
        rows.append(f"| {stage} | {result} | {outs} |")
    verdict = f"**Run failed:** {failure}" if failure else "**Both gates passed.**"
    record = pushed.record if pushed else "not stored (the push failed)"
    create_markdown_artifact(
        key="pipeline-summary",
        markdown=f"# Lineage pipeline\n\n{verdict}\n\n" + "\n".join(rows) + f"\n\n```\n{summary()}\n```"
        f"\n\nRun record (dvc.lock, params.yaml): `{record}`\n\n{lineage_section(recorded)}",
        description="Stages run or skipped, their outputs, both gate verdicts and the model's lineage",
    )
    table = [
        {"stage": stage, "metric": name, "value": value}
        for stage, metrics in read_metrics().items()
        if metrics
        for name, value in _headline(stage, metrics).items()
    ]
    if table:
        create_table_artifact(key="pipeline-metrics", table=table, description="Headline metrics per stage")
    if pushed and pushed.drift_report:
        create_link_artifact(
            key="drift-report",
            link=pushed.drift_report,
            link_text="Evidently drift report",
            description="reports/drift.html as the DVC remote stores it",
        )


def lineage_section(recorded: Recorded) -> str:
    """Markdown: the model version, the promotion decision, its lineage as mermaid, and how to query it."""
    head = f"Ledger head: {recorded.head.count} records, `{recorded.head.head_hash}`."
    version = recorded.model_version
    if version is None:
        query = f"`lineage query {recorded.run.id} --direction ascendants`"
        return f"## Lineage\n\nNo model version this run. {head}\n\n{query}"
    with LedgerStore() as store:
        graph = query_lineage(store, version.id)
    return (
        f"## Lineage of model version `{version.name}`\n\n"
        f"Status **{version.properties.get('status')}** (decision: {recorded.decision}). {head}\n\n"
        f"```mermaid\n{graph.to_mermaid()}\n```\n\n"
        f"Query it: `lineage query {version.name} --direction ascendants --depth 10 --json` · "
        f"`lineage models show {version.name}` · `lineage verify`"
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


def use_lineage_db_block(name: str) -> None:
    """Point the ledger at the SQLAlchemy URL a Prefect Secret block holds (it carries a password)."""
    from prefect.blocks.system import Secret

    os.environ["LINEAGE_DB_URL"] = str(cast(Secret[str], Secret.load(name)).get())


def use_tuning_workers(deployment: str | None, storage_block: str | None) -> None:
    """Have the tune stage run its trials as flow runs of `deployment`, sharing the Optuna storage whose
    URL (it carries a password) the Secret block `storage_block` holds; the block's name goes on to
    the trials, so workers read the URL from it too."""
    if deployment:
        os.environ[TUNE_TRIAL_DEPLOYMENT_ENV] = deployment
    if storage_block:
        from prefect.blocks.system import Secret

        os.environ[OPTUNA_STORAGE_URL_ENV] = str(cast(Secret[str], Secret.load(storage_block)).get())
        os.environ[OPTUNA_STORAGE_BLOCK_ENV] = storage_block


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
def lineage_pipeline(
    remote: str | None = None,
    aws_credentials_block: str | None = None,
    lineage_db_block: str | None = None,
    tune_trial_deployment: str | None = None,
    optuna_storage_block: str | None = None,
    wait_for_workspace: float = 600.0,
) -> State[Any]:
    """Weekly retrain: pull, run each DVC stage with its gates, push outputs and the run record, record
    the run's lineage and promote the model only if both gates passed."""
    started = _now()
    if aws_credentials_block:
        use_aws_credentials_block(aws_credentials_block)
    if lineage_db_block:
        use_lineage_db_block(lineage_db_block)
    use_tuning_workers(tune_trial_deployment, optuna_storage_block)
    try:
        with workspace_lock(wait_for_workspace):
            try:
                stages = check_before_work()
            except (InputError, LedgerError) as error:
                return Failed(message=str(error))  # nothing ran, nothing recorded
            return _run(stages, remote, started)
    except WorkspaceBusy as error:
        return Failed(message=str(error))  # the run holding the workspace goes on undisturbed


def check_before_work() -> list[str]:
    """What must hold before any stage runs; returns the stages in order.

    params.yaml validates, dvc.yaml and dvc.lock parse, and the ledger opens: a run whose lineage
    cannot be recorded must not train or promote anything.
    """
    from dvc.exceptions import DvcException

    load_params(PARAMS_FILE)
    try:
        stages = pipeline_stages()
    except DvcException as error:
        raise InputError(f"{_first_line(error)}; restore it from git or from a run record (runs/<id>/)") from None
    LedgerStore().close()
    return stages


class WorkspaceBusy(Exception):
    """Another run holds this workspace."""


WORKSPACE_LOCK = Path(".dvc/tmp/pipeline.lock")
WORKSPACE_HOLDER = Path(".dvc/tmp/pipeline.holder")  # who holds the lock, for the message of who waits


@contextmanager
def workspace_lock(wait_seconds: float) -> Iterator[None]:
    """Hold this workspace for one run; another run started by hand waits at most `wait_seconds`, then
    stops having touched nothing. (Deployments queue their runs with a concurrency limit instead.)

    An OS file lock, so a killed run releases it with its process.
    """
    from filelock import FileLock, Timeout

    WORKSPACE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(WORKSPACE_LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = _holder()
        get_run_logger().info("workspace in use by %s; waiting up to %g s", holder, wait_seconds)
        try:
            lock.acquire(timeout=wait_seconds)
        except Timeout:
            raise WorkspaceBusy(
                f"workspace {Path.cwd()} is in use by {holder}; waited {wait_seconds:g} s; nothing was run "
                "(try again when it finishes, or raise wait_for_workspace)"
            ) from None
    try:
        WORKSPACE_HOLDER.write_text(f"flow run {flow_run.get_id() or 'local'} (pid {os.getpid()})", encoding="utf-8")
        yield
    finally:
        WORKSPACE_HOLDER.unlink(missing_ok=True)
        lock.release()


def _holder() -> str:
    try:
        return WORKSPACE_HOLDER.read_text(encoding="utf-8")
    except OSError:
        return "another run"


def _run(stages: list[str], remote: str | None, started: dt.datetime) -> State[Any]:
    """Run the stages, push, record the lineage, decide on promotion and publish to the UI."""
    configure_s3_remote()
    outcomes, runs, failure = run_stages(stages, remote)
    pushed: Pushed | None = None
    if any(stage_run.status != ActionStatus.NOT_RUN for stage_run in runs):  # else preparing failed: nothing to push
        push_state = push(remote, return_state=True)  # versions what ran, verdicts included, even after a failure
        try:
            pushed = push_state.result()
        except Exception as error:
            failure = failure or f"push failed, the model is not promoted: {error}"
    info = RunInfo(
        flow_run_id=str(flow_run.get_id() or "local"),
        stages=runs,
        start=started,
        end=_now(),
        failure=failure,
        pushed_to=pushed.record if pushed else None,
        deployment=f"{flow_run.get_flow_name()}/{deployment.get_name()}" if deployment.get_id() else None,
    )
    recorded = record_lineage(info)
    if pushed:
        publish_ledger_head(remote, recorded)
    publish(outcomes, stages, failure, pushed, recorded)
    if failure:
        return Failed(message=failure)
    ran = [outcome.stage for outcome in outcomes if outcome.ran]
    return Completed(message=f"ran {', '.join(ran) or 'nothing (all up to date)'}; both gates passed")


def run_stages(stages: list[str], remote: str | None) -> tuple[list[StageOutcome], list[StageRun], str | None]:
    """Prepare the workspace, then run the stages in order until one fails or a gate stops the run.

    Returns what each stage did, each stage as the ledger records it (NotRun after a stop), and why the
    run stopped, if it did.
    """
    outcomes: list[StageOutcome] = []
    runs: list[StageRun] = []
    failure: str | None = None
    prepared = prepare_workspace(remote, return_state=True)
    try:
        changed = prepared.result()
    except Exception as error:
        failure = str(error)
    else:
        get_run_logger().info("stages to rerun: %s", ", ".join(s for s in stages if s in changed) or "none")
    for stage in stages:
        if failure:
            runs.append(StageRun(stage, ActionStatus.NOT_RUN))
            continue
        unchanged = stage not in changed and not any(outcome.ran for outcome in outcomes)
        if stage == "tune" and not unchanged and os.environ.get(TUNE_TRIAL_DEPLOYMENT_ENV):
            shared = share_tuning_inputs(remote, return_state=True)
            if not shared.is_completed():
                failure = f"tune: could not share its inputs with trial workers: {shared.message}"
                runs.append(StageRun(stage, ActionStatus.NOT_RUN))
                continue
        start = _now()
        state = run_stage.with_options(name=stage, task_run_name=stage)(stage, unchanged, return_state=True)
        task_run_id = str(state.state_details.task_run_id) if state.state_details.task_run_id else None
        try:
            outcome = state.result()
        except Exception as error:  # Rejected, or a transient failure that outlived its retries
            failure = str(error)
            runs.append(StageRun(stage, ActionStatus.FAILED, start, _now(), task_run_id))
            continue
        outcomes.append(outcome)
        status = ActionStatus.COMPLETED if outcome.ran else ActionStatus.SKIPPED
        runs.append(StageRun(stage, status, start, _now(), task_run_id))
        failure = gate_failure(stage)
    return outcomes, runs, failure


def _now() -> dt.datetime:
    # Run times go to the ledger only, never into versioned outputs.
    return dt.datetime.now(dt.UTC)


if __name__ == "__main__":
    # `python -m flows.pipeline [--remote NAME]`: one run on this checkout. Without PREFECT_API_URL,
    # Prefect starts a temporary local API for the run; with it, the run shows in that server's UI.
    parser = argparse.ArgumentParser(description=lineage_pipeline.description)
    parser.add_argument("--remote", default=None, help="DVC remote to pull from and push to (default: the default)")
    parser.add_argument("--aws-credentials-block", default=None, help="prefect-aws AwsCredentials block name")
    parser.add_argument("--lineage-db-block", default=None, help="Prefect Secret block holding LINEAGE_DB_URL")
    parser.add_argument("--tune-trial-deployment", default=None, help="run tuning trials on this deployment's workers")
    parser.add_argument("--optuna-storage-block", default=None, help="Prefect Secret block holding OPTUNA_STORAGE_URL")
    parser.add_argument(
        "--wait-for-workspace", type=float, default=600.0, metavar="SECONDS",
        help="how long to wait while another run holds this workspace before stopping (default 600)",
    )  # fmt: skip
    arguments = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    final = lineage_pipeline(
        arguments.remote, arguments.aws_credentials_block, arguments.lineage_db_block,
        arguments.tune_trial_deployment, arguments.optuna_storage_block, arguments.wait_for_workspace,
        return_state=True,
    )  # fmt: skip
    sys.exit(0 if final.is_completed() else 1)
