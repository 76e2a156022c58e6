"""QueryLineage on a hand-built ledger: direction, depth, type filter, edges, starts and output formats.

The ledger (arrows are associations):

    raw(v1) -> etl#1 -> processed(v1) -> tune#1 -> model(v1) -> version model-1
    raw(v2) -> etl#2 -> processed(v2) -> tune#2 -> model(v2)
    code    -> etl#1, etl#2, tune#1, tune#2
    fairness gate #1 -> version model-1
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gates.fairness import GATE as FAIRNESS
from lineage.entities import (
    Action,
    ActionStatus,
    ActionType,
    Artifact,
    ArtifactType,
    Association,
    AssociationType,
    Context,
    ContextType,
    Entity,
)
from lineage.query import Direction, QueryError, query_lineage, resolve
from lineage.registry import promotion
from lineage.signatures import mark_unsigned
from lineage.store import LedgerStore

START = dt.datetime(2026, 1, 5, 6, tzinfo=dt.UTC)
CONTRIBUTED, PRODUCED = AssociationType.CONTRIBUTED_TO, AssociationType.PRODUCED


def _edge(source: Entity, destination: Entity, kind: AssociationType) -> Association:
    return Association(source_id=source.id, destination_id=destination.id, association_type=kind)


def _stage(name: str, week: int) -> Action:
    return Action(
        id=f"{name}-{week}",
        action_type=ActionType.STAGE,
        status=ActionStatus.COMPLETED,
        start=START,
        parameters={"stage": name},
    )


def _data(uri: str, version: int, kind: ArtifactType = ArtifactType.DATASET) -> Artifact:
    return Artifact(artifact_type=kind, source_uri=uri, md5=f"{uri}-v{version}")


CODE = Artifact(artifact_type=ArtifactType.CODE, source_uri="https://git.example/retail.git", md5="c0ffee")
VERSION = Context(
    context_type=ContextType.MODEL_VERSION,
    name="model-1",
    properties={"status": "candidate", "drift_gate": "passed", "fairness_gate": "passed"},
)
# The pipeline's promotion of it (unsigned: this demo ledger has no policy), its status record and the pointer.
PROMOTED = [
    mark_unsigned(e) if isinstance(e, Action) else e for e in promotion(None, VERSION, "lineage-pipeline", "ok")
]
GATE = Action(
    id="fairness-gate-1",
    action_type=FAIRNESS.action_type,
    status=ActionStatus.COMPLETED,
    start=START,
    parameters={"verdict": "passed"},
)


def _week(week: int) -> list[Entity]:
    raw, processed = _data("data/raw", week), _data("data/processed.parquet", week)
    model = _data("models/model.pt", week, ArtifactType.MODEL)
    etl, tune = _stage("etl", week), _stage("tune", week)
    return [
        raw, processed, model, etl, tune,
        _edge(raw, etl, CONTRIBUTED), _edge(CODE, etl, CONTRIBUTED), _edge(etl, processed, PRODUCED),
        _edge(processed, tune, CONTRIBUTED), _edge(CODE, tune, CONTRIBUTED), _edge(tune, model, PRODUCED),
    ]  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LedgerStore]:
    with LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        model_1 = _data("models/model.pt", 1, ArtifactType.MODEL)
        ledger.append(
            [
                CODE,
                *_week(1),
                VERSION,
                *PROMOTED,
                GATE,
                _edge(model_1, VERSION, AssociationType.ASSOCIATED_WITH),
                _edge(GATE, VERSION, CONTRIBUTED),
            ]
        )
        ledger.append(_week(2))
        yield ledger


def _labels(store: LedgerStore, start: str, direction: Direction, depth: int, types: list[str] | None = None) -> set:
    return {(v.type, v.label) for v in query_lineage(store, start, direction, depth, types).vertices}


def test_ascendants_grow_with_depth_and_stop_at_the_sources(store: LedgerStore) -> None:
    model_1 = _data("models/model.pt", 1, ArtifactType.MODEL).id
    assert _labels(store, model_1, Direction.ASCENDANTS, 1) == {
        ("Model", "models/model.pt"),
        ("Stage", "tune (Completed)"),
    }
    assert _labels(store, model_1, Direction.ASCENDANTS, 2) == {
        ("Model", "models/model.pt"),
        ("Stage", "tune (Completed)"),
        ("DataSet", "data/processed.parquet"),
        ("Code", "https://git.example/retail.git"),
    }
    everything = query_lineage(store, model_1, Direction.ASCENDANTS, 10)
    assert {v.id for v in everything.vertices} == {
        model_1, "tune-1", "etl-1", CODE.id, _data("data/processed.parquet", 1).id, _data("data/raw", 1).id
    }  # fmt: skip
    assert "tune-2" not in {v.id for v in everything.vertices}  # the other week's lineage stays out
    assert query_lineage(store, model_1, Direction.ASCENDANTS, 50) == everything


def test_the_model_version_shows_its_gate_and_its_whole_lineage(store: LedgerStore) -> None:
    found = _labels(store, "model-1", Direction.ASCENDANTS, 10)
    assert ("FairnessGate", "passed (Completed)") in found
    assert ("DataSet", "data/raw") in found
    assert ("ModelVersion", "model-1") in found


def test_descendants_answer_which_models_a_dataset_fed(store: LedgerStore) -> None:
    raw_1 = _data("data/raw", 1).id
    assert _labels(store, raw_1, Direction.DESCENDANTS, 10, ["ModelVersion", "Model"]) == {
        ("DataSet", "data/raw"),  # the start is always returned
        ("Model", "models/model.pt"),
        ("ModelVersion", "model-1"),
    }
    # The code fed both weeks' models; depth 4 reaches the models but not the version.
    assert _labels(store, CODE.id, Direction.DESCENDANTS, 4, ["model"]) == {
        ("Code", "https://git.example/retail.git"),
        ("Model", "models/model.pt"),
    }
    assert len(query_lineage(store, CODE.id, Direction.DESCENDANTS, 4, ["Model"]).vertices) == 3


def test_both_directions_from_a_stage(store: LedgerStore) -> None:
    both = _labels(store, "tune-2", Direction.BOTH, 1)
    assert both == {
        ("Stage", "tune (Completed)"),
        ("DataSet", "data/processed.parquet"),
        ("Code", "https://git.example/retail.git"),
        ("Model", "models/model.pt"),
    }


def test_edges_join_only_returned_vertices(store: LedgerStore) -> None:
    graph = query_lineage(store, "model-1", Direction.ASCENDANTS, 10, ["DataSet", "Stage"])
    kept = {vertex.id for vertex in graph.vertices}
    assert graph.edges
    assert all(edge.source_id in kept and edge.destination_id in kept for edge in graph.edges)
    payload = json.loads(graph.to_json(include_edges=True))
    assert len(payload["edges"]) == len(graph.edges)
    assert payload["start"] == [VERSION.id]
    assert "edges" not in json.loads(graph.to_json(include_edges=False))


def test_starts_by_uri_version_name_production_or_id(store: LedgerStore) -> None:
    assert resolve(store, "data/raw") == _data("data/raw", 2).id  # the version recorded last
    assert resolve(store, "model-1") == VERSION.id
    assert resolve(store, "production") == VERSION.id
    assert resolve(store, "tune-1") == "tune-1"
    with pytest.raises(
        QueryError, match="'nowhere' is no entity id, model version, endpoint or artifact URI in the ledger"
    ):
        resolve(store, "nowhere")
    with pytest.raises(QueryError, match="--depth must be at least 1, got 0"):
        query_lineage(store, "model-1", Direction.ASCENDANTS, 0)


def test_mermaid_and_dot_name_every_vertex_and_edge(store: LedgerStore) -> None:
    graph = query_lineage(store, "model-1", Direction.ASCENDANTS, 10)
    mermaid, dot = graph.to_mermaid(), graph.to_dot()
    assert mermaid.startswith("flowchart LR")
    assert mermaid.count("-->|") == len(graph.edges) == dot.count(" -> ")
    for vertex in graph.vertices:
        assert f"{vertex.type}: {vertex.label}" in mermaid
        assert json.dumps(vertex.id) in dot
