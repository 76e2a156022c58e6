"""The model registry: each trained model is a ModelVersion context in the ledger, and each decision on it a
Promotion action.

A version starts as `candidate`; a decision then makes it `production` (the one it replaces becomes
`archived`) or `rejected`. A version is promoted only when every gate passed, or by an override of a failed
gate that two different approvers sign (four eyes): the request leaves it `pending`, the second approver's
`approve` promotes it. Every manual decision is signed by a registered approver's SSH key; the pipeline's
with its own key, or unsigned where the ledger's policy allows (lineage/authority.py). Each decision names
the ledger and quotes the gate verdicts it relies on, and comes first in its append, followed by what it
changes: status records and the Deployment context `production`, for people and graphs.

Readers never take those on their word: the version in production and each version's status are what the
decisions that hold imply (lineage/decisions.py), and `lineage verify` names a status record or pointer that
says otherwise. Every change is one ledger append, made only if nobody appended since the state was read,
so a failure leaves the previous production version in place.

A version trained in another environment and imported (lineage/bundle.py) is a local candidate with a
`trained_in` property (the other ledger's id), which every decision on it carries too. The imported
record of the version itself (`model-...@<ledger id[:12]>`, with `imported_from`) is that ledger's
history: it is not listed among the versions and cannot be promoted here.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gates.table import BY_ACTION_TYPE, may_promote, said
from lineage import decisions
from lineage.entities import (
    IMPORTED_FROM,
    ORIGIN_NAME,
    Action,
    ActionStatus,
    ActionType,
    Association,
    AssociationType,
    Context,
    ContextType,
    Decision,
    Entity,
    Metadata,
    ModelStatus,
    context_id,
)
from lineage.errors import LineageError
from lineage.store import END, Kind, LedgerStore

if TYPE_CHECKING:
    from lineage.signatures import PublicKey, Signer


class RegistryError(LineageError):
    """A registry request that the rules or the ledger refuse; the message is one line."""


def version_name(model_md5: str) -> str:
    """A model version's name: the model file's md5 prefix, so identical bytes are one version."""
    return f"model-{model_md5[:12]}"


def gates_passed(version: Context) -> bool:
    """The verdicts recorded on the version allow promotion (gates/table.py decides)."""
    return may_promote(version.properties)


class Registry:
    """The registry as the decisions that hold imply it, read once from `store` (one state: build another after
    an append)."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self.production_state = decisions.production(store)

    @functools.cached_property
    def facts(self) -> decisions.StoreFacts:
        return decisions.StoreFacts(self.store)

    def version(self, name: str) -> Context:
        found = self.store.get(context_id(ContextType.MODEL_VERSION, name))
        if not isinstance(found, Context):
            raise RegistryError(f"no model version '{name}' in the ledger")
        return self._as_decided(found)

    def versions(self) -> list[Context]:
        """Every model version, oldest first (not the imported records of other ledgers): one replay of the
        decisions for all of them."""
        found = self.store.find(Kind.CONTEXT, ContextType.MODEL_VERSION)
        implied = decisions.statuses(self.store)
        return [
            self._as_decided(v, implied.get(v.name, ModelStatus.CANDIDATE.value))
            for v in found
            if isinstance(v, Context) and IMPORTED_FROM not in v.properties
        ]

    def production(self) -> Context | None:
        name = self.production_state.name
        return None if name is None else self.version(name)

    def _as_decided(self, version: Context, status: str | None = None) -> Context:
        """`version`'s latest record whose status is the one the decisions imply (its latest record with that
        status, where a later record says otherwise: that one is not taken on its word)."""
        if IMPORTED_FROM in version.properties:
            return version
        if version.name == self.production_state.name:
            status = ModelStatus.PRODUCTION.value  # the latest production decision that holds names it
        elif status is None:
            status = decisions.version_status(self.store, version.name, self.production_state.name, self.facts)
        if version.properties.get("status") != status:
            said = (e for e in self.store.history(version.id) if isinstance(e, Context))
            version = next((e for e in said if e.properties.get("status") == status), None) or with_status(
                version, ModelStatus(status)
            )
        return first_verdicts(self.store, version)


