"""The workspace a run works in: held by one run at a time, and checked before any stage runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import get_run_logger, task
from prefect.runtime import flow_run

from flows.dvc_lock import PARAMS_FILE, stage_order
from flows.dvc_ops import first_line
from flows.retry import RETRIES, Rejected, TransientFailure
from lineage.model_card import FILE as CARD_FILE
from lineage.model_card import CardError
from lineage.model_card import load as load_card
from lineage.store import LedgerError, LedgerStore
from tasks.params import Params, load_params
from tasks.stage import EXIT_BAD_INPUT, InputError

WORKSPACE_LOCK = Path(".dvc/tmp/pipeline.lock")
WORKSPACE_HOLDER = Path(".dvc/tmp/pipeline.holder")  # who holds the lock, for the message of who waits


class NotStarted(Exception):
    """The run cannot start: nothing ran and nothing is recorded. The message is one line."""


class WorkspaceBusy(NotStarted):
    """Another run holds this workspace."""


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


def check_before_work(ledger_url: str | None) -> tuple[list[str], Params]:
    """What must hold before any stage runs; returns the stages in order and the typed params.

    params.yaml validates, dvc.yaml and dvc.lock parse, the model card (recorded with the run, shown in
    evidence packs) validates where there is one, and the ledger opens: a run whose lineage cannot be
    recorded must not train or promote anything.
    """
    from dvc.exceptions import DvcException

    try:
        params = load_params(PARAMS_FILE)
        stages = stage_order()
        if Path(CARD_FILE).is_file():
            load_card(Path(CARD_FILE))
        LedgerStore(ledger_url).close()
    except DvcException as error:
        raise NotStarted(f"{first_line(error)}; restore it from git or from a run record (runs/<id>/)") from None
    except (InputError, CardError, LedgerError) as error:
        raise NotStarted(str(error)) from None
    return stages, params


@task(name="numeric-platform", task_run_name="numeric-platform", **RETRIES)
def numeric_platform(env: dict[str, str]) -> dict[str, str]:
    """What the stages' numbers can depend on here (CPU, dispatch, library versions) and where they run (a Dask
    cluster), for the ledger, as a stage sees it with `env` added; a CPU below the numeric platform
    (tasks/__init__.py) or a cluster that cannot be reached is refused before any stage runs."""
    done = subprocess.run(
        [sys.executable, "-m", "tasks.numeric_platform"], capture_output=True, text=True, check=False,
        env=os.environ | env,
    )  # fmt: skip
    said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    if done.returncode == EXIT_BAD_INPUT:
        raise Rejected(said)
    if done.returncode != 0:
        raise TransientFailure(f"python -m tasks.numeric_platform failed: {said}")
    facts: dict[str, str] = json.loads(done.stdout)
    return facts
