"""Signed decisions: signatures ssh-keygen itself accepts; trust only in approvers the ledger registered;
an altered signature, an unregistered key and a second approval by the same person each reported in one
line naming the record; the pipeline's decisions signed with its key, or reported as unsigned."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lineage.authority import REVOKED, AuthorityError, register
from lineage.entities import Action, ActionStatus, ActionType, Association, AssociationType
from lineage.recorder import PIPELINE, RunInfo, StageRun, record_run
from lineage.registry import decision, get_version, production
from lineage.signatures import (
    NAMESPACE,
    SignatureError,
    Signer,
    read_public_key,
    sign,
    signed_payload,
    signer_from_text,
)
from lineage.store import LedgerStore
from lineage.verification import check_decisions
from tests import insider
from tests.conftest import register_approvers
from tests.lineage_workspace import STAGES, write_workspace

NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LedgerStore]:
    with LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        yield ledger


def _run(store: LedgerStore, root: Path, week: int, signer: Signer | None = None) -> str:
    """Record week `week`'s run (both gates pass); its model version's name."""
    write_workspace(root, week)
    stages = [StageRun(s, ActionStatus.COMPLETED, NOW, NOW, str(uuid.uuid4())) for s in STAGES]
    recorded = record_run(store, RunInfo(str(uuid.uuid4()), stages, NOW, NOW, None, "runs/x"), root, signer=signer)
    assert recorded.model_version is not None
    return recorded.model_version.name


def _decision(store: LedgerStore, version: str, outcome: str = "promoted", **parameters: Any) -> Action:
    """A decision on `version` as the registry writes one (on the production it replaces, in this ledger)."""
    current, ledger_id = production(store), store.ledger_id()
    action = decision(
        get_version(store, version), outcome, "someone", "a reason", current, None, ledger_id, **parameters
    )[0]
    assert isinstance(action, Action)
    return action


def _signed_decision(store: LedgerStore, root: Path, keys: dict[str, Path], signer: str, key: str) -> int:
    """alice registered, one run recorded, then a decision signed as `signer` with `key`'s key; its seq."""
    register_approvers(store, keys, "alice")
    version = _run(store, root, 1)
    [seq] = store.append([sign(_decision(store, version), Signer(signer, keys[key]))[0]])
    return seq