def versions(store: LedgerStore) -> list[Context]:
    """Every model version's current record, oldest first, its status the one its decisions imply."""
    return Registry(store).versions()


def get_version(store: LedgerStore, name: str) -> Context:
    return Registry(store).version(name)


def _decidable(version: Context) -> Context:
    """`version`, if decisions on it may be taken here: not another ledger's imported record."""
    if IMPORTED_FROM in version.properties:
        local = str(version.properties.get(ORIGIN_NAME, version.name))
        raise RegistryError(
            f"{version.name} is ledger {version.properties[IMPORTED_FROM]}'s record, imported: decide on {local}"
        )
    return version


PRODUCTION = Context(context_type=ContextType.DEPLOYMENT, name="production")


def production(store: LedgerStore) -> Context | None:
    """The version in production: the one the latest promotion or rollback that holds put there, or None."""
    return Registry(store).production()


def _deploy(version: Context, action: Action) -> list[Entity]:
    """The production pointer moved to `version` by the decision `action`, and the version tied to it."""
    pointer = Context(
        context_type=ContextType.DEPLOYMENT,
        name=PRODUCTION.name,
        properties={"model_version": version.name, "decision": action.id},
    )
    return [
        pointer,
        Association(source_id=version.id, destination_id=pointer.id, association_type=AssociationType.ASSOCIATED_WITH),
    ]


def with_status(version: Context, status: ModelStatus, **properties: str | bool) -> Context:
    """The version's next record: the same context with a new status."""
    return Context(
        context_type=ContextType.MODEL_VERSION,
        name=version.name,
        source_uri=version.source_uri,
        properties={**version.properties, "status": status.value, **properties},
    )


def decision(
    version: Context,
    outcome: Decision | str,
    by: str,
    reason: str,
    previous: Context | None = None,
    metadata: Metadata | None = None,
    ledger_id: str | None = None,
    **parameters: Any,
) -> list[Entity]:
    """A Promotion action recording `outcome` for `version`, tied to it by an edge. It names its ledger and
    quotes the version's gate verdicts, so its signature covers what it relied on."""
    outcome = Decision(outcome)
    now = dt.datetime.now(dt.UTC)
    action = Action(
        action_type=ActionType.PROMOTION,
        status=ActionStatus.COMPLETED,
        start=now,
        end=now,
        command=f"{outcome} {version.name}",
        parameters={
            "decision": outcome.value,
            "model_version": version.name,
            "previous_production": previous.name if previous else None,
            "by": by,
            "reason": reason,
            "gates": decisions.gate_verdicts(version.properties),
            **({"ledger_id": ledger_id} if ledger_id else {}),
            **({"trained_in": version.properties["trained_in"]} if "trained_in" in version.properties else {}),
            **parameters,
        },
        metadata=metadata or Metadata(),
    )
    edge = Association(source_id=action.id, destination_id=version.id, association_type=AssociationType.CONTRIBUTED_TO)
    return [action, edge]


def first_verdicts(store: LedgerStore, version: Context) -> Context:
    """`version` as its first record says it is (its model, run and gate verdicts: later records of a version
    change its status, never what it is, and `lineage verify` names one that tries)."""
    first = store.first_record(version.id)
    recorded = first.entity() if first is not None else None
    if not isinstance(recorded, Context):
        return version
    fixed = {key: recorded.properties[key] for key in decisions.IDENTITY if key in recorded.properties}
    return Context.model_validate({**version.model_dump(mode="json"), "properties": {**version.properties, **fixed}})


