"""`lineage diff A B`: why one model (or run) differs from another, from the ledger alone.

A and B name runs: a flow run id, a model version (the run that trained it), `production`, or
`previous` (the version production replaced). For each, the run's actions and configuration are read
through its edges, then compared section by section: commits, the stages' changed dependency files,
params key by key, the artifacts each stage made whose md5 changed, image, numeric platform and
configuration, metrics with their deltas, and every gate's verdict (gates/table.py). Only what differs is listed,
except the verdicts, which are always shown.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gates.table import BY_ACTION_TYPE, BY_NAME
from lineage.configuration import changes, snapshot
from lineage.entities import Action, ActionType, Artifact, ArtifactType, Context, ContextType, context_id
from lineage.query import QueryError
from lineage.registry import first_verdicts, get_version, production
from lineage.store import LedgerStore

_SHARED = (ArtifactType.CODE, ArtifactType.PARAMS, ArtifactType.IMAGE, ArtifactType.PLATFORM)


@dataclass
class RunView:
    """One run as the ledger holds it."""

    label: str
    run: Context
    model_version: str
    params: dict[str, Any] = field(default_factory=dict)
    deps: dict[str, dict[str, Artifact]] = field(default_factory=dict)  # stage -> path -> artifact
    outs: dict[str, dict[str, Artifact]] = field(default_factory=dict)
    platform: dict[str, Any] = field(default_factory=dict)
    configuration: dict[str, Any] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        return {
            f"{path} {key}": value
            for outs in self.outs.values()
            for path, artifact in outs.items()
            if artifact.artifact_type == ArtifactType.METRICS
            for key, value in artifact.properties.items()
        }

    def summary(self) -> dict[str, Any]:
        p = self.run.properties
        return {
            "name": self.label,
            "flow_run_id": self.run.name,
            "model_version": self.model_version,
            "commit": p.get("git_commit"),
            "started": p.get("started"),
        }


def resolve_run(store: LedgerStore, name: str) -> tuple[Context, str]:
    """The PipelineRun `name` stands for, and the model version it trained ("" if none)."""
    if name in ("production", "previous"):
        current = production(store)
        if current is None:
            raise QueryError("no model version is in production")
        if name == "previous":
            replaced = str(current.properties.get("previous_production") or "")
            if not replaced:
                raise QueryError(f"{current.name} replaced no earlier version: there is no 'previous'")
            current = get_version(store, replaced)
        name = current.name
    found = store.get(name) or store.get(context_id(ContextType.MODEL_VERSION, name))
    if isinstance(found, Context) and found.context_type == ContextType.MODEL_VERSION:
        run = first_verdicts(store, found).properties.get("flow_run_id")  # the run its first record names
        found = store.get(context_id(ContextType.PIPELINE_RUN, str(run)))
    elif not isinstance(found, Context):
        found = store.get(context_id(ContextType.PIPELINE_RUN, name))
    if not isinstance(found, Context) or found.context_type != ContextType.PIPELINE_RUN:
        raise QueryError(f"'{name}' is no flow run id, model version, 'production' or 'previous' in the ledger")
    return found, str(found.properties.get("model_version") or "")


def view(store: LedgerStore, label: str) -> RunView:
    """The run `label` names, with its stages' params, deps and outs, platform, configuration and verdicts."""
    run, version = resolve_run(store, label)
    result = RunView(label, run, version)
    into_run = store.latest(edge.source_id for edge in store.edges([run.id], "destination"))
    stages = {
        str(action.parameters.get("stage")): action
        for action in into_run.values()
        if isinstance(action, Action) and action.action_type == ActionType.STAGE
    }
    configuration = [
        e for e in into_run.values() if isinstance(e, Artifact) and e.artifact_type == ArtifactType.CONFIGURATION
    ]
    result.configuration = snapshot(configuration)
    for action in into_run.values():
        if isinstance(action, Action) and (gate := BY_ACTION_TYPE.get(action.action_type)) is not None:
            result.verdicts[gate.name] = str(action.parameters.get("verdict"))
    for action in stages.values():
        result.params |= {key: value for key, value in action.parameters.items() if key != "stage"}
    ids = [action.id for action in stages.values()]
    edges_in, edges_out = store.edges(ids, "destination"), store.edges(ids, "source")
    artifacts = store.latest([e.source_id for e in edges_in] + [e.destination_id for e in edges_out])
    stage_of = {action.id: stage for stage, action in stages.items()}
    for edges, table, end in ((edges_in, result.deps, "source_id"), (edges_out, result.outs, "destination_id")):
        for edge in edges:
            artifact = artifacts.get(getattr(edge, end))
            if not isinstance(artifact, Artifact):
                continue
            stage = stage_of[edge.source_id if end == "destination_id" else edge.destination_id]
            if artifact.artifact_type == ArtifactType.PLATFORM:
                result.platform = dict(artifact.properties)
            elif artifact.artifact_type not in _SHARED:
                table.setdefault(stage, {})[artifact.source_uri] = artifact
    return result


