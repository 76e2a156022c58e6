"""Signatures: SSH keys sign ledger records as git signs commits, and anyone holding the ledger checks them.

A decision (a Promotion action), an approver's registration (an Approver context) and the signing policy
are signed with the signer's own SSH key by `ssh-keygen -Y sign`, so a key in ssh-agent or on a hardware
token works as it does for git. What is signed is the record's canonical JSON without its `signature`
field, in the namespace `lineage-ledger`; the signer's name is part of it, and the signature carries the
public key that made it. Signatures are checked in process (the `sshsig` library, on top of
`cryptography`), as `ssh-keygen -Y verify` would check them. Who may sign what is lineage/authority.py's
to say, and which decisions hold lineage/decisions.py's.

Records imported from another ledger (lineage/bundle.py) grant no rights here. An imported Approver
record is a context qualified by its origin (`alice@<ledger id[:12]>`, with `imported_from` and
`origin_name` properties), checked against the record as its own ledger holds it (`original_body`). What
vouches for an import is its **attestation**, kept in the Import action's parameters: canonical JSON
naming the source ledger, its head and the version, the public key of every Approver record the bundle
carried and the sha256 of every decision's body as its own ledger holds it, signed by the bundle's
signer, whose key must be an active approver's here when the Import is recorded (`attested_import`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sshsig
from sshsig.ssh_public_key import PublicKey

from lineage.entities import IMPORTED_FROM, ORIGIN_NAME, Action, Context, Entity, context_id
from lineage.errors import LineageError
from lineage.store import canonical_json

NAMESPACE = "lineage-ledger"
SIGNATURE = "signature"  # the field a signed record keeps its armored SSH signature in
UNSIGNED = "unsigned"  # that field's value on a decision the pipeline took without a key
_FIELDS = {"action": "parameters", "context": "properties"}  # where each kind keeps its signature
ATTESTS = "lineage-bundle"  # an attestation's `attests`: what its signature vouches for (never a record)


class SignatureError(LineageError):
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


@functools.lru_cache(maxsize=8192)
def checked(payload: bytes, armored: str) -> PublicKey:
    """The public key that made `armored`, an SSH signature of `payload` in the ledger's namespace; raises
    sshsig.InvalidSignature (or ValueError, NotImplementedError) when it does not check. Kept: readers check
    the same decisions and approvers again on every read."""
    return sshsig.check_signature(payload, armored, NAMESPACE)


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


def original_body(body: dict[str, Any]) -> dict[str, Any]:
    """An imported context's record as its own ledger holds it: its origin name, without the import's properties."""
    values = {k: v for k, v in body["properties"].items() if k not in (IMPORTED_FROM, ORIGIN_NAME)}
    name = str(body["properties"][ORIGIN_NAME])
    return {**body, "id": context_id(str(body["context_type"]), name), "name": name, "properties": values}


def decision_problem(
    body: dict[str, Any], keys: dict[str, PublicKey], where: str = "in its ledger"
) -> tuple[str | None, PublicKey | None]:
    """Why a signed decision (an action's body) does not hold against the approvers' `keys` (None if it holds),
    and the key that signed it; `where` says whose approvers those are, for the message."""
    values = body["parameters"]
    signer, signature = values.get("signed_by"), values.get(SIGNATURE)
    if not isinstance(signature, str) or not isinstance(signer, str):
        return "the record has no signature and no signer", None
    try:
        key = checked(signed_payload(body, "action"), signature)
    except (sshsig.InvalidSignature, NotImplementedError, ValueError) as error:
        return f"the signature by {signer!r} does not match the record ({error})", None
    if signer not in keys:
        return f"signed by {signer!r}, who is not an active approver {where}", key
    if key != keys[signer]:
        return f"signed with key {key.sha256_str()}, which is not {signer!r}'s registered key {where}", key
    return None, key


def record_signature_problem(body: dict[str, Any], kind: str) -> str | None:
    """Why a signed record's signature does not match the record (None if it does), whoever signed it."""
    signature = body[_FIELDS[kind]].get(SIGNATURE)
    if not isinstance(signature, str):
        return "the record has no signature"
    try:
        checked(signed_payload(body, kind), signature)
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
        key = checked(attestation_payload(attestation), armored)
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


def signing_key(entity: Entity) -> PublicKey | None:
    """The key that signed `entity`, if it carries a valid signature."""
    armored = _fields(entity).get(SIGNATURE)
    if not isinstance(armored, str) or armored == UNSIGNED:
        return None
    kind = "action" if isinstance(entity, Action) else "context"
    try:
        return checked(signed_payload(entity.model_dump(mode="json"), kind), armored)
    except (sshsig.InvalidSignature, NotImplementedError, ValueError):
        return None