def promotion(
    current: Context | None,
    version: Context,
    by: str,
    reason: str,
    override_request: Action | None = None,
    metadata: Metadata | None = None,
    ledger_id: str | None = None,
) -> list[Entity]:
    """The records that make `version` production and archive `current`, the decision first; refuses a version
    whose gates did not pass unless an `override_request` (signed by another approver) asked for it."""
    _decidable(version)
    if version.properties.get("status") == ModelStatus.PRODUCTION:
        raise RegistryError(f"{version.name} is already in production")
    if not gates_passed(version) and override_request is None:
        raise RegistryError(
            f"{version.name} did not pass every gate ({_verdicts(version)}): request an override with --override"
        )
    extra: dict[str, str | bool] = {"status_reason": reason, "previous_production": current.name if current else ""}
    overridden: dict[str, Any] = {"override": override_request is not None}
    if override_request is not None:
        requested_by = str(override_request.parameters.get("by"))
        extra |= {
            "override_by": f"{requested_by} and {by}",
            "override_reason": str(version.properties.get("override_reason")),
        }
        overridden |= {"override_request": override_request.id, "override_requested_by": requested_by}
    decided = decision(version, Decision.PROMOTED, by, reason, current, metadata, ledger_id, **overridden)
    action = decided[0]
    assert isinstance(action, Action)
    records: list[Entity] = [*decided]
    if current is not None:
        archived = with_status(current, ModelStatus.ARCHIVED, status_reason=f"replaced by {version.name}")
        records.append(_by(archived, action))
    records.append(_by(with_status(version, ModelStatus.PRODUCTION, **extra), action))
    return [*records, *_deploy(version, action)]


def _by(version: Context, action: Action) -> Context:
    """A status record naming the decision that made it."""
    return with_status(version, ModelStatus(str(version.properties["status"])), decision=action.id)


def _verdicts(version: Context) -> str:
    return said(version.properties)


def _signed(
    store: LedgerStore, signer: Signer, records: list[Entity], not_key: PublicKey | None = None
) -> list[Entity]:
    """`records` with each decision signed by `signer`, who must be an active approver (not the pipeline)
    signing with their registered key (and, for a second approval, not with `not_key`)."""
    from lineage.authority import PIPELINE, current
    from lineage.signatures import sign

    own = current(store).keys.get(signer.principal)
    if own is None or signer.principal == PIPELINE:
        raise RegistryError(f"{signer.principal!r} is not a registered approver (see `lineage approvers list`)")
    result: list[Entity] = []
    for entity in records:
        if isinstance(entity, Action) and entity.action_type == ActionType.PROMOTION:
            entity, key = sign(entity, signer)
            if key != own:
                raise RegistryError(f"{signer.key} is not {signer.principal}'s registered key ({own.sha256_str()})")
            if not_key is not None and key == not_key:
                raise RegistryError("the second approval is signed with the same key as the request: four eyes needed")
        result.append(entity)
    return result


def promote(store: LedgerStore, name: str, signer: Signer, reason: str, override: bool = False) -> Context:
    """Make model version `name` production, signed by `signer`. A version whose gates did not pass takes
    `override`: it becomes pending, and a second approver's `approve` promotes it."""
    if not reason.strip():
        raise RegistryError("a promotion needs --reason")
    head = store.head()
    registry = Registry(store)
    version = first_verdicts(store, _decidable(registry.version(name)))
    ledger_id = store.ledger_id()
    status = version.properties.get("status")
    if override and not gates_passed(version) and status != ModelStatus.PRODUCTION:
        if status == ModelStatus.PENDING:
            raise RegistryError(f"{name} already awaits a second approver: `lineage models approve {name}`")
        request = decision(version, Decision.OVERRIDE_REQUESTED, signer.principal, reason, registry.production(),
                           ledger_id=ledger_id)  # fmt: skip
        action = request[0]
        assert isinstance(action, Action)
        pending = with_status(
            version,
            ModelStatus.PENDING,
            status_reason=f"override requested by {signer.principal}: {reason}",
            override_reason=reason,
            override_request=action.id,
            decision=action.id,
        )
        store.append(_signed(store, signer, [*request, pending]), expected_head=head)
    else:
        vouched = registry.facts.vouched(name, END)
        verdicts = decisions.gate_verdicts(version.properties)
        if registry.facts.end.policy.recorded and gates_passed(version) and vouched != verdicts:
            raise RegistryError(
                f"{name}'s gate verdicts ({_verdicts(version)}) are not what a pipeline decision on it quoted "
                f"({vouched or 'none'}): promote only a version a pipeline run decided on, or request an override"
            )
        records = promotion(registry.production(), version, signer.principal, reason, ledger_id=ledger_id)
        store.append(_signed(store, signer, records), head)
    return get_version(store, name)


