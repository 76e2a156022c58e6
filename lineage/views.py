"""What the ledger says about a model version, a run, an artifact, the list of versions and the ledger's
own health, as JSON-ready dicts: what the console's pages show, what their `?format=json` twins return,
and what `lineage evidence` and the CLI's JSON print. One function per question, so they cannot disagree.

Metrics come from the ledger (each metrics file is recorded with its values); the files a stage wrote
that the ledger names only by md5 (the trials tables, SHAP importance) are read through `Objects` from
the DVC cache or remote, checked against that md5, and said to be unavailable where neither has them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gates.gate import NO_OVERRIDE, Criterion, NoOverride
from gates.table import BY_ACTION_TYPE, GATES, recorded
from lineage import registry
from lineage.authority import signature_status
from lineage.configuration import metrics_file
from lineage.decisions import decisions_on
from lineage.diff import RunView, diff, view
from lineage.entities import (
    Action,
    ActionStatus,
    ActionType,
    Artifact,
    ArtifactType,
    AssociationType,
    Context,
    ContextType,
    Entity,
    context_id,
)
from lineage.objects import ObjectError, Objects
from lineage.query import Direction, QueryError, query_lineage
from lineage.reproduce import expected
from lineage.store import Kind, LedgerStore
from lineage.verification import published_anchor, verify

# Files a page can open: reports and metrics, which people read. Data and models stay in DVC's storage.
SERVED_TYPES = (ArtifactType.REPORT, ArtifactType.METRICS)
# The incremental check the health page runs (read-only, not logged) reaches at most this many records.
HEALTH_CHECK_LIMIT = 200_000


class NotFound(QueryError):
    """No such version, run or artifact in the ledger; the message is one line."""


# -- the list of model versions ---------------------------------------------------------------------------


def _decision_summary(action: Action | None) -> dict[str, Any] | None:
    if action is None:
        return None
    p = action.parameters
    return {"decision": p.get("decision"), "by": p.get("by"), "at": action.start.isoformat(), "reason": p.get("reason")}


def version_rows(store: LedgerStore, versions: list[Context]) -> list[dict[str, Any]]:
    """`lineage models list --format json`'s rows: each version's record and its latest decision (who, when)."""
    decided = decisions_on(store, versions)
    return [
        {"name": v.name, "id": v.id, **v.properties, "decision": _decision_summary(_latest(decided[v.id]))}
        for v in versions
    ]


def _latest(decisions: list[Action]) -> Action | None:
    """The decision taken last (by its time; of two at the same time, the one recorded last)."""
    return sorted(decisions, key=lambda action: action.start)[-1] if decisions else None


def page_count(total: int, per_page: int) -> int:
    """How many pages `total` rows make, `per_page` a page; at least 1 (an empty list is one page)."""
    return max(1, math.ceil(total / per_page))


def models_page(store: LedgerStore, page: int, per_page: int, status: str | None = None) -> tuple[list[dict], int]:
    """One page of versions, newest first, and how many versions there are (with `status`, only those);
    NotFound past the last page (page 1 always exists, empty or not)."""
    if status is None:
        total = store.count(Kind.CONTEXT, ContextType.MODEL_VERSION)
        _on_a_page(page, per_page, total, "model versions")
        found = store.find(Kind.CONTEXT, ContextType.MODEL_VERSION, last=per_page, skip=(page - 1) * per_page)
        versions = [v for v in reversed(found) if isinstance(v, Context)]
    else:  # a filter reads every version: rare, and the list is what was asked for
        every = [v for v in registry.versions(store) if v.properties.get("status") == status][::-1]
        total = len(every)
        _on_a_page(page, per_page, total, f"{status} versions")
        versions = every[(page - 1) * per_page : page * per_page]
    return version_rows(store, versions), total


def _on_a_page(page: int, per_page: int, total: int, which: str) -> None:
    # Checked before the database sees an offset: an absurd page would overflow its integer.
    last = page_count(total, per_page)
    if page > last:
        raise NotFound(f"page {page} is past the last page, {last} ({total} {which}, {per_page} a page)")


# -- one model version ------------------------------------------------------------------------------------


def _metrics(run: RunView, path: str) -> dict[str, Any] | None:
    for outs in run.outs.values():
        if path in outs:
            return metrics_file(outs[path])
    return None


def _artifact(run: RunView, path: str) -> Artifact | None:
    return next((outs[path] for outs in run.outs.values() if path in outs), None)


def _override(params: dict[str, Any], section: str) -> NoOverride:
    """A gate's override as the run's params held it (params.yaml's <section>.allow, allowed_by, reason)."""
    return NoOverride(
        allow=bool(params.get(f"{section}.allow")),
        allowed_by=str(params.get(f"{section}.allowed_by") or ""),
        reason=str(params.get(f"{section}.reason") or ""),
    )


def _verdicts(
    version: Context, run: RunView, metrics: dict[str, Any], allowed: dict[str, NoOverride]
) -> tuple[list[dict[str, Any]], list[Criterion]]:
    """Each gate, in the table's order: the version's recorded verdict, what its stage measured (the metrics
    file), its line and the reports it names (the drift report, say); and every gate's criteria."""
    found, rows = [], []
    for gate, verdict in zip(GATES, recorded(version.properties).values(), strict=True):
        measured, override = metrics.get(gate.stage), allowed.get(gate.name, NO_OVERRIDE)
        try:
            said = gate.line(measured, override) if measured else None
            rows += gate.rows(measured, override) if measured else []
        except (KeyError, TypeError, ValueError):  # metrics of an older stage, or of one before this gate existed
            said = measured = None
        reports = [
            a for path in gate.evidence if (a := _artifact(run, path)) and a.artifact_type == ArtifactType.REPORT
        ]
        found.append({
            "gate": gate.name, "verdict": verdict, "said": said, "metrics": measured,
            "reports": [{"path": a.source_uri, "artifact": a.id} for a in reports],
        })  # fmt: skip
    return found, rows


def _read(objects: Objects | None, artifact: Artifact | None) -> tuple[bytes | None, str | None]:
    """An artifact's bytes from DVC's storage, or why not."""
    if artifact is None:
        return None, "this run did not make it"
    if objects is None:
        return None, "no DVC storage was given to read it from"
    try:
        data = objects.read(artifact.md5)
    except ObjectError as error:
        return None, str(error)
    return (
        (data, None) if data is not None else (None, f"md5 {artifact.md5} is in neither the DVC cache nor the remote")
    )


def _csv_rows(data: bytes) -> list[dict[str, Any]]:
    def value(text: str) -> Any:
        if text == "":
            return None
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return {"True": True, "False": False}.get(text, text)

    return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(data.decode("utf-8")))]


