"""DVC operations of the lineage-pipeline flow, each step a retried Prefect task: prepare the workspace,
run one stage, share the tuning inputs, push. DVC decides what runs (its status) and records what was
made (dvc.lock); this module asks it, and reads nothing from DVC's console text but its lock error."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import networkx as nx
import yaml
from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run

from flows.retry import RETRIES, Rejected, TransientFailure
from tasks.stage import file_md5
from tasks.tune_settings import FEATURES_DIR, TRIAL_SPLITS

LOCK_FILE = Path("dvc.lock")
PARAMS_FILE = Path("params.yaml")
DVC_LOCK_ERROR = "Unable to acquire lock"  # DVC's message when another process holds .dvc/tmp/lock
DVC_LOCKED = "another DVC process holds this repository's lock (.dvc/tmp/lock)"  # what we say instead
_TRIAL_LINE = re.compile(r"^tune: trial (\d+) of (\d+) ")  # what tasks/tune.py prints as each trial is told


def stage_order(root: Path = Path(".")) -> list[str]:
    """dvc.yaml's stages in DVC's own dependency order (upstream first)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        order = list(reversed(list(nx.lexicographical_topological_sort(graph, key=lambda s: s.addressing))))
        return [stage.name for stage in order if getattr(stage, "name", None)]


def locked_outs(stage: str) -> dict[str, str]:
    """A stage's outputs and their md5 as dvc.lock records them."""
    return _outs(_lock_stages().get(stage, {}))


def _lock_stages() -> dict[str, Any]:
    if not LOCK_FILE.is_file():
        return {}
    return dict((yaml.safe_load(LOCK_FILE.read_text(encoding="utf-8")) or {}).get("stages", {}))


def _outs(locked: dict[str, Any]) -> dict[str, str]:
    return {out["path"]: out["md5"] for out in locked.get("outs", [])}


@task(name="prepare-workspace", **RETRIES)
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
    recorded = {path: md5 for stage in _lock_stages().values() for path, md5 in _outs(stage).items()}
    found = [f"{path}: md5 {file_md5(Path(path))} differs from {recorded.get(path, 'none')}" for path in paths]
    return (
        f"{', '.join(found)} recorded in dvc.lock (changed outside DVC); refusing to overwrite or use it; "
        f"restore it with `dvc checkout --force {' '.join(paths)}`"
    )


@task(**RETRIES)
def run_stage(stage: str, env: dict[str, str], changed: bool, upstream_ran: bool) -> bool:
    """Run one DVC stage unless DVC has nothing to do for it; return whether it ran.

    `changed`: `dvc status` named it before the run, so it runs. After a stage upstream ran, `dvc repro`
    decides: it skips a stage whose deps came out the same bytes, and dvc.lock then keeps its entry.
    `env` adds to this process's environment.
    """
    if not changed and not upstream_ran:
        get_run_logger().info("Stage '%s' didn't change, skipping", stage)
        return False
    before = _lock_stages().get(stage)
    code, output = _repro(stage, env, _progress(stage))
    if code == 0:
        return changed or _lock_stages().get(stage) != before
    own = [line for line in output.splitlines() if line.startswith((f"{stage}: error: ", f"{stage}: refused: "))]
    if own:  # tasks.stage.run_stage printed why it refused its input: retrying cannot help
        raise Rejected(own[-1])
    if DVC_LOCK_ERROR in output:  # DVC waited its 3 s; Prefect's retries wait longer
        raise TransientFailure(f"{stage}: {DVC_LOCKED}")
    raise TransientFailure(f"{stage}: dvc repro exited {code}: {output.splitlines()[-1] if output else ''}")


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
        line = line.rstrip()
        if not line:
            continue
        lines.append(line)
        logger.info(line)
        if on_line is not None:
            on_line(line)
    return process.wait(), "\n".join(lines)


@task(name="share-tuning-inputs", **RETRIES)
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
class Pushed:
    record: str  # where the run's dvc.lock and params.yaml were stored
    drift_report: str | None  # where the remote keeps reports/drift.html, if the run has one


@task(**RETRIES)
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
        except Exception as error:  # network, credentials, S3: worth a retry
            raise TransientFailure(f"dvc push to remote '{name}' failed: {first_line(error)}") from error
        report = locked_outs("drift_check").get("reports/drift.html")
        report_url = _object_url(repo, remote, report) if report else None
    get_run_logger().info("pushed %d file(s) to DVC remote '%s'; run record at %s", pushed, name, record)
    return Pushed(record=record, drift_report=report_url)


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
    return str(target.fs.unstrip_protocol(folder))


def _object_url(repo: Any, remote: str | None, md5: str) -> str:
    """Where the DVC remote keeps the object with this md5 (DVC 3 layout: files/md5/ab/cdef...)."""
    target = repo.cloud.get_remote(remote)
    return str(target.fs.unstrip_protocol(target.fs.join(target.path, "files", "md5", md5[:2], md5[2:])))


def remote_name(repo: Any, remote: str | None) -> str:
    return remote or str(repo.config["core"].get("remote", "(none configured)"))


def first_line(error: BaseException) -> str:
    """An exception as one line; DVC's lock error as what it means here."""
    if DVC_LOCK_ERROR in str(error):
        return DVC_LOCKED
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
