"""The `reproduce` flow: rebuild a model version from its lineage and prove it byte for byte.

The same steps as `lineage reproduce` (lineage/reproduce.py), each a task the UI shows; the comparison
is published as a table artifact and the run ends Failed on any mismatch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from flows.retry import RETRIES, Rejected
from flows.settings import command_line_run, read_secret
from lineage.reproduce import (
    Expected,
    Report,
    ReproduceError,
    compare,
    examine,
    expected,
    record,
    rerun,
    restore,
    worktree,
)
from lineage.store import LedgerStore


@task(name="restore-inputs", task_run_name="restore-inputs", **RETRIES)
def restore_inputs(tree: Path, want: Expected, remote: str | None) -> None:
    """Recorded params.yaml and the DVC-tracked raw inputs, each checked against its recorded md5."""
    try:
        restore(Path("."), tree, want, remote)
    except ReproduceError as error:  # missing or altered: the same on every attempt
        raise Rejected(str(error)) from None


@task(name="rerun-pipeline", task_run_name="rerun-pipeline")
def rerun_pipeline(tree: Path) -> None:
    """`dvc repro --force` with the recorded commit's code."""
    rerun(tree)


@flow(name="reproduce", log_prints=True)
def reproduce_model(
    model_version: str = "production", remote: str | None = None, lineage_db_block: str | None = None
) -> State[Any]:
    """Rebuild a model version from its lineage and compare every artifact's hash with the recorded one."""
    start = dt.datetime.now(dt.UTC)
    ledger_url = read_secret(lineage_db_block) if lineage_db_block else None
    with LedgerStore(ledger_url) as store:
        want = expected(store, model_version)
    get_run_logger().info("reproducing %s: run %s, commit %s", want.version.name, want.flow_run_id, want.commit)
    with worktree(Path("."), want.commit) as tree:
        restore_inputs(tree, want, remote)
        rerun_pipeline(tree)
        rows = compare(tree, want)
        findings = examine(tree, want, rows)
    with LedgerStore(ledger_url) as store:
        action = record(store, want, rows, start, f"reproduce flow: {want.version.name}")
    report = Report(want, rows, action, findings)
    create_table_artifact(
        key="reproduction",
        table=report.as_dict()["artifacts"],
        description=f"{want.version.name} rebuilt from commit {want.commit[:12]}: recorded vs reproduced md5. "
        + " ".join(report.explanation()),
    )
    if not report.ok:
        mismatched = [row.artifact for row in rows if not row.match]
        why = f"; {report.explanation()[0]}" if report.explanation() else ""
        return Failed(message=f"{want.version.name}: {len(mismatched)} mismatch(es): {', '.join(mismatched)}{why}")
    return Completed(message=f"{want.version.name} reproduced byte for byte ({len(rows)} artifacts; {action.id})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=reproduce_model.description)
    parser.add_argument("model_version", nargs="?", default="production")
    parser.add_argument("--remote", default=None)
    arguments = parser.parse_args()
    with command_line_run("reproduce"):
        final = reproduce_model(arguments.model_version, arguments.remote, return_state=True)
    sys.exit(0 if final.is_completed() else 1)
