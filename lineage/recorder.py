"""What a pipeline run records in the ledger. The flow calls `record_run` once, after the stages and
the push; stages never write the ledger.

The graph one run adds (SageMaker vocabulary):
- a PipelineRun context (the Prefect flow run): commit, dirty tree, image, deployment, outcome, the
  workspace's folder and host (where the files of a run that pushed nothing are);
- per stage, a Stage action, id `stage_run_id(flow run id, stage)` (command, params from dvc.lock,
  Prefect task run id, start, end, status);
  its deps (data, code files, metrics) ContributedTo it, and it Produced its outs (AssociatedWith
  them when DVC skipped it as unchanged); the commit, params.yaml, image and numeric platform (CPU,
  dispatch, library versions) artifacts ContributedTo every stage that ran or was skipped; every
  action ContributedTo the run;
- an action per gate whose stage ran (DriftGate, AccuracyGate, FairnessGate: gates/table.py decides), with
  its verdict; the metrics and files it read ContributedTo it;
- the pipeline's configuration (lineage/configuration.py): Configuration artifacts for its files and
  the deployment that ContributedTo the run; the run's Deployment context (`local` outside any
  deployment) keeps their snapshot, and a ConfigurationChange action records what differs from the
  snapshot the deployment's previous run left;
- when tune produced (or kept) a model: its ModelVersion context, which the model artifact, the run
  and the gates are tied to, and a Promotion action with the decision: promoted (every gate passed,
  the outputs were pushed, the version is a candidate), rejected (a gate failed), held (the push
  failed) or kept (the version already had a status), signed with the pipeline's key or marked unsigned.
Artifacts are addressed by their path in the repository and their DVC md5; a Parquet one keeps its
schema (`schema`, JSON [{name, type}]) and an output whose column mapping the flow passed keeps it
(`column_lineage`, JSON), for the OpenLineage export.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydantic import JsonValue

from common.redact import redact_url
from gates.gate import NO_OVERRIDE, GateVerdict
from gates.table import GATES, Overrides, may_promote, said
from lineage.authority import PIPELINE, current
from lineage.configuration import changes, deployment_artifact, file_artifacts, flatten, metrics_file, snapshot
from lineage.dvc_workspace import dataset_properties, host, locked_stage, read_lock
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
    Decision,
    Entity,
    Metadata,
    PropertyValue,
    stage_run_id,
)
from lineage.registry import (
    ModelStatus,
    Registry,
    decision,
    first_verdicts,
    gates_passed,
    promotion,
    version_name,
    with_status,
)
from lineage.signatures import Signer, mark_unsigned, sign
from lineage.store import Head, LedgerConflict, LedgerError, LedgerStore

LOCAL_RUNS = "local"  # the Deployment context of runs started outside any deployment
MODEL_PATH = "models/model.pt"
_CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class StageRun:
    """One stage as the flow saw it."""

    stage: str
    status: ActionStatus  # Completed (ran), Skipped (unchanged), Failed or NotRun
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    task_run_id: str | None = None


@dataclass(frozen=True)
class RunInfo:
    """The flow run's own facts; the rest is read from the workspace (dvc.lock, metrics, git)."""

    flow_run_id: str
    stages: list[StageRun]
    start: dt.datetime
    end: dt.datetime
    failure: str | None = None  # why the run stopped, if it did
    pushed_to: str | None = None  # the run record in the remote; None when the push failed
    deployment: str | None = None
    overrides: Overrides = field(default_factory=dict)  # gate name -> params.yaml's allow, allowed_by, reason
    platform: dict[str, str] | None = None  # `python -m tasks.numeric_platform`, when a stage was to run
    deployment_configuration: dict[str, Any] | None = None  # as the Prefect server held it, secrets masked
    # where an output's columns come from, for OpenLineage's columnLineage facet:
    # {output path: {column: [{"path", "field", "type", "subtype", "description"}]}} (tasks/etl.py COLUMN_LINEAGE)
    column_lineage: dict[str, Any] | None = None


