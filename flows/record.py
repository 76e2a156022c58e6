"""The run's record: appended to the lineage ledger (which decides on promotion), and the ledger's new
head stored in the DVC remote, beside the run record and among the ledger's anchors, kept outside the
database."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.runtime import deployment, flow_run

from flows.dvc_ops import Pushed, first_line, remote_name, store_in_run_record
from flows.retry import RETRIES, TransientFailure
from flows.settings import read_secret
from flows.workspace import NotStarted
from gates.table import Overrides
from lineage.errors import LineageError
from lineage.objects import Objects
from lineage.recorder import PIPELINE, Recorded, RunInfo, StageRun, record_run, signing_problem
from lineage.signatures import Signer, signer_from_text
from lineage.store import LedgerStore
from tasks.etl import COLUMN_LINEAGE


def run_info(
    runs: list[StageRun],
    started: dt.datetime,
    failure: str | None,
    pushed: Pushed | None,
    allowed: Overrides,
    platform: dict[str, str] | None,
    configuration: dict[str, Any] | None,
) -> RunInfo:
    """The flow run's own facts for the ledger; the rest it reads from the workspace (dvc.lock, metrics, git)."""
    return RunInfo(
        flow_run_id=str(flow_run.get_id() or "local"),
        stages=runs,
        start=started,
        end=dt.datetime.now(dt.UTC),
        failure=failure,
        pushed_to=pushed.record if pushed else None,
        deployment=f"{flow_run.get_flow_name()}/{deployment.get_name()}" if deployment.get_id() else None,
        overrides=allowed,
        platform=platform,
        deployment_configuration=configuration,
        column_lineage=COLUMN_LINEAGE,  # lineage/ cannot import tasks/: the flow hands it over
    )


@contextmanager
def pipeline_signer(signing_key_block: str | None) -> Iterator[Signer | None]:
    """The pipeline's key from the Secret block `signing_key_block`, or None without one."""
    if not signing_key_block:
        yield None
        return
    with signer_from_text(PIPELINE, read_secret(signing_key_block)) as signer:
        yield signer


def check_signing(ledger_url: str | None, signing_key_block: str | None) -> None:
    """Refuse, before any stage runs, a run whose decision could not hold: the ledger's policy refuses unsigned
    decisions and the flow has no key, or its key is not approver lineage-pipeline's."""
    try:
        with LedgerStore(ledger_url) as store, pipeline_signer(signing_key_block) as signer:
            problem = signing_problem(store, signer)
    except (LineageError, ValueError) as error:  # ValueError: Prefect's, for a Secret block that does not exist
        raise NotStarted(str(error)) from None
    if problem:
        raise NotStarted(problem)


@task(name="record-lineage", task_run_name="record-lineage", **RETRIES)
def record_lineage(info: RunInfo, ledger_url: str | None, signing_key_block: str | None) -> Recorded:
    """Append the run to the lineage ledger and decide on promotion, in one transaction; the decision is
    signed with the pipeline's key from `signing_key_block` (a Secret block), or unsigned where the ledger's
    policy allows.

    A retry is safe: a failed append leaves nothing behind.
    """
    with LedgerStore(ledger_url) as store, pipeline_signer(signing_key_block) as signer:
        recorded = record_run(store, info, signer=signer)
    get_run_logger().info(
        "recorded in the lineage ledger: model version %s, decision %s (%s); ledger head %d %s",
        recorded.model_version.name if recorded.model_version else "none",
        recorded.decision or "none",
        f"signed by {PIPELINE}" if signer else "unsigned: no signing_key_block",
        recorded.head.count,
        recorded.head.head_hash,
    )
    return recorded


@task(name="publish-ledger-head", task_run_name="publish-ledger-head", **RETRIES)
def publish_ledger_head(remote: str | None, recorded: Recorded) -> str:
    """Store the ledger's head beside the run record and among the ledger's anchors: what `lineage verify`
    checks a rewritten or shortened ledger against, kept outside the database."""
    from dvc.repo import Repo

    head = {"record_count": recorded.head.count, "head_hash": recorded.head.head_hash}
    with Repo(".") as repo:
        try:
            where = store_in_run_record(repo, remote, {"ledger-head.json": json.dumps(head).encode()})
            if recorded.ledger_id:
                by = f"lineage-pipeline flow run {recorded.run.name}"
                Objects(Path("."), remote).publish_anchor(recorded.ledger_id, recorded.head, by)
            return where
        except Exception as error:  # network, credentials, S3: worth a retry
            name = remote_name(repo, remote)
            raise TransientFailure(f"storing the ledger head in remote '{name}' failed: {first_line(error)}") from error
