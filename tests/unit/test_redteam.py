"""A red team's attacks on the ledger's claims (issue 35's threat model), each made with plain SQL on a SQLite
ledger (tests/insider.py) and each refused: a test per attack, asserting what holds (each failed before its fix).

The deployed ledger every test starts from (built once, copied per test): alice (first approver), bob, carol and
the pipeline's key registered, unsigned decisions refused, four eyes. Week 1's version A is promoted by the
pipeline's signed decision; week 2's B fails fairness (rejected), alice requests an override, bob approves it
(B production), then alice rolls back to A (B rejected again); week 3's C fails fairness (rejected). So A is in
production, B was once approved and then rolled back, C was never approved by anyone.

The attacks, in the order below: records whose indexed columns disagree with their body (a replay under a fresh
entity_id; another version's body under A's id); one approver putting a failed version in production (a rollback to
any version, a minted version with forged verdicts, an override request approved twice); what readers take from a
version's latest record (the served model); signed approver and policy records replayed; four eyes with two
approvers; the unchained verification log; anchors (a higher one masking the rest); a malformed record; backdated
endpoint updates; decisions skipped silently as foreign; the head row deciding what an archive holds; readers' cost
per forged decision; the endpoint's database role; forged verdicts carried by an import."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lineage import registry
from lineage.authority import (
    ALLOWED,
    PIPELINE,
    REFUSED,
    REVOKED,
    AuthorityError,
    approver_record,
    confirm,
    current,
    initialise,
    policy_record,
    propose,
    register,
)
from lineage.decisions import PRODUCTION_POINTER, production
from lineage.entities import (
    Action,
    Context,
    ContextType,
    Entity,
    context_id,
)
from lineage.objects import Objects
from lineage.predictions import endpoint_update, scoring_files
from lineage.signatures import Signer, read_public_key, sign, signer_from_text
from lineage.store import LedgerStore, record_columns
from tasks.score import FILES
from tests import insider
from tests.bundle_world import dvc_repository
from tests.conftest import VENV_BIN, deploy, pipeline_runs


@dataclass(frozen=True)
class World:
    db: Path
    keys: dict[str, Path]
    versions: tuple[str, str, str]  # A (production), B (approved, then rolled back), C (never approved)

    @property
    def a(self) -> str:
        return self.versions[0]

    @property
    def b(self) -> str:
        return self.versions[1]

    @property
    def c(self) -> str:
        return self.versions[2]

    def signer(self, name: str) -> Signer:
        return Signer(name, self.keys[name])

    def pub(self, name: str) -> Path:
        return self.keys[name].with_suffix(".pub")

    def store(self) -> LedgerStore:
        return LedgerStore(f"sqlite:///{self.db}")

    def lineage(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "LINEAGE_DB_URL": f"sqlite:///{self.db}"}
        return subprocess.run([str(VENV_BIN / "lineage"), *args], env=env, capture_output=True, text=True,
                              cwd=cwd or self.db.parent, check=False)  # fmt: skip

    def production(self) -> str | None:
        with self.store() as store:
            found = registry.production(store)
        return None if found is None else found.name


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, ssh_keys: dict[str, Path]) -> World:
    folder = tmp_path_factory.mktemp("redteam")
    world = World(folder / "ledger.db", ssh_keys, ("", "", ""))
    with world.store() as store:
        deploy(store, ssh_keys)
        with signer_from_text(PIPELINE, ssh_keys[PIPELINE].read_text()) as pipeline:
            a, b = pipeline_runs(store, folder, pipeline, [(1, True), (2, False)])
            registry.promote(store, b, world.signer("alice"), "an exception", override=True)
            registry.approve(store, b, world.signer("bob"), "reviewed")
            registry.rollback(store, world.signer("alice"), "B misbehaves in production")
            [c] = pipeline_runs(store, folder, pipeline, [(3, False)])
    world = World(world.db, ssh_keys, (a, b, c))
    assert world.production() == a
    assert world.lineage("verify", "--full").returncode == 0
    return world


@pytest.fixture
def world(built: World, tmp_path: Path) -> World:
    db = tmp_path / "ledger.db"
    shutil.copy(built.db, db)
    return World(db, built.keys, built.versions)


def _record(entity: Entity, **columns: Any) -> insider.Record:
    """The record an insider writes for `entity`: its columns as the store would write them, with `columns`
    replaced (a column that disagrees with the body)."""
    found = record_columns(entity) | columns
    body = json.loads(str(found["body"]))
    return (str(found["kind"]), str(found["entity_id"]), str(found["entity_type"]), found["name"],
            found["source_id"], found["destination_id"], body)  # fmt: skip


def _bodies(world: World, entity_type: str) -> list[tuple[int, str, dict[str, Any]]]:
    """(seq, entity_id, body) of every record of this entity type, in seq order."""
    with sqlite3.connect(world.db) as raw:
        rows = raw.execute(
            "SELECT seq, entity_id, body FROM ledger_records WHERE entity_type = ? ORDER BY seq", (entity_type,)
        ).fetchall()
    return [(seq, entity_id, json.loads(body)) for seq, entity_id, body in rows]


def _decision(world: World, outcome: str, version: str) -> dict[str, Any]:
    """The body of the first decision `outcome` on `version`."""
    return next(
        body
        for _, _, body in _bodies(world, "Promotion")
        if body["parameters"]["decision"] == outcome and body["parameters"]["model_version"] == version
    )


def _verify(world: World, *args: str, cwd: Path | None = None) -> str:
    """`lineage verify` with `args`: its output; the caller asserts how it ended."""
    done = world.lineage("verify", *args, cwd=cwd)
    crashed = "Traceback" in done.stderr
    return f"exit {'crashed' if crashed else done.returncode}\n{done.stdout}{done.stderr[-1500:]}"


def _expect(world: World, in_production: str, seq: int | None, *verify_args: str) -> None:
    """What should hold after an attack: readers still put `in_production` in production, and `lineage verify`
    (plain and --full, or with `verify_args`) exits 1 naming record `seq` (any record when None)."""
    try:
        found: str | None = world.production()
    except Exception as error:  # a reader that crashes is no answer either
        found = f"{type(error).__name__}: {error}"
    said = [_verify(world, *args) for args in ([verify_args] if verify_args else [(), ("--full",)])]
    named = "FAILED" if seq is None else f"seq {seq}"
    wrong = [] if found == in_production else [f"production: {found} (expected {in_production})"]
    wrong += [s for s in said if not (s.startswith("exit 1") and named in s)]
    assert not wrong, "\n".join(wrong)


def _version(world: World, name: str) -> Context:
    body = insider.latest_body(world.db, context_id(ContextType.MODEL_VERSION, name))
    return Context.model_validate(body)


# -- 1. the columns of a record are not checked against its body ---------------------------------------------


def test_a_signed_decision_replayed_under_a_fresh_entity_id_column_is_refused(world: World) -> None:
    """bob's approval of B, copied byte for byte after alice rolled B back, filed under a new entity_id column: the
    replay check looks the id up by column, so it is no replay, and its previous_production (A) is right again."""
    approval = _decision(world, "promoted", world.b)
    assert approval["parameters"]["signed_by"] == "bob"
    [seq] = insider.append(world.db, [("action", f"replayed-{uuid.uuid4()}", "Promotion", None, None, None, approval)])
    _expect(world, world.a, seq)


def test_a_record_filed_under_the_production_versions_id_cannot_change_what_is_served(world: World) -> None:
    """B's own record (status rejected: what the decisions imply for B) written under A's entity_id column: readers
    look A up by column and take the body's name, so `production` and retail-serve's choice become B."""
    rejected_b = _version(world, world.b)
    assert rejected_b.properties["status"] == "rejected"
    a_id = context_id(ContextType.MODEL_VERSION, world.a)
    [seq] = insider.append(world.db, [_record(rejected_b, entity_id=a_id, name=world.a)])
    _expect(world, world.a, seq)


# -- 2. one approver puts a version whose gates failed in production -------------------------------------------


def _signed_decision(world: World, outcome: str, version: str, previous: str, signer: str) -> list[insider.Record]:
    """A decision `outcome` on `version` (replacing `previous`) signed by `signer` with their own key, with the
    status records, pointer and edge the registry would write: what an approver (who can write the database, as
    every approver running `lineage models` can) appends with plain SQL."""
    with world.store() as store:
        ledger_id = str(store.ledger_id())
    target, replaced = _version(world, version), _version(world, previous)
    decided = registry.decision(target, outcome, signer, "restoring the better model", replaced, ledger_id=ledger_id)
    action, edge = decided
    assert isinstance(action, Action)
    signed, _ = sign(action, world.signer(signer))
    assert isinstance(signed, Action)
    records: list[Entity] = [
        signed,
        edge,
        registry.with_status(replaced, registry.ModelStatus.REJECTED, decision=signed.id),
        registry.with_status(target, registry.ModelStatus.PRODUCTION, decision=signed.id),
        *registry._deploy(target, signed),
    ]
    return [_record(entity) for entity in records]


def test_one_approver_cannot_roll_back_to_a_version_that_was_never_in_production(world: World) -> None:
    """alice alone signs a `rolled_back` decision naming C (fairness failed, never approved by anyone): a rollback's
    target is not checked (no gates, no earlier production, no four eyes), so C is production and verify passes."""
    seqs = insider.append(world.db, _signed_decision(world, "rolled_back", world.c, world.a, "alice"))
    _expect(world, world.a, seqs[0])


def test_one_approver_cannot_mint_a_version_with_passing_verdicts_for_a_failed_model(world: World) -> None:
    """The verdicts a promotion relies on are the version's first record's, which nobody signs: alice appends a new
    ModelVersion naming C's model and C's run with both gates `passed`, then promotes it with the ordinary command,
    alone and without --override. retail-serve then loads C's model (fairness failed) under the new name."""
    c = _version(world, world.c)
    minted = Context(context_type=ContextType.MODEL_VERSION, name="model-0ddba11c0ffe", source_uri=c.source_uri,
                     properties={"status": "candidate", "model_md5": c.properties["model_md5"],
                                 "flow_run_id": c.properties["flow_run_id"], "drift_gate": "passed",
                                 "fairness_gate": "passed"})  # fmt: skip
    [minted_at] = insider.append(world.db, [_record(minted)])
    with world.store() as store, pytest.raises(registry.RegistryError, match="are not what a pipeline decision on"):
        registry.promote(store, minted.name, world.signer("alice"), "gates passed")
    # The same promotion signed by alice and appended with plain SQL does not hold either.
    with world.store() as store:
        ledger_id = str(store.ledger_id())
    records = registry.promotion(_version(world, world.a), minted, "alice", "gates passed", ledger_id=ledger_id)
    signed = [sign(e, world.signer("alice"))[0] if isinstance(e, Action) else e for e in records]
    insider.append(world.db, [_record(e) for e in signed])
    _expect(world, world.a, minted_at)  # the minted record is named first: its name is not its model's


