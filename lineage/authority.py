"""Who may sign what in a ledger: its signing policy and its approvers, replayed from the chain.

Authority is never read from a row someone could edit apart from the chain: it is the replay, in seq
order, of the records that grant it, each checked as it comes.

- **The policy** (a LedgerPolicy context, `lineage init` records the first): whether decisions may be
  unsigned (`allowed` for a local demo ledger, `refused` for every deployed one) and whether approver
  and policy changes need two approvers (`four_eyes`). A ledger without one is a demo ledger: unsigned
  pipeline decisions are allowed and one approver signs a change.
- **The approvers** (Approver contexts). The first registers themselves with their own key. Every later
  registration, rotation (a new key for the same name) or revocation is signed by approvers other than
  its subject: two of them under four eyes, once two others are there to sign; a rotation is signed by
  the subject's old key too. Every signature but the last rides in the record as `cosignatures` (each
  over what that approver would have signed alone), so the record proves itself; `lineage approvers`
  collects them through a Proposal action that grants nothing.
- **The pipeline's key** (approver `lineage-pipeline`) signs only the pipeline's own decisions, never a
  change of authority.
- **Signed records name their ledger** (`ledger_id`, the hash of its first record) once the ledger has a
  policy, so a record signed for one ledger never holds in another.

Records imported from another ledger grant nothing here (lineage/signatures.py checks them against their
import's attestation).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sshsig
from sshsig.ssh_public_key import PublicKey

from lineage import ledger_format
from lineage.entities import (
    IMPORTED_FROM,
    Action,
    ActionStatus,
    ActionType,
    Context,
    ContextType,
    Entity,
    PropertyValue,
)
from lineage.errors import LineageError
from lineage.signatures import (
    SIGNATURE,
    UNSIGNED,
    Attested,
    SignatureError,
    Signer,
    attested_import,
    checked,
    public_key,
    sign,
    signed_payload,
    signing_key,
)
from lineage.store import Kind, LedgerRecord, LedgerStore, canonical_json, misfiled

PIPELINE = "lineage-pipeline"  # the approver whose key the flow signs its own decisions with
ALLOWED, REFUSED = "allowed", "refused"
ACTIVE, REVOKED = "active", "revoked"
COSIGNATURES = "cosignatures"  # the signatures before the last, as canonical JSON [{signed_by, signature}]
PREVIOUS = "previous"  # the record hash of the subject's last change (approver or policy) that a change follows
LEDGER_ID = "ledger_id"
POLICY_NAME = "signing"
# The records the replay reads: who is trusted, under which policy, and what other ledgers vouched for.
GOVERNANCE = [
    (Kind.CONTEXT, ContextType.APPROVER.value),
    (Kind.CONTEXT, ContextType.POLICY.value),
    (Kind.ACTION, ActionType.IMPORT.value),
]


class AuthorityError(LineageError):
    """A change of approvers or policy that the rules refuse; the message is one line."""


@dataclass(frozen=True)
class Policy:
    """The ledger's signing policy; `recorded` is False for a ledger that has none (a demo ledger)."""

    unsigned_decisions: str = ALLOWED
    four_eyes: bool = False
    recorded: bool = False

    @property
    def unsigned_allowed(self) -> bool:
        return self.unsigned_decisions == ALLOWED

    def line(self) -> str:
        if not self.recorded:
            return (
                "no signing policy recorded: unsigned pipeline decisions allowed (a demo ledger; see `lineage policy`)"
            )
        eyes = "two approvers sign every approver or policy change" if self.four_eyes else "one approver signs a change"
        return f"unsigned decisions {self.unsigned_decisions}; {eyes}"


