"""The ledger against someone who can write to its database: each attack made with plain SQL (tests/insider.py),
the chain, its head and the current-state table put back in order, on a deployed ledger (unsigned decisions
refused, four eyes) that pipeline runs signed with the pipeline's key. `lineage verify` (plain and --full)
names the forged record, and the readers keep answering what the decisions that hold imply."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lineage import evidence, registry, views
from lineage.authority import (
    ALLOWED,
    PIPELINE,
    PREVIOUS,
    approver_record,
    approvers,
    cosign,
    current,
    finish,
    initialise,
    register,
)
from lineage.console.app import create_app
from lineage.decisions import PRODUCTION_POINTER
from lineage.entities import Context, ContextType, context_id
from lineage.signatures import Signer, read_public_key, signer_from_text
from lineage.store import LedgerStore
from tests import insider
from tests.bundle_world import dvc_repository
from tests.conftest import VENV_BIN, deploy, pipeline_runs

WEEKS = [(1, True), (2, False)]  # week 1 passes both gates, week 2 fails fairness


@dataclass(frozen=True)
class World:
    db: Path
    keys: dict[str, Path]
    production: str  # week 1's version, promoted by the pipeline's signed decision
    pending: str  # week 2's, rejected by fairness, then an override requested by alice: awaiting a second approver

    def signer(self, name: str, key: str | None = None) -> Signer:
        return Signer(name, self.keys[key or name])

    def pub(self, name: str) -> Path:
        return self.keys[name].with_suffix(".pub")

    def store(self) -> LedgerStore:
        return LedgerStore(f"sqlite:///{self.db}")

    def lineage(self, *args: str, ok: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """The command, run in `cwd` (by default the ledger's folder, outside any DVC checkout)."""
        env = {**os.environ, "LINEAGE_DB_URL": f"sqlite:///{self.db}"}
        done = subprocess.run([str(VENV_BIN / "lineage"), *args], env=env, capture_output=True, text=True,
                              cwd=cwd or self.db.parent, check=False)  # fmt: skip
        assert (done.returncode == 0) == ok, f"lineage {' '.join(args)}: {done.stdout}{done.stderr}"
        return done


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, ssh_keys: dict[str, Path]) -> World:
    """A deployed ledger: alice, bob, carol and the pipeline's key registered (four eyes from the third on), two
    signed pipeline runs and alice's override request; built once, copied for each attack."""
    folder = tmp_path_factory.mktemp("deployed")
    world = World(folder / "ledger.db", ssh_keys, "", "")
    with world.store() as store:
        deploy(store, ssh_keys)
        with signer_from_text(PIPELINE, ssh_keys[PIPELINE].read_text()) as pipeline:
            versions = pipeline_runs(store, folder, pipeline, WEEKS)
        registry.promote(store, versions[1], world.signer("alice"), "an exception", override=True)
    world = World(world.db, ssh_keys, *versions)
    assert world.lineage("verify", "--full").stdout.count("ok") >= 2
    return world


@pytest.fixture
def world(built: World, tmp_path: Path) -> World:
    db = tmp_path / "ledger.db"
    shutil.copy(built.db, db)
    return World(db, built.keys, built.production, built.pending)


def _failed(world: World, seq: int, detail: str) -> None:
    """`lineage verify` and `verify --full` exit 1 naming record `seq` and why, and the log keeps both failures."""
    for args in (["verify"], ["verify", "--full"]):
        done = world.lineage(*args, ok=False)
        assert f"FAILED at seq {seq} " in done.stdout, done.stdout
        assert detail in done.stdout, done.stdout
    assert world.lineage("verifications").stdout.splitlines()[-2:][0].split()[3] == "FAILED"


def _version_context(world: World, name: str) -> insider.Record:
    version_id = context_id(ContextType.MODEL_VERSION, name)
    return "context", version_id, "ModelVersion", name, None, None, insider.latest_body(world.db, version_id)


