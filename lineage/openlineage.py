"""The ledger as OpenLineage RunEvents, for Marquez and other OpenLineage consumers, by the spec.

Per PipelineRun context, each Stage action becomes one OpenLineage run of job `lineage-pipeline.<stage>`
(namespace `OPENLINEAGE_NAMESPACE`, default "retail-lineage", standard `jobType` facet): a START event at
the action's start and a COMPLETE (Completed or Skipped) or FAIL (Failed) event at its end (an InProgress
stage has only its START). NotRun stages never started, so they get no events. The runId is the action id
(`stage_run_id(flow run id, stage)`; uuid5 of it for old records whose id is not a UUID) and the standard
`parent` facet points to the flow run (job `lineage-pipeline`). `stage_event` builds the same events live,
from the workspace, while the flow runs the stage.

Datasets: START carries the inputs (the DataSet, Model, Preprocessor, Report and Metrics artifacts that
ContributedTo the action), COMPLETE/FAIL the inputs and the outputs (Produced, or AssociatedWith when
skipped). Each is named where it is stored (OpenLineage's naming conventions):
- a stage output of a run that pushed to its DVC remote (the run record `<remote>/runs/<flow run id>`): the
  remote object, `s3://<bucket>` + `<prefix>/files/md5/<ab>/<cdef..>` (a local remote: `file://<host>` +
  its absolute path);
- any other file (not pushed, or a dependency such as data/raw that DVC hashes but does not store):
  `file://<host>` + `<workspace>/<path>`, from the PipelineRun's `host` and `workspace`; records made
  before those were kept fall back to namespace = the git repository, name = the path in it.
Dataset facets: standard `version` (the DVC md5), `schema` (Parquet fields and types, recorded with the
artifact), `columnLineage` (outputs whose mapping the flow passed, e.g. etl's); ours `dvc` (path, md5,
size, nfiles).

Run facets of our own (where the spec has no place; schemas in lineage/openlineage_facets/, `_schemaURL`s
point there): `image` (worker image URI and revision), `git` (repository, commit, dirty), `dvcStage`
(stage, status: InProgress on START, Completed/Skipped/Failed at the end; command, params, code deps
{path: md5}), `gateVerdicts` (on the COMPLETE/FAIL of each gate's stage (gates/table.py): {gate: {verdict, facts}}).
A FAIL carries the standard `errorMessage` facet with the run's failure.

`validate` checks a serialized event against the official OpenLineage.json and each facet against its own
schema (the one whose document declares the facet's key), which its `_schemaURL` must name; offline, from
the copies vendored in lineage/openlineage_spec/ and ours in lineage/openlineage_facets/.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import attr
import jsonschema
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    DatasetFacet,
    RunFacet,
    column_lineage_dataset,
    dataset_version_dataset,
    error_message_run,
    job_type_job,
    parent_run,
    schema_dataset,
)
from openlineage.client.serde import Serde
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport, TokenProvider
from openlineage.client.transport.http_common import DEFAULT_RETRY_CONFIG
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from common.redact import redact_text
from gates.table import BY_ACTION_TYPE
from lineage.dvc_workspace import (
    dataset_properties,
    host,
    locked_stage,
    read_lock,
    remote_object,
    remote_of_run_record,
)
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
    stage_run_id,
)
from lineage.errors import LineageError
from lineage.recorder import Provenance, artifact_type
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
_TERMINAL = {
    ActionStatus.COMPLETED: RunState.COMPLETE,
    ActionStatus.SKIPPED: RunState.COMPLETE,
    ActionStatus.FAILED: RunState.FAIL,
}
SPEC_DIR = Path(__file__).parent / "openlineage_spec"  # the official schemas, vendored
FACETS_DIR = Path(__file__).parent / "openlineage_facets"  # ours
FACETS_URL = f"{PRODUCER}/raw/main/lineage/openlineage_facets"
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


class _OurFacet:
    """Our facets' schema URL: the schema committed in lineage/openlineage_facets/<Class>.json."""

    @classmethod
    def _get_schema(cls) -> str:
        return f"{FACETS_URL}/{cls.__name__}.json#/$defs/{cls.__name__}"