@dataclass
class Authority:
    """Who may sign at one point of the ledger: the replay of its governance records up to there."""

    ledger_id: str | None
    policy: Policy = field(default_factory=Policy)
    keys: dict[str, PublicKey] = field(default_factory=dict)  # active approvers
    registered_any: bool = False
    imported: dict[str, int] = field(default_factory=dict)  # decision id -> seq of the Import that brought it
    attestations: dict[str, Attested] = field(default_factory=dict)  # imported decision id -> its import's
    attested: dict[str, dict[str, PublicKey]] = field(default_factory=dict)  # ledger id -> approver -> key
    last: dict[str, str] = field(default_factory=dict)  # subject -> the record hash of its last change that held

    # -- reading records ------------------------------------------------------------------------------

    def take(self, record: LedgerRecord) -> str | None:
        """Apply one governance record; why it does not hold (None if it does). A record that does not hold
        changes nothing."""
        if (problem := misfiled(record)) is not None:
            return problem
        try:
            body = json.loads(record.body)
            if record.kind == Kind.ACTION.value:
                return self._take_import(record, body)
            if IMPORTED_FROM in body["properties"]:
                return None  # another ledger's approver: checked against its import's attestation
            subject = f"{record.entity_type}:{body['name']}"
            problem = self._in_turn(body["properties"], subject)
            if problem is None and record.entity_type == ContextType.POLICY.value:
                problem = self._take_policy(body)
            elif problem is None:
                problem = self._take_approver(body)
        except SignatureError as error:
            problem = str(error)
        except (KeyError, TypeError, AttributeError) as error:
            problem = f"a malformed record ({type(error).__name__}: {str(error)[:80]})"
        if problem is None:
            self.last[subject] = record.record_hash
        return problem

    def _in_turn(self, values: dict[str, Any], subject: str) -> str | None:
        """Why a change of `subject` is not the next one (None if it is): it names the record of `subject`'s last
        change (`previous`), so a signed change recorded again, or overtaken by another, never holds twice."""
        if PREVIOUS not in values:
            return "it names no previous change, which every change must once a policy is recorded" if (
                self.policy.recorded
            ) else None  # fmt: skip
        if values[PREVIOUS] != self.last.get(subject, ""):
            return (
                f"it follows change {str(values[PREVIOUS])[:64] or '(none)'} of {subject!r}, whose last change is "
                f"{self.last.get(subject) or '(none)'}: a replay, or overtaken by another change"
            )
        return None

    def previous(self, record: Context) -> str:
        """What the next change of `record`'s subject (that approver, or the policy) names as the one it follows."""
        return self.last.get(f"{record.context_type}:{record.name}", "")

    def _take_import(self, record: LedgerRecord, body: dict[str, Any]) -> str | None:
        people = {name: key for name, key in self.keys.items() if name != PIPELINE}  # the pipeline vouches for nothing
        attested = attested_import(body["parameters"], people)
        if isinstance(attested, str):
            return attested
        for decision_id in body["parameters"].get("decisions") or []:
            self.imported.setdefault(str(decision_id), record.seq)
            self.attestations.setdefault(str(decision_id), attested)
        self.attested[attested.ledger_id] = attested.approvers
        return None

    def _take_policy(self, body: dict[str, Any]) -> str | None:
        values = body["properties"]
        if not self.registered_any:
            return "a signing policy recorded before any approver"
        if problem := self.ledger_problem(values):
            return problem
        if values.get("unsigned_decisions") not in (ALLOWED, REFUSED) or not isinstance(values.get("four_eyes"), bool):
            return "a signing policy without unsigned_decisions (allowed or refused) and four_eyes (true or false)"
        signers, problem = self._signers(body)
        if problem:
            return problem
        if problem := self._others(signers, subject=None, what="the signing policy"):
            return problem
        self.policy = Policy(str(values["unsigned_decisions"]), bool(values["four_eyes"]), recorded=True)
        return None

    def _take_approver(self, body: dict[str, Any]) -> str | None:
        values, name = body["properties"], str(body["name"])
        if problem := self.ledger_problem(values):
            return problem
        new_key = public_key(str(values.get("public_key")), f"approver {name!r}'s public key")
        revoking = values.get("status") == REVOKED
        signers, problem = self._signers(body)
        if problem:
            return problem
        if not self.registered_any:  # the first approver vouches for themselves
            if revoking or signers != [(name, new_key)]:
                return "the first approver's registration is not signed by that approver's own key alone"
        else:
            old = self.keys.get(name)
            if revoking and old is None:
                return f"revokes {name!r}, who is not an active approver"
            if not revoking and old == new_key:
                return f"registers {name!r} again with the key they already have"
            rotation = not revoking and old is not None
            if rotation and (name, old) not in signers:
                return f"a new key for {name!r} that their old key did not sign: a rotation needs it"
            change = "revocation" if revoking else "rotation" if rotation else "registration"
            if problem := self._others([s for s in signers if s != (name, old)], name, f"the {change} of {name!r}"):
                return problem
            people = [n for n in self.keys if n != PIPELINE]
            if revoking and self.policy.four_eyes and len(people) == 2 and name in people:
                return f"the revocation of {name!r} would leave one approver under four eyes: register another first"
        self.registered_any = True
        if revoking:
            self.keys.pop(name, None)
        else:
            self.keys[name] = new_key
        return None

    # -- the rules ------------------------------------------------------------------------------------

    def ledger_problem(self, values: dict[str, Any]) -> str | None:
        """Why a signed record's `ledger_id` does not place it in this ledger (None if it does)."""
        named = values.get(LEDGER_ID)
        if named is None:
            return (
                "it names no ledger, which every signed record must once a policy is recorded"
                if (self.policy.recorded)
                else None
            )
        if named != self.ledger_id:
            return f"it was signed for ledger {str(named)[:64]}, not this one ({self.ledger_id}): a replay"
        return None

    def needed(self, subject: str | None) -> int:
        """How many approvers other than `subject` must sign a change of authority."""
        others = [name for name in self.keys if name not in (PIPELINE, subject)]
        return 2 if self.policy.four_eyes and len(others) >= 2 else 1

    def _others(self, signers: list[tuple[str, PublicKey]], subject: str | None, what: str) -> str | None:
        """Why `signers` (besides the subject's old key) are not enough approvers for `what`."""
        for name, key in signers:
            if name == PIPELINE:
                return f"{what} is signed by the pipeline's key, which signs only the pipeline's own decisions"
            if name == subject:
                return f"{what} is signed by {name!r}, the approver it changes"
            if self.keys.get(name) != key:
                return f"{what} is signed by {name!r}, who is not an active approver with that key at this point"
        if len({name for name, _ in signers}) < len(signers) or len({key for _, key in signers}) < len(signers):
            return f"{what} is signed twice by one approver (by name or by key)"
        needed = self.needed(subject)
        if len(signers) < needed:
            eyes = " (four eyes)" if needed > 1 else ""
            return (
                f"{what} is signed by {len(signers)} approver(s) besides its subject; the policy needs {needed}{eyes}"
            )
        return None

    @staticmethod
    def _signers(body: dict[str, Any]) -> tuple[list[tuple[str, PublicKey]], str | None]:
        """Every (name, key) that signed the record, the last signer first; or why a signature does not check."""
        values = body["properties"]
        name, armored = values.get("signed_by"), values.get(SIGNATURE)
        if not isinstance(name, str) or not isinstance(armored, str):
            return [], "the record has no signature and no signer"
        try:
            signers = [(name, checked(signed_payload(body, "context"), armored))]
        except (sshsig.InvalidSignature, NotImplementedError, ValueError) as error:
            return [], f"the signature by {name!r} does not match the record ({error})"
        for entry in _cosignatures(values):
            if entry is None:
                return [], "its cosignatures are not a JSON list of {signed_by, signature}"
            alone = {**body, "properties": {**_unsigned(values), "signed_by": entry[0]}}
            try:
                signers.append((entry[0], checked(signed_payload(alone, "context"), entry[1])))
            except (sshsig.InvalidSignature, NotImplementedError, ValueError) as error:
                return [], f"the cosignature by {entry[0]!r} does not match the record ({error})"
        return signers, None