def test_a_forged_promotion_with_its_status_and_pointer_moves_nothing_and_verify_names_it(world: World) -> None:
    world.lineage("verify")  # the verification the forgery hopes to hide behind
    status = _version_context(world, world.pending)
    status[-1]["properties"] |= {"status": "production", "status_reason": "approved by the model risk board"}
    pointer = insider.latest_body(world.db, PRODUCTION_POINTER)
    pointer["properties"]["model_version"] = world.pending
    promotion = insider.latest_body(world.db, _promotion_id(world, world.production))
    promotion["id"] = str(uuid.uuid4())
    promotion["parameters"] = {**promotion["parameters"], "model_version": world.pending, "by": "alice",
                               "reason": "approved by the model risk board", "signature": "unsigned"}  # fmt: skip
    promotion["parameters"].pop("signed_by")
    seqs = insider.append(world.db, [
        status,
        ("context", PRODUCTION_POINTER, "Deployment", "production", None, None, pointer),
        ("action", promotion["id"], "Promotion", None, None, None, promotion),
    ])  # fmt: skip
    _failed(world, seqs[2], "it is unsigned, and the ledger's policy refuses unsigned decisions")
    with world.store() as store:
        view = registry.Registry(store)
        assert view.production() is not None
        assert view.production().name == world.production  # type: ignore[union-attr]
        assert view.version(world.pending).properties["status"] == "pending"
        assert view.production_state.pointer == world.pending
        assert [r.entity_id for r in view.production_state.refused] == [promotion["id"]]


def test_a_forged_status_and_pointer_without_any_decision_are_named_by_verify(world: World) -> None:
    status = _version_context(world, world.pending)
    status[-1]["properties"]["status"] = "production"
    [seq] = insider.append(world.db, [status])
    _failed(
        world, seq, f"a status change no decision that holds justifies: the record says {world.pending} is production"
    )
    pointer = insider.latest_body(world.db, PRODUCTION_POINTER)
    pointer["properties"]["model_version"] = world.pending
    copy = world.db.with_name("pointer.db")
    shutil.copy(world.db, copy)
    insider.truncate(copy, seq - 1)
    [seq] = insider.append(copy, [("context", PRODUCTION_POINTER, "Deployment", "production", None, None, pointer)])
    done = subprocess.run([str(VENV_BIN / "lineage"), "verify", "--db", f"sqlite:///{copy}"], capture_output=True,
                          text=True, cwd=copy.parent)  # fmt: skip
    assert done.returncode == 1
    assert f"FAILED at seq {seq} " in done.stdout
    assert f"a move of the production pointer to {world.pending} that no decision that holds justifies" in done.stdout


def _promotion_id(world: World, version: str) -> str:
    with world.store() as store:
        decided = registry.report(store, version).decisions
    return next(d.id for d in decided if d.parameters.get("decision") == "promoted")


def test_alice_alone_cannot_register_a_second_identity(world: World) -> None:
    """Through the command, a proposal that grants nothing; through SQL, a record verify refuses."""
    said = world.lineage("approvers", "add", "ally", "--public-key", str(world.pub("ally")), "--by", "alice",
                         "--key", str(world.keys["alice"])).stdout  # fmt: skip
    assert "registration of ally" in said
    assert "proposed, signed so far by alice; another approver signs it" in said
    refused = world.lineage("approvers", "confirm", "ally", "--by", "ally", "--key", str(world.keys["ally"]), ok=False)
    assert refused.stderr.strip() == "lineage: error: 'ally' is not an active approver (see `lineage approvers list`)"
    with world.store() as store:
        ally = approver_record("ally", read_public_key(world.pub("ally")), "alice", str(store.ledger_id()))
        record = finish(_in_turn(store, ally), [], world.signer("alice"))
        assert "ally" not in [a.name for a in approvers(store)]
    [seq] = insider.append(world.db, [_context(record)])
    _failed(world, seq, "the registration of 'ally' is signed by 1 approver(s) besides its subject; the policy needs 2")


def test_alice_cannot_take_over_bob_by_rekeying_him(world: World) -> None:
    """Even with carol's signature (two approvers besides bob), a new key for bob needs bob's old key too."""
    with world.store() as store:
        record = _in_turn(store, approver_record("bob", read_public_key(world.pub("mallory")), "alice",
                                                 str(store.ledger_id())))  # fmt: skip
    forged = finish(record, [cosign(record, world.signer("carol"))], world.signer("alice"))
    [seq] = insider.append(world.db, [_context(forged)])
    _failed(world, seq, "a new key for 'bob' that their old key did not sign: a rotation needs it")
    with world.store() as store:
        assert current(store).keys["bob"] == read_public_key(world.pub("bob"))
    # Through the command it stays a proposal until bob signs with his old key.
    said = world.lineage("approvers", "rotate", "bob", "--public-key", str(world.pub("mallory")), "--key",
                         str(world.keys["alice"]), ok=False)  # fmt: skip
    assert "is not bob's registered key" in said.stderr


