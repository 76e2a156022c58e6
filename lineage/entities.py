"""Lineage entities in SageMaker ML Lineage Tracking's vocabulary: Artifact, Action, Context, Association.

Ids:
- Artifact: derived from (source_uri, md5), so the same URI with the same content is always the same
  artifact and the store reuses it instead of recording a duplicate.
- Context: derived from (context_type, name): a flow run, a model version or a deployment has one
  identity, and a later record with the same id (e.g. a model version promoted) supersedes the earlier.
- Association: derived from (source_id, destination_id, association_type): an edge exists once.
- Action: a fresh uuid4 by default, since every execution or decision is a new event; the caller may pass
  its own id to record a later state of the same action. The recorder gives a Stage action
  `stage_run_id(flow run id, stage)` (records before it have uuid4s).

A derived id may be passed explicitly, but it must equal the derived value (a mismatch is a validation error).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    JsonValue,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    field_validator,
    model_validator,
)

from gates.table import BY_ACTION_TYPE

# Printable ASCII without spaces: ids end up in URLs, CLI arguments and database keys.
EntityId = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
NonEmpty = Annotated[str, StringConstraints(min_length=1)]
# Strict types keep True a bool and "1" a string through the JSON round trip.
PropertyValue = StrictBool | StrictInt | FiniteFloat | StrictStr
Properties = dict[str, PropertyValue]


class ArtifactType(StrEnum):
    DATASET = "DataSet"
    MODEL = "Model"
    PREPROCESSOR = "Preprocessor"
    REPORT = "Report"
    METRICS = "Metrics"
    IMAGE = "Image"
    CODE = "Code"
    PARAMS = "Params"
    PLATFORM = "Platform"  # what numeric results can depend on: CPU, dispatch, library versions
    CONFIGURATION = "Configuration"  # a file defining the pipeline, or the deployment the server holds


class ActionType(StrEnum):
    """What an Action is; a gate's verdict is an Action of the type its entry in gates/table.py names."""

    STAGE = "Stage"
    PROMOTION = "Promotion"
    REPRODUCTION = "Reproduction"
    CONFIGURATION_CHANGE = "ConfigurationChange"  # the configuration differs from the deployment's last run
    PREDICTION = "Prediction"  # a batch of rows scored by a model version (the score flow)
    ENDPOINT_UPDATE = "EndpointUpdate"  # an endpoint started serving a model version
    IMPORT = "Import"  # records brought from another ledger by a signed bundle (lineage/bundle.py)
    PROPOSAL = "Proposal"  # an approver or policy change awaiting more signatures (lineage/authority.py)


def _a_gate(value: str) -> str:
    if value not in BY_ACTION_TYPE:
        raise ValueError(f"{value!r} is neither an action type nor a gate's ({', '.join(BY_ACTION_TYPE)})")
    return value


GateActionType = Annotated[str, AfterValidator(_a_gate)]


class ActionStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    SKIPPED = "Skipped"  # DVC found the stage unchanged
    NOT_RUN = "NotRun"  # an earlier stage or gate stopped the run


class ContextType(StrEnum):
    PIPELINE_RUN = "PipelineRun"
    MODEL_VERSION = "ModelVersion"
    DEPLOYMENT = "Deployment"
    APPROVER = "Approver"  # a person (or the pipeline) trusted to sign decisions, with a public key
    ENDPOINT = "Endpoint"  # a prediction endpoint (retail-serve), named by its operator
    LEDGER = "Ledger"  # the first record of a ledger `lineage init` creates: its id is that record's hash
    POLICY = "LedgerPolicy"  # the signing policy: may decisions be unsigned, do approver changes need two
    LEDGER_FORMAT = "LedgerFormat"  # the format the records after it are written in (lineage/ledger_format.py)


class ModelStatus(StrEnum):
    """A model version's place in the registry (lineage/registry.py)."""

    CANDIDATE = "candidate"
    PRODUCTION = "production"
    REJECTED = "rejected"
    ARCHIVED = "archived"  # was production, replaced by a newer version
    PENDING = "pending"  # an override of a failed gate, awaiting a second approver


class Decision(StrEnum):
    """What a Promotion action decided (lineage/registry.py; which ones hold: lineage/decisions.py)."""

    PROMOTED = "promoted"  # the version became production
    REJECTED = "rejected"  # a gate failed: never promoted by a run
    HELD = "held"  # both gates passed but the outputs were not pushed: stays a candidate
    KEPT = "kept"  # a run trained a version that already had a status: nothing changes
    OVERRIDE_REQUESTED = "override_requested"  # a failed gate's override, pending a second approver
    ROLLED_BACK = "rolled_back"  # production went back to the version the current one replaced