# -- 3. what readers take from a version's latest record --------------------------------------------------------


def test_an_appended_version_record_cannot_change_the_model_served_for_the_production_version(world: World) -> None:
    """A's next record keeps the status the decisions imply (production), so RegistryCheck accepts it, but names C's
    model and C's run: `scoring_files` (retail-serve, the score flow), `lineage query production`, `reproduce` and
    evidence packs all follow it, and A is served with C's bytes."""
    a, c = _version(world, world.a), _version(world, world.c)
    assert a.properties["status"] == "production"
    taken = {"model_md5": c.properties["model_md5"], "flow_run_id": c.properties["flow_run_id"]}
    swapped = Context.model_validate({**a.model_dump(mode="json"), "properties": {**a.properties, **taken}})
    [seq] = insider.append(world.db, [_record(swapped)])
    with world.store() as store:
        served = scoring_files(store, world.a, FILES)["model"].md5
    said = _verify(world, "--full")
    wrong = [] if served == a.properties["model_md5"] else [f"A is served with C's model {served}"]
    wrong += [] if said.startswith("exit 1") and f"seq {seq}" in said else [said]
    assert not wrong, "\n".join(wrong)


# -- 4. signed governance records replayed ---------------------------------------------------------------------


def test_a_revoked_approvers_registration_replayed_does_not_reinstate_them(world: World) -> None:
    """carol is revoked by alice and bob (four eyes). Her original registration (signed by alice and bob) appended
    again holds again: approver records carry nothing that makes a second recording of the same signed body a
    replay, so carol (who still holds her key) is an active approver again and can sign the second approval."""
    with world.store() as store:
        ledger_id = str(store.ledger_id())
        revoke = approver_record("carol", read_public_key(world.pub("carol")), "alice", ledger_id, status=REVOKED)
        _, proposed = propose(store, revoke, world.signer("alice"))
        assert proposed is not None
        done, _ = confirm(store, proposed, world.signer("bob"))
        assert done is not None
        assert "carol" not in current(store).keys
    original = next(body for _, _, body in _bodies(world, "Approver") if body["name"] == "carol")
    [seq] = insider.append(world.db, [("context", original["id"], "Approver", "carol", None, None, original)])
    with world.store() as store:
        reinstated = "carol" in current(store).keys
    said = _verify(world, "--full")
    wrong = ["carol is active again"] if reinstated else []
    wrong += [] if said.startswith("exit 1") and f"seq {seq}" in said else [said]
    assert not wrong, "\n".join(wrong)


