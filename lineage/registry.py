"""The model registry: each trained model is a ModelVersion context in the ledger.

A version starts as `candidate`; a Promotion action then makes it `production` (the one it replaces
becomes `archived`) or `rejected`. The Deployment context `production` names the version in production,
so finding it is one lookup however long the ledger. A version is promoted only when both gates passed,
or by an override of a failed gate that two different approvers sign (four eyes): the first request
leaves it `pending`, the second approver's `approve` promotes it. Every manual decision is signed by a
registered approver's SSH key (lineage/signatures.py). Every change is one ledger append, made only if
nobody appended since the state was read, so a failure leaves the previous production version in place.

A version trained in another environment and imported (lineage/bundle.py) is a local candidate with a
`trained_in` property (the other ledger's id), which every decision on it carries too. The imported
record of the version itself (`model-...@<ledger id[:12]>`, with `imported_from`) is that ledger's
history: it is not listed among the versions and cannot be promoted here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gates.rules import may_promote
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
    Entity,
    Metadata,
    ModelStatus,
    context_id,
)
from lineage.store import Kind, LedgerStore

if TYPE_CHECKING:  # signing is imported where a decision is signed: reading the registry needs no SSH code
    from lineage.signatures import PublicKey, Signer


class RegistryError(ValueError):
    """A registry request that the rules or the ledger refuse; the message is one line."""


def version_name(model_md5: str) -> str:
    """A model version's name: the model file's md5 prefix, so identical bytes are one version."""
    return f"model-{model_md5[:12]}"


def gates_passed(version: Context) -> bool:
    """The verdicts recorded on the version allow promotion (gates/rules.py decides)."""
    drift, fairness = version.properties.get("drift_gate"), version.properties.get("fairness_gate")
    return may_promote(str(drift) if drift else None, str(fairness) if fairness else None)


def versions(store: LedgerStore) -> list[Context]:
    """Every model version's current record, oldest first (not the imported records of other ledgers)."""
    found = store.find(Kind.CONTEXT, ContextType.MODEL_VERSION)
    return [entity for entity in found if isinstance(entity, Context) and IMPORTED_FROM not in entity.properties]


def get_version(store: LedgerStore, name: str) -> Context:
    version_id = context_id(ContextType.MODEL_VERSION, name)
    found = store.get(version_id)
    if not isinstance(found, Context):
        raise RegistryError(f"no model version '{name}' in the ledger")
    return found


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
    """The version in production, or None."""
    pointer = store.get(PRODUCTION.id)
    name = pointer.properties.get("model_version") if isinstance(pointer, Context) else None
    return get_version(store, str(name)) if name else None


def _deploy(version: Context) -> list[Entity]:
    """The production pointer moved to `version`, and the version tied to it."""
    pointer = Context(
        context_type=ContextType.DEPLOYMENT, name=PRODUCTION.name, properties={"model_version": version.name}
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
    outcome: str,
    by: str,
    reason: str,
    previous: Context | None = None,
    metadata: Metadata | None = None,
    **parameters: Any,
) -> list[Entity]:
    """A Promotion action recording `outcome` for `version`, tied to it by an edge."""
    now = dt.datetime.now(dt.UTC)
    action = Action(
        action_type=ActionType.PROMOTION,
        status=ActionStatus.COMPLETED,
        start=now,
        end=now,
        command=f"{outcome} {version.name}",
        parameters={
            "decision": outcome,
            "model_version": version.name,
            "previous_production": previous.name if previous else None,
            "by": by,
            "reason": reason,
            **({"trained_in": version.properties["trained_in"]} if "trained_in" in version.properties else {}),
            **parameters,
        },
        metadata=metadata or Metadata(),
    )
    edge = Association(source_id=action.id, destination_id=version.id, association_type=AssociationType.CONTRIBUTED_TO)
    return [action, edge]


def promotion(
    current: Context | None,
    version: Context,
    by: str,
    reason: str,
    override_request: Action | None = None,
    metadata: Metadata | None = None,
) -> list[Entity]:
    """The records that make `version` production and archive `current`; refuses a version whose gates
    did not pass unless an `override_request` (signed by another approver) asked for it."""
    _decidable(version)
    if version.properties.get("status") == ModelStatus.PRODUCTION:
        raise RegistryError(f"{version.name} is already in production")
    if not gates_passed(version) and override_request is None:
        raise RegistryError(
            f"{version.name} did not pass both gates ({_verdicts(version)}): request an override with --override"
        )
    records: list[Entity] = []
    if current is not None:
        records.append(with_status(current, ModelStatus.ARCHIVED, status_reason=f"replaced by {version.name}"))
    extra: dict[str, str | bool] = {"status_reason": reason, "previous_production": current.name if current else ""}
    overridden: dict[str, Any] = {"override": override_request is not None}
    if override_request is not None:
        requested_by = str(override_request.parameters.get("by"))
        extra |= {
            "override_by": f"{requested_by} and {by}",
            "override_reason": str(version.properties.get("override_reason")),
        }
        overridden |= {"override_request": override_request.id, "override_requested_by": requested_by}
    records.append(with_status(version, ModelStatus.PRODUCTION, **extra))
    return [*records, *_deploy(version), *decision(version, "promoted", by, reason, current, metadata, **overridden)]