@attr.define
class DvcDatasetFacet(_OurFacet, DatasetFacet):
    """The file as DVC tracks it: its path in the workspace, DVC md5, size and (a directory's) file count."""

    path: str
    md5: str
    size: int | None = None
    nfiles: int | None = None


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
    """The stage as dvc.lock records it; `code` maps its Python deps to their md5."""

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


@dataclass(frozen=True)
class _File:
    """A dataset as the ledger (an artifact) or the workspace (a dvc.lock entry) gives it."""

    path: str
    md5: str
    size: int | None = None
    nfiles: int | None = None
    schema: str | None = None  # JSON [{name, type}]
    column_lineage: str | None = None  # JSON {column: [{path, field, type, subtype, description}]}

    @classmethod
    def of(cls, path: str, md5: str, size: int | None, props: dict[str, Any]) -> _File:
        """From an artifact's (or `dataset_properties`') properties."""
        nfiles, schema, lineage = props.get("nfiles"), props.get("schema"), props.get("column_lineage")
        return cls(
            path,
            md5,
            size,
            nfiles if isinstance(nfiles, int) else None,
            schema if isinstance(schema, str) else None,
            lineage if isinstance(lineage, str) else None,
        )


@dataclass(frozen=True)
class _Place:
    """Where a run's files are: the DVC remote it pushed its outputs to, else the workspace on its host."""

    remote: str | None  # the DVC remote URL, when the run pushed
    pushed: frozenset[tuple[str, str]]  # (path, md5) of the outputs the push stored there
    host: str | None
    workspace: str | None
    repository: str  # old records, without workspace and host: the git repository names the files

    def name(self, path: str, md5: str) -> tuple[str, str]:
        if self.remote and (path, md5) in self.pushed:
            return remote_object(self.remote, md5, self.host)
        if self.workspace:
            return (f"file://{self.host}" if self.host else "file"), f"{self.workspace.rstrip('/')}/{path}"
        return self.repository, path


def _schema_facet(schema: str) -> schema_dataset.SchemaDatasetFacet:
    fields = [schema_dataset.SchemaDatasetFacetFields(name=f["name"], type=f["type"]) for f in json.loads(schema)]
    return schema_dataset.SchemaDatasetFacet(fields=fields, producer=PRODUCER)


def _column_lineage_facet(
    mapping: str, place: _Place, md5s: dict[str, str]
) -> column_lineage_dataset.ColumnLineageDatasetFacet | None:
    """The columnLineage facet of `mapping`, its input files named as the stage's datasets are (a file the
    stage does not list is left out: its version, hence its name, is unknown)."""
    fields: dict[str, column_lineage_dataset.Fields] = {}
    for column, sources in sorted(json.loads(mapping).items()):
        # one InputField per input field, with every way the column uses it
        used: dict[tuple[str, str, str], list[column_lineage_dataset.Transformation]] = {}
        for source in sources:
            if source["path"] in md5s:
                namespace, name = place.name(source["path"], md5s[source["path"]])
                used.setdefault((namespace, name, source["field"]), []).append(
                    column_lineage_dataset.Transformation(
                        type=source["type"], subtype=source.get("subtype"), description=source.get("description")
                    )
                )
        if used:
            inputs = [column_lineage_dataset.InputField(*key, transformations=ways) for key, ways in used.items()]
            fields[column] = column_lineage_dataset.Fields(inputFields=inputs)
    return column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields, producer=PRODUCER) if fields else None