def _tuning(run: RunView, objects: Objects | None) -> dict[str, Any]:
    summary = _metrics(run, "metrics/tune.json") or {}
    trials, missing = _read(objects, _artifact(run, "reports/tune_trials.csv"))
    epochs, epochs_missing = _read(objects, _artifact(run, "reports/tune_epochs.csv"))
    if _artifact(run, "reports/tune_epochs.csv") is None:
        epochs_missing = "this run's tune stage did not record losses per epoch (it predates reports/tune_epochs.csv)"
    return {
        "summary": summary.get("trials"),
        "best_hyperparameters": summary.get("best_hyperparameters"),
        "trials": _csv_rows(trials) if trials is not None else None,
        "trials_missing": missing,
        "epochs": _csv_rows(epochs) if epochs is not None else None,
        "epochs_missing": epochs_missing,
    }


def _shap(run: RunView, objects: Objects | None) -> dict[str, Any]:
    data, missing = _read(objects, _artifact(run, "reports/shap_importance.json"))
    plots = [a for path in ("reports/shap_bar.png", "reports/shap_beeswarm.png") if (a := _artifact(run, path))]
    return {
        "importance": json.loads(data) if data is not None else None,
        "importance_missing": missing,
        "plots": [{"path": a.source_uri, "artifact": a.id, "md5": a.md5} for a in plots],
    }