@dataclass(frozen=True)
class Recorded:
    """What `record_run` appended: the run's context, the model version (if any) and the head after."""

    run: Context
    model_version: Context | None
    decision: str | None
    head: Head
    ledger_id: str | None = None


def artifact_type(path: str) -> ArtifactType:
    if path.startswith("metrics/"):
        return ArtifactType.METRICS
    if path == MODEL_PATH:
        return ArtifactType.MODEL
    if path.startswith("models/"):
        return ArtifactType.PREPROCESSOR
    if path.startswith("reports/"):
        return ArtifactType.REPORT
    if path.endswith(".py"):
        return ArtifactType.CODE
    if path.endswith("params.yaml"):
        return ArtifactType.PARAMS
    return ArtifactType.DATASET


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def _without_credentials(url: str) -> str:
    """A remote URL without its user info and with secret parameters masked: secrets never reach the ledger,
    and the repository is named the same whoever cloned it."""
    return redact_url(url, user=False)


@dataclass(frozen=True)
class Provenance:
    """Where the code and the runtime came from."""

    repository: str
    commit: str
    dirty: bool | str  # "unknown" where there is no git checkout (the worker image)
    image_uri: str
    image_revision: str

    @classmethod
    def read(cls, root: Path) -> Provenance:
        commit = _git(root, "rev-parse", "HEAD")
        status = _git(root, "status", "--porcelain", "--untracked-files=no") if commit else None
        remote = _git(root, "remote", "get-url", "origin") if commit else None
        return cls(
            repository=_without_credentials(remote or os.environ.get("GIT_REPOSITORY") or root.resolve().as_uri()),
            commit=commit or os.environ.get("GIT_COMMIT") or "unknown",
            dirty=bool(status) if status is not None else "unknown",
            image_uri=os.environ.get("IMAGE_URI") or "local",
            image_revision=os.environ.get("IMAGE_REVISION") or os.environ.get("GIT_COMMIT") or "local",
        )


class _RunGraph:
    """Builds one run's entities in order; `add` keeps edges beside the entities they join."""

    def __init__(self, root: Path, info: RunInfo, provenance: Provenance) -> None:
        self.root, self.info, self.provenance = root, info, provenance
        self.entities: list[Entity] = []
        self.metadata = Metadata(
            repository=provenance.repository,
            commit_id=provenance.commit,
            generated_by=info.flow_run_id,
            project_id=os.environ.get("LINEAGE_PROJECT_ID") or "retail-lineage",
        )
        self.lock = read_lock(root)
        self.run = Context(context_type=ContextType.PIPELINE_RUN, name=info.flow_run_id)  # final record at the end

    def add(self, *entities: Entity) -> None:
        self.entities.extend(entities)

    def edge(self, source: Entity, destination: Entity, kind: AssociationType) -> None:
        self.add(Association(source_id=source.id, destination_id=destination.id, association_type=kind))

    def artifact(self, entry: dict[str, Any]) -> Artifact:
        path = entry["path"]
        properties: dict[str, PropertyValue] = {}
        if path.startswith("metrics/") and (self.root / path).is_file():
            properties = flatten(json.loads((self.root / path).read_text(encoding="utf-8")))
        # the OpenLineage export runs later, from the ledger: keep the schema and column mapping now
        properties |= dataset_properties(self.root, entry, self.info.column_lineage)
        artifact = Artifact(
            artifact_type=artifact_type(path),
            source_uri=path,
            md5=entry["md5"],
            size=entry.get("size"),
            properties=properties,
            metadata=self.metadata,
        )
        self.add(artifact)
        return artifact

    def locked(self, stage: str) -> dict[str, Any]:
        return locked_stage(self.lock, stage)

    def stage_action(self, run: StageRun, shared: list[Artifact]) -> tuple[Action, dict[str, Artifact]]:
        """The stage's action and, for a stage that ran or was skipped, its outputs by path."""
        locked = self.locked(run.stage)
        start = run.start or self.info.end
        action = Action(
            id=stage_run_id(self.info.flow_run_id, run.stage),  # known before the stage ran: live events use it
            action_type=ActionType.STAGE,
            status=run.status,
            start=start,
            end=run.end if run.status != ActionStatus.NOT_RUN else None,
            command=locked.get("cmd", ""),
            parameters={"stage": run.stage, **((locked.get("params") or {}).get("params.yaml") or {})},
            prefect_task_run_id=run.task_run_id,
            metadata=self.metadata,
        )
        self.add(action)
        self.edge(action, self.run, AssociationType.CONTRIBUTED_TO)
        outs: dict[str, Artifact] = {}
        if run.status in (ActionStatus.COMPLETED, ActionStatus.SKIPPED):
            for artifact in shared:
                if artifact.artifact_type != ArtifactType.PLATFORM or run.status == ActionStatus.COMPLETED:
                    self.edge(artifact, action, AssociationType.CONTRIBUTED_TO)  # a skipped stage computed nothing here
            for entry in locked.get("deps", []):
                self.edge(self.artifact(entry), action, AssociationType.CONTRIBUTED_TO)
            made = AssociationType.PRODUCED if run.status == ActionStatus.COMPLETED else AssociationType.ASSOCIATED_WITH
            for entry in locked.get("outs", []):
                outs[entry["path"]] = self.artifact(entry)
                self.edge(action, outs[entry["path"]], made)
        return action, outs

    def gate(self, kind: str, verdict: GateVerdict, when: dt.datetime, inputs: list[Artifact], **facts: Any) -> Action:
        action = Action(
            action_type=kind,
            status=ActionStatus.FAILED if verdict == GateVerdict.FAILED else ActionStatus.COMPLETED,
            start=when,
            end=when,
            command=f"{kind} verdict",
            parameters={"verdict": verdict.value, **facts},
            metadata=self.metadata,
        )
        self.add(action)
        for artifact in inputs:
            self.edge(artifact, action, AssociationType.CONTRIBUTED_TO)
        self.edge(action, self.run, AssociationType.CONTRIBUTED_TO)
        return action