def _datasets(
    files: Iterable[_File], cls: type[InputDataset] | type[OutputDataset], place: _Place, md5s: dict[str, str]
) -> list[Any]:
    """One dataset per file, sorted by path, named by `place`, with its version, schema and lineage facets."""
    datasets = []
    for file in sorted({f.path: f for f in files}.values(), key=lambda f: f.path):
        facets: dict[str, DatasetFacet] = {
            "dvc": DvcDatasetFacet(file.path, file.md5, file.size, file.nfiles, producer=PRODUCER),
            "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=file.md5, producer=PRODUCER),
        }
        if file.schema:
            facets["schema"] = _schema_facet(file.schema)
        is_output = cls is OutputDataset  # a column mapping tells how an output was made
        lineage = _column_lineage_facet(file.column_lineage, place, md5s) if is_output and file.column_lineage else None
        if lineage is not None:
            facets["columnLineage"] = lineage
        namespace, name = place.name(file.path, file.md5)
        datasets.append(cls(namespace=namespace, name=name, facets=facets))
    return datasets


@dataclass(frozen=True)
class _Stage:
    """What one stage's events say, from the ledger or from the workspace."""

    stage: str
    run_id: str
    flow_run_id: str
    command: str
    params: dict[str, Any]
    code: dict[str, str]
    inputs: list[_File]
    outputs: list[_File]
    place: _Place
    provenance: dict[str, Any]  # the PipelineRun's image_uri, image_revision, git_repository, git_commit, git_dirty

    def event(
        self,
        state: RunState,
        when: dt.datetime,
        status: str,
        failure: str | None = None,
        gates: dict[str, dict[str, Any]] | None = None,
    ) -> RunEvent:
        """The RunEvent of `state`: START with the inputs, COMPLETE/FAIL with inputs and outputs."""
        namespace = os.environ.get("OPENLINEAGE_NAMESPACE") or DEFAULT_NAMESPACE
        props = self.provenance
        dirty = props.get("git_dirty", "unknown")
        facets: dict[str, RunFacet] = {
            "parent": parent_run.ParentRunFacet(
                run=parent_run.Run(runId=_run_id(self.flow_run_id)),
                job=parent_run.Job(namespace=namespace, name=PIPELINE),
                producer=PRODUCER,
            ),
            "image": ImageRunFacet(
                uri=str(props.get("image_uri", "unknown")),
                revision=str(props.get("image_revision", "unknown")),
                producer=PRODUCER,
            ),
            "git": GitRunFacet(
                repository=str(props.get("git_repository", "unknown")),
                commit=str(props.get("git_commit", "unknown")),
                dirty=dirty if isinstance(dirty, bool) else str(dirty),
                producer=PRODUCER,
            ),
            "dvcStage": DvcStageRunFacet(
                stage=self.stage,
                status=status,
                command=self.command,
                params=self.params,
                code=dict(sorted(self.code.items())),
                producer=PRODUCER,
            ),
        }
        if gates:
            facets["gateVerdicts"] = GateVerdictsRunFacet(gates, producer=PRODUCER)
        if state == RunState.FAIL:
            message = failure or f"stage {self.stage} failed"
            facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=message, programmingLanguage="PYTHON", producer=PRODUCER
            )
        md5s = {f.path: f.md5 for f in [*self.inputs, *self.outputs]}
        return RunEvent(
            eventType=state,
            eventTime=when.astimezone(dt.UTC).isoformat(),
            run=Run(runId=self.run_id, facets=facets),
            job=Job(
                namespace=namespace,
                name=f"{PIPELINE}.{self.stage}",
                facets={"jobType": job_type_job.JobTypeJobFacet("BATCH", "PREFECT", "TASK", producer=PRODUCER)},
            ),
            inputs=_datasets(self.inputs, InputDataset, self.place, md5s),
            outputs=[] if state == RunState.START else _datasets(self.outputs, OutputDataset, self.place, md5s),
            producer=PRODUCER,
        )