def _inputs(run: RunView, objects: Objects | None) -> list[dict[str, Any]]:
    """What the run read that no stage of it made: the raw data, a reference snapshot."""
    made = {path for outs in run.outs.values() for path in outs}
    found: dict[str, dict[str, Any]] = {}
    for stage, deps in run.deps.items():
        for path, artifact in deps.items():
            if path in made or artifact.artifact_type == ArtifactType.METRICS:
                continue
            row = found.setdefault(
                path,
                {
                    "path": path,
                    "artifact": artifact.id,
                    "type": artifact.artifact_type.value,
                    "md5": artifact.md5,
                    "size": artifact.size,
                    "files": artifact.properties.get("nfiles"),
                    "stored_at": objects.location(artifact.md5) if objects else None,
                    "read_by": [],
                },
            )
            row["read_by"].append(stage)
    if "data/raw" in found:
        found["data/raw"]["source"] = run.params.get("data.source")
    return sorted(found.values(), key=lambda row: row["path"])


def _metric_rows(run: RunView) -> list[dict[str, Any]]:
    """The network against the baseline beside it, on validation (tune) and test (inference) data."""
    rows = []
    tune, inference = _metrics(run, "metrics/tune.json") or {}, _metrics(run, "metrics/inference.json") or {}
    pairs = [
        ("validation", tune.get("validation"), (tune.get("baseline") or {}).get("validation")),
        ("test", inference.get("test"), inference.get("baseline_test")),
    ]
    for split, model, baseline in pairs:
        for metric in ("rmsle", "mae", "mse"):
            ours, theirs = (model or {}).get(metric), (baseline or {}).get(metric)
            if ours is None:
                continue
            ratio = ours / theirs if isinstance(theirs, int | float) and theirs else None
            rows.append({"split": split, "metric": metric, "model": ours, "baseline": theirs, "ratio": ratio})
    return rows


def _reproductions(store: LedgerStore, sources: list[Entity], version: str) -> list[dict[str, Any]]:
    """Each reproduction of the version with its match table, rebuilt from the artifacts it recorded."""
    actions = sorted(
        (e for e in sources if isinstance(e, Action) and e.action_type == ActionType.REPRODUCTION),
        key=lambda action: action.start,
    )
    if not actions:
        return []
    recorded = expected(store, version).hashes  # what `lineage reproduce` compared with
    made = store.linked([a.id for a in actions], "source", [AssociationType.PRODUCED])
    result = []
    for action in actions:
        prefix = f"reproduction/{action.id}/"
        rebuilt = {e.source_uri.removeprefix(prefix): e.md5 for e in made[action.id] if isinstance(e, Artifact)}
        mismatched = action.parameters.get("mismatched")
        paths = sorted(set(rebuilt) | {str(path) for path in (mismatched if isinstance(mismatched, list) else [])})
        rows = [
            {"artifact": path, "recorded": recorded.get(path), "reproduced": rebuilt.get(path),
             "match": rebuilt.get(path) is not None and rebuilt.get(path) == recorded.get(path)}
            for path in paths
        ]  # fmt: skip
        result.append(
            {
                "id": action.id,
                "at": action.start.isoformat(),
                "ok": action.status == ActionStatus.COMPLETED,
                "command": action.command,
                "commit": action.parameters.get("commit"),
                "matched": action.parameters.get("matched"),
                "mismatched": action.parameters.get("mismatched"),
                "artifacts": rows,
            }
        )
    return result