def _metrics(outs: dict[str, Artifact], path: str) -> dict[str, Any] | None:
    return metrics_file(outs[path]) if path in outs else None


@dataclass(frozen=True)
class _Built:
    entities: list[Entity]
    run: Context
    model_version: Context | None
    decision: str | None


def build_run(root: Path, info: RunInfo, store: LedgerStore) -> _Built:
    """The run's entities, its context, its model version (if it has one) and the promotion decision."""
    provenance = Provenance.read(root)
    graph = _RunGraph(root, info, provenance)
    params_file = root / "params.yaml"
    shared = [
        Artifact(
            artifact_type=ArtifactType.CODE,
            source_uri=provenance.repository,
            md5=provenance.commit,
            properties={"dirty": provenance.dirty},
        ),
        Artifact(
            artifact_type=ArtifactType.PARAMS,
            source_uri="params.yaml",
            md5=hashlib.md5(params_file.read_bytes()).hexdigest() if params_file.is_file() else "missing",
        ),
        # By the registry's digest where the deployment pulled the image by one (IMAGE_URI=REPOSITORY@sha256:...).
        Artifact(
            artifact_type=ArtifactType.IMAGE,
            source_uri=provenance.image_uri,
            md5=provenance.image_uri.partition("@")[2] or provenance.image_revision,
        ),
    ]
    if info.platform:  # content-addressed: runs on the same platform share one artifact
        facts = json.dumps(info.platform, sort_keys=True).encode()
        shared.append(
            Artifact(
                artifact_type=ArtifactType.PLATFORM,
                source_uri=f"platform/{info.platform.get('architecture', 'unknown')}",
                md5=hashlib.md5(facts).hexdigest(),
                properties=dict(info.platform),
            )
        )
    graph.add(*shared)
    actions: dict[str, Action] = {}
    outs: dict[str, Artifact] = {}
    for stage_run in info.stages:
        actions[stage_run.stage], made = graph.stage_action(stage_run, shared)
        outs |= made

    gates: list[Action] = []
    verdicts = {gate.version_property: GateVerdict.NOT_RUN for gate in GATES}  # every gate, so none can be left out
    for gate in GATES:
        if (metrics := _metrics(outs, gate.metrics_file)) is None:
            continue
        override = info.overrides.get(gate.name, NO_OVERRIDE)
        verdicts[gate.version_property] = verdict = gate.verdict(metrics, override)
        overridden = {"allowed_by": override.allowed_by, "reason": override.reason}
        gates.append(
            graph.gate(
                gate.action_type,
                verdict,
                actions[gate.stage].end or info.end,
                [outs[path] for path in (gate.metrics_file, *gate.evidence) if path in outs],
                **gate.facts(gate.read(metrics)),
                **(overridden if verdict == GateVerdict.OVERRIDDEN else {}),
            )
        )

    version, outcome = None, None
    model = outs.get(MODEL_PATH)
    if model is not None:
        version, outcome = _model_version(graph, store, model, verdicts, gates, info)

    run = Context(
        context_type=ContextType.PIPELINE_RUN,
        name=info.flow_run_id,
        properties={
            "flow": PIPELINE,
            "flow_run_id": info.flow_run_id,
            "deployment": info.deployment or "",
            "git_repository": provenance.repository,
            "git_commit": provenance.commit,
            "git_dirty": provenance.dirty,
            "image_uri": provenance.image_uri,
            "image_revision": provenance.image_revision,
            "run_record": info.pushed_to or "",
            "workspace": str(root.resolve()),  # with host, names the files of a run that pushed nothing
            "host": host(),
            "outcome": f"failed: {info.failure}" if info.failure else "completed",
            "started": info.start.astimezone(dt.UTC).isoformat(),
            "ended": info.end.astimezone(dt.UTC).isoformat(),
            "model_version": version.name if version else "",
        },
    )
    graph.add(run)
    _configuration(graph, store)
    if version is not None:
        graph.edge(graph.run, version, AssociationType.ASSOCIATED_WITH)
    return _Built(graph.entities, run, version, outcome)