def test_a_signature_made_here_is_accepted_by_ssh_keygen_verify(
    store: LedgerStore, tmp_path: Path, ssh_keys: dict[str, Path]
) -> None:
    register_approvers(store, ssh_keys, "alice")
    version = _run(store, tmp_path, 1)
    signed, key = sign(_decision(store, version), Signer("alice", ssh_keys["alice"]))
    assert key == read_public_key(ssh_keys["alice"].with_suffix(".pub"))
    body = signed.model_dump(mode="json")
    (tmp_path / "payload").write_bytes(signed_payload(body, "action"))
    (tmp_path / "payload.sig").write_text(str(body["parameters"]["signature"]))
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"alice {ssh_keys['alice'].with_suffix('.pub').read_text()}")
    command = ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "alice", "-n", NAMESPACE, "-s"]
    with (tmp_path / "payload").open("rb") as payload:
        done = subprocess.run([*command, str(tmp_path / "payload.sig")], stdin=payload, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('Good "lineage-ledger" signature for alice')


def test_a_signature_altered_in_the_database_is_reported_even_after_the_chain_is_rehashed(
    store: LedgerStore, tmp_path: Path, ssh_keys: dict[str, Path]
) -> None:
    seq = _signed_decision(store, tmp_path, ssh_keys, "alice", "alice")
    assert check_decisions(store).ok
    with sqlite3.connect(tmp_path / "ledger.db") as raw:  # the reason changed, the signature kept
        raw.execute("UPDATE ledger_records SET body = replace(body, 'a reason', 'another') WHERE seq = ?", (seq,))
    assert not store.verify().ok  # the chain catches the edit ...
    insider.rehash_from(tmp_path / "ledger.db", seq)
    assert store.verify().ok  # ... until it is rehashed; the signature still catches it
    report = check_decisions(store)
    assert (report.ok, report.seq) == (False, seq)
    assert str(report).startswith(f"signatures FAILED at seq {seq} (entity ")
    assert "the signature by 'alice' does not match the record" in str(report)
    assert len(str(report).splitlines()) == 1


def test_a_decision_signed_by_an_unregistered_or_wrong_key_is_reported(
    store: LedgerStore, tmp_path: Path, ssh_keys: dict[str, Path]
) -> None:
    seq = _signed_decision(store, tmp_path, ssh_keys, "mallory", "mallory")
    report = check_decisions(store)
    assert (report.seq, report.detail) == (seq, "signed by 'mallory', who is not an active approver at this point")

    other = LedgerStore(f"sqlite:///{tmp_path / 'other.db'}")
    seq = _signed_decision(other, tmp_path, ssh_keys, "alice", "mallory")
    report = check_decisions(other)
    assert report.seq == seq
    assert report.detail.endswith("which is not 'alice''s registered key at this point")


def test_a_second_approval_by_the_same_person_is_reported(
    store: LedgerStore, tmp_path: Path, ssh_keys: dict[str, Path]
) -> None:
    register_approvers(store, ssh_keys, "alice", "bob")
    alice = Signer("alice", ssh_keys["alice"])
    version = _run(store, tmp_path, 1)
    request = sign(_decision(store, version, "override_requested"), alice)[0]
    approval = sign(_decision(store, version, override=True, override_request=request.id), alice)[0]
    _, seq = store.append([request, approval])
    report = check_decisions(store)
    assert report.seq == seq
    assert report.detail == "the override was requested and approved by the same person (alice): four eyes needed"
    # An override promotion with no request before it is reported too.
    other = LedgerStore(f"sqlite:///{tmp_path / 'other.db'}")
    register_approvers(other, ssh_keys, "alice", "bob")
    lone = decision(get_version(store, version), "promoted", "bob", "r", None, None, other.ledger_id(), override=True,
                    override_request="nothing")[0]  # fmt: skip
    other.append([sign(lone, Signer("bob", ssh_keys["bob"]))[0]])
    assert (
        check_decisions(other).detail
        == "an override promotion whose request nothing is not a decision recorded before it"
    )


def test_trust_starts_with_a_self_signed_approver_and_follows_registrations(
    store: LedgerStore, tmp_path: Path, ssh_keys: dict[str, Path]
) -> None:
    alice_pub = read_public_key(ssh_keys["alice"].with_suffix(".pub"))
    with pytest.raises(AuthorityError, match=r"the first approver.s registration is not signed by that approver"):
        register(store, "alice", alice_pub, Signer("bob", ssh_keys["bob"]))
    register_approvers(store, ssh_keys, "alice")
    with pytest.raises(AuthorityError, match="'mallory' is not an active approver"):
        register(
            store,
            "mallory",
            read_public_key(ssh_keys["mallory"].with_suffix(".pub")),
            Signer("mallory", ssh_keys["mallory"]),
        )
    # A name a shell passed with an undecodable byte is refused in one line, not a validation traceback.
    with pytest.raises(AuthorityError, match=r"^an approver's name must be valid Unicode: got 'caf\\udce9'$"):
        register(store, "caf\udce9", alice_pub, Signer("alice", ssh_keys["alice"]))
    register(store, "bob", read_public_key(ssh_keys["bob"].with_suffix(".pub")), Signer("alice", ssh_keys["alice"]))
    register(
        store, "bob", read_public_key(ssh_keys["bob"].with_suffix(".pub")), Signer("alice", ssh_keys["alice"]), REVOKED
    )
    version = _run(store, tmp_path, 1)
    [seq] = store.append([sign(_decision(store, version), Signer("bob", ssh_keys["bob"]))[0]])
    report = check_decisions(store)
    assert (report.seq, report.detail) == (seq, "signed by 'bob', who is not an active approver at this point")
    with pytest.raises(SignatureError, match="no such key file"):
        Signer("alice", tmp_path / "missing").sign(b"x")
    (tmp_path / "not-a-key").write_text("hello\n")
    with pytest.raises(SignatureError, match="not-a-key: not an Ed25519 or RSA OpenSSH public key"):
        read_public_key(tmp_path / "not-a-key")


def test_the_pipeline_signs_with_its_key_or_says_unsigned(
    store: LedgerStore, tmp_path: Path, ssh_keys: dict[str, Path]
) -> None:
    register_approvers(store, ssh_keys, "alice", PIPELINE)
    _run(store, tmp_path, 1)  # no key set
    with signer_from_text(PIPELINE, ssh_keys[PIPELINE].read_text()) as signer:
        key_file = signer.key
        assert oct(key_file.stat().st_mode & 0o777) == "0o600"
        version = _run(store, tmp_path, 2, signer)
    assert not key_file.exists()  # the key's text is written for ssh-keygen only while it signs
    decisions = [
        record.entity() for record in store.records() if record.kind == "action" and record.entity_type == "Promotion"
    ]
    assert [(d.parameters["decision"], d.parameters.get("signed_by")) for d in decisions] == [  # type: ignore[union-attr]
        ("promoted", None),
        ("promoted", PIPELINE),
    ]
    assert decisions[0].parameters["signature"] == "unsigned"  # type: ignore[union-attr]
    assert get_version(store, version).properties["status"] == "production"
    report = check_decisions(store)
    assert str(report) == (
        f"signatures ok: 3 valid (by alice, {PIPELINE}), 1 unsigned decisions (allowed by the policy then); "
        "policy: no signing policy recorded: unsigned pipeline decisions allowed (a demo ledger; see `lineage policy`)"
    )
    assert [a.action_type for a in decisions] == [ActionType.PROMOTION] * 2  # type: ignore[union-attr]


def test_checking_from_an_earlier_record_reads_the_approvers_and_requests_recorded_before_it(
    store: LedgerStore, tmp_path: Path, ssh_keys: dict[str, Path]
) -> None:
    """Whatever record a verification starts from, the signatures after it are judged as a check of the
    whole ledger judges them: a revocation, an override request and a decision recorded before it count."""
    register_approvers(store, ssh_keys, "alice", "bob")
    alice, bob = Signer("alice", ssh_keys["alice"]), Signer("bob", ssh_keys["bob"])
    heads = [0, store.head().count]  # where a verification can have ended: after an append
    version = _run(store, tmp_path, 1)
    heads.append(store.head().count)
    request = sign(_decision(store, version, "override_requested"), alice)[0]
    edge = Association(source_id=request.id, destination_id=get_version(store, version).id,
                       association_type=AssociationType.CONTRIBUTED_TO)  # fmt: skip
    request_seq, _ = store.append([request, edge])
    register(store, "carol", read_public_key(ssh_keys["mallory"].with_suffix(".pub")), alice)
    heads += [request_seq + 1, store.head().count]
    register(store, "carol", read_public_key(ssh_keys["mallory"].with_suffix(".pub")), alice, REVOKED)
    good = sign(_decision(store, version, override=True, override_request=request.id), bob)[0]
    [good_seq] = store.append([good])
    heads += [good_seq - 1, good_seq]
    assert check_decisions(store).ok
    for since in heads:
        assert check_decisions(store, since).ok, since

    # Each of these, appended after everything above, is caught from any earlier starting point.
    cases = {
        "the override was requested and approved by the same person (alice): four eyes needed": [
            sign(_decision(store, version, override=True, override_request=request.id), alice)[0]
        ],
        "signed by 'carol', who is not an active approver at this point": [
            sign(_decision(store, version), Signer("carol", ssh_keys["mallory"]))[0]
        ],
        "a decision recorded a second time: a replay": [good],
    }
    for detail, appended in cases.items():
        copy = tmp_path / f"{uuid.uuid4().hex}.db"
        copy.write_bytes((tmp_path / "ledger.db").read_bytes())
        with LedgerStore(f"sqlite:///{copy}") as other:
            [seq] = other.append(appended)
            assert check_decisions(other).detail == detail
            for since in heads:
                report = check_decisions(other, since)
                assert (report.seq, report.detail) == (seq, detail), since
            assert check_decisions(other, seq).ok  # it does not claim to check what came before