def previous_production(version: Context, decisions: list[Action]) -> str | None:
    """The production version before this one was decided on: the one it replaced, or the one in
    production when its run decided (for a version never promoted)."""
    replaced = version.properties.get("previous_production")
    if replaced:
        return str(replaced)
    for action in reversed(decisions):
        if action.parameters.get("previous_production"):
            return str(action.parameters["previous_production"])
    return None


def _diff(store: LedgerStore, previous: str | None, name: str, repository: Path) -> dict[str, Any] | None:
    """`lineage diff PREVIOUS NAME`, or why there is none."""
    if previous is None:
        return None
    try:
        return diff(store, previous, name, repository)
    except QueryError as error:
        return {"error": str(error)}


def lineage_graph(store: LedgerStore, start: str, direction: Direction, depth: int) -> dict[str, Any]:
    """`lineage query START --direction D --depth N --include-edges --format json`."""
    return json.loads(query_lineage(store, start, direction, depth).to_json(include_edges=True))


def version_view(
    store: LedgerStore, name: str, objects: Objects | None = None, repository: Path = Path(".")
) -> dict[str, Any]:
    """Everything about one model version an auditor asks: what made it, its gates, who decided, what
    changed since the production version before it, and whether it was rebuilt."""
    if name == "production":
        current = registry.production(store)
        if current is None:
            raise NotFound("no model version is in production")
        name = current.name
    try:
        shown = registry.report(store, name)
    except registry.RegistryError as error:
        raise NotFound(str(error)) from None
    version = shown.version
    run = view(store, version.name)
    sources = store.linked([version.id], "destination")[version.id]
    p = run.run.properties
    metrics = {gate.stage: _metrics(run, gate.metrics_file) for gate in GATES}
    allowed = {gate.name: _override(run.params, gate.override_section) for gate in GATES if gate.override_section}
    verdicts, rows = _verdicts(version, run, metrics, allowed)
    previous = previous_production(version, shown.decisions)
    return {
        "version": shown.as_dict(),
        "run": {
            "flow_run_id": run.run.name,
            "started": p.get("started"),
            "ended": p.get("ended"),
            "outcome": p.get("outcome"),
            "deployment": p.get("deployment"),
            "run_record": p.get("run_record"),
        },
        "provenance": {
            "repository": p.get("git_repository"),
            "commit": p.get("git_commit"),
            "dirty": p.get("git_dirty"),
            "image_uri": p.get("image_uri"),
            "image_revision": p.get("image_revision"),
            "platform": run.platform,
            "params": run.params,
        },
        "inputs": _inputs(run, objects),
        "gates": [asdict(row) for row in rows],
        "verdicts": verdicts,
        "metrics": _metric_rows(run),
        "shap": _shap(run, objects),
        "tuning": _tuning(run, objects),
        "decisions": [
            {**action.model_dump(mode="json"), "signature": signature_status(store, action)}
            for action in shown.decisions
        ],
        "reproductions": _reproductions(store, sources, version.name),
        "previous_production": previous,
        "diff": _diff(store, previous, version.name, repository),
        "lineage": lineage_graph(store, version.name, Direction.ASCENDANTS, 10),
    }


# -- a run, an artifact --------------------------------------------------------------------------------------