def _unsigned(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in (SIGNATURE, "signed_by", COSIGNATURES)}


def _cosignatures(values: dict[str, Any]) -> list[tuple[str, str] | None]:
    raw = values.get(COSIGNATURES)
    if raw is None:
        return []
    try:
        entries = json.loads(str(raw))
    except ValueError:
        return [None]
    if not isinstance(entries, list):
        return [None]
    return [
        (e["signed_by"], e["signature"])
        if isinstance(e, dict) and isinstance(e.get("signed_by"), str) and isinstance(e.get("signature"), str)
        else None
        for e in entries
    ]


# -- reading the authority --------------------------------------------------------------------------------


def governance(store: LedgerStore) -> list[LedgerRecord]:
    """The records that grant or vouch (approvers, policies, imports), in seq order: few, read from the chain."""
    return list(store.records(GOVERNANCE))


def replay(records: Iterable[LedgerRecord], ledger_id: str | None, before: int | None = None) -> Authority:
    """The authority after `records` (governance records in seq order), only those before seq `before` if given;
    a record that does not hold changes nothing."""
    authority = Authority(ledger_id)
    for record in records:
        if before is not None and record.seq >= before:
            break
        authority.take(record)
    return authority


def current(store: LedgerStore) -> Authority:
    """The authority at the ledger's end."""
    return replay(governance(store), store.ledger_id())