def test_an_earlier_signing_policy_replayed_does_not_come_back_into_force(world: World) -> None:
    """alice and bob allowed unsigned decisions for a while, then refused them again. The `allowed` record, appended
    again, holds again (signed by two active approvers, for this ledger): the policy is `allowed`, and an unsigned
    'pipeline' promotion of a version with forged passing verdicts (C's model) holds for readers and verify."""
    with world.store() as store:
        ledger_id = str(store.ledger_id())
        for unsigned in (ALLOWED, REFUSED):
            _, proposed = propose(store, policy_record(unsigned, True, ledger_id), world.signer("alice"))
            assert proposed is not None
            done, _ = confirm(store, proposed, world.signer("bob"))
            assert done is not None
        assert not current(store).policy.unsigned_allowed
    allowed = next(b for _, _, b in _bodies(world, "LedgerPolicy") if b["properties"]["unsigned_decisions"] == ALLOWED)
    [seq] = insider.append(world.db, [("context", allowed["id"], "LedgerPolicy", "signing", None, None, allowed)])
    c = _version(world, world.c)
    minted = Context(context_type=ContextType.MODEL_VERSION, name="model-0ddba11c0ffe", source_uri=c.source_uri,
                     properties={"status": "candidate", "model_md5": c.properties["model_md5"],
                                 "flow_run_id": c.properties["flow_run_id"], "drift_gate": "passed",
                                 "fairness_gate": "passed"})  # fmt: skip
    promoted = registry.promotion(_version(world, world.a), minted, f"{PIPELINE} (flow run x)", "both gates passed",
                                  ledger_id=ledger_id)  # fmt: skip
    unsigned_records = [
        Action.model_validate({**e.model_dump(mode="json"), "parameters": {**e.parameters, "signature": "unsigned"}})
        if isinstance(e, Action) else e
        for e in promoted
    ]  # fmt: skip
    insider.append(world.db, [_record(minted), *(_record(e) for e in unsigned_records)])
    _expect(world, world.a, seq)