def run_view(store: LedgerStore, flow_run_id: str) -> dict[str, Any]:
    """`lineage runs show`: a pipeline run's stages with their timings (in the order the run recorded them,
    dvc.yaml's), its gates, its configuration and what changed in it since the deployment's previous run."""
    run = store.get(context_id(ContextType.PIPELINE_RUN, flow_run_id))
    if not isinstance(run, Context):
        raise NotFound(f"no pipeline run '{flow_run_id}' in the ledger")
    into = store.linked([run.id], "destination")[run.id]
    actions = [e for e in into if isinstance(e, Action)]
    stages = []
    for action in (a for a in actions if a.action_type == ActionType.STAGE):
        seconds = (action.end - action.start).total_seconds() if action.end else None
        stages.append(
            {
                "stage": action.parameters.get("stage"),
                "status": action.status.value,
                "start": action.start.isoformat() if action.end else None,
                "end": action.end.isoformat() if action.end else None,
                "seconds": seconds,
                "prefect_task_run_id": action.prefect_task_run_id,
                "command": action.command,
                "action": action.id,
            }
        )
    files = [e for e in into if isinstance(e, Artifact) and e.artifact_type == ArtifactType.CONFIGURATION]
    return {
        "run": {"id": run.id, "name": run.name, **run.properties},
        "stages": stages,
        "gates": [
            {
                "gate": str(a.action_type),
                "verdict": a.parameters.get("verdict"),
                "status": a.status.value,
                "action": a.id,
            }
            for a in actions
            if a.action_type in BY_ACTION_TYPE
        ],
        "configuration": [
            {"path": a.source_uri, "md5": a.md5, "git_blob": a.properties.get("git_blob"), "artifact": a.id}
            for a in sorted(files, key=lambda a: a.source_uri)
        ],
        "configuration_changes": [
            {"previous_run": a.parameters.get("previous_run"), "changes": a.parameters.get("changes")}
            for a in actions
            if a.action_type == ActionType.CONFIGURATION_CHANGE
        ],
    }


def runs_list(store: LedgerStore, last: int | None = None) -> list[dict[str, Any]]:
    """`lineage runs list`: every pipeline run (or the `last` ones), oldest first."""
    found = store.find(Kind.CONTEXT, ContextType.PIPELINE_RUN, last=last)
    return [{"name": r.name, "id": r.id, **r.properties} for r in found if isinstance(r, Context)]


def artifact_view(store: LedgerStore, artifact_id: str) -> dict[str, Any]:
    """An artifact, where it came from and what it fed (one hop each way), and whether a page may open it."""
    artifact = store.get(artifact_id)
    if not isinstance(artifact, Artifact):
        raise NotFound(f"no artifact '{artifact_id}' in the ledger")
    return {
        "artifact": artifact.model_dump(mode="json"),
        "lineage": lineage_graph(store, artifact.id, Direction.BOTH, 1),
        "openable": servable(artifact),
    }


def servable(artifact: Artifact) -> bool:
    """A report or metrics file stored by content (a directory's listing is not a file)."""
    return artifact.artifact_type in SERVED_TYPES and not artifact.md5.endswith(".dir")


# -- the ledger's health ----------------------------------------------------------------------------------------


def health_view(store: LedgerStore, objects: Objects | None = None) -> dict[str, Any]:
    """The head, the verification log (`lineage verifications`), the last published anchor, and a read-only
    check of the records appended since the last passing verification (not logged: the console never writes)."""
    head = store.head()
    log = store.verifications()
    last = store.last_verification()
    since = last.head if last is not None and last.record_count else None
    pending = head.count - (since.count if since else 0)
    check: dict[str, Any]
    if pending > HEALTH_CHECK_LIMIT:
        check = {
            "ran": False,
            "pending": pending,
            "detail": f"{pending:,} records since the last verification: run `lineage verify`",
        }
    else:
        began = dt.datetime.now(dt.UTC)
        verified = verify(store, objects=objects)  # what `lineage verify` checks, logged nowhere
        check = {
            "ran": True,
            "pending": pending,
            "ok": verified.ok,
            "detail": "; ".join(verified.lines()),
            "from_record": (since.count if since else 0) + 1,
            "checked_at": began.isoformat(timespec="seconds"),
        }
    return {
        "head": {"record_count": head.count, "head_hash": head.head_hash},
        "verifications": [asdict(v) for v in log],
        "anchor": published_anchor(store, objects),
        "check": check,
        "counts": {
            "model_versions": store.count(Kind.CONTEXT, ContextType.MODEL_VERSION),
            "pipeline_runs": store.count(Kind.CONTEXT, ContextType.PIPELINE_RUN),
            "artifacts": store.count(Kind.ARTIFACT),
            "actions": store.count(Kind.ACTION),
        },
    }