def approvers(store: LedgerStore) -> list[Context]:
    """Every approver's latest registration that holds (active or revoked), by name; imported ones are not."""
    authority = Authority(store.ledger_id())
    latest: dict[str, Context] = {}
    for record in governance(store):
        if record.entity_type == ContextType.APPROVER.value and authority.take(record) is None:
            entity = record.entity()
            if isinstance(entity, Context) and IMPORTED_FROM not in entity.properties:
                latest[entity.name] = entity
    return list(latest.values())


def approver(store: LedgerStore, name: str) -> Context | None:
    """`name`'s latest registration that holds, or None if they were never registered here."""
    return next((a for a in approvers(store) if a.name == name), None)


# -- writing changes of authority ------------------------------------------------------------------------------


def genesis() -> Context:
    """The first record of a ledger `lineage init` creates: a fresh ledger gets an id of its own (a random
    nonce, so two ledgers created alike differ) before anything signed names it."""
    created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    properties: dict[str, PropertyValue] = {"created": created, "nonce": secrets.token_hex(16)}
    return Context(context_type=ContextType.LEDGER, name="ledger", properties=properties)


def approver_record(name: str, key: PublicKey, registered_by: str, ledger_id: str, status: str = ACTIVE) -> Context:
    """An Approver context: `name` may (or, revoked, may no longer) sign with `key` (unsigned until signed)."""
    if not name.strip():
        raise AuthorityError("an approver needs a name: got an empty one")
    try:
        name.encode("utf-8")  # a lone surrogate (a shell's undecodable byte) cannot be stored
    except UnicodeEncodeError:
        raise AuthorityError(f"an approver's name must be valid Unicode: got {name!r}") from None
    return Context(
        context_type=ContextType.APPROVER,
        name=name,
        properties={
            "public_key": key.openssh_str(),
            "fingerprint": key.sha256_str(),
            "registered_by": registered_by,
            "status": status,
            LEDGER_ID: ledger_id,
        },
    )


def policy_record(unsigned_decisions: str, four_eyes: bool, ledger_id: str) -> Context:
    """A LedgerPolicy context (unsigned until signed)."""
    if unsigned_decisions not in (ALLOWED, REFUSED):
        raise AuthorityError(f"unsigned decisions: {unsigned_decisions!r} is neither {ALLOWED!r} nor {REFUSED!r}")
    values: dict[str, PropertyValue] = {"unsigned_decisions": unsigned_decisions, "four_eyes": four_eyes,
                                        LEDGER_ID: ledger_id}  # fmt: skip
    return Context(context_type=ContextType.POLICY, name=POLICY_NAME, properties=values)


