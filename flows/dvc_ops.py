"""DVC operations of the lineage-pipeline flow, each step a retried Prefect task: prepare the workspace,
run one stage, share the tuning inputs, push. DVC decides what runs (its status) and records what was
made (dvc.lock); this module asks it, and reads nothing from DVC's console text but its lock error."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Completed, Failed

from common.redact import error_line, redact_text, redact_url
from flows.dvc_lock import LOCK_FILE, PARAMS_FILE, lock_stages, stage_outs
from flows.retry import GATE_FAILED, RETRIES, SKIPPED, Rejected, TransientFailure
from flows.summary import describe, gate_verdict, read_metrics
from gates.table import Overrides
from tasks.stage import file_md5
from tasks.tune_settings import FEATURES_DIR, TRIAL_SPLITS

DVC_LOCK_ERROR = "Unable to acquire lock"  # DVC's message when another process holds .dvc/tmp/lock
DVC_LOCKED = "another DVC process holds this repository's lock (.dvc/tmp/lock)"  # what we say instead
_TRIAL_LINE = re.compile(r"^tune: trial (\d+) of (\d+) ")  # what tasks/tune.py prints as each trial is told
# DVC's advice after each stage: the flow keeps dvc.lock itself (the run record) and pushes, so in a log
# it is noise.
_DVC_ADVICE = ("To track the changes with git, run:", "git add dvc.lock", "To enable auto staging, run:",
               "dvc config core.autostage true", "Use `dvc push` to send your updates to remote storage.")  # fmt: skip


@task(name="prepare-workspace", task_run_name="prepare-workspace", **RETRIES)
def prepare_workspace(remote: str | None) -> set[str]:
    """Refresh imported raw sources (`dvc update`), pull the DVC cache, and return the stages to rerun.

    The pull lets a fresh container skip what earlier runs built; `dvc status` afterwards names
    the stages whose code, params or data changed. One DVC repository serves all three steps.
    """
    from dvc.repo import Repo

    logger = get_run_logger()
    with Repo(".") as repo:
        name = remote_name(repo, remote)
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
            raise TransientFailure(f"dvc update/pull with remote '{name}' failed: {first_line(error)}") from error
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
    recorded = {path: md5 for stage in lock_stages().values() for path, md5 in stage_outs(stage).items()}
    found = [f"{path}: md5 {file_md5(Path(path))} differs from {recorded.get(path, 'none')}" for path in paths]
    return (
        f"{', '.join(found)} recorded in dvc.lock (changed outside DVC); refusing to overwrite or use it; "
        f"restore it with `dvc checkout --force {' '.join(paths)}`"
    )


@task(**RETRIES)
def run_stage(stage: str, env: dict[str, str], changed: bool, upstream_ran: bool, allowed: Overrides) -> State[bool]:
    """Run one DVC stage unless DVC has nothing to do for it; end in a state that says what it did.

    `changed`: `dvc status` named it before the run, so it runs. After a stage upstream ran, `dvc repro`
    decides: it skips a stage whose deps came out the same bytes, and dvc.lock then keeps its entry.
    `env` adds to this process's environment. The state's result is whether the stage ran; its message
    is the stage's own summary, or for a gate's stage its verdict (`allowed`: the gates' overrides).
    """
    if not changed and not upstream_ran:
        get_run_logger().info("Stage '%s' didn't change, skipping", stage)
        return stage_state(stage, False, "unchanged since dvc.lock", allowed)
    before = lock_stages().get(stage)
    code, output = _repro(stage, env, _progress(stage))
    if code == 0:
        ran = changed or lock_stages().get(stage) != before
        return stage_state(stage, ran, "its inputs came out the same bytes", allowed)
    own = [line for line in output.splitlines() if line.startswith((f"{stage}: error: ", f"{stage}: refused: "))]
    if own:  # tasks.stage.run_stage printed why it refused its input: retrying cannot help
        raise Rejected(own[-1])
    if DVC_LOCK_ERROR in output:  # DVC waited its 3 s; Prefect's retries wait longer
        raise TransientFailure(f"{stage}: {DVC_LOCKED}")
    raise TransientFailure(f"{stage}: dvc repro exited {code}: {output.splitlines()[-1] if output else ''}")


def stage_state(stage: str, ran: bool, why_skipped: str, allowed: Overrides) -> State[bool]:
    """Completed with the stage's summary, `Skipped` (a Completed state) with why, or for a gate stage whose
    verdict stops the run `GateFailed` (a Failed state, never retried); the result is whether it ran."""
    metrics = read_metrics([stage])[stage]
    verdict = gate_verdict(stage, metrics, allowed) if metrics else None
    said = verdict[1] if verdict else describe(stage, metrics)
    if verdict and not verdict[0]:
        return Failed(name=GATE_FAILED, message=said, data=ran)
    if ran:
        return Completed(message=said, data=True)
    return Completed(name=SKIPPED, message=f"skipped, {why_skipped}: {said}", data=False)


def _progress(stage: str) -> Callable[[str], None] | None:
    """For tune, a progress artifact that follows its `tune: trial k of n` lines; None for other stages."""
    if stage != "tune":
        return None
    # Prefect's artifact helpers dispatch sync or async; inside a sync task they return the UUID.
    artifact_id = cast(
        UUID, create_progress_artifact(progress=0.0, key="tuning-progress", description="Tuning trials finished")
    )

    def update(line: str) -> None:
        match = _TRIAL_LINE.match(line)
        if match:
            update_progress_artifact(artifact_id, progress=100.0 * int(match.group(1)) / int(match.group(2)))

    return update


def _repro(stage: str, env: dict[str, str], on_line: Callable[[str], None] | None) -> tuple[int, str]:
    """`dvc repro --single-item <stage>` with this process's environment plus `env`, its output streamed
    to the run logger (and to `on_line`)."""
    logger = get_run_logger()
    bin_dir = Path(sys.executable).parent  # dvc.yaml's commands call `python`: make it this interpreter
    process = subprocess.Popen(
        [str(bin_dir / "dvc"), "repro", "--single-item", stage],
        env={**os.environ, **env, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    )  # fmt: skip
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        line = redact_text(line.rstrip())  # a stage's or DVC's line may name a URL with its credentials
        if not line or line.strip() in _DVC_ADVICE:
            continue
        lines.append(line)
        logger.info(line)
        if on_line is not None:
            on_line(line)
    return process.wait(), "\n".join(lines)


@task(name="share-tuning-inputs", task_run_name="share-tuning-inputs", **RETRIES)
def share_tuning_inputs(remote: str | None) -> str:
    """Push the features tune's trials read to the DVC remote, so workers elsewhere can fetch them by md5;
    return the remote's name, for the tune stage to hand on to its trials."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        name = remote_name(repo, remote)
        try:
            pushed = repo.push(
                targets=[str(FEATURES_DIR / f"{split}.parquet") for split in TRIAL_SPLITS], remote=remote
            )
        except Exception as error:  # network, credentials, S3: worth a retry
            reason = first_line(error)
            raise TransientFailure(f"dvc push of the tuning inputs to remote '{name}' failed: {reason}") from error
    get_run_logger().info("tuning inputs in DVC remote '%s' (%d file(s) pushed) for trial workers", name, pushed)
    return name


@dataclass
class Report:
    """A report a person opens: where the DVC remote keeps it, and a link a browser can follow where the
    remote can sign one (S3); never a link that 404s."""

    key: str  # the link artifact's key in the Prefect UI
    path: str  # the workspace path, e.g. reports/drift.html
    stored: str  # the object's URI in the DVC remote (files/md5/ab/cdef...: no extension)
    url: str | None = None
    expires: dt.datetime | None = None


@dataclass
class Pushed:
    record: str  # where the run's dvc.lock and params.yaml were stored
    reports: list[Report]


# The reports a run links to, with the type a browser needs to show them (the DVC cache keeps no extension).
REPORTS = {
    "reports/drift.html": ("drift-report", "text/html"),
    "reports/shap_bar.png": ("shap-importance", "image/png"),
    "reports/shap_beeswarm.png": ("shap-beeswarm", "image/png"),
}
LINK_EXPIRY = dt.timedelta(days=7)  # the longest an S3 presigned URL (SigV4) may live


@task(name="push", task_run_name="push", **RETRIES)
def push(remote: str | None) -> Pushed:
    """Push every output to the DVC remote, then the run's dvc.lock and params.yaml beside it."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        name = remote_name(repo, remote)
        try:
            pushed = repo.push(remote=remote)
            record = store_in_run_record(
                repo, remote, {path.name: path.read_bytes() for path in (LOCK_FILE, PARAMS_FILE)}
            )
            reports = _reports(repo.cloud.get_remote(remote))
        except Exception as error:  # network, credentials, S3: worth a retry
            raise TransientFailure(f"dvc push to remote '{name}' failed: {first_line(error)}") from error
    get_run_logger().info("pushed %d file(s) to DVC remote '%s'; run record at %s", pushed, name, record)
    return Pushed(record=record, reports=reports)


def store_in_run_record(repo: Any, remote: str | None, files: dict[str, bytes]) -> str:
    """Write files to `<remote>/runs/<flow run id>/` and return that folder's URL.

    A container's working copy vanishes with it; this keeps, next to the data it describes, the
    record of which versions this run produced, so any run can be checked out again.
    """
    target = repo.cloud.get_remote(remote)
    folder = target.fs.join(target.path, "runs", str(flow_run.get_id() or "local"))
    target.fs.makedirs(folder, exist_ok=True)
    for name, content in files.items():
        target.fs.pipe_file(target.fs.join(folder, name), content)
    return redact_url(str(target.fs.unstrip_protocol(folder)))  # logged and recorded in the ledger


def _reports(target: Any) -> list[Report]:
    """Each report this run's dvc.lock names, as the remote `target` keeps it; on S3 with an HTTPS link
    signed with this run's own credentials, served with the report's type and file name."""
    outs = {path: md5 for stage in lock_stages().values() for path, md5 in stage_outs(stage).items()}
    expires = dt.datetime.now(dt.UTC) + LINK_EXPIRY
    found = []
    for path, (key, content_type) in REPORTS.items():
        if path not in outs:
            continue
        stored = target.fs.join(target.path, "files", "md5", outs[path][:2], outs[path][2:])
        report = Report(key, path, str(target.fs.unstrip_protocol(stored)))
        if target.fs.protocol == "s3":
            report.url = _presigned(target.fs.fs_args, stored, content_type, Path(path).name)
            report.expires = expires
        found.append(report)
    return found


def _presigned(fs_args: dict[str, Any], stored: str, content_type: str, name: str) -> str:
    """A GET URL for `bucket/key`, signed (SigV4) with the credentials, endpoint and region the DVC remote
    uses, and answered with `content_type` under the file `name` (the DVC cache keeps no extension)."""
    import boto3
    from botocore.config import Config

    session = boto3.Session(
        aws_access_key_id=fs_args.get("key"), aws_secret_access_key=fs_args.get("secret"),
        aws_session_token=fs_args.get("token"), profile_name=fs_args.get("profile"),
    )  # fmt: skip
    client = session.client("s3", **fs_args.get("client_kwargs", {}), config=Config(signature_version="s3v4"))
    bucket, _, key = stored.partition("/")
    return str(
        client.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket, "Key": key, "ResponseContentType": content_type,
                    "ResponseContentDisposition": f'inline; filename="{name}"'},
            ExpiresIn=int(LINK_EXPIRY.total_seconds()),
        )
    )  # fmt: skip


def remote_name(repo: Any, remote: str | None) -> str:
    return remote or str(repo.config["core"].get("remote", "(none configured)"))


def first_line(error: BaseException) -> str:
    """An exception as one line, credentials masked; DVC's lock error as what it means here."""
    if DVC_LOCK_ERROR in str(error):
        return DVC_LOCKED
    return error_line(error)
