"""The ledger as OpenLineage RunEvents, for Marquez and other OpenLineage consumers.

Per PipelineRun context, each Stage action becomes one OpenLineage run of job `lineage-pipeline.<stage>`
(namespace `OPENLINEAGE_NAMESPACE`, default "retail-lineage"): a START event at the action's start and a
COMPLETE (Completed or Skipped) or FAIL (Failed) event at its end (an InProgress stage has only its START).
NotRun stages never started, so they get no events. The run id is the action id (uuid5 of it if it is not
a UUID) and a `parent` facet points to the flow run (job `lineage-pipeline`).

Inputs are the DataSet, Model, Preprocessor, Report and Metrics artifacts that ContributedTo the action;
outputs those it Produced (or, when skipped, is AssociatedWith). A dataset's namespace is the repository
it was recorded in, its name the path in the repository. Facets of our own (`_producer` = PRODUCER):
- dataset `dvc`: the DVC md5 and size;
- run `image`: the worker image URI and revision; run `git`: repository, commit and dirty flag;
- run `dvcStage`: stage, ledger status (Skipped is still COMPLETE), command, params, code deps {path: md5};
- run `gateVerdicts`: on the COMPLETE/FAIL event of drift_check (the DriftGate) and of fairness (the
  FairnessGate) only, since a gate decides when its stage ends: {gate: {verdict, ...its facts}}.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Iterable
from typing import Any

import attr
import jsonschema
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import DatasetFacet, RunFacet, job_type_job, parent_run
from openlineage.client.serde import Serde
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport, TokenProvider
from openlineage.client.transport.http_common import DEFAULT_RETRY_CONFIG

from lineage.entities import (
    Action,
    ActionStatus,
    ActionType,
    Artifact,
    ArtifactType,
    AssociationType,
    Context,
    ContextType,
    context_id,
)
from lineage.store import Kind, LedgerStore

PRODUCER = "https://github.com/retail-lineage/retail-lineage"
PIPELINE = "lineage-pipeline"
DEFAULT_NAMESPACE = "retail-lineage"
ENDPOINT = "api/v1/lineage"
DATASETS = {
    ArtifactType.DATASET,
    ArtifactType.MODEL,
    ArtifactType.PREPROCESSOR,
    ArtifactType.REPORT,
    ArtifactType.METRICS,
}
GATE_STAGES = {ActionType.DRIFT_GATE: "drift_check", ActionType.FAIRNESS_GATE: "fairness"}
_TERMINAL = {
    ActionStatus.COMPLETED: RunState.COMPLETE,
    ActionStatus.SKIPPED: RunState.COMPLETE,
    ActionStatus.FAILED: RunState.FAIL,
}


class _OurFacet:
    """Our facets' schema URL: PRODUCER/spec/facets/1-0-0/<Class>.json (none is published there yet)."""

    @classmethod
    def _get_schema(cls) -> str:
        return f"{PRODUCER}/spec/facets/1-0-0/{cls.__name__}.json#/$defs/{cls.__name__}"


@attr.define
class DvcDatasetFacet(_OurFacet, DatasetFacet):
    """The artifact's DVC content hash and size."""

    md5: str
    size: int | None = None


@attr.define
class ImageRunFacet(_OurFacet, RunFacet):
    """The container image the run executed in."""

    uri: str
    revision: str


@attr.define
class GitRunFacet(_OurFacet, RunFacet):
    """The code commit the run executed."""

    repository: str
    commit: str
    dirty: bool | str


@attr.define
class DvcStageRunFacet(_OurFacet, RunFacet):
    """The stage as the ledger recorded it; `code` maps its Python deps to their md5."""

    stage: str
    status: str
    command: str
    params: dict[str, Any]
    code: dict[str, str]


@attr.define
class GateVerdictsRunFacet(_OurFacet, RunFacet):
    """The verdicts of the gates that judged this stage's outputs: {gate: {"verdict": ..., facts}}."""

    gates: dict[str, dict[str, Any]]