def cosign(record: Context, signer: Signer) -> dict[str, str]:
    """`signer`'s signature of `record` as they would sign it alone: one entry of its cosignatures."""
    alone = Context.model_validate({**record.model_dump(mode="json"), "properties": _unsigned(record.properties)})
    signed, _ = sign(alone, signer)
    assert isinstance(signed, Context)
    return {"signed_by": signer.principal, "signature": str(signed.properties[SIGNATURE])}


def finish(record: Context, cosignatures: list[dict[str, str]], signer: Signer) -> Context:
    """`record` with its cosignatures, signed last by `signer`."""
    values = _unsigned(record.properties) | ({COSIGNATURES: canonical_json(cosignatures)} if cosignatures else {})
    signed, _ = sign(Context.model_validate({**record.model_dump(mode="json"), "properties": values}), signer)
    assert isinstance(signed, Context)
    return signed


@dataclass(frozen=True)
class Proposed:
    """A change of authority awaiting signatures: its Proposal action and what it proposes."""

    action: Action
    record: Context
    cosignatures: list[dict[str, str]]

    @property
    def label(self) -> str:
        return f"{self.record.context_type} {self.record.name}"


def proposals(store: LedgerStore) -> list[Proposed]:
    """Every open proposal (latest record InProgress), oldest first."""
    found = []
    for action in store.find(Kind.ACTION, ActionType.PROPOSAL.value):
        if isinstance(action, Action) and action.status == ActionStatus.IN_PROGRESS:
            record = Context.model_validate(action.parameters["record"])
            entries = action.parameters.get(COSIGNATURES)
            signed = (
                [{str(k): str(v) for k, v in e.items()} for e in entries if isinstance(e, dict)]
                if isinstance(entries, list)
                else []
            )
            found.append(Proposed(action, record, signed))
    return found


def propose(store: LedgerStore, record: Context, signer: Signer) -> tuple[Context | None, Proposed | None]:
    """Sign the change `record` (an Approver or LedgerPolicy context) as `signer`: recorded at once if that is
    enough signatures, else as a Proposal others sign with `confirm`. Either the record or the proposal."""
    return _sign_change(store, record, [], signer, None)


def register(store: LedgerStore, name: str, key: PublicKey, signer: Signer, status: str = ACTIVE) -> Context:
    """Register (or revoke) `name` with `key`, signed by `signer` alone: the first approver by themselves (after a
    genesis record on an empty ledger), a later change where one signature is enough; refused otherwise."""
    _ensure_genesis(store)
    record = approver_record(name, key, signer.principal, str(store.ledger_id()), status)
    done, _ = _sign_change(store, record, [], signer, None, may_propose=False)
    assert done is not None
    return done


def _ensure_genesis(store: LedgerStore) -> None:
    head = store.head()
    if not head.count:
        store.append([genesis()], expected_head=head)


def confirm(store: LedgerStore, proposed: Proposed, signer: Signer) -> tuple[Context | None, Proposed | None]:
    """Add `signer`'s signature to an open proposal: records the change once it has enough."""
    if any(entry["signed_by"] == signer.principal for entry in proposed.cosignatures):
        raise AuthorityError(f"{signer.principal} signed this proposal already: another approver must")
    return _sign_change(store, proposed.record, proposed.cosignatures, signer, proposed.action)


def _sign_change(
    store: LedgerStore,
    record: Context,
    cosignatures: list[dict[str, str]],
    signer: Signer,
    action: Action | None,
    may_propose: bool = True,
) -> tuple[Context | None, Proposed | None]:
    """Record the change signed last by `signer` if it then holds (as verify will check it), else record the
    proposal with `signer`'s signature added, if more signatures can make it hold."""
    head = store.head()
    authority = current(store)
    if problem := _signer_problem(authority, signer):
        raise AuthorityError(problem)
    if PREVIOUS not in record.properties:  # the change follows the subject's last one, whatever it is now
        values = {**record.properties, PREVIOUS: authority.previous(record)}
        record = Context.model_validate({**record.model_dump(mode="json"), "properties": values})
    final = finish(record, cosignatures, signer)
    body = canonical_json(final.model_dump(mode="json"))
    trial = LedgerRecord(head.count + 1, Kind.CONTEXT.value, final.id, final.context_type.value, final.name, None,
                         None, body, "", "")  # fmt: skip
    trial.format = ledger_format.CURRENT  # written by this code
    problem = authority.take(trial)
    if problem is None:
        closing = [] if action is None else [_proposal(action, record, cosignatures, ActionStatus.COMPLETED)]
        store.append([final, *closing], expected_head=head)
        return final, None
    if not may_propose or ("the policy needs" not in problem and "their old key did not sign" not in problem):
        raise AuthorityError(problem)  # (or no further signature would make it hold)
    entries = [*cosignatures, cosign(record, signer)]
    proposal = _proposal(action, record, entries, ActionStatus.IN_PROGRESS)
    store.append([proposal], expected_head=head)
    return None, Proposed(proposal, record, entries)