def approve(store: LedgerStore, name: str, signer: Signer, reason: str) -> Context:
    """The second approval of a pending override: promotes `name`; refused from the person who asked."""
    from lineage.signatures import signing_key

    if not reason.strip():
        raise RegistryError("an approval needs --reason")
    head = store.head()
    registry = Registry(store)
    version = first_verdicts(store, registry.version(name))
    if version.properties.get("status") != ModelStatus.PENDING:
        raise RegistryError(f"{name} awaits no approval (status {version.properties.get('status')})")
    request = next(
        (d for d in reversed(decisions.decisions_on(store, [version])[version.id])
         if d.parameters.get("decision") == Decision.OVERRIDE_REQUESTED),
        None,
    )  # fmt: skip
    if request is None:
        raise RegistryError(f"{name} is pending, but its override request is not in the ledger")
    if request.parameters.get("signed_by") == signer.principal:
        raise RegistryError(f"{signer.principal} requested this override: another approver must approve it")
    records = promotion(registry.production(), version, signer.principal, reason, request, ledger_id=store.ledger_id())
    store.append(_signed(store, signer, records, not_key=signing_key(request)), expected_head=head)
    return get_version(store, name)


def rollback(store: LedgerStore, signer: Signer, reason: str, to: str | None = None) -> Context:
    """Put back the production version that the current one replaced (or `to`), signed by `signer`; the
    current one is marked rejected, so a later run never promotes it again by itself."""
    if not reason.strip():
        raise RegistryError("a rollback needs --reason")
    by = signer.principal
    head = store.head()
    registry = Registry(store)
    current = registry.production()
    if current is None:
        raise RegistryError("no model version is in production: nothing to roll back")
    target_name = to or str(current.properties.get("previous_production") or "")
    if not target_name:
        raise RegistryError(f"{current.name} replaced no earlier version: name one with --to")
    target = _decidable(registry.version(target_name))
    if target.id == current.id:
        raise RegistryError(f"{target.name} is the version in production")
    if target.properties.get("status") != ModelStatus.ARCHIVED:
        raise RegistryError(f"{target.name} was never in production (status {target.properties.get('status')})")
    decided = decision(target, Decision.ROLLED_BACK, by, reason, current, ledger_id=store.ledger_id())
    action = decided[0]
    assert isinstance(action, Action)
    records: list[Entity] = [
        *decided,
        _by(with_status(current, ModelStatus.REJECTED, status_reason=f"rolled back by {by}: {reason}"), action),
        _by(with_status(target, ModelStatus.PRODUCTION, status_reason=f"restored by {by}: {reason}"), action),
        *_deploy(target, action),
    ]
    store.append(_signed(store, signer, records), expected_head=head)
    return get_version(store, target.name)


@dataclass(frozen=True)
class VersionReport:
    """What `lineage models show` prints: the version, its gate actions and its decisions."""

    version: Context
    gates: list[Action]
    decisions: list[Action]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.version.name,
            "id": self.version.id,
            **self.version.properties,
            "gates": [gate.model_dump(mode="json") for gate in self.gates],
            "decisions": [action.model_dump(mode="json") for action in self.decisions],
        }


def report(store: LedgerStore, name: str) -> VersionReport:
    version = get_version(store, name)
    sources = store.linked([version.id], "destination")[version.id]
    actions = sorted((e for e in sources if isinstance(e, Action)), key=lambda action: action.start)
    gates = [a for a in actions if a.action_type in BY_ACTION_TYPE]
    decided = decisions.decisions_on(store, [version])[version.id]
    return VersionReport(version, gates, sorted(decided, key=lambda action: action.start))