def test_a_signed_decision_replayed_into_another_ledger_is_refused(world: World, tmp_path: Path) -> None:
    """alice and bob hold the same keys in another ledger, where the same model versions were trained: bob's
    approval in this one, copied into that one, names the ledger it was signed for."""
    other = tmp_path / "other.db"
    with LedgerStore(f"sqlite:///{other}") as store:
        initialise(store, world.signer("alice"), ALLOWED, four_eyes=False)
        register(store, "bob", read_public_key(world.pub("bob")), world.signer("alice"))
        pipeline_runs(store, tmp_path, None, WEEKS)
        registry.promote(store, world.pending, world.signer("alice"), "an exception", override=True)
    with world.store() as store:
        registry.approve(store, world.pending, world.signer("bob"), "reviewed")
        approval = registry.report(store, world.pending).decisions[-1]
        here = store.ledger_id()
    [seq] = insider.append(
        other, [("action", approval.id, "Promotion", None, None, None, approval.model_dump(mode="json"))]
    )
    done = subprocess.run([str(VENV_BIN / "lineage"), "verify", "--db", f"sqlite:///{other}"], capture_output=True,
                          text=True, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    assert f"FAILED at seq {seq} " in done.stdout
    assert f"a decision signed for ledger {here}, which no import here brought: a replay" in done.stdout
    with LedgerStore(f"sqlite:///{other}") as store:
        assert registry.get_version(store, world.pending).properties["status"] == "pending"


def test_an_unsigned_decision_under_a_signed_only_policy_fails_verify(world: World) -> None:
    held = insider.latest_body(world.db, _promotion_id(world, world.production))
    held["id"] = str(uuid.uuid4())
    held["parameters"] = {**held["parameters"], "decision": "held", "signature": "unsigned"}
    [seq] = insider.append(world.db, [("action", held["id"], "Promotion", None, None, None, held)])
    _failed(world, seq, "it is unsigned, and the ledger's policy refuses unsigned decisions")


def test_the_console_and_evidence_packs_fail_an_unsigned_decision_as_verify_does(world: World) -> None:
    """One verification (lineage/verification.py) for `lineage verify`, the console's health page and the evidence
    pack's verification section: a forged unsigned decision fails all three, named by its seq."""
    held = insider.latest_body(world.db, _promotion_id(world, world.production))
    held["id"] = str(uuid.uuid4())
    held["parameters"] = {**held["parameters"], "decision": "held", "signature": "unsigned"}
    [seq] = insider.append(world.db, [("action", held["id"], "Promotion", None, None, None, held)])
    named = f"FAILED at seq {seq} "
    assert named in world.lineage("verify", ok=False).stdout
    with LedgerStore(f"sqlite:///{world.db}", read_only=True) as store:
        check = views.health_view(store)["check"]
        assert check["ran"]
        assert not check["ok"]
        assert named in check["detail"], check
        console = TestClient(create_app(store), base_url="http://127.0.0.1")  # no credentials: loopback hosts only
        page = console.get("/ledger", params={"format": "json"}).json()["check"]
        assert not page["ok"]
        assert named in page["detail"], page
        run = registry.get_version(store, world.production).properties["flow_run_id"]
        section = evidence.verification(store, None, {"run": {"flow_run_id": run}}, full=False)
        assert not section["ok"]
        assert named in section["signatures"], section


def test_an_edited_current_state_row_changes_no_answer_and_verify_names_it(world: World) -> None:
    """The current-state table is only an index into the chain: renaming its last row and moving the production
    pointer's row to an older record changes no reader's answer, and `verify --full` names the table."""
    world.lineage("verify")  # passes: what comes next is changed after it
    with world.store() as store:
        before = [(v.name, v.properties["status"]) for v in registry.versions(store)]
        production = registry.production(store)
    with sqlite3.connect(world.db) as raw:
        (last,) = raw.execute("SELECT max(seq) FROM ledger_latest").fetchone()
        raw.execute("UPDATE ledger_latest SET entity_id = ? WHERE seq = ?", ("context-forged", last))
        raw.execute("UPDATE ledger_latest SET seq = seq - 1 WHERE entity_id = ?", (PRODUCTION_POINTER,))
    with world.store() as store:
        assert [(v.name, v.properties["status"]) for v in registry.versions(store)] == before
        assert registry.production(store) == production
        chained = store.latest([PRODUCTION_POINTER], upto=store.head().count)
        assert store.get(PRODUCTION_POINTER) == chained[PRODUCTION_POINTER]
    world.lineage("verify")  # it checks the records appended since the last verification: none, and no answer moved
    done = world.lineage("verify", "--full", ok=False)
    assert "the current-state table (ledger_latest) does not match the records" in done.stdout


def _context(context: Context) -> insider.Record:
    return "context", context.id, str(context.context_type), context.name, None, None, context.model_dump(mode="json")


def test_cutting_off_decisions_after_the_last_anchor_fails_verify(world: World, tmp_path: Path) -> None:
    """Decisions made in a checkout publish the ledger's head to its DVC remote. Records cut off the end (an
    approver's revocation and a promotion), with the head, the current-state table and the verification log
    made to agree, fail `verify` against that anchor; without the remote, `--full` still fails on the log."""
    checkout = dvc_repository(tmp_path / "checkout", tmp_path / "remote")
    world.lineage("approvers", "revoke", "carol", "--by", "alice", "--key", str(world.keys["alice"]), cwd=checkout)
    kept = sqlite3.connect(world.db).execute("SELECT record_count FROM ledger_head").fetchone()[0]
    world.lineage("approvers", "confirm", "carol", "--by", "bob", "--key", str(world.keys["bob"]), cwd=checkout)
    approved = world.lineage("models", "approve", world.pending, "--by", "bob", "--key", str(world.keys["bob"]),
                             "--reason", "reviewed", cwd=checkout)  # fmt: skip
    assert "anchor published: " in approved.stderr
    passed = world.lineage("verify", cwd=checkout).stdout
    head = sqlite3.connect(world.db).execute("SELECT record_count, head_hash FROM ledger_head").fetchone()
    assert f"anchor ok: record {head[0]} hashes to {head[1]}, as published at " in passed

    logged = tmp_path / "logged.db"
    shutil.copy(world.db, logged)
    insider.truncate(world.db, kept, clear_log=True)
    with world.store() as store:
        assert "carol" in current(store).keys  # her revocation is gone, and the approval
    done = world.lineage("verify", cwd=checkout, ok=False)
    assert f"anchor FAILED: {tmp_path / 'remote'}/ledger-heads/" in done.stdout
    assert f"FAILED: the published anchor {tmp_path / 'remote'}/ledger-heads/" in done.stdout
    assert "hash differs from the anchor's (no record" in done.stdout

    # Where no remote is at hand, the verification log still remembers how long the ledger was.
    insider.truncate(logged, kept)
    done = world.lineage("verify", "--full", "--db", f"sqlite:///{logged}", cwd=tmp_path, ok=False)
    assert "anchor: none checked: no DVC remote here" in done.stdout
    assert f"reached record {head[0]}: FAILED at seq {head[0]} " in done.stdout


def test_verify_refuses_a_ledger_that_does_not_exist(world: World, tmp_path: Path) -> None:
    done = world.lineage("verify", "--db", f"sqlite:///{tmp_path / 'typo.db'}", ok=False)
    assert done.stderr.strip().startswith("lineage: error: cannot open the lineage ledger at sqlite:///")
    assert done.stderr.strip().endswith("typo.db: no ledger file " + str(tmp_path / "typo.db"))
    assert not (tmp_path / "typo.db").exists()


def _in_turn(store: LedgerStore, record: Context) -> Context:
    """`record` as the next change of its subject (naming the subject's last change), as a careful forger writes it."""
    values = {**record.properties, PREVIOUS: current(store).previous(record)}
    return Context.model_validate({**record.model_dump(mode="json"), "properties": values})