def _configuration(graph: _RunGraph, store: LedgerStore) -> None:
    """The run's configuration artifacts, the deployment's new snapshot, and a ConfigurationChange when
    the snapshot differs from the one the deployment's previous run left."""
    info = graph.info
    artifacts = file_artifacts(graph.root)
    if info.deployment and info.deployment_configuration is not None:
        artifacts.append(deployment_artifact(info.deployment, info.deployment_configuration))
    for artifact in artifacts:
        graph.add(artifact)
        graph.edge(artifact, graph.run, AssociationType.CONTRIBUTED_TO)
    after = snapshot(artifacts)
    deployment = Context(
        context_type=ContextType.DEPLOYMENT,
        name=info.deployment or LOCAL_RUNS,
        properties={"last_run": info.flow_run_id, **after},
    )
    previous = store.get(deployment.id)
    if isinstance(previous, Context) and previous.properties.get("last_run"):
        before = {key: value for key, value in previous.properties.items() if key != "last_run"}
        changed = changes(before, after)
        if changed:
            action = Action(
                action_type=ActionType.CONFIGURATION_CHANGE,
                status=ActionStatus.COMPLETED,
                start=info.start,
                end=info.start,
                command=f"configuration of {deployment.name} changed",
                parameters={
                    "deployment": deployment.name,
                    "previous_run": str(previous.properties["last_run"]),
                    "first_seen_by": info.flow_run_id,
                    "changes": cast(list[JsonValue], changed),
                },
                metadata=graph.metadata,
            )
            graph.add(action)
            graph.edge(action, graph.run, AssociationType.CONTRIBUTED_TO)
    graph.add(deployment)
    graph.edge(graph.run, deployment, AssociationType.ASSOCIATED_WITH)


