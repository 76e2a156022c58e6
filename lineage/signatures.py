"""Signed decisions: who approved what, checkable by anyone who holds the ledger.

A decision (a Promotion action) and an approver's registration (an Approver context) are signed with
the signer's own SSH key by `ssh-keygen -Y sign`, the mechanism git uses for signed commits, so a key
in ssh-agent or on a hardware token works as it does for git. What is signed is the record's canonical
JSON without its `signature` field, in the namespace `lineage-ledger`. The signer's name is part of
what is signed, and the signature carries the public key that made it. Signatures are checked in process
(the `sshsig` library, on top of `cryptography`), as `ssh-keygen -Y verify` would check them.

Trust is in the ledger itself: the first Approver record signs itself (`lineage init`), and every later
one is signed by an approver registered before it. A decision counts only when its signer is a
registered approver and its key is that approver's key. The flow's own decisions are signed with the
pipeline's key where one is set; otherwise they say `unsigned`, which `verify` reports but does not fail.

Records imported from another ledger (lineage/bundle.py) grant no rights here. An imported Approver
record is a context qualified by its origin (`alice@<ledger id[:12]>`, with `imported_from` and
`origin_name` properties): `approver` and `approvers` never return it, and `verify` checks that its
signature still matches the record as its own ledger holds it (name and properties restored), without
registering anyone. Nobody signs the Import action itself, so what vouches for an import is its
**attestation**, kept in the Import action's parameters: canonical JSON naming the source ledger, its head
and the version, the public key of every Approver record the bundle carried and the sha256 of every
decision's body as its own ledger holds it, signed by the bundle's signer. `verify` checks that signature
and that its key was an active approver's key here when the Import action was recorded (that
registration is how this ledger trusts the other one); an Approver record imported from that ledger
afterwards must carry the key the ledger's latest attestation gives its name, and an imported decision
(listed by its Import action) must hash to the attested body and be signed with the attested key of its
signer. So a record appended as if imported, without an approver's attestation, fails `verify`.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sshsig
from sshsig.ssh_public_key import PublicKey

from lineage.entities import IMPORTED_FROM, ORIGIN_NAME, Action, ActionType, Context, ContextType, Entity, context_id
from lineage.store import Kind, LedgerRecord, LedgerStore, canonical_json

NAMESPACE = "lineage-ledger"
SIGNATURE = "signature"  # the field a signed record keeps its armored SSH signature in
UNSIGNED = "unsigned"  # that field's value on a decision the pipeline took without a key
ACTIVE, REVOKED = "active", "revoked"
SIGNED_RECORDS = [
    (Kind.ACTION, ActionType.PROMOTION.value),
    (Kind.CONTEXT, ContextType.APPROVER.value),
    (Kind.ACTION, ActionType.IMPORT.value),  # says which decisions came from where, and who vouched for them
]
_FIELDS = {"action": "parameters", "context": "properties"}  # where each kind keeps its signature
ATTESTS = "lineage-bundle"  # an attestation's `attests`: what its signature vouches for (never a record)


class SignatureError(ValueError):
    """A key that cannot sign, or a signature that does not check; the message is one line."""


def public_key(line: str, where: str = "public key") -> PublicKey:
    """An OpenSSH public key line (`ssh-ed25519 AAAA... comment`); Ed25519 and RSA keys are supported."""
    try:
        return PublicKey.from_openssh_str(line.strip())
    except (ValueError, NotImplementedError) as error:
        raise SignatureError(f"{where}: not an Ed25519 or RSA OpenSSH public key ({error or 'bad encoding'})") from None


def read_public_key(path: Path) -> PublicKey:
    try:
        return public_key(path.read_text(encoding="utf-8"), str(path))
    except OSError as error:
        raise SignatureError(f"{path}: cannot read the public key ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise SignatureError(f"{path}: not an OpenSSH key file (byte {error.start} is not UTF-8 text)") from None


@dataclass(frozen=True)
class Signer:
    """Signs as `principal` with the private key at `key` (or the public key of one held by ssh-agent)."""

    principal: str
    key: Path

    def public_key(self) -> PublicKey:
        """The key's public half: the key itself if it is a .pub, else the .pub beside it, else learnt
        from a signature (one more passphrase prompt, for an encrypted key)."""
        if not self.key.is_file():  # (a directory such as `.` has no .pub beside it to look for)
            raise SignatureError(f"{self.key}: no such key file")
        pub = self.key if self.key.suffix == ".pub" else self.key.with_name(self.key.name + ".pub")
        return read_public_key(pub) if pub.is_file() else self.sign(b"lineage: which key is this")[1]

    def sign(self, payload: bytes) -> tuple[str, PublicKey]:
        """The armored signature of `payload`, and the public key it was made with."""
        if not self.key.is_file():
            raise SignatureError(f"{self.key}: no such key file")
        _refuse_open_private_key(self.key)
        try:
            done = subprocess.run(
                ["ssh-keygen", "-q", "-Y", "sign", "-n", NAMESPACE, "-f", str(self.key)],
                input=payload,
                capture_output=True,
                check=False,
            )
        except OSError as error:
            raise SignatureError(f"cannot run ssh-keygen to sign: {error.strerror}") from None
        armored = done.stdout.decode()
        if done.returncode != 0 or "BEGIN SSH SIGNATURE" not in armored:
            reason = (done.stderr.decode().strip().splitlines() or ["no signature written"])[-1]
            raise SignatureError(f"ssh-keygen could not sign with {self.key}: {reason}")
        try:
            return armored, sshsig.check_signature(payload, armored, NAMESPACE)
        except (sshsig.InvalidSignature, NotImplementedError, ValueError) as error:
            raise SignatureError(
                f"{self.key}: a signature this ledger cannot check ({error}); use Ed25519 or RSA"
            ) from None


def _refuse_open_private_key(key: Path) -> None:
    """ssh-keygen ignores a private key of its user that others may read or write, and then says only "No
    private key found": name the file, its mode and the fix instead. A .pub (a key in ssh-agent) is public."""
    if key.suffix == ".pub":
        return
    status = key.stat()
    if status.st_uid == os.getuid() and status.st_mode & 0o077:
        mode = f"{stat.S_IMODE(status.st_mode):04o}"
        raise SignatureError(
            f"{key}: permissions {mode} are too open for a private key (ssh-keygen ignores it); run chmod 600 {key}"
        )