def _verdicts(version: Context) -> str:
    return f"drift {version.properties.get('drift_gate')}, fairness {version.properties.get('fairness_gate')}"


def _signed(
    store: LedgerStore, signer: Signer, records: list[Entity], not_key: PublicKey | None = None
) -> list[Entity]:
    """`records` with each decision signed by `signer`, who must be an active registered approver signing
    with their registered key (and, for a second approval, not with `not_key`)."""
    from lineage.signatures import ACTIVE, approver, public_key, sign

    registered = approver(store, signer.principal)
    if registered is None or registered.properties.get("status") != ACTIVE:
        raise RegistryError(f"{signer.principal!r} is not a registered approver (see `lineage approvers list`)")
    own = public_key(str(registered.properties["public_key"]))
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
    version = _decidable(get_version(store, name))
    if override and not gates_passed(version) and version.properties.get("status") != ModelStatus.PRODUCTION:
        if version.properties.get("status") == ModelStatus.PENDING:
            raise RegistryError(f"{name} already awaits a second approver: `lineage models approve {name}`")
        request = decision(version, "override_requested", signer.principal, reason, production(store))
        pending = with_status(
            version,
            ModelStatus.PENDING,
            status_reason=f"override requested by {signer.principal}: {reason}",
            override_reason=reason,
            override_request=request[0].id,
        )
        store.append(_signed(store, signer, [pending, *request]), expected_head=head)
    else:
        store.append(_signed(store, signer, promotion(production(store), version, signer.principal, reason)), head)
    return get_version(store, name)


def approve(store: LedgerStore, name: str, signer: Signer, reason: str) -> Context:
    """The second approval of a pending override: promotes `name`; refused from the person who asked."""
    from lineage.signatures import signing_key

    if not reason.strip():
        raise RegistryError("an approval needs --reason")
    head = store.head()
    version = get_version(store, name)
    if version.properties.get("status") != ModelStatus.PENDING:
        raise RegistryError(f"{name} awaits no approval (status {version.properties.get('status')})")
    request = store.get(str(version.properties.get("override_request")))
    if not isinstance(request, Action):
        raise RegistryError(f"{name} is pending, but its override request is not in the ledger")
    if request.parameters.get("signed_by") == signer.principal:
        raise RegistryError(f"{signer.principal} requested this override: another approver must approve it")
    records = promotion(production(store), version, signer.principal, reason, override_request=request)
    store.append(_signed(store, signer, records, not_key=signing_key(request)), expected_head=head)
    return get_version(store, name)


def rollback(store: LedgerStore, signer: Signer, reason: str, to: str | None = None) -> Context:
    """Put back the production version that the current one replaced (or `to`), signed by `signer`; the
    current one is marked rejected, so a later run never promotes it again by itself."""
    if not reason.strip():
        raise RegistryError("a rollback needs --reason")
    by = signer.principal
    head = store.head()
    current = production(store)
    if current is None:
        raise RegistryError("no model version is in production: nothing to roll back")
    target_name = to or str(current.properties.get("previous_production") or "")
    if not target_name:
        raise RegistryError(f"{current.name} replaced no earlier version: name one with --to")
    target = _decidable(get_version(store, target_name))
    if target.id == current.id:
        raise RegistryError(f"{target.name} is the version in production")
    if target.properties.get("status") != ModelStatus.ARCHIVED:
        raise RegistryError(f"{target.name} was never in production (status {target.properties.get('status')})")
    records: list[Entity] = [
        with_status(current, ModelStatus.REJECTED, status_reason=f"rolled back by {by}: {reason}"),
        with_status(target, ModelStatus.PRODUCTION, status_reason=f"restored by {by}: {reason}"),
        *_deploy(target),
        *decision(target, "rolled_back", by, reason, current),
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
    gates = [a for a in actions if a.action_type in (ActionType.DRIFT_GATE, ActionType.FAIRNESS_GATE)]
    return VersionReport(version, gates, [a for a in actions if a.action_type == ActionType.PROMOTION])