def _pipeline_runs(store: LedgerStore, flow_run_id: str | None) -> list[Context]:
    if flow_run_id is None:
        return [c for c in store.find(Kind.CONTEXT, entity_type=ContextType.PIPELINE_RUN) if isinstance(c, Context)]
    found = store.latest([context_id(ContextType.PIPELINE_RUN, flow_run_id)]).values()
    runs = [c for c in found if isinstance(c, Context)]
    if not runs:
        raise OpenLineageError(f"no pipeline run with flow run id {flow_run_id!r} in the ledger")
    return runs


def _files(artifacts: Iterable[Any]) -> list[_File]:
    return [
        _File.of(a.source_uri, a.md5, a.size, dict(a.properties))
        for a in artifacts
        if isinstance(a, Artifact) and a.artifact_type in DATASETS
    ]


def _gate_facts(gate: Action) -> dict[str, Any]:
    return {key: value for key, value in gate.parameters.items() if value is not None}


def _failure(run: Context) -> str | None:
    outcome = str(run.properties.get("outcome", ""))
    return outcome.removeprefix("failed: ") if outcome.startswith("failed: ") else None


def run_events(store: LedgerStore, flow_run_id: str | None = None) -> list[RunEvent]:
    """START and COMPLETE/FAIL RunEvents for every stage of every pipeline run (or of `flow_run_id`), sorted
    by (eventTime, START first, job name). NotRun stages get none. Raises OpenLineageError for an unknown id."""
    keyed: list[tuple[dt.datetime, int, str, str, RunEvent]] = []
    for run in _pipeline_runs(store, flow_run_id):
        linked = store.linked([run.id], "destination", {AssociationType.CONTRIBUTED_TO})[run.id]
        actions = [a for a in linked if isinstance(a, Action)]
        stages = [a for a in actions if a.action_type == ActionType.STAGE and a.status != ActionStatus.NOT_RUN]
        gates: dict[str, dict[str, Any]] = {}
        for action in actions:
            if (gate := BY_ACTION_TYPE.get(action.action_type)) is not None:
                gates.setdefault(gate.stage, {})[str(action.action_type)] = _gate_facts(action)
        ids = [a.id for a in stages]
        inputs = store.linked(ids, "destination", {AssociationType.CONTRIBUTED_TO})
        outputs = store.linked(ids, "source", {AssociationType.PRODUCED, AssociationType.ASSOCIATED_WITH})
        props = run.properties
        remote = remote_of_run_record(str(props.get("run_record", "")), run.name)
        place = _Place(
            remote=remote,
            pushed=frozenset((f.path, f.md5) for made in outputs.values() for f in _files(made)),
            host=str(props["host"]) if props.get("host") else None,
            workspace=str(props["workspace"]) if props.get("workspace") else None,
            repository=str(props.get("git_repository") or DEFAULT_NAMESPACE),
        )
        for action in stages:
            stage = str(action.parameters.get("stage", action.id))
            code = {
                a.source_uri: a.md5
                for a in inputs[action.id]
                if isinstance(a, Artifact) and a.source_uri.endswith(".py")
            }
            facts = _Stage(
                stage=stage,
                run_id=_run_id(action.id),
                flow_run_id=run.name,
                command=action.command,
                params={k: v for k, v in action.parameters.items() if k != "stage"},
                code=code,
                inputs=_files(inputs[action.id]),
                outputs=_files(outputs[action.id]),
                place=place,
                provenance=dict(props),
            )
            started = facts.event(RunState.START, action.start, str(ActionStatus.IN_PROGRESS))
            transitions = [(RunState.START, action.start, started)]
            if action.status in _TERMINAL:
                state, when = _TERMINAL[action.status], action.end or action.start
                event = facts.event(state, when, str(action.status), _failure(run), gates.get(stage))
                transitions.append((state, when, event))
            for state, when, event in transitions:
                keyed.append((when, state != RunState.START, f"{PIPELINE}.{stage}", event.run.runId, event))
    return [item[-1] for item in sorted(keyed, key=lambda item: item[:4])]


