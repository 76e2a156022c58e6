"""What a run shows in the Prefect UI when it ends: a summary that fits on one screen (the stages, every gate's
verdicts criterion by criterion, the model version's decision explained, its lineage in a dozen rows), the
metrics with the gates' bounds, and the reports as links a browser can open. (tune's progress artifact
follows the stage as it runs: dvc_ops.)"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from flows.dvc_lock import PARAMS_FILE, locked_deps, locked_outs
from flows.dvc_ops import Pushed
from flows.summary import describe, read_metrics
from gates.table import BY_NAME, Overrides, criteria, said, verdicts
from lineage import registry
from lineage.entities import ActionStatus, Decision
from lineage.recorder import Recorded, StageRun
from lineage.store import LedgerStore
from tasks.stage import file_md5

_RESULT = {
    ActionStatus.COMPLETED: "ran",
    ActionStatus.SKIPPED: "skipped (unchanged)",
    ActionStatus.FAILED: "failed",
    ActionStatus.NOT_RUN: "not run",
}
_HAS_METRICS = {ActionStatus.COMPLETED, ActionStatus.SKIPPED}


def publish(
    runs: list[StageRun],
    failure: str | None,
    pushed: Pushed | None,
    recorded: Recorded,
    ledger_url: str | None,
    allowed: Overrides,
) -> None:
    """The UI's view of the run: the summary, the metrics table and a link per report that has one."""
    metrics = this_runs_metrics(runs)
    rows = criteria(metrics, allowed)
    stages = [[run.stage, _RESULT[run.status], describe(run.stage, metrics[run.stage], allowed)] for run in runs]
    gates = [[row.gate, row.criterion, row.value, row.bound, row.result] for row in rows if row.decides]
    sections = [
        f"# Lineage pipeline\n\n{f'**Run failed:** {failure}' if failure else '**Every gate passed.**'}",
        _table(["stage", "result", "summary"], stages),
        "## Gates\n\n"
        + (_table(["gate", "criterion", "value", "bound", "result"], gates) if gates else "None ran.")
        + "\n\nEach column's drift score, and what the policy measures but does not judge: `pipeline-metrics`.",
        decision_section(recorded, ledger_url, failure),
        lineage_section(runs, recorded, metrics, allowed),
        reports_section(pushed),
    ]
    create_markdown_artifact(
        key="pipeline-summary",
        markdown="\n\n".join(sections) + "\n",
        description="Stages, the gates' verdicts, the model version's decision and its lineage",
    )
    table = [
        {"stage": stage, "metric": name, "value": _round(value), "bound": "", "result": ""}
        for stage, found in metrics.items()
        if found
        for name, value in _headline(stage, found).items()
    ]
    table += [
        {"stage": BY_NAME[row.gate].stage, "metric": row.criterion, "value": row.value, "bound": row.bound,
         "result": row.result}
        for row in rows
    ]  # fmt: skip
    if table:
        create_table_artifact(key="pipeline-metrics", table=table, description="Metrics, and the gates' bounds")
    for report in pushed.reports if pushed else []:
        if report.url and report.expires:
            expiry = f"signed with this run's credentials, valid until {report.expires:%Y-%m-%d %H:%M} UTC"
            create_link_artifact(
                key=report.key, link=report.url, link_text=Path(report.path).name,
                description=f"{report.path}: {expiry}; kept in the DVC remote as {report.stored}",
            )  # fmt: skip


def decision_section(recorded: Recorded, ledger_url: str | None, failure: str | None) -> str:
    """The model version's decision, explained: a version kept in production says since when, and whether
    today's gates would promote it again."""
    version = recorded.model_version
    if version is None:
        return "## Model\n\nNo model version this run" + (f": it stopped before tune ({failure})." if failure else ".")
    name, status = version.name, version.properties.get("status")
    show = f"See `lineage models show {name}`." + console_link(name)
    if recorded.decision == Decision.PROMOTED:
        text = f"Promoted to production by this run: every gate passed. {show}"
    elif recorded.decision == Decision.KEPT:
        with LedgerStore(ledger_url) as store:
            decisions = registry.report(store, name).decisions
        first = next((d for d in decisions if d.parameters.get("decision") == Decision.PROMOTED), None)
        since = f", in {status} since {first.start:%Y-%m-%d %H:%M} UTC ({first.parameters['by']})" if first else ""
        today = (
            "Today's run stopped (above), so this version would not be promoted today. The gates do not demote "
            "a version already in production: `lineage models rollback` does, if it must go."
            if failure
            else "Today's gates passed again."
        )
        text = f"Kept in {status}: this run made the same model bytes as this version{since}. {today} {show}"
    else:  # rejected, or held (gates passed but the outputs were not pushed)
        text = f"{str(recorded.decision).capitalize()}: {failure or 'the gates did not pass'}. Status {status}. {show}"
    return f"## Model version `{name}`\n\n{text}"