def _signer_problem(authority: Authority, signer: Signer) -> str | None:
    if signer.principal == PIPELINE:
        return "the pipeline's key signs only the pipeline's own decisions"
    key = authority.keys.get(signer.principal)
    if key is None and authority.registered_any:
        return f"{signer.principal!r} is not an active approver (see `lineage approvers list`)"
    if key is not None and signer.public_key() != key:
        return f"{signer.key} is not {signer.principal}'s registered key ({key.sha256_str()})"
    return None


def _proposal(
    action: Action | None, record: Context, cosignatures: list[dict[str, str]], status: ActionStatus
) -> Action:
    """The Proposal action of `record`'s change with `cosignatures` so far (the same action id throughout)."""
    now = dt.datetime.now(dt.UTC)
    return Action(
        id=action.id if action else str(uuid.uuid4()),
        action_type=ActionType.PROPOSAL,
        status=status,
        start=action.start if action else now,
        end=now if status == ActionStatus.COMPLETED else None,
        command=f"change {record.context_type} {record.name}",
        parameters={"record": record.model_dump(mode="json"), COSIGNATURES: cosignatures},  # type: ignore[dict-item]
    )


def initialise(store: LedgerStore, signer: Signer, unsigned_decisions: str, four_eyes: bool) -> list[Entity]:
    """The first approver (self-signed) and the signing policy, after a genesis record on an empty ledger."""
    if current(store).registered_any:
        raise AuthorityError("the ledger already has approvers: add one with `lineage approvers add`")
    key = signer.public_key()  # a key that cannot be read fails before anything is written
    _ensure_genesis(store)
    head = store.head()
    ledger_id = store.ledger_id()
    assert ledger_id is not None
    first = finish(_first_change(approver_record(signer.principal, key, signer.principal, ledger_id)), [], signer)
    policy = finish(_first_change(policy_record(unsigned_decisions, four_eyes, ledger_id)), [], signer)
    store.append([first, policy], expected_head=head)
    return [first, policy]


def _first_change(record: Context) -> Context:
    return Context.model_validate({**record.model_dump(mode="json"), "properties": {**record.properties,
                                                                                     PREVIOUS: ""}})  # fmt: skip


def signature_status(store: LedgerStore, entity: Entity) -> dict[str, Any]:
    """What one record's signature says, for people: `unsigned`, `invalid` (it does not match the record),
    `unregistered` (a valid signature by someone who is not an approver now, or with another key than theirs)
    or `valid`; with the signer and the key's fingerprint. `lineage verify` checks each at its own point."""
    values = (
        entity.parameters if isinstance(entity, Action) else entity.properties if isinstance(entity, Context) else {}
    )
    signer = values.get("signed_by")
    if values.get(SIGNATURE) in (None, UNSIGNED):
        return {"status": UNSIGNED, "signed_by": None, "fingerprint": None}
    key = signing_key(entity)
    if key is None:
        return {"status": "invalid", "signed_by": signer, "fingerprint": None}
    registered = approver(store, str(signer))
    own = registered is not None and public_key(str(registered.properties.get("public_key"))) == key
    return {"status": "valid" if own else "unregistered", "signed_by": signer, "fingerprint": key.sha256_str()}