# -- 5. four eyes on approver changes with two approvers -------------------------------------------------------


def test_alice_alone_cannot_trade_bob_for_a_second_identity(tmp_path: Path, ssh_keys: dict[str, Path]) -> None:
    """Under four eyes with two approvers, a change to bob needs one approver besides bob (only alice is there),
    and once bob is revoked a registration needs one besides its subject (alice again): alice alone revokes bob,
    registers `ally` (her second identity, or bob again with a key she holds), and ally approves her overrides.
    Every step follows the documented rule ("two once two others are there to sign"), so verify passes."""
    with LedgerStore(f"sqlite:///{tmp_path / 'two.db'}") as store:
        alice = Signer("alice", ssh_keys["alice"])
        initialise(store, alice, REFUSED, four_eyes=True)
        register(store, "bob", read_public_key(ssh_keys["bob"].with_suffix(".pub")), alice)
        for name, status in (("bob", REVOKED), ("ally", "active")):
            with contextlib.suppress(AuthorityError):
                register(store, name, read_public_key(ssh_keys[name].with_suffix(".pub")), alice, status=status)
        keys = sorted(current(store).keys)
    assert "ally" not in keys, f"alice alone: bob revoked, ally registered; active approvers {keys}"


# -- 6. incremental verify, anchors --------------------------------------------------------------------------