@contextmanager
def signer_from_text(principal: str, private_key: str) -> Iterator[Signer]:
    """A Signer for a private key held as text (the pipeline's, from a Prefect Secret block): written to
    a file only this user can read, for ssh-keygen, and removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="lineage-key-") as scratch:
        path = Path(scratch) / "key"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(private_key.strip() + "\n")
        yield Signer(principal, path)


def _fields(entity: Entity) -> dict[str, Any]:
    if isinstance(entity, Action):
        return dict(entity.parameters)
    assert isinstance(entity, Context)
    return dict(entity.properties)


def _with_fields(entity: Entity, values: dict[str, Any]) -> Entity:
    name = "parameters" if isinstance(entity, Action) else "properties"
    return type(entity).model_validate({**entity.model_dump(mode="json"), name: values})


def signed_payload(body: dict[str, Any], kind: str) -> bytes:
    """What a record's signature covers: its canonical JSON without the signature itself."""
    values = {key: value for key, value in body[_FIELDS[kind]].items() if key != SIGNATURE}
    return canonical_json({**body, _FIELDS[kind]: values}).encode()


def sign(entity: Entity, signer: Signer) -> tuple[Entity, PublicKey]:
    """`entity` signed by `signer` (its name added to what is signed), and the key that signed it."""
    kind = "action" if isinstance(entity, Action) else "context"
    values = {key: value for key, value in _fields(entity).items() if key != SIGNATURE}
    unsigned_entity = _with_fields(entity, {**values, "signed_by": signer.principal})
    armored, key = signer.sign(signed_payload(unsigned_entity.model_dump(mode="json"), kind))
    return _with_fields(unsigned_entity, {**values, "signed_by": signer.principal, SIGNATURE: armored}), key


def mark_unsigned(entity: Entity) -> Entity:
    return _with_fields(entity, {**_fields(entity), SIGNATURE: UNSIGNED})