def _workspace_files(
    entries: Iterable[dict[str, Any]], root: Path, outs: dict[str, dict[str, Any]], lineage: dict[str, Any] | None
) -> list[_File]:
    """The dataset entries of dvc.lock (code and params.yaml left out) with what the recorder keeps of them;
    a dep at the version its producing stage's outs give now (newer than this stage's entry before it ran)."""
    files = []
    for entry in entries:
        if artifact_type(entry["path"]) in DATASETS:
            entry = outs.get(entry["path"], entry)
            props = dataset_properties(root, entry, lineage)
            files.append(_File.of(entry["path"], entry["md5"], entry.get("size"), dict(props)))
    return files


def stage_event(
    state: RunState,
    stage: str,
    flow_run_id: str,
    when: dt.datetime,
    root: Path,
    remote_url: str | None,
    *,
    failure: str | None = None,
    column_lineage: dict[str, Any] | None = None,
    skipped: bool = False,
    provenance: Provenance | None = None,
) -> RunEvent:
    """The RunEvent of `stage` reaching `state` in flow run `flow_run_id`, built from the workspace at `root`
    while the flow runs, with the content `run_events` exports later from the ledger (same runId, job,
    dataset names and facets) for a run that pushed to `remote_url` (None: no remote; outputs are pushed at
    the end of the run, so live events name them by their remote object already).

    START: the inputs dvc.lock lists for the stage before it runs (an upstream output at the version its
    stage just wrote), and the command, params and code md5s as dvc.lock has them then (the previous run's,
    if they changed since). COMPLETE: inputs and outputs from dvc.lock after the stage (`skipped`: DVC found
    it unchanged). FAIL: no datasets (DVC leaves a failed stage's lock entry as it was), and the
    `errorMessage` facet with `failure`. `column_lineage` is RunInfo's ({output path: {column: [...]}}).
    `provenance`: the run's commit and image, read once by the caller (default: read from `root` now).
    Gate verdicts are decided after the stage, by the flow: only the export carries them.
    """
    lock = read_lock(root)
    locked = locked_stage(lock, stage)
    outs = {o["path"]: o for entry in (lock.get("stages") or {}).values() for o in entry.get("outs", [])}
    provenance = provenance or Provenance.read(root)
    outputs = [] if state == RunState.FAIL else _workspace_files(locked.get("outs", []), root, {}, column_lineage)
    place = _Place(
        remote=remote_url,
        pushed=frozenset((o["path"], o["md5"]) for o in outs.values()),
        host=host(),
        workspace=str(root.resolve()),
        repository=provenance.repository,
    )
    facts = _Stage(
        stage=stage,
        run_id=stage_run_id(flow_run_id, stage),
        flow_run_id=flow_run_id,
        command=str(locked.get("cmd", "")),
        params=dict((locked.get("params") or {}).get("params.yaml") or {}),
        code={d["path"]: d["md5"] for d in locked.get("deps", []) if d["path"].endswith(".py")},
        inputs=[] if state == RunState.FAIL else _workspace_files(locked.get("deps", []), root, outs, column_lineage),
        outputs=outputs,
        place=place,
        provenance={
            "image_uri": provenance.image_uri,
            "image_revision": provenance.image_revision,
            "git_repository": provenance.repository,
            "git_commit": provenance.commit,
            "git_dirty": provenance.dirty,
        },
    )
    status = {RunState.START: ActionStatus.IN_PROGRESS, RunState.FAIL: ActionStatus.FAILED}.get(
        state, ActionStatus.SKIPPED if skipped else ActionStatus.COMPLETED
    )
    return facts.event(state, when, str(status), failure)


def to_json_lines(events: Iterable[RunEvent]) -> str:
    """One `Serde.to_json` line per event, newline-terminated."""
    return "".join(Serde.to_json(event) + "\n" for event in events)