def _forged_promotion(world: World, version: str) -> insider.Record:
    """An unsigned promotion of `version` (what an insider without a key can write)."""
    with world.store() as store:
        ledger_id = str(store.ledger_id())
    action, _ = registry.decision(_version(world, version), "promoted", f"{PIPELINE} (flow run x)", "gates passed",
                                  _version(world, world.a), ledger_id=ledger_id)  # fmt: skip
    assert isinstance(action, Action)
    return _record(Action.model_validate({**action.model_dump(mode="json"),
                                          "parameters": {**action.parameters, "signature": "unsigned"}}))  # fmt: skip


def test_plain_verify_is_not_silenced_by_a_forged_verification_log_row(world: World, tmp_path: Path) -> None:
    """The anchor published before the forgery still holds (it is checked at its own count), and the unchained
    verification log says the forged records were verified already: plain `lineage verify` passes."""
    checkout = dvc_repository(tmp_path / "checkout", tmp_path / "remote")
    with world.store() as store:
        Objects(checkout).publish_anchor(str(store.ledger_id()), store.head(), "a decision")
    [seq] = insider.append(world.db, [_forged_promotion(world, world.c)])
    with sqlite3.connect(world.db) as raw:
        count, digest = raw.execute("SELECT record_count, head_hash FROM ledger_head").fetchone()
        raw.execute(
            "INSERT INTO ledger_verifications (from_count, record_count, head_hash, ok, result, verified_at) "
            "VALUES (0, ?, ?, 1, 'chain ok', '2026-12-01T00:00:00+00:00')",
            (count, digest),
        )
    said = _verify(world, cwd=checkout)
    assert "anchor ok" in said, said
    assert said.startswith("exit 1"), said
    assert f"seq {seq}" in said, said


def test_a_higher_anchor_written_to_the_remote_does_not_mask_the_earlier_ones(world: World, tmp_path: Path) -> None:
    """With an append-only remote (Object Lock: no delete, no overwrite, but new objects allowed, as the pipeline
    needs), cut the rollback off the end, grow the ledger past the old anchor's count with harmless records and
    write one anchor file for the new head: verify checks only the highest anchor, never the earlier one."""
    checkout = dvc_repository(tmp_path / "checkout", tmp_path / "remote")
    with world.store() as store:
        ledger_id = str(store.ledger_id())
        published = store.head()
        Objects(checkout).publish_anchor(ledger_id, published, "a decision")
    rollback = next(
        seq for seq, _, body in _bodies(world, "Promotion") if body["parameters"]["decision"] == "rolled_back"
    )
    insider.truncate(world.db, rollback - 1, clear_log=True)
    filler = [_record(Context(context_type=ContextType.ENDPOINT, name=f"e{i}")) for i in range(published.count)]
    insider.append(world.db, filler[: published.count - (rollback - 1) + 1])
    with sqlite3.connect(world.db) as raw:
        count, digest = raw.execute("SELECT record_count, head_hash FROM ledger_head").fetchone()
    folder = tmp_path / "remote" / "ledger-heads" / ledger_id
    (folder / f"{count:012d}-{digest}.json").write_text(json.dumps({"record_count": count, "head_hash": digest}))
    assert world.production() == world.b  # the rolled-back version, as readers now see it
    for args in ((), ("--full",)):
        said = _verify(world, *args, cwd=checkout)
        assert said.startswith("exit 1"), said


# -- 7. robustness ---------------------------------------------------------------------------------------------