def approver_record(name: str, key: PublicKey, registered_by: str, status: str = ACTIVE) -> Context:
    """An Approver context: `name` may sign decisions with `key` (unsigned until `sign`)."""
    return Context(
        context_type=ContextType.APPROVER,
        name=name,
        properties={
            "public_key": key.openssh_str(),
            "fingerprint": key.sha256_str(),
            "registered_by": registered_by,
            "status": status,
        },
    )


def is_imported(entity: Entity) -> bool:
    """A context recorded from another ledger's bundle (under a name qualified by its origin)."""
    return isinstance(entity, Context) and IMPORTED_FROM in entity.properties


def approver(store: LedgerStore, name: str) -> Context | None:
    """The approver's latest record, or None if `name` was never registered here (an imported one is not)."""
    found = store.get(context_id(ContextType.APPROVER, name))
    return found if isinstance(found, Context) and not is_imported(found) else None


def approvers(store: LedgerStore) -> list[Context]:
    """The approvers registered in this ledger (not those imported from another)."""
    found = store.find(Kind.CONTEXT, ContextType.APPROVER)
    return [entity for entity in found if isinstance(entity, Context) and not is_imported(entity)]


def original_body(body: dict[str, Any]) -> dict[str, Any]:
    """An imported context's record as its own ledger holds it: its origin name, without the import's properties."""
    values = {k: v for k, v in body["properties"].items() if k not in (IMPORTED_FROM, ORIGIN_NAME)}
    name = str(body["properties"][ORIGIN_NAME])
    return {**body, "id": context_id(str(body["context_type"]), name), "name": name, "properties": values}


def decision_problem(body: dict[str, Any], keys: dict[str, PublicKey]) -> tuple[str | None, PublicKey | None]:
    """Why a signed decision (an action's body) does not hold against the approvers' `keys` (None if it holds)."""
    values = body["parameters"]
    signer, signature = values.get("signed_by"), values.get(SIGNATURE)
    if not isinstance(signature, str) or not isinstance(signer, str):
        return "the record has no signature and no signer", None
    try:
        key = sshsig.check_signature(signed_payload(body, "action"), signature, NAMESPACE)
    except (sshsig.InvalidSignature, NotImplementedError, ValueError) as error:
        return f"the signature by {signer!r} does not match the record ({error})", None
    if signer not in keys:
        return f"signed by {signer!r}, whose Approver record is not among its ledger's records here", key
    if key != keys[signer]:
        return f"signed with key {key.sha256_str()}, which is not {signer!r}'s key in its ledger", key
    return None, key


def record_signature_problem(body: dict[str, Any], kind: str) -> str | None:
    """Why a signed record's signature does not match the record (None if it does), whoever signed it."""
    signature = body[_FIELDS[kind]].get(SIGNATURE)
    if not isinstance(signature, str):
        return "the record has no signature"
    try:
        sshsig.check_signature(signed_payload(body, kind), signature, NAMESPACE)
    except (sshsig.InvalidSignature, NotImplementedError, ValueError) as error:
        return f"its signature does not match the record ({error})"
    return None


def body_sha256(body: str) -> str:
    """The sha256 of a record's body as stored (canonical JSON): what an attestation lists for a decision."""
    return hashlib.sha256(body.encode()).hexdigest()


def attestation_payload(attestation: dict[str, Any]) -> bytes:
    """What an attestation's signature covers: its canonical JSON."""
    return canonical_json(attestation).encode()


@dataclass(frozen=True)
class Attested:
    """What one Import action's attestation vouches for."""

    ledger_id: str
    approvers: dict[str, PublicKey]  # approver name in that ledger -> their key
    decisions: dict[str, str]  # decision action id -> the sha256 of its body