def _commits(before: str, after: str, repository: Path) -> dict[str, Any]:
    """The commits from `before` to `after` (or back, when `after` is the older), from `git log` here."""
    section: dict[str, Any] = {"before": before, "after": after, "log": None}
    if before == after:
        return section
    try:
        for older, newer, direction in ((before, after, "forward"), (after, before, "backward")):
            done = subprocess.run(
                ["git", "log", "--format=%h %an: %s", f"{older}..{newer}"],
                cwd=repository,
                capture_output=True,
                text=True,
                check=True,
            )
            section |= {"log": done.stdout.splitlines(), "direction": direction}
            if section["log"]:
                break
    except (OSError, subprocess.CalledProcessError):
        section |= {"log": None, "note": "these commits are not in this checkout"}
    return section


def _md5_changes(
    a: dict[str, dict[str, Artifact]], b: dict[str, dict[str, Artifact]]
) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for stage in sorted(a.keys() | b.keys()):
        before, after = a.get(stage, {}), b.get(stage, {})
        rows = [
            {
                "path": path,
                "before": getattr(before.get(path), "md5", None),
                "after": getattr(after.get(path), "md5", None),
            }
            for path in sorted(before.keys() | after.keys())
            if getattr(before.get(path), "md5", None) != getattr(after.get(path), "md5", None)
        ]
        if rows:
            grouped[stage] = rows
    return grouped


def _delta(before: Any, after: Any) -> float | None:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (before, after))
    return float(f"{after - before:.4g}") if numbers else None


def diff(store: LedgerStore, a: str, b: str, repository: Path = Path(".")) -> dict[str, Any]:
    """What changed from run (or version) `a` to `b`: a JSON-ready mapping, one entry per section."""
    left, right = view(store, a), view(store, b)
    produced = {path for outs in right.outs.values() for path in outs} | {p for o in left.outs.values() for p in o}
    deps_changed = {
        stage: [row for row in rows if row["path"] not in produced]  # upstream outputs are listed as artifacts
        for stage, rows in _md5_changes(left.deps, right.deps).items()
    }
    lp, rp = left.run.properties, right.run.properties
    metrics = changes(left.metrics(), right.metrics())
    for row in metrics:
        row["delta"] = _delta(row["before"], row["after"])
    return {
        "a": left.summary(),
        "b": right.summary(),
        "commits": _commits(str(lp.get("git_commit")), str(rp.get("git_commit")), repository),
        "stage_dependencies": {stage: rows for stage, rows in deps_changed.items() if rows},
        "params": changes(left.params, right.params),
        "artifacts": _md5_changes(left.outs, right.outs),
        "image": changes(
            {k: lp.get(k) for k in ("image_uri", "image_revision")},
            {k: rp.get(k) for k in ("image_uri", "image_revision")},
        ),
        "platform": changes(left.platform, right.platform),
        "configuration": changes(left.configuration, right.configuration),
        "metrics": metrics,
        "gates": [
            {"gate": gate, "before": left.verdicts.get(gate, "not run"), "after": right.verdicts.get(gate, "not run")}
            for gate in BY_NAME
        ],
    }


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if isinstance(value, float):
        text = f"{value:.4g}"
    return text if len(text) <= 40 else text[:37] + "..."


def table(result: dict[str, Any]) -> str:
    """The diff for people: one section per kind of change, `before -> after` on each line."""
    a, b = result["a"], result["b"]
    lines = [
        f"from {a['name']}: run {a['flow_run_id']}, {a['model_version'] or 'no model'}",
        f"to   {b['name']}: run {b['flow_run_id']}, {b['model_version'] or 'no model'}",
    ]
    commits = result["commits"]
    if commits["before"] == commits["after"]:
        lines.append(f"commits: unchanged ({commits['before'][:12]})")
    else:
        log = commits["log"]
        count = f"{len(log)} commit{'' if len(log) == 1 else 's'}" if log is not None else commits.get("note", "")
        back = ", going back" if commits.get("direction") == "backward" else ""
        lines.append(f"commits: {commits['before'][:12]} -> {commits['after'][:12]} ({count}{back})")
        lines += [f"  {line}" for line in commits["log"] or []]

    def section(title: str, rows: list[dict[str, Any]], key: str = "key") -> None:
        if not rows:
            lines.append(f"{title}: unchanged")
            return
        lines.append(f"{title}:")
        for row in rows:
            delta = f"  ({row['delta']:+.4g})" if row.get("delta") is not None else ""
            lines.append(f"  {row[key]:<44} {_short(row['before'])} -> {_short(row['after'])}{delta}")

    for title in ("stage_dependencies", "artifacts"):
        grouped = result[title]
        label = title.replace("_", " ")
        if not grouped:
            lines.append(f"{label}: unchanged")
            continue
        lines.append(f"{label}:")
        for stage, rows in grouped.items():
            lines += [
                f"  {stage:<12} {row['path']:<31} {_short(row['before'])} -> {_short(row['after'])}" for row in rows
            ]
    for title in ("params", "image", "platform", "configuration", "metrics"):
        section(title, result[title])
    lines.append("gates:")
    lines += [f"  {row['gate']:<44} {row['before']} -> {row['after']}" for row in result["gates"]]
    return "\n".join(lines)
