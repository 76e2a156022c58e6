"""A lineage graph as Graphviz DOT for people: the summary (data, models, reports, metrics, stages, gates,
decisions and versions: how the data became the model) or the full graph (each code file, the
configuration, params, image, platform and the run too). Each node links to its page; viz.js lays it
out and draws it as SVG."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gates.table import BY_ACTION_TYPE
from lineage.entities import ActionStatus, AssociationType, ModelStatus

# What the summary keeps: the data flow and the decisions. The rest (each code file, the configuration,
# params, image, platform, the run) is in the full graph, and listed on the version's page.
SUMMARY_TYPES = {
    "DataSet", "Model", "Preprocessor", "Report", "Stage", *BY_ACTION_TYPE, "Promotion", "Reproduction",
    "ModelVersion", "Metrics",
}  # fmt: skip
_STYLE = {
    "artifact": 'shape=box, style="rounded,filled", fillcolor="#f6f8fa", color="#8c959f"',
    "action": 'shape=box, style="filled", fillcolor="#ddf4ff", color="#54aeff"',
    "context": 'shape=hexagon, style="filled", fillcolor="#fff8c5", color="#d4a72c"',
}


def summary(graph: dict[str, Any], run: str | None = None) -> list[dict[str, Any]]:
    """The summary's vertices: those of SUMMARY_TYPES; of the actions, only `run`'s own (an artifact an
    earlier run made shows as this run's input, not with that run's stages) and the version's decisions;
    no reproduction's copy of an artifact (SameAs its original; the match table is on the version's page);
    and nothing left without an edge."""
    start = set(graph["start"])

    def kept(vertex: dict[str, Any]) -> bool:
        if vertex["id"] in start:
            return True
        if vertex["type"] not in SUMMARY_TYPES or vertex["label"].startswith("reproduction/"):
            return False
        made_by = (vertex["details"].get("metadata") or {}).get("generated_by")
        return vertex["kind"] != "action" or run is None or made_by in (run, None)

    chosen = {v["id"] for v in graph["vertices"] if kept(v)}
    linked = {end for e in graph.get("edges", []) if {e["source_id"], e["destination_id"]} <= chosen for end in
              (e["source_id"], e["destination_id"])}  # fmt: skip
    return [v for v in graph["vertices"] if v["id"] in linked or v["id"] in start]


def _failed(vertex: dict[str, Any]) -> bool:
    """Drawn in red: an action that failed (a stage, a gate whose verdict failed, a reproduction that did not
    match) or a rejected model version. Vertices hold the entities' JSON: each status in its enum's one spelling."""
    details = vertex["details"]
    if vertex["kind"] == "action":
        return details.get("status") == ActionStatus.FAILED
    return (details.get("properties") or {}).get("status") == ModelStatus.REJECTED


def _label(vertex: dict[str, Any]) -> str:
    details = vertex["details"]
    if vertex["kind"] == "artifact":
        md5 = str(details.get("md5", ""))
        return f"{vertex['label']}\n{vertex['type']} · {md5[:8]}"
    if vertex["kind"] == "context":
        status = (details.get("properties") or {}).get("status")
        return f"{vertex['type']}\n{vertex['label']}" + (f"\n{status}" if status else "")
    return f"{vertex['type']}\n{vertex['label']}"


def to_dot(
    graph: dict[str, Any],
    full: bool,
    href: Callable[[dict[str, Any]], str | None],
    rankdir: str = "TB",
    run: str | None = None,
) -> str:
    """DOT for `lineage query`'s JSON (vertices and edges): all of it, or its summary around `run` (the flow
    run that made the version); sources on top (a pipeline is long and narrow: it fits a page's width), or
    on the left with rankdir LR; `href` links each node (None: no link)."""
    start = set(graph["start"])
    vertices = graph["vertices"] if full else summary(graph, run)
    kept = {v["id"] for v in vertices}
    lines = [
        "digraph lineage {",
        f'  rankdir={rankdir}; bgcolor="transparent"; nodesep=0.25; ranksep=0.45;',
        '  node [fontname="Helvetica", fontsize=13, margin="0.12,0.06"];',
        '  edge [color="#8c959f", arrowsize=0.6];',
    ]
    for vertex in vertices:
        extra = ', color="#cf222e", penwidth=2' if _failed(vertex) else ""
        extra += ", penwidth=3" if vertex["id"] in start else ""
        target = href(vertex)
        if target:
            extra += f', href={json.dumps(target)}, target="_top"'
        label, name = json.dumps(_label(vertex), ensure_ascii=False), json.dumps(vertex["id"])
        lines.append(f"  {name} [label={label}, {_STYLE[vertex['kind']]}{extra}, tooltip={name}];")
    for edge in graph.get("edges", []):
        if edge["source_id"] in kept and edge["destination_id"] in kept:
            style = "" if edge["association_type"] == AssociationType.PRODUCED else ' [style="dashed"]'
            lines.append(f"  {json.dumps(edge['source_id'])} -> {json.dumps(edge['destination_id'])}{style};")
    return "\n".join([*lines, "}"])