# The properties of a context recorded from another ledger (lineage/bundle.py) under a name qualified by
# its origin: that ledger's id and the context's name there.
IMPORTED_FROM, ORIGIN_NAME = "imported_from", "origin_name"


class AssociationType(StrEnum):
    CONTRIBUTED_TO = "ContributedTo"
    ASSOCIATED_WITH = "AssociatedWith"
    DERIVED_FROM = "DerivedFrom"
    PRODUCED = "Produced"
    SAME_AS = "SameAs"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _derived_id(prefix: str, *parts: str) -> str:
    # JSON-encoding the parts keeps ("a", "bc") and ("ab", "c") apart.
    digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
    return f"{prefix}-{digest[:32]}"


def _fill_id(data: Any, derived: str) -> Any:
    """Set the derived id when absent; refuse an explicit id that differs from it."""
    if not data.get("id"):
        return {**data, "id": derived}
    if data["id"] != derived:
        raise ValueError(f"id {data['id']!r} does not match the derived id {derived!r}")
    return data


def artifact_id(source_uri: str, md5: str) -> str:
    """The one id of the artifact at `source_uri` with content hash `md5`."""
    return _derived_id("artifact", source_uri, md5)


def context_id(context_type: ContextType | str, name: str) -> str:
    """The one id of the context of this type and name."""
    return _derived_id("context", str(context_type), name)


def stage_run_id(flow_run_id: str, stage: str) -> str:
    """The id of `stage`'s Stage action in flow run `flow_run_id`: a uuid5 of both, so it is known before
    the stage runs and a live OpenLineage event and the later export share it as their runId."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "urn:retail-lineage:stage-run:" + json.dumps([flow_run_id, stage])))


def association_id(source_id: str, destination_id: str, association_type: AssociationType | str) -> str:
    """The one id of this edge."""
    return _derived_id("association", source_id, destination_id, str(association_type))


class Metadata(_Frozen):
    """Where an action or artifact came from: repository, commit, the flow run that recorded it, project."""

    repository: str | None = None
    commit_id: str | None = None
    generated_by: str | None = None
    project_id: str | None = None


# Derived ids are filled in by a validator before field validation; the empty default only tells type
# checkers the argument is optional.
_DERIVED = Field(default="", description="derived; see the module docstring")


class Artifact(_Frozen):
    """A URI-addressable object (data, model, image, code...) at one content hash.

    `md5` is the content hash the id derives from: the DVC md5 for files, the image digest for an
    image, the commit for code. The first record of an artifact is kept; later sightings reuse it.
    """

    id: EntityId = _DERIVED
    artifact_type: ArtifactType
    source_uri: NonEmpty
    md5: NonEmpty
    size: int | None = Field(default=None, ge=0)
    properties: Properties = Field(default_factory=dict)
    metadata: Metadata = Field(default_factory=Metadata)

    @model_validator(mode="before")
    @classmethod
    def _derive_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("source_uri"), str) and isinstance(data.get("md5"), str):
            return _fill_id(data, artifact_id(data["source_uri"], data["md5"]))
        return data


class Action(_Frozen):
    """One stage execution or decision (a gate verdict, a promotion, a reproduction)."""

    id: EntityId = Field(default_factory=lambda: str(uuid.uuid4()))
    action_type: ActionType | GateActionType
    status: ActionStatus
    start: AwareDatetime
    end: AwareDatetime | None = None
    command: str = ""
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    prefect_task_run_id: str | None = None
    metadata: Metadata = Field(default_factory=Metadata)

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        # One representation per instant, so equal times give equal records on every backend.
        return None if value is None else value.astimezone(dt.UTC)

    @model_validator(mode="after")
    def _ordered(self) -> Action:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end.isoformat()} is before start {self.start.isoformat()}")
        return self


class Context(_Frozen):
    """A grouping: a pipeline run (the Prefect flow run), a model version, a deployment."""

    id: EntityId = _DERIVED
    context_type: ContextType
    name: NonEmpty
    properties: Properties = Field(default_factory=dict)
    source_uri: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _derive_id(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("context_type"), str) and isinstance(data.get("name"), str):
            return _fill_id(data, context_id(data["context_type"], data["name"]))
        return data


class Association(_Frozen):
    """A typed edge from one entity to another, e.g. a dataset ContributedTo a stage."""

    source_id: EntityId
    destination_id: EntityId
    association_type: AssociationType

    @property
    def id(self) -> str:
        return association_id(self.source_id, self.destination_id, self.association_type)


Entity = Artifact | Action | Context | Association