def attested_import(values: dict[str, Any], trusted: dict[str, PublicKey]) -> Attested | str:
    """An Import action's attestation (its `values`), checked: signed by one of the `trusted` keys and
    agreeing with the action's own parameters; or why not."""
    attestation, armored = values.get("attestation"), values.get("attestation_signature")
    if not isinstance(attestation, dict) or not isinstance(armored, str):
        return "an Import action without a signed attestation: not written by `lineage import bundle`"
    try:
        key = sshsig.check_signature(attestation_payload(attestation), armored, NAMESPACE)
    except (sshsig.InvalidSignature, NotImplementedError, ValueError) as error:
        return f"its attestation's signature does not match the attestation ({error})"
    if key not in trusted.values():
        return f"an import attested with key {key.sha256_str()}, not an active approver's key here then"
    said = {"ledger_id": "source_ledger", "head_count": "source_head_count", "head_hash": "source_head_hash",
            "version": "version"}  # fmt: skip
    if attestation.get("attests") != ATTESTS:
        return f"its attestation attests {str(attestation.get('attests'))[:40]!r}, not {ATTESTS!r}"
    for field_name, parameter in said.items():
        if attestation.get(field_name) != values.get(parameter):
            return f"its {parameter} is not the {field_name} its attestation gives"
    if values.get("signer_fingerprint") != key.sha256_str():
        return f"its signer_fingerprint is not {key.sha256_str()}, the key of its attestation"
    named, decisions = attestation.get("approvers"), attestation.get("decisions")
    if not isinstance(named, dict) or not isinstance(decisions, dict):
        return "its attestation lists no approvers or no decisions"
    try:
        keys = {str(name): public_key(str(line), f"attested key of {name!r}") for name, line in named.items()}
    except SignatureError as error:
        return f"its attestation: {error}"
    for decision_id in values.get("decisions") or []:
        if decision_id not in decisions:
            return f"it lists decision {str(decision_id)[:100]}, which its attestation does not"
    return Attested(str(attestation["ledger_id"]), keys, {str(k): str(v) for k, v in decisions.items()})


@dataclass
class SignatureReport:
    """What `check_signatures` found. On failure, `seq` and `entity_id` name the first bad record."""

    valid: int = 0
    unsigned: int = 0
    imported: int = 0  # decisions imported from other ledgers, checked against their approvers
    signers: set[str] = field(default_factory=set)
    seq: int | None = None
    entity_id: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.seq is None

    def __str__(self) -> str:
        if not self.ok:
            return f"signatures FAILED at seq {self.seq} (entity {self.entity_id}): {self.detail}"
        by = f" (by {', '.join(sorted(self.signers))})" if self.signers else ""
        unsigned = f", {self.unsigned} unsigned decisions (no key was set)" if self.unsigned else ""
        imported = f", {self.imported} imported decisions valid in their own ledger" if self.imported else ""
        return f"signatures ok: {self.valid} valid{by}{unsigned}{imported}"


def check_signatures(
    records: Iterable[LedgerRecord], earlier: Iterable[LedgerRecord] = (), recorded_before: Iterable[str] = ()
) -> SignatureReport:
    """Check every signed record in seq order against the approvers registered before it.

    `earlier`: records checked by an earlier verification, replayed (not checked again) for the
    approvers and override requests they establish; `recorded_before`: ids of decisions already
    recorded then, which must not be recorded again."""
    report = SignatureReport()
    trusted: dict[str, PublicKey] = {}
    registered_any = False
    overrides: dict[str, tuple[str, PublicKey]] = {}  # an override request's action id -> its signer and key
    seen: set[str] = set(recorded_before)
    imported = _Imported()
    for record in earlier:
        body = json.loads(record.body)
        values, signer = body[_FIELDS[record.kind]], str(body[_FIELDS[record.kind]].get("signed_by"))
        if imported.takes(record, body, trusted) is not None:
            continue
        if record.kind == "context":
            registered_any = True
            if values.get("status") == REVOKED:
                trusted.pop(str(body["name"]), None)
            else:
                trusted[str(body["name"])] = public_key(str(values["public_key"]))
        elif values.get("decision") == "override_requested" and signer in trusted:
            overrides[record.entity_id] = (signer, trusted[signer])
    for record in records:
        body = json.loads(record.body)
        values = body[_FIELDS[record.kind]]
        signature = values.get(SIGNATURE)
        if (outcome := imported.takes(record, body, trusted)) is not None:
            if outcome:
                report.seq, report.entity_id, report.detail = record.seq, record.entity_id, outcome
                return report
            if record.kind == "action" and record.entity_type != ActionType.IMPORT.value:
                if signature in (None, UNSIGNED):
                    report.unsigned += 1
                else:
                    report.imported += 1
            continue
        if record.kind == "action" and signature in (None, UNSIGNED):
            report.unsigned += 1
            continue
        try:
            problem, key = _problem(record, body, values, trusted, registered_any, overrides, seen)
            registered = public_key(str(values.get("public_key"))) if record.kind == "context" else None
        except SignatureError as error:  # an approver record whose public key does not parse
            problem, key = str(error), None
        if problem or key is None:
            report.seq, report.entity_id, report.detail = record.seq, record.entity_id, problem or "no key"
            return report
        report.valid += 1
        report.signers.add(str(values["signed_by"]))
        if registered is not None:
            registered_any = True
            if values.get("status") == REVOKED:
                trusted.pop(str(body["name"]), None)
            else:
                trusted[str(body["name"])] = registered
        elif values.get("decision") == "override_requested":
            overrides[record.entity_id] = (str(values["signed_by"]), key)
    return report