def test_a_malformed_record_neither_crashes_readers_nor_verify(world: World) -> None:
    """One appended record of type Approver (or Promotion) whose body is `{}`: every reader replays approvers first,
    so `registry.production`, `lineage models list`, the console and retail-serve (its poll thread, or its start)
    fail with a KeyError; `lineage verify` exits with a traceback instead of naming the record."""
    [seq] = insider.append(world.db, [("context", "context-odd", "Approver", "odd", None, None, {})])
    _expect(world, world.a, seq)


# -- 8. what `lineage served` says -------------------------------------------------------------------------------


def test_a_backdated_endpoint_update_is_not_verified(world: World) -> None:
    """The endpoint's own database role may append EndpointUpdate actions. One dated inside the window when B was in
    production, naming A, is checked against the production of the moment it was appended (A), not of the time it
    claims: `lineage served retail-demand --at <then>` answers A, verified, hiding that B served then."""
    approved, rolled_back = (dt.datetime.fromisoformat(_decision(world, o, v)["start"])
                             for o, v in (("promoted", world.b), ("rolled_back", world.a)))  # fmt: skip
    during_b = approved + (rolled_back - approved) / 2
    with world.store() as store:
        a = registry.get_version(store, world.a)
        store.append(endpoint_update(store, "retail-demand", a, during_b, {"host": "web-1", "image": "local"}))
    done = world.lineage("served", "retail-demand", "--at", during_b.isoformat(), "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    [row] = json.loads(done.stdout)
    assert row["model_version"] == world.b or not row["verified"], row


# -- 9. readers skip a decision that names another ledger, silently ----------------------------------------------


def test_readers_report_a_decision_that_names_another_ledger_without_an_import(world: World) -> None:
    """The rollback's ledger_id rewritten (and the chain rehashed, a pointer to B appended): readers skip the rollback
    as another ledger's history without judging it, so production silently goes back to B; `refused` is empty, the
    pointer agrees, retail-serve's /health reports nothing (verify does fail, on the anchor and the decision)."""
    rollback = next(
        seq for seq, _, body in _bodies(world, "Promotion") if body["parameters"]["decision"] == "rolled_back"
    )
    with sqlite3.connect(world.db) as raw:
        (body,) = raw.execute("SELECT body FROM ledger_records WHERE seq = ?", (rollback,)).fetchone()
        edited = json.loads(body)
        edited["parameters"]["ledger_id"] = "f" * 64
        raw.execute("UPDATE ledger_records SET body = ? WHERE seq = ?", (insider.canonical(edited), rollback))
    insider.rehash_from(world.db, rollback)
    pointer = insider.latest_body(world.db, PRODUCTION_POINTER)
    pointer["properties"]["model_version"] = world.b
    insider.append(world.db, [("context", PRODUCTION_POINTER, "Deployment", "production", None, None, pointer)])
    with world.store() as store:
        state = production(store)
    assert state.name == world.b  # production moved back to the version alice rolled back
    assert state.warnings(), "readers (and retail-serve's /health) say nothing about the decision they skipped"


# -- 10. the head row decides what an archive holds ---------------------------------------------------------------


def test_an_edited_head_row_does_not_shorten_the_archive(world: World, tmp_path: Path) -> None:
    """The head row set back to the record before alice's rollback (records left in place, so every reader of the
    database still answers A): `lineage export archive` stops at the head row's count, and the archive, missing the
    rollback and week 3, passes `lineage verify --archive` with B in production. The head row changed an answer."""
    rollback = next(
        seq for seq, _, body in _bodies(world, "Promotion") if body["parameters"]["decision"] == "rolled_back"
    )
    with sqlite3.connect(world.db) as raw:
        total = raw.execute("SELECT record_count FROM ledger_head").fetchone()[0]
        (digest,) = raw.execute("SELECT record_hash FROM ledger_records WHERE seq = ?", (rollback - 1,)).fetchone()
        raw.execute("UPDATE ledger_head SET record_count = ?, head_hash = ?", (rollback - 1, digest))
    assert world.production() == world.a
    archive = tmp_path / "ledger.jsonl.gz"
    exported = world.lineage("export", "archive", "--output", str(archive))
    checked = world.lineage("verify", "--archive", str(archive))
    assert exported.returncode != 0 or f"{total} records written" in exported.stdout or checked.returncode == 1, (
        exported.stdout + checked.stdout
    )


# -- 11. an override request is used more than once ----------------------------------------------------------------


def test_an_override_request_approved_once_cannot_be_approved_again_by_one_approver(world: World) -> None:
    """alice requested the override of B and bob approved it; alice then rolled B back. bob alone signs a new approval
    of B that cites alice's old request: the request is not consumed by its first approval (nor withdrawn by the
    rollback), so B is production again on bob's signature alone, and verify passes."""
    request = next(
        Action.model_validate(body)
        for _, _, body in _bodies(world, "Promotion")
        if body["parameters"]["decision"] == "override_requested"
    )
    with world.store() as store:
        ledger_id = str(store.ledger_id())
        b = registry.first_verdicts(store, _version(world, world.b))
    records = registry.promotion(_version(world, world.a), b, "bob", "approved again", request, ledger_id=ledger_id)
    signed = [sign(e, world.signer("bob"))[0] if isinstance(e, Action) else e for e in records]
    seqs = insider.append(world.db, [_record(e) for e in signed])
    _expect(world, world.a, seqs[0])


# -- 12. readers' cost grows with forged decisions times approvers -------------------------------------------------


def test_forged_decisions_do_not_make_readers_replay_the_approvers_for_each(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`production()` judges every later production decision until one holds, and rebuilds the authority (every
    approver and policy record, every signature checked again) for each one's seq: 2,000 forged unsigned promotions
    (0.2 s to append with plain SQL) cost 5 s per read here, 20,000 cost 76 s, for `lineage models`, the console,
    retail-serve's every poll and the flow's next decision. The authority changes only at governance records."""
    forged = _forged_promotion(world, world.c)
    copies: list[insider.Record] = []
    for _ in range(300):
        body = {**forged[-1], "id": str(uuid.uuid4())}
        copies.append(("action", body["id"], "Promotion", None, None, None, body))
    insider.append(world.db, copies)
    import sshsig

    checked = 0
    original = sshsig.check_signature

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal checked
        checked += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(sshsig, "check_signature", counting)
    began = time.perf_counter()
    assert world.production() == world.a
    took = time.perf_counter() - began
    assert checked < 100, f"{checked} signature checks for 300 forged decisions ({took:.1f} s)"


# -- 13. the endpoint's database role ------------------------------------------------------------------------------


@pytest.mark.integration  # the machine's PostgreSQL (skipped where none answers)
def test_the_endpoints_database_role_cannot_change_the_production_version(world: World) -> None:
    """deployments/ledger-roles.sql lets retail-serve's role insert any context of type Endpoint, whatever its entity_id
    and body. That role files B's ModelVersion body under A's entity_id (chained, head and current-state row kept
    right): every reader looks A up by id and gets B, retail-serve loads B, and verify does not check the record."""
    from sqlalchemy import create_engine, text

    from tests.conftest import POSTGRES_PSYCOPG, REPO, copy_to_postgres, postgres_database

    with postgres_database("redteam_role") as database:
        owner = POSTGRES_PSYCOPG.format(database=database)
        copy_to_postgres(world.db, owner)
        role = f"serve_{uuid.uuid4().hex[:10]}"

        def psql(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1",
                                   *args], capture_output=True, text=True, check=False)  # fmt: skip

        assert psql("-c", f"CREATE ROLE {role} LOGIN").returncode == 0
        try:
            granted = psql("-v", f"serving={role}", "-f", str(REPO / "deployments/ledger-roles.sql"))
            assert granted.returncode == 0, granted.stderr
            b_body = insider.latest_body(world.db, context_id(ContextType.MODEL_VERSION, world.b))
            a_id = context_id(ContextType.MODEL_VERSION, world.a)
            serving = create_engine(f"postgresql+psycopg://{role}@127.0.0.1:5432/{database}")
            with serving.begin() as conn:  # what the role may do, in plain SQL
                count, prev = conn.execute(text("SELECT record_count, head_hash FROM ledger_head")).one()
                columns = [count + 1, "context", a_id, "Endpoint", world.a, None, None, insider.canonical(b_body), prev]
                conn.execute(
                    text("INSERT INTO ledger_records VALUES (:s, :k, :e, :t, :n, NULL, NULL, :b, :p, :h)"),
                    dict(zip("sketnbp", [c for c in columns if c is not None], strict=True), h=insider.digest(columns)),
                )
                conn.execute(
                    text("UPDATE ledger_latest SET seq = :s, entity_type = 'Endpoint' WHERE entity_id = :e"),
                    {"s": count + 1, "e": a_id},
                )
                conn.execute(
                    text("UPDATE ledger_head SET record_count = :s, head_hash = :h"),
                    {"s": count + 1, "h": insider.digest(columns)},
                )
            serving.dispose()
            with LedgerStore(owner) as store:
                found = registry.production(store)
            said = subprocess.run([str(VENV_BIN / "lineage"), "verify", "--full", "--db", owner], capture_output=True,
                                  text=True, cwd=world.db.parent, check=False)  # fmt: skip
            wrong = [] if found is not None and found.name == world.a else [f"production: {found and found.name}"]
            wrong += [] if said.returncode == 1 else [said.stdout]
            assert not wrong, "\n".join(wrong)
        finally:
            psql("-c", f"DROP OWNED BY {role}; DROP ROLE {role}")


# -- 14. a dev ledger's forged verdicts carried into prod by an honest export --------------------------------------


def test_an_import_does_not_take_a_versions_verdicts_from_a_forged_later_record(
    tmp_path: Path, ssh_keys: dict[str, Path]
) -> None:
    """In dev, someone who can write dev's database (no key) appends B's next record with `fairness_gate: passed` (its
    status unchanged, so dev's verify passes). alice exports B honestly; prod, which trusts her key, imports it: the
    local candidate takes the verdicts of the bundle's latest record of B, not its first one nor its FairnessGate
    action (failed), so bob alone promotes a model that failed fairness in prod, without an override."""
    from lineage.bundle import export_bundle, import_bundle
    from tests.bundle_world import record_weeks

    alice, bob = Signer("alice", ssh_keys["alice"]), Signer("bob", ssh_keys["bob"])
    dev_db, prod_db = tmp_path / "dev.db", tmp_path / "prod.db"
    storage = tmp_path / "remote"
    (tmp_path / "dev").mkdir()
    with LedgerStore(f"sqlite:///{dev_db}") as dev:
        initialise(dev, alice, REFUSED, four_eyes=True)
        register(dev, PIPELINE, read_public_key(ssh_keys[PIPELINE].with_suffix(".pub")), alice)
        with signer_from_text(PIPELINE, ssh_keys[PIPELINE].read_text()) as pipeline:
            [_, (b, _)] = record_weeks(dev, tmp_path / "dev", storage, pipeline, True, False)
    b_id = context_id(ContextType.MODEL_VERSION, b)
    forged = insider.latest_body(dev_db, b_id)
    assert forged["properties"]["fairness_gate"] == "failed"
    forged["properties"]["fairness_gate"] = "passed"
    insider.append(dev_db, [("context", b_id, "ModelVersion", b, None, None, forged)])
    with LedgerStore(f"sqlite:///{dev_db}") as dev:
        export_bundle(dev, b, tmp_path / "b.json", alice)
    with LedgerStore(f"sqlite:///{prod_db}") as prod:
        initialise(prod, bob, REFUSED, four_eyes=True)
        register(prod, "dev-alice", read_public_key(ssh_keys["alice"].with_suffix(".pub")), bob)
        import_bundle(prod, tmp_path / "b.json", Objects(dvc_repository(tmp_path / "prod", storage)))
        with contextlib.suppress(registry.RegistryError):
            registry.promote(prod, b, bob, "both gates passed")
        found = registry.production(prod)
    assert found is None, f"{b} (fairness failed in dev) is production in prod on bob's signature alone"