def this_runs_metrics(runs: list[StageRun]) -> dict[str, Any]:
    """Each stage's metrics file, for the stages this run ran or found unchanged; None for the others, whose
    file (if any) an earlier run left: its verdicts are not this run's."""
    found = read_metrics([run.stage for run in runs])
    return {run.stage: found[run.stage] if run.status in _HAS_METRICS else None for run in runs}


def console_link(version: str) -> str:
    """A link to the version's page in the lineage console, when LINEAGE_CONSOLE_URL says where it is."""
    url = os.environ.get("LINEAGE_CONSOLE_URL", "").strip()
    if not url.startswith(("http://", "https://")):  # unset, or a deployment template left unfilled
        return ""
    return f" [Open {version} in the lineage console]({url.rstrip('/')}/models/{quote(version, safe='')})."


def lineage_section(runs: list[StageRun], recorded: Recorded, metrics: dict[str, Any], allowed: Overrides) -> str:
    """What made this run's model, in a dozen rows; the whole graph is one command away."""
    facts = recorded.run.properties
    produced = {path for run in runs for path in locked_outs(run.stage)}
    inputs = {path: md5 for path, md5 in locked_deps().items() if path not in produced and not path.endswith(".py")}
    dirty = " (uncommitted changes)" if facts.get("git_dirty") else ""
    did = {label: [run.stage for run in runs if _RESULT[run.status] == label] for label in _RESULT.values()}
    did_said = "; ".join(f"{label}: {', '.join(stages)}" for label, stages in did.items() if stages)
    rows = [["data", path, f"md5 {md5[:12]}"] for path, md5 in sorted(inputs.items())]
    rows += [
        ["code", str(facts.get("git_repository")), f"commit {str(facts.get('git_commit'))[:12]}{dirty}"],
        ["params", "params.yaml", f"md5 {file_md5(PARAMS_FILE)[:12]}"],
        ["image", str(facts.get("image_uri")), f"revision {facts.get('image_revision')}"],
        ["stages", " → ".join(run.stage for run in runs), did_said],
    ]
    if metrics.get("tune") and (model := locked_outs("tune").get("models/model.pt")):  # this run's model, if any
        rows.append(["model", "models/model.pt", f"md5 {model[:12]}"])
    rows.append(["verdicts", "this run's gates", said(verdicts(metrics, allowed))])
    version = recorded.model_version
    if version is not None:
        rows.append(["version", version.name, f"{version.properties.get('status')} (decision: {recorded.decision})"])
    command = f"lineage query {version.name if version else recorded.run.id} --direction ascendants --depth 10"
    return f"## Lineage\n\n{_table(['', 'what', 'version'], rows)}\n\nThe whole graph: `{command}`"


def reports_section(pushed: Pushed | None) -> str:
    """Links where the remote signed them; else the workspace's copies and the command that opens one."""
    if pushed is None:
        return "## Reports\n\nNot pushed: the reports stayed in the run's workspace."
    linked = [report for report in pushed.reports if report.url and report.expires]
    if linked:
        links = " · ".join(f"[{Path(report.path).name}]({report.url})" for report in linked)
        text = f"{links} (signed with this run's credentials, valid until {linked[0].expires:%Y-%m-%d %H:%M} UTC)"
    elif pushed.reports:
        first = Path.cwd() / pushed.reports[0].path
        text = (
            f"{', '.join(f'`{report.path}`' for report in pushed.reports)} in `{Path.cwd()}`; "
            f"`python -m webbrowser file://{first}` opens the first. A local DVC remote has no URL a browser "
            "opens: it keeps each by its md5 (`lineage query` lists them)."
        )
    else:
        text = "None this run."
    return f"## Reports\n\n{text}\n\nRun record (dvc.lock, params.yaml): `{pushed.record}`"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = [f"| {' | '.join(header)} |", "|" + " --- |" * len(header)]
    lines += [
        "| " + " | ".join(str(cell).replace("|", "\\|").replace("\n", " ") for cell in row) + " |" for row in rows
    ]
    return "\n".join(lines)


def _round(value: object) -> object:
    """Four significant digits: what the numbers are judged on, not their last bits."""
    return float(f"{value:.4g}") if isinstance(value, float) else value


def _headline(stage: str, metrics: dict[str, Any]) -> dict[str, object]:
    """The metrics of a stage that is no gate (a gate's are its criteria)."""
    picks: dict[str, Callable[[dict[str, Any]], dict[str, object]]] = {
        "etl": lambda m: {"rows_read": m["rows"]["read"], "rows_kept": m["rows"]["written"]},
        "preprocess": lambda m: m["rows"],
        "tune": lambda m: {"val_rmsle": m["validation"]["rmsle"], **m["trials"]},
        "inference": lambda m: {"test_rmsle": m["test"]["rmsle"], "baseline_test_rmsle": m["baseline_test"]["rmsle"]},
    }
    return picks[stage](metrics) if stage in picks else {}