class _Imported:
    """What the Import actions met so far attested: which decisions came from which import, and the keys
    of each source ledger's approvers (its latest attestation's)."""

    def __init__(self) -> None:
        self.origin: dict[str, Attested] = {}  # an imported decision's id -> its import's attestation
        self.keys: dict[str, dict[str, PublicKey]] = {}  # ledger id -> approver name there -> attested key

    def takes(self, record: LedgerRecord, body: dict[str, Any], trusted: dict[str, PublicKey]) -> str | None:
        """None if `record` is no import's (check it as a local record); else "" if it holds, or why not."""
        values = body[_FIELDS[record.kind]]
        if record.kind == "action" and record.entity_type == ActionType.IMPORT.value:
            attested = attested_import(values, trusted)
            if isinstance(attested, str):
                return attested
            for decision_id in values.get("decisions") or []:
                self.origin[str(decision_id)] = attested
            self.keys[attested.ledger_id] = attested.approvers
            return ""
        if record.kind == "context" and IMPORTED_FROM in values:
            original = original_body(body)
            if problem := record_signature_problem(original, "context"):
                return f"imported Approver record: {problem}"
            name, origin = str(original["name"]), str(values[IMPORTED_FROM])
            attested_key = self.keys.get(origin, {}).get(name)
            if attested_key is None:
                return f"imported Approver record {name!r}: no import attested by an approver here vouches for it"
            try:
                key = public_key(str(values.get("public_key")))
            except SignatureError as error:
                return str(error)
            if key != attested_key:
                return (
                    f"imported Approver record {name!r}: its key {key.sha256_str()} is not the one its import's "
                    f"attestation gives ({attested_key.sha256_str()})"
                )
            return ""
        if record.kind == "action" and record.entity_id in self.origin:
            attested = self.origin[record.entity_id]
            if body_sha256(record.body) != attested.decisions.get(record.entity_id):
                return "imported decision: its body is not the one its import's attestation vouches for"
            if values.get(SIGNATURE) in (None, UNSIGNED):
                return ""
            problem, _ = decision_problem(body, attested.approvers)
            return f"imported decision: {problem} (by its import's attestation)" if problem else ""
        return None


def _problem(
    record: LedgerRecord,
    body: dict[str, Any],
    values: dict[str, Any],
    trusted: dict[str, PublicKey],
    registered_any: bool,
    overrides: dict[str, tuple[str, PublicKey]],
    seen: set[str],
) -> tuple[str | None, PublicKey | None]:
    """Why this signed record does not hold (None if it holds), and the key that signed it."""
    signer = values.get("signed_by")
    if not isinstance(signature := values.get(SIGNATURE), str) or not isinstance(signer, str):
        return "the record has no signature and no signer", None
    try:
        key = sshsig.check_signature(signed_payload(body, record.kind), signature, NAMESPACE)
    except (sshsig.InvalidSignature, NotImplementedError, ValueError) as error:
        return f"the signature by {signer!r} does not match the record ({error})", None
    if record.kind == "context" and not registered_any:  # the first approver vouches for itself
        if signer != body["name"] or key != public_key(str(values["public_key"])):
            return "the first approver's registration is not signed by that approver's own key", key
        return None, key
    if signer not in trusted:
        return f"signed by {signer!r}, who is not a registered approver at this point", key
    if key != trusted[signer]:
        return f"signed with key {key.sha256_str()}, which is not the key registered for {signer!r}", key
    if record.kind == "action":
        if record.entity_id in seen:
            return "a signed decision recorded a second time", key
        seen.add(record.entity_id)
        if values.get("decision") == "promoted" and values.get("override"):
            request = overrides.get(str(values.get("override_request")))
            if request is None:
                return "an override promotion without a signed override request before it", key
            if signer == request[0] or key == request[1]:
                return f"the override was requested and approved by the same person ({signer}): four eyes needed", key
    return None, key