def _schemas() -> list[dict[str, Any]]:
    paths = [*SPEC_DIR.glob("*.json"), *SPEC_DIR.glob("facets/*.json"), *FACETS_DIR.glob("*.json")]
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(paths)]


@functools.cache
def _registry() -> Registry:
    """Every vendored official schema and ours, by `$id`: `$ref`s resolve offline."""
    resources = [(s["$id"], Resource.from_contents(s, default_specification=DRAFT202012)) for s in _schemas()]
    return Registry().with_resources(resources)


@functools.cache
def _facet_schemas() -> dict[str, str]:
    """Facet key (e.g. `schema`, `dvc`) -> the schema URL its facet must name: a facet schema document
    declares its key in its top-level `properties` (`{"schema": {"$ref": "#/$defs/SchemaDatasetFacet"}}`)."""
    return {
        key: schema["$id"] + ref["$ref"]
        for schema in _schemas()
        if "facets/" in schema["$id"]
        for key, ref in (schema.get("properties") or {}).items()
    }


@functools.cache
def _validator(schema_url: str) -> jsonschema.Draft202012Validator | None:
    """A validator for the schema at `schema_url` (a `$id` + `#/$defs/...` pointer), None if not vendored."""
    document, _, pointer = schema_url.partition("#")
    try:
        _registry().resolver().lookup(schema_url if pointer else document)
    except Unresolvable:  # not vendored, or no such definition in it
        return None
    return jsonschema.Draft202012Validator(
        {"$ref": schema_url}, registry=_registry(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def _facets(event: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(location, facet) of every facet in a serialized event."""
    run, job = event.get("run") or {}, event.get("job") or {}
    for where, holder, key in [("run", run, "facets"), ("job", job, "facets")]:
        for name, facet in (holder.get(key) or {}).items():
            yield f"{where}/{key}/{name}", facet
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for i, dataset in enumerate(event.get(side) or []):
            for key in ("facets", extra):
                for name, facet in (dataset.get(key) or {}).items():
                    yield f"{side}/{i}/{key}/{name}", facet


def _first_problem(validator: jsonschema.Draft202012Validator, instance: Any, prefix: str) -> str | None:
    error = jsonschema.exceptions.best_match(validator.iter_errors(instance))
    if error is None:
        return None
    where = "/".join([prefix, *(str(part) for part in error.absolute_path)]).strip("/") or "event"
    return f"{where}: {error.message}"


def validate(event_json: dict[str, Any]) -> None:
    """Check a serialized RunEvent against the official OpenLineage.json and each facet against its own
    schema (official or ours, vendored: no network), which its `_schemaURL` must name; raise OpenLineageError
    naming the first problem."""
    event_validator = _validator(RUN_EVENT)
    assert event_validator is not None, "lineage/openlineage_spec/OpenLineage.json is missing"
    problem = _first_problem(event_validator, event_json, "")
    for where, facet in _facets(event_json) if problem is None else []:
        url = facet.get("_schemaURL") if isinstance(facet, dict) else None
        expected = _facet_schemas().get(where.rsplit("/", 1)[-1], url)
        validator = _validator(url) if isinstance(url, str) else None
        if url != expected:  # a standard facet (or ours) must follow its own schema, not one it picks
            problem = f"{where}/_schemaURL: {url!r} is not the schema of this facet, {expected!r}"
        elif validator is None:
            problem = f"{where}/_schemaURL: no vendored schema for {url!r}"
        else:
            problem = _first_problem(validator, facet, where)
        if problem:
            break
    if problem is not None:
        raise OpenLineageError(f"invalid OpenLineage RunEvent at {problem}")


class OpenLineageError(LineageError):
    """No such run to export, or an event the OpenLineage schemas refuse; the message is one line."""


class SendError(LineageError):
    """Sending events failed; the message is one line, without the API key or URL credentials."""


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
        return SendError(redact_text(" ".join(f"{what}: {error}".split()), [key] if key else []))

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