def _run_id(value: str) -> str:
    """`value` if it is a UUID, else a stable uuid5 of it (OpenLineage run ids are UUIDs)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PRODUCER}/{value}"))


def _pipeline_runs(store: LedgerStore, flow_run_id: str | None) -> list[Context]:
    if flow_run_id is None:
        return [c for c in store.find(Kind.CONTEXT, entity_type=ContextType.PIPELINE_RUN) if isinstance(c, Context)]
    found = store.latest([context_id(ContextType.PIPELINE_RUN, flow_run_id)]).values()
    runs = [c for c in found if isinstance(c, Context)]
    if not runs:
        raise ValueError(f"no pipeline run with flow run id {flow_run_id!r} in the ledger")
    return runs


def _datasets(artifacts: Iterable[Any], cls: type[InputDataset] | type[OutputDataset]) -> list[Any]:
    chosen = {a.id: a for a in artifacts if isinstance(a, Artifact) and a.artifact_type in DATASETS}
    return [
        cls(
            namespace=a.metadata.repository or DEFAULT_NAMESPACE,
            name=a.source_uri,
            facets={"dvc": DvcDatasetFacet(md5=a.md5, size=a.size, producer=PRODUCER)},
        )
        for a in sorted(chosen.values(), key=lambda a: a.source_uri)
    ]


def _gate_facts(gate: Action) -> dict[str, Any]:
    return {key: value for key, value in gate.parameters.items() if value is not None}


def run_events(store: LedgerStore, flow_run_id: str | None = None) -> list[RunEvent]:
    """START and COMPLETE/FAIL RunEvents for every stage of every pipeline run (or of `flow_run_id`), sorted
    by (eventTime, START first, job name). NotRun stages get none. Raises ValueError for an unknown id."""
    namespace = os.environ.get("OPENLINEAGE_NAMESPACE") or DEFAULT_NAMESPACE
    keyed: list[tuple[dt.datetime, int, str, str, RunEvent]] = []
    for run in _pipeline_runs(store, flow_run_id):
        linked = store.linked([run.id], "destination", {AssociationType.CONTRIBUTED_TO})[run.id]
        actions = [a for a in linked if isinstance(a, Action)]
        stages = [a for a in actions if a.action_type == ActionType.STAGE and a.status != ActionStatus.NOT_RUN]
        gates: dict[str, dict[str, Any]] = {}
        for gate in actions:
            if gate.action_type in GATE_STAGES:
                gates[GATE_STAGES[gate.action_type]] = {str(gate.action_type): _gate_facts(gate)}
        ids = [a.id for a in stages]
        inputs = store.linked(ids, "destination", {AssociationType.CONTRIBUTED_TO})
        outputs = store.linked(ids, "source", {AssociationType.PRODUCED, AssociationType.ASSOCIATED_WITH})
        props = run.properties
        parent = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=_run_id(run.name)),
            job=parent_run.Job(namespace=namespace, name=PIPELINE),
            producer=PRODUCER,
        )
        for action in stages:
            stage = str(action.parameters.get("stage", action.id))
            code = {
                a.source_uri: a.md5
                for a in inputs[action.id]
                if isinstance(a, Artifact) and a.source_uri.endswith(".py")
            }
            facets: dict[str, RunFacet] = {
                "parent": parent,
                "image": ImageRunFacet(
                    uri=str(props.get("image_uri", "unknown")),
                    revision=str(props.get("image_revision", "unknown")),
                    producer=PRODUCER,
                ),
                "git": GitRunFacet(
                    repository=str(props.get("git_repository", "unknown")),
                    commit=str(props.get("git_commit", "unknown")),
                    dirty=dirty if isinstance(dirty := props.get("git_dirty", "unknown"), bool) else str(dirty),
                    producer=PRODUCER,
                ),
                "dvcStage": DvcStageRunFacet(
                    stage=stage,
                    status=str(action.status),
                    command=action.command,
                    params={k: v for k, v in action.parameters.items() if k != "stage"},
                    code=dict(sorted(code.items())),
                    producer=PRODUCER,
                ),
            }
            job = Job(
                namespace=namespace,
                name=f"{PIPELINE}.{stage}",
                facets={"jobType": job_type_job.JobTypeJobFacet("BATCH", "PREFECT", "TASK", producer=PRODUCER)},
            )
            common: dict[str, Any] = {
                "job": job,
                "inputs": _datasets(inputs[action.id], InputDataset),
                "outputs": _datasets(outputs[action.id], OutputDataset),
                "producer": PRODUCER,
            }
            transitions = [(RunState.START, action.start, facets)]
            if action.status in _TERMINAL:
                verdicts = (
                    {"gateVerdicts": GateVerdictsRunFacet(gates[stage], producer=PRODUCER)} if stage in gates else {}
                )
                transitions.append((_TERMINAL[action.status], action.end or action.start, {**facets, **verdicts}))
            for state, when, run_facets in transitions:
                event = RunEvent(
                    eventType=state,
                    eventTime=when.astimezone(dt.UTC).isoformat(),
                    run=Run(runId=_run_id(action.id), facets=run_facets),
                    **common,
                )
                keyed.append((when, state != RunState.START, job.name, event.run.runId, event))
    return [item[-1] for item in sorted(keyed, key=lambda item: item[:4])]


def to_json_lines(events: Iterable[RunEvent]) -> str:
    """One `Serde.to_json` line per event, newline-terminated."""
    return "".join(Serde.to_json(event) + "\n" for event in events)


_URI = {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$"}
_FACETS = {"type": "object", "additionalProperties": {"$ref": "#/$defs/BaseFacet"}}
_DATASET: dict[str, Any] = {
    "type": "object",
    "required": ["namespace", "name"],
    "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}, "facets": _FACETS},
}
RUN_EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["eventTime", "producer", "schemaURL", "run", "job"],
    "properties": {
        "eventType": {"enum": [state.value for state in RunState]},
        "eventTime": {"type": "string", "format": "date-time"},
        "producer": _URI,
        "schemaURL": _URI,
        "run": {
            "type": "object",
            "required": ["runId"],
            "properties": {
                "runId": {"type": "string", "format": "uuid"},
                "facets": {**_FACETS, "properties": {"parent": {"$ref": "#/$defs/ParentRunFacet"}}},
            },
        },
        "job": {
            "type": "object",
            "required": ["namespace", "name"],
            "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}, "facets": _FACETS},
        },
        "inputs": {
            "type": "array",
            "items": {**_DATASET, "properties": {**_DATASET["properties"], "inputFacets": _FACETS}},
        },
        "outputs": {
            "type": "array",
            "items": {**_DATASET, "properties": {**_DATASET["properties"], "outputFacets": _FACETS}},
        },
    },
    "$defs": {
        "BaseFacet": {
            "type": "object",
            "required": ["_producer", "_schemaURL"],
            "properties": {"_producer": _URI, "_schemaURL": _URI},
        },
        "ParentRunFacet": {
            "type": "object",
            "required": ["run", "job"],
            "properties": {
                "run": {
                    "type": "object",
                    "required": ["runId"],
                    "properties": {"runId": {"type": "string", "format": "uuid"}},
                },
                "job": {"type": "object", "required": ["namespace", "name"]},
            },
        },
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(
    RUN_EVENT_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
)


def validate(event_json: dict[str, Any]) -> None:
    """Check a serialized RunEvent against RUN_EVENT_SCHEMA; raise ValueError naming the first problem.

    openlineage-python bundles no OpenLineage.json, so RUN_EVENT_SCHEMA restates the official 2-0-2 spec's
    constraints on a RunEvent: required eventTime (date-time), producer and schemaURL (URIs), run.runId (UUID),
    job and dataset namespace/name, eventType in the enum, `_producer` and `_schemaURL` on every facet
    (ours included), and the parent facet's run id and job.
    """
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(event_json))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "event"
        raise ValueError(f"invalid OpenLineage RunEvent at {where}: {error.message}")


class SendError(RuntimeError):
    """Sending events failed; the message is one line, without the API key or URL credentials."""


_NO_CREDENTIALS = re.compile(r"//[^/@\s]*@")


def send(
    events: Iterable[RunEvent], url: str, api_key: str | None = None, retries: int = 3, timeout: float = 5.0
) -> int:
    """POST each event to `url`/api/v1/lineage (Marquez-compatible); return the number sent.

    The API key (argument, else env OPENLINEAGE_API_KEY) goes only into a Bearer Authorization header.
    Events go through openlineage-python's HttpTransport as exported: OpenLineageClient.emit would add a
    client-version tags facet and a sourceCodeLocation facet read from the working directory's git remote
    (credentials included) and mutate the events. Raises SendError on the first refused or failed POST.
    """
    key = api_key or os.environ.get("OPENLINEAGE_API_KEY")

    def fail(what: str, error: Exception) -> SendError:
        message = " ".join((str(error).replace(key, "***") if key else str(error)).split())
        return SendError(_NO_CREDENTIALS.sub("//", f"{what}: {message}"))

    retry = {**DEFAULT_RETRY_CONFIG, "total": retries, "read": retries, "connect": retries}
    auth = ApiKeyTokenProvider({"api_key": key}) if key else TokenProvider({})
    try:
        transport = HttpTransport(HttpConfig(url=url, endpoint=ENDPOINT, timeout=timeout, auth=auth, retry=retry))
    except ValueError as error:
        raise fail("invalid OpenLineage URL", error) from None
    sent = 0
    try:
        for event in events:
            try:
                transport.emit(event)
            except Exception as error:  # requests' HTTPError, RetryError, ConnectionError...
                raise fail(f"sending event {sent + 1} to {url} failed", error) from None
            sent += 1
    finally:
        transport.close()
    return sent