def _model_version(
    graph: _RunGraph,
    store: LedgerStore,
    model: Artifact,
    verdicts: dict[str, GateVerdict],
    gates: list[Action],
    info: RunInfo,
) -> tuple[Context, str]:
    name = version_name(model.md5)
    registry = Registry(store)
    known = store.get(Context(context_type=ContextType.MODEL_VERSION, name=name).id)
    version = first_verdicts(store, registry.version(name)) if isinstance(known, Context) else None
    current, ledger_id = registry.production(), store.ledger_id()
    if version is None:
        version = Context(
            context_type=ContextType.MODEL_VERSION,
            name=name,
            source_uri=MODEL_PATH,
            properties={
                "status": ModelStatus.CANDIDATE.value,
                "model_md5": model.md5,
                "flow_run_id": info.flow_run_id,
                **{gate: verdict.value for gate, verdict in verdicts.items()},
            },
        )
        graph.add(version)
        graph.edge(model, version, AssociationType.ASSOCIATED_WITH)
    for gate in gates:
        graph.edge(gate, version, AssociationType.CONTRIBUTED_TO)

    by = f"{PIPELINE} (flow run {info.flow_run_id})"
    status = version.properties.get("status")
    if status != ModelStatus.CANDIDATE:
        graph.add(*decision(version, Decision.KEPT, by, f"already {status}", current, graph.metadata, ledger_id))
        return version, Decision.KEPT
    # This run's verdicts, and those the version was first recorded with (what its decision relies on).
    gates_ok = may_promote(verdicts) and gates_passed(version)
    if gates_ok and info.pushed_to and not info.failure:
        graph.add(*promotion(current, version, by, "every gate passed", None, graph.metadata, ledger_id))
        return version, Decision.PROMOTED
    if gates_ok:
        reason = info.failure or "the outputs were not pushed to the remote"
        graph.add(*decision(version, Decision.HELD, by, reason, current, graph.metadata, ledger_id))
        return version, Decision.HELD
    reason = info.failure or f"gates: {said(verdicts)}"
    rejected = decision(version, Decision.REJECTED, by, reason, current, graph.metadata, ledger_id)
    graph.add(*rejected, with_status(version, ModelStatus.REJECTED, status_reason=reason, decision=rejected[0].id))
    return version, Decision.REJECTED


def _signed(entities: list[Entity], signer: Signer | None) -> list[Entity]:
    """The pipeline's decisions signed with its key, or marked unsigned where it has none."""
    result: list[Entity] = []
    for entity in entities:
        if isinstance(entity, Action) and entity.action_type == ActionType.PROMOTION:
            entity = sign(entity, signer)[0] if signer else mark_unsigned(entity)
        result.append(entity)
    return result


def signing_problem(store: LedgerStore, signer: Signer | None) -> str | None:
    """Why the pipeline cannot decide in this ledger (None if it can): the policy refuses unsigned decisions and
    it has no key, or its key is not the one registered for approver lineage-pipeline."""
    authority = current(store)
    if signer is None:
        if authority.policy.unsigned_allowed:
            return None
        return (
            "the ledger's policy refuses unsigned decisions and the flow has no key: give it the pipeline's key "
            "(signing_key_block, a Prefect Secret block) and register its public key as approver lineage-pipeline"
        )
    registered = authority.keys.get(PIPELINE)
    if registered is None or registered != signer.public_key():
        return (
            f"the pipeline's key ({signer.public_key().sha256_str()}) is not the active key of approver {PIPELINE}: "
            f"its decisions would not hold (lineage approvers add {PIPELINE} --public-key KEY.pub ...)"
        )
    return None


def record_run(store: LedgerStore, info: RunInfo, root: Path = Path("."), signer: Signer | None = None) -> Recorded:
    """Append the run to the ledger in one transaction, built on the state it was read from (rebuilt
    if another writer appended meanwhile); `signer` signs the promotion decision (the pipeline's key).
    Refused, appending nothing, where the ledger's policy refuses unsigned decisions and there is no key."""
    if signer is None and not current(store).policy.unsigned_allowed:
        raise LedgerError(signing_problem(store, signer) or "")
    for attempt in range(_CONFLICT_RETRIES):
        head = store.head()
        built = build_run(root, info, store)
        try:
            store.append(_signed(built.entities, signer), expected_head=head)
        except LedgerConflict:
            if attempt == _CONFLICT_RETRIES - 1:
                raise
            continue
        version = store.get(built.model_version.id) if built.model_version else None
        version = version if isinstance(version, Context) else None
        return Recorded(built.run, version, built.decision, store.head(), store.ledger_id())
    raise AssertionError("unreachable")
