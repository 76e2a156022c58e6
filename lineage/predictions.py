"""What serving adds to the ledger, in SageMaker's vocabulary:

- a `Prediction` action for each batch the score flow scores: the input and output tables (by md5), the
  model version and the files it scored with contribute to it, and it produced the output;
- an `EndpointUpdate` action each time an endpoint (an `Endpoint` context, named by its operator) starts
  serving a version, so the ledger answers "which model served this endpoint on this date".

Also where a scorer finds a version's files: the model, the preprocessor and the training data its
history features come from, as the version's own run recorded them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from lineage.decisions import StoreFacts, production
from lineage.diff import view
from lineage.entities import (
    Action,
    ActionStatus,
    ActionType,
    Artifact,
    Association,
    AssociationType,
    Context,
    ContextType,
    Entity,
    Metadata,
    context_id,
)
from lineage.query import QueryError
from lineage.registry import get_version
from lineage.store import Kind, LedgerStore

ENDPOINT_UPDATE_ID = "endpoint-update-"  # every EndpointUpdate action's id starts so (deployments/ledger-roles.sql)


def scoring_files(store: LedgerStore, name: str, paths: dict[str, str]) -> dict[str, Artifact]:
    """Model version `name`'s files by role, as its run recorded them (`paths`: role -> path)."""
    version = get_version(store, name)
    run = view(store, name)
    found: dict[str, Artifact] = {}
    for role, path in paths.items():
        artifact = next((outs[path] for outs in run.outs.values() if path in outs), None)
        if artifact is None:
            raise QueryError(f"{name}: its run {run.run.name} recorded no {path}")
        found[role] = artifact
    if "model" in found and found["model"].md5 != version.properties.get("model_md5"):
        raise QueryError(f"{name}: its run recorded {paths['model']} with another md5 than the version's")
    return found


def _edge(source: Entity, destination: Entity, kind: AssociationType) -> Association:
    return Association(source_id=source.id, destination_id=destination.id, association_type=kind)


def prediction(
    version: Context,
    *,
    files: dict[str, Artifact],
    table_in: Artifact,
    table_out: Artifact,
    rows: int,
    start: dt.datetime,
    end: dt.datetime,
    metadata: Metadata | None = None,
    prefect_task_run_id: str | None = None,
) -> list[Entity]:
    """The records of one scored batch: `version` (production or not, as its status says) scored `table_in`
    with `files` into `table_out`."""
    action = Action(
        action_type=ActionType.PREDICTION,
        status=ActionStatus.COMPLETED,
        start=start,
        end=end,
        command=f"score {table_in.source_uri} with {version.name}",
        parameters={
            "model_version": version.name,
            "model_status": str(version.properties.get("status")),
            "rows": rows,
            "input": table_in.source_uri,
            "output": table_out.source_uri,
        },
        prefect_task_run_id=prefect_task_run_id,
        metadata=metadata or Metadata(),
    )
    return [
        table_in,
        table_out,
        action,
        _edge(table_in, action, AssociationType.CONTRIBUTED_TO),
        *(_edge(artifact, action, AssociationType.CONTRIBUTED_TO) for artifact in files.values()),
        _edge(version, action, AssociationType.ASSOCIATED_WITH),
        _edge(action, table_out, AssociationType.PRODUCED),
    ]


def endpoint_update(
    store: LedgerStore, name: str, version: Context, at: dt.datetime, serving: dict[str, str]
) -> list[Entity]:
    """The records of endpoint `name` starting to serve `version` at `at`; `serving` says where (host, image)."""
    current = store.get(context_id(ContextType.ENDPOINT, name))
    previous = current.properties.get("model_version") if isinstance(current, Context) else None
    context = Context(
        context_type=ContextType.ENDPOINT,
        name=name,
        properties={"model_version": version.name, "since": at.isoformat(), **serving},
    )
    action = Action(
        id=f"{ENDPOINT_UPDATE_ID}{uuid.uuid4()}",  # recognisable by the database role that may write only these
        action_type=ActionType.ENDPOINT_UPDATE,
        status=ActionStatus.COMPLETED,
        start=at,
        end=at,
        command=f"serve {version.name} on {name}",
        parameters={
            "endpoint": name,
            "model_version": version.name,
            "model_md5": str(version.properties.get("model_md5")),
            "previous_version": str(previous) if previous else None,
            **serving,
        },
    )
    return [
        context,
        action,
        _edge(version, action, AssociationType.CONTRIBUTED_TO),
        _edge(action, context, AssociationType.CONTRIBUTED_TO),
    ]


@dataclass(frozen=True)
class Served:
    """One update of an endpoint, and the version the decisions that hold had put in production when it was
    recorded, and since when: an update that names another, or that claims a time before that decision, was not
    made by a retail-serve that checks them."""

    update: Action
    in_production: str | None
    decided_at: dt.datetime | None

    @property
    def verified(self) -> bool:
        named = self.update.parameters.get("model_version") == self.in_production
        return named and self.decided_at is not None and self.update.start >= self.decided_at


def served(store: LedgerStore, name: str) -> list[Served]:
    """Endpoint `name`'s updates, oldest first: which version it served from when, each beside the version in
    production then."""
    endpoint_id = context_id(ContextType.ENDPOINT, name)
    if store.get(endpoint_id) is None:
        raise QueryError(f"no endpoint '{name}' in the ledger")
    ids = [edge.source_id for edge in store.edges([endpoint_id], toward="destination")]
    facts = StoreFacts(store)
    found: dict[str, Served] = {}
    for record in list(store.records([(Kind.ACTION, ActionType.ENDPOINT_UPDATE.value)], ids=ids)):
        update = record.entity()
        if isinstance(update, Action) and update.id not in found:  # an update as first recorded
            state = production(store, facts, before=record.seq)
            decided = state.action
            found[update.id] = Served(update, state.name, decided.start if decided is not None else None)
    return sorted(found.values(), key=lambda f: f.update.start)
