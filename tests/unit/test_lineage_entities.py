"""Lineage entities: derived ids (one artifact per URI and content hash) and strict validation."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from pydantic import ValidationError

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
    Metadata,
    artifact_id,
)

MD5 = "0123456789abcdef0123456789abcdef"
START = dt.datetime(2024, 3, 4, 6, 0, tzinfo=dt.UTC)


def test_same_uri_and_md5_is_the_same_artifact() -> None:
    first = Artifact(artifact_type=ArtifactType.DATASET, source_uri="data/processed.parquet", md5=MD5, size=10)
    # Other properties and metadata do not change the identity: it is the URI and the content.
    again = Artifact.model_validate({"artifact_type": "DataSet", "source_uri": "data/processed.parquet", "md5": MD5})
    with_metadata = Artifact(
        artifact_type=ArtifactType.DATASET,
        source_uri="data/processed.parquet",
        md5=MD5,
        metadata=Metadata(generated_by="another-run"),
    )
    assert first.id == again.id == with_metadata.id == artifact_id("data/processed.parquet", MD5)


def test_different_content_or_uri_is_another_artifact() -> None:
    base = Artifact(artifact_type=ArtifactType.MODEL, source_uri="models/model.pt", md5=MD5)
    other_md5 = Artifact(artifact_type=ArtifactType.MODEL, source_uri="models/model.pt", md5="f" * 32)
    other_uri = Artifact(artifact_type=ArtifactType.MODEL, source_uri="models/model2.pt", md5=MD5)
    assert len({base.id, other_md5.id, other_uri.id}) == 3


def test_derived_ids_survive_a_json_round_trip() -> None:
    artifact = Artifact(artifact_type=ArtifactType.IMAGE, source_uri="ecr/worker:abc", md5="sha256:" + "a" * 64)
    context = Context(context_type=ContextType.MODEL_VERSION, name="demand/3", properties={"status": "candidate"})
    assert Artifact.model_validate_json(artifact.model_dump_json()) == artifact
    assert Context.model_validate_json(context.model_dump_json()) == context
    assert context.id == Context.model_validate({"context_type": "ModelVersion", "name": "demand/3"}).id


def test_an_explicit_id_must_match_the_derived_one() -> None:
    with pytest.raises(ValidationError, match="does not match the derived id"):
        Artifact(id="artifact-forged", artifact_type=ArtifactType.DATASET, source_uri="data/x", md5=MD5)


def test_actions_get_a_fresh_uuid_and_utc_times() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    a = Action(action_type=ActionType.STAGE, status=ActionStatus.COMPLETED, start=START.astimezone(paris), end=START)
    b = Action(action_type=ActionType.STAGE, status=ActionStatus.COMPLETED, start=START)
    assert a.id != b.id
    assert uuid.UUID(a.id).version == 4
    assert a.start == START
    assert a.start.utcoffset() == dt.timedelta(0)


def test_association_id_names_the_edge() -> None:
    edge = Association(source_id="a", destination_id="b", association_type=AssociationType.PRODUCED)
    same = Association.model_validate({"source_id": "a", "destination_id": "b", "association_type": "Produced"})
    other = Association(source_id="a", destination_id="b", association_type=AssociationType.DERIVED_FROM)
    assert edge.id == same.id != other.id


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (Artifact, {"artifact_type": "Spreadsheet", "source_uri": "x", "md5": MD5}),
        (Action, {"action_type": "Deploy", "status": "Completed", "start": START}),
        (Action, {"action_type": "Stage", "status": "Done", "start": START}),
        (Context, {"context_type": "Experiment", "name": "x"}),
        (Association, {"source_id": "a", "destination_id": "b", "association_type": "Caused"}),
    ],
)
def test_unknown_types_are_refused(
    model: type[Artifact | Action | Context | Association], fields: dict[str, object]
) -> None:
    with pytest.raises(ValidationError, match="Input should be"):
        model.model_validate(fields)


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (Artifact, {"artifact_type": "Model", "source_uri": "x", "md5": MD5, "sha": "x"}),
        (Action, {"action_type": "Stage", "status": "Completed", "start": START, "retries": 3}),
        (Context, {"context_type": "Deployment", "name": "weekly", "owner": "me"}),
        (Association, {"source_id": "a", "destination_id": "b", "association_type": "SameAs", "weight": 1}),
    ],
)
def test_extra_keys_are_refused(
    model: type[Artifact | Action | Context | Association], fields: dict[str, object]
) -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        model.model_validate(fields)


def test_metadata_refuses_unknown_keys() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Metadata.model_validate({"repository": "r", "branch": "main"})


def test_naive_times_and_reversed_intervals_are_refused() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        Action(action_type=ActionType.STAGE, status=ActionStatus.COMPLETED, start=dt.datetime(2024, 1, 1))
    with pytest.raises(ValidationError, match="is before start"):
        Action(
            action_type=ActionType.STAGE, status=ActionStatus.FAILED, start=START, end=START - dt.timedelta(seconds=1)
        )


def test_entities_are_frozen_and_properties_keep_their_types() -> None:
    artifact = Artifact(
        artifact_type=ArtifactType.METRICS,
        source_uri="metrics/tune.json",
        md5=MD5,
        properties={"flag": True, "n": 1, "x": 1.5, "s": "1"},
    )
    with pytest.raises(ValidationError, match="frozen"):
        artifact.md5 = "f" * 32
    assert Artifact.model_validate_json(artifact.model_dump_json()).properties == {
        "flag": True,
        "n": 1,
        "x": 1.5,
        "s": "1",
    }
    with pytest.raises(ValidationError):
        Artifact(artifact_type=ArtifactType.METRICS, source_uri="m", md5=MD5, properties={"x": float("nan")})
