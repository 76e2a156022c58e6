"""QueryLineage: walk the ledger's graph from one entity, up (ascendants) or down (descendants).

Semantics follow SageMaker's QueryLineage: start from an entity, follow associations for at most
`depth` hops in the given direction, optionally keep only vertices of some types (the walk still
passes through the others), and return the vertices with, on request, the edges between them.
A start may be an entity id, a model version's or an endpoint's name, `production`, or an artifact's source URI
(its most recently recorded version).

A SameAs edge points from an entity's record imported from another ledger to the local entity it is the
same as (lineage/bundle.py), so a version's ascendants in the ledger it was imported into reach the data
and run of the ledger it was trained in, and the imported record's descendants reach the local one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lineage.decisions import production
from lineage.entities import Action, ActionType, Artifact, Association, Context, ContextType, Entity, context_id
from lineage.errors import LineageError
from lineage.store import Kind, LedgerStore


class Direction(StrEnum):
    ASCENDANTS = "ascendants"  # what this came from
    DESCENDANTS = "descendants"  # what came from this
    BOTH = "both"


class QueryError(LineageError):
    """The start cannot be found or the arguments make no query; the message is one line."""


@dataclass(frozen=True)
class Vertex:
    id: str
    kind: str  # artifact, action or context
    type: str  # e.g. DataSet, Stage, ModelVersion
    label: str  # an artifact's URI, an action's name or type, a context's name
    details: dict[str, Any]  # the entity's own fields

    @classmethod
    def of(cls, entity: Entity) -> Vertex:
        details = entity.model_dump(mode="json")
        if isinstance(entity, Artifact):
            return cls(entity.id, "artifact", entity.artifact_type, entity.source_uri, details)
        if isinstance(entity, Context):
            return cls(entity.id, "context", entity.context_type, entity.name, details)
        assert isinstance(entity, Action)
        if entity.action_type in (ActionType.PREDICTION, ActionType.ENDPOINT_UPDATE):  # which version, when
            when = entity.start.isoformat(timespec="seconds")
            return cls(
                entity.id, "action", entity.action_type, f"{entity.parameters.get('model_version')} at {when}", details
            )
        # A stage by its name, a gate by its verdict, a promotion by its decision.
        what = entity.parameters.get("stage") or entity.parameters.get("verdict") or entity.parameters.get("decision")
        return cls(entity.id, "action", entity.action_type, f"{what or entity.action_type} ({entity.status})", details)


@dataclass(frozen=True)
class LineageGraph:
    start: list[str]
    vertices: list[Vertex]
    edges: list[Association]

    def to_json(self, include_edges: bool) -> str:
        result: dict[str, Any] = {"start": self.start, "vertices": [vars(vertex) for vertex in self.vertices]}
        if include_edges:
            result["edges"] = [edge.model_dump(mode="json") for edge in self.edges]
        return json.dumps(result, indent=2, sort_keys=True)

    def to_mermaid(self) -> str:
        """A mermaid flowchart, sources on the left."""
        names = {vertex.id: f"n{index}" for index, vertex in enumerate(self.vertices)}
        lines = ["flowchart LR"]
        for vertex in self.vertices:
            shape = {"artifact": ('["', '"]'), "action": ('(["', '"])'), "context": ('{{"', '"}}')}[vertex.kind]
            label = f"{vertex.type}: {vertex.label}".replace('"', "'")
            lines.append(f"  {names[vertex.id]}{shape[0]}{label}{shape[1]}")
        lines += [
            f"  {names[edge.source_id]} -->|{edge.association_type}| {names[edge.destination_id]}"
            for edge in self.edges
        ]
        return "\n".join(lines)

    def to_dot(self) -> str:
        """A Graphviz digraph."""
        shapes = {"artifact": "box", "action": "ellipse", "context": "hexagon"}
        lines = ["digraph lineage {", "  rankdir=LR;"]
        for vertex in self.vertices:
            label = json.dumps(f"{vertex.type}: {vertex.label}")
            lines.append(f"  {json.dumps(vertex.id)} [label={label}, shape={shapes[vertex.kind]}];")
        lines += [
            f"  {json.dumps(e.source_id)} -> {json.dumps(e.destination_id)} [label={json.dumps(e.association_type)}];"
            for e in self.edges
        ]
        return "\n".join([*lines, "}"])


def resolve(store: LedgerStore, start: str) -> str:
    """The entity id `start` names: an id, a model version or endpoint name, `production`, or an artifact URI."""
    found = store.get(start)
    if isinstance(found, Association):
        raise QueryError(f"{start} is an association (an edge), not an entity: query its source or destination")
    if found is not None:
        return start
    if start == "production":
        current = production(store).name  # as the decisions that hold imply it, never the pointer's word
        if current is None:
            raise QueryError("no model version is in production")
        return context_id(ContextType.MODEL_VERSION, current)
    for context_type in (ContextType.MODEL_VERSION, ContextType.ENDPOINT):
        named = context_id(context_type, start)
        if store.get(named) is not None:
            return named
    artifacts = store.find(Kind.ARTIFACT, name=start, last=1)  # the version first recorded most recently
    if artifacts:
        return artifacts[0].id
    raise QueryError(f"'{start}' is no entity id, model version, endpoint or artifact URI in the ledger")


def query_lineage(
    store: LedgerStore,
    start: str,
    direction: Direction = Direction.ASCENDANTS,
    depth: int = 10,
    types: list[str] | None = None,
) -> LineageGraph:
    """The vertices within `depth` hops of `start` in `direction`, and the edges between them."""
    if depth < 1:
        raise QueryError(f"--depth must be at least 1, got {depth}")
    start_id = resolve(store, start)
    seen = {start_id}
    frontier = {start_id}
    edges: dict[str, Association] = {}
    ways = {
        Direction.ASCENDANTS: ["destination"],
        Direction.DESCENDANTS: ["source"],
        Direction.BOTH: ["destination", "source"],
    }[direction]
    for _ in range(depth):
        reached: set[str] = set()
        for toward in ways:
            for edge in store.edges(frontier, toward=toward):
                edges[edge.id] = edge
                reached.add(edge.source_id if toward == "destination" else edge.destination_id)
        frontier = reached - seen
        if not frontier:
            break
        seen |= frontier
    entities = store.latest(seen)
    vertices = sorted(
        (Vertex.of(entity) for entity in entities.values()), key=lambda vertex: (vertex.kind, vertex.type, vertex.label)
    )
    if types:
        wanted = {name.lower() for name in types}
        vertices = [vertex for vertex in vertices if vertex.type.lower() in wanted or vertex.id == start_id]
    kept = {vertex.id for vertex in vertices}
    shown = sorted(
        (edge for edge in edges.values() if edge.source_id in kept and edge.destination_id in kept),
        key=lambda edge: (edge.source_id, edge.destination_id),
    )
    return LineageGraph(start=[start_id], vertices=vertices, edges=shown)
