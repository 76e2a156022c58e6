"""What a run shows in the Prefect UI when it ends: the run's summary with the model's lineage, the headline
metrics and a link to the drift report. (tune's progress artifact follows the stage as it runs: dvc_ops.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from flows.dvc_ops import Pushed, locked_outs
from flows.summary import read_metrics, summary
from lineage.entities import ActionStatus
from lineage.query import query_lineage
from lineage.recorder import Recorded, StageRun
from lineage.store import LedgerStore

_RESULT = {
    ActionStatus.COMPLETED: "ran",
    ActionStatus.SKIPPED: "skipped (unchanged)",
    ActionStatus.FAILED: "failed",
    ActionStatus.NOT_RUN: "not run",
}


def publish(
    runs: list[StageRun], failure: str | None, pushed: Pushed | None, recorded: Recorded, ledger_url: str | None
) -> None:
    """The UI's view of the run: a summary with the model's lineage graph, the metrics table and a link
    to the drift report."""
    stages = [run.stage for run in runs]
    rows = ["| stage | result | outputs (md5) |", "| --- | --- | --- |"]
    for run in runs:
        shown = locked_outs(run.stage) if run.status in (ActionStatus.COMPLETED, ActionStatus.SKIPPED) else {}
        files = "<br>".join(f"`{path}` {md5[:12]}" for path, md5 in shown.items())
        rows.append(f"| {run.stage} | {_RESULT[run.status]} | {files} |")
    verdict = f"**Run failed:** {failure}" if failure else "**Both gates passed.**"
    create_markdown_artifact(
        key="pipeline-summary",
        markdown=f"# Lineage pipeline\n\n{verdict}\n\n" + "\n".join(rows) + f"\n\n```\n{summary(stages)}\n```"
        f"\n\nRun record (dvc.lock, params.yaml): `{pushed.record if pushed else 'not stored (the push failed)'}`"
        f"\n\n{lineage_section(recorded, ledger_url)}",
        description="Stages run or skipped, their outputs, both gate verdicts and the model's lineage",
    )
    table = [
        {"stage": stage, "metric": name, "value": value}
        for stage, metrics in read_metrics(stages).items()
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


def lineage_section(recorded: Recorded, ledger_url: str | None) -> str:
    """Markdown: the model version, the promotion decision, its lineage as mermaid, and how to query it."""
    head = f"Ledger head: {recorded.head.count} records, `{recorded.head.head_hash}`."
    version = recorded.model_version
    if version is None:
        query = f"`lineage query {recorded.run.id} --direction ascendants`"
        return f"## Lineage\n\nNo model version this run. {head}\n\n{query}"
    with LedgerStore(ledger_url) as store:
        graph = query_lineage(store, version.id)
    return (
        f"## Lineage of model version `{version.name}`\n\n"
        f"Status **{version.properties.get('status')}** (decision: {recorded.decision}). {head}\n\n"
        f"```mermaid\n{graph.to_mermaid()}\n```\n\n"
        f"Query it: `lineage query {version.name} --direction ascendants --depth 10 --format json` · "
        f"`lineage models show {version.name}` · `lineage verify`"
    )


def _headline(stage: str, metrics: dict[str, Any]) -> dict[str, object]:
    picks: dict[str, Callable[[dict[str, Any]], dict[str, object]]] = {
        "etl": lambda m: {"rows_read": m["rows"]["read"], "rows_kept": m["rows"]["written"]},
        "drift_check": lambda m: {"drift_detected": m["drift_detected"], "drifted_share": m["drifted_share"]},
        "preprocess": lambda m: {**m["rows"], "drift_overridden": m["drift_gate"]["overridden"]},
        "tune": lambda m: {"val_rmsle": m["validation"]["rmsle"], **m["trials"]},
        "inference": lambda m: {"test_rmsle": m["test"]["rmsle"], "baseline_test_rmsle": m["baseline_test"]["rmsle"]},
        "fairness": lambda m: {
            "passed": m["passed"],
            **{f"{column}_passed": judged["passed"] for column, judged in m["attributes"].items()},
        },
    }
    return picks[stage](metrics) if stage in picks else {}