def signed_records(store: LedgerStore) -> Iterator[LedgerRecord]:
    """The records that carry signatures, in seq order."""
    return store.records(SIGNED_RECORDS)


def check_ledger(store: LedgerStore, since: int = 0) -> SignatureReport:
    """Check the signatures of the records after seq `since` (all of them when 0), against the
    approvers and override requests recorded up to `since`, read by index rather than replayed."""
    if not since:
        return check_signatures(signed_records(store))
    after = list(store.records(SIGNED_RECORDS, after=since))
    decisions = [record for record in after if record.kind == Kind.ACTION.value]
    requests = {json.loads(record.body)["parameters"].get("override_request") for record in decisions}
    earlier = sorted(
        [
            *store.records([(Kind.CONTEXT, ContextType.APPROVER.value)], upto=since),
            *store.records(ids=[str(request) for request in requests if request], upto=since),
        ],
        key=lambda record: record.seq,
    )
    before = {record.entity_id for record in store.records(ids=[r.entity_id for r in decisions], upto=since)}
    return check_signatures(after, earlier, before)


def signing_key(entity: Entity) -> PublicKey | None:
    """The key that signed `entity`, if it carries a valid signature."""
    armored = _fields(entity).get(SIGNATURE)
    if not isinstance(armored, str) or armored == UNSIGNED:
        return None
    kind = "action" if isinstance(entity, Action) else "context"
    try:
        return sshsig.check_signature(signed_payload(entity.model_dump(mode="json"), kind), armored, NAMESPACE)
    except (sshsig.InvalidSignature, NotImplementedError, ValueError):
        return None


def signature_status(store: LedgerStore, entity: Entity) -> dict[str, Any]:
    """What one record's signature says, for people: `unsigned`, `invalid` (it does not match the record),
    `unregistered` (a valid signature by someone who is not an approver, or with another key than theirs)
    or `valid`; with the signer and the key's fingerprint. `lineage verify` checks them all in order."""
    values = _fields(entity)
    signer = values.get("signed_by")
    if values.get(SIGNATURE) in (None, UNSIGNED):
        return {"status": UNSIGNED, "signed_by": None, "fingerprint": None}
    key = signing_key(entity)
    if key is None:
        return {"status": "invalid", "signed_by": signer, "fingerprint": None}
    registered = approver(store, str(signer))
    own = registered is not None and public_key(str(registered.properties.get("public_key"))) == key
    return {"status": "valid" if own else "unregistered", "signed_by": signer, "fingerprint": key.sha256_str()}


def register(store: LedgerStore, name: str, key: PublicKey, signer: Signer, status: str = ACTIVE) -> Context:
    """Record that `name` may (or, revoked, may no longer) sign with `key`, signed by `signer`: the first
    approver by their own key, every later change by an active approver."""
    head = store.head()
    registered = approvers(store)
    record = approver_record(name, key, signer.principal, status)
    signed_record, used = sign(record, signer)
    if not registered:
        if signer.principal != name or used != key:
            raise SignatureError(f"the first approver registers themselves: sign as {name!r} with that key")
    else:
        trusted = next((a for a in registered if a.name == signer.principal), None)
        if trusted is None or trusted.properties.get("status") != ACTIVE:
            raise SignatureError(f"{signer.principal!r} is not an active registered approver")
        if used != public_key(str(trusted.properties["public_key"])):
            raise SignatureError(f"{signer.key} is not {signer.principal}'s registered key")
    assert isinstance(signed_record, Context)
    store.append([signed_record], expected_head=head)
    return signed_record
