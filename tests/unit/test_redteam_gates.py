"""A red team's attacks on the gate table's claim (issue 35's threat model, issue 38's accuracy gate): "a model worse
than the baseline is never promoted, and every gate in the table is required". Each attack is made with plain SQL on a
SQLite ledger (tests/insider.py) by someone who can write the ledger database and edit files but holds no private key
(or, where said, one approver acting alone: the claim asks two approvers' signed override for a failed gate). A test
per attack asserts what must hold. The first two were findings, fixed: only the pipeline's decisions that found every
gate passed (promoted, held) vouch for the verdicts they quote, never a rejection (lineage/decisions.py VOUCHING), and a
version recorded with a verdict no run writes is named by `lineage verify` (gates/table.py `unwritten`).

The deployed ledger every test starts from (built once, copied per test): alice (first approver), bob, carol and the
pipeline's key registered, unsigned decisions refused, four eyes. Week 1's version A passes every gate and is promoted
by the pipeline's signed decision (production); week 2's B fails fairness and week 3's C fails accuracy (the network
worse than the baseline): the pipeline rejects both. Nobody ever approved B or C.

The attacks, in the order below: a version record minted, before the pipeline records its model, without an accuracy
verdict (or with one that reads as promotable) so that the pipeline's own signed rejection vouches for it; the same
carried into another ledger by an honest export; a minted version with forged or replayed decisions and no key; the
accuracy verdict dropped from a failed version's later record, or from its first record (the chain rehashed); an old
decision that quoted two gates replayed onto another version; a decision quoting `accuracy_gate: predates`; the gate's
action rewritten (its verdict, its type's spelling)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lineage import registry
from lineage.authority import PIPELINE, REFUSED, initialise, register
from lineage.entities import (
    Action,
    ActionStatus,
    Association,
    AssociationType,
    Context,
    ContextType,
    Entity,
    PropertyValue,
    context_id,
)
from lineage.recorder import Recorded, RunInfo, StageRun, record_run
from lineage.signatures import Signer, read_public_key, sign, signer_from_text
from lineage.store import LedgerStore
from tests import insider
from tests.conftest import deploy
from tests.lineage_workspace import STAGES, write_workspace
from tests.unit.test_redteam import World, _bodies, _decision, _expect, _record, _verify, _version

NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)
MODEL = "models/model.pt"


def _workspace(folder: Path, week: int, accurate: bool = True, fair: bool = True) -> str:
    """Week `week`'s workspace as the stages leave it; the model's md5 that tune wrote into dvc.lock (readable by
    anyone with the workspace, minutes before the flow records the run in the ledger)."""
    write_workspace(folder, week, fair=fair, accurate=accurate)
    lock = yaml.safe_load((folder / "dvc.lock").read_text(encoding="utf-8"))
    return str(next(out["md5"] for out in lock["stages"]["tune"]["outs"] if out["path"] == MODEL))


def _info(accurate: bool = True, fair: bool = True) -> RunInfo:
    """The flow's facts for a run: it stops after inference when the accuracy gate fails (fairness not run)."""
    stopped = not accurate
    stages = [
        StageRun(s, ActionStatus.NOT_RUN if stopped and s == "fairness" else ActionStatus.COMPLETED, NOW, NOW,
                 str(uuid.uuid4()))
        for s in STAGES
    ]  # fmt: skip
    failure = "accuracy check failed" if not accurate else None if fair else "fairness check failed"
    return RunInfo(str(uuid.uuid4()), stages, NOW, NOW, failure, "runs/x")


@contextlib.contextmanager
def _pipeline(keys: dict[str, Path]) -> Iterator[Signer]:
    with signer_from_text(PIPELINE, keys[PIPELINE].read_text()) as pipeline:
        yield pipeline


def _run(store: LedgerStore, folder: Path, keys: dict[str, Path], info: RunInfo) -> Recorded:
    """The workspace at `folder` recorded as the pipeline's run `info`, signed with the pipeline's key."""
    with _pipeline(keys) as pipeline:
        return record_run(store, info, folder, signer=pipeline)


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory, ssh_keys: dict[str, Path]) -> World:
    folder = tmp_path_factory.mktemp("redteam-gates")
    db = folder / "ledger.db"
    names = []
    with LedgerStore(f"sqlite:///{db}") as store:
        deploy(store, ssh_keys)
        for week, accurate, fair in ((1, True, True), (2, True, False), (3, False, True)):
            _workspace(folder, week, accurate, fair)
            recorded = _run(store, folder, ssh_keys, _info(accurate, fair))
            assert recorded.model_version is not None
            names.append(recorded.model_version.name)
    a, b, c = names
    world = World(db, ssh_keys, (a, b, c))
    assert world.production() == a
    assert _version(world, c).properties["accuracy_gate"] == "failed"
    assert _version(world, c).properties["status"] == "rejected"
    assert world.lineage("verify", "--full").returncode == 0
    return world


@pytest.fixture
def world(gated: World, tmp_path: Path) -> World:
    db = tmp_path / "ledger.db"
    shutil.copy(gated.db, db)
    return World(db, gated.keys, gated.versions)


def _ledger_id(world: World) -> str:
    with world.store() as store:
        return str(store.ledger_id())


def _promotion_by(world: World, name: str, signer: str, **quoted: Any) -> list[insider.Record]:
    """The records `registry.promote` would append for `name` without an override, signed by `signer` with their own
    key (`quoted`: gate verdicts the decision quotes instead of the first record's): what one approver who can write
    the database appends with plain SQL where the registry refuses."""
    with world.store() as store:
        target = registry.first_verdicts(store, _version(world, name))
        current = registry.production(store)
    assert current is not None
    action, edge = registry.decision(target, "promoted", signer, "every gate passed", current,
                                     ledger_id=_ledger_id(world), override=False)  # fmt: skip
    assert isinstance(action, Action)
    if quoted:
        action = Action.model_validate({**action.model_dump(mode="json"),
                                        "parameters": {**action.parameters, "gates": quoted}})  # fmt: skip
    signed, _ = sign(action, world.signer(signer))
    assert isinstance(signed, Action)
    records: list[Entity] = [
        signed,
        edge,
        registry.with_status(current, registry.ModelStatus.ARCHIVED, decision=signed.id),
        registry.with_status(target, registry.ModelStatus.PRODUCTION, decision=signed.id),
        *registry._deploy(target, signed),
    ]
    return [_record(e) for e in records]


def _without_accuracy(properties: dict[str, Any]) -> dict[str, Any]:
    """A failed version's verdicts with no accuracy verdict (it reads `predates`) and fairness passed (the run stopped
    before fairness: `not_run` would keep the version out by itself)."""
    return {**{k: v for k, v in properties.items() if k != "accuracy_gate"}, "fairness_gate": "passed"}


def _one_approver_promotes(world: World, name: str, signer: str = "alice") -> int | None:
    """`signer` alone promotes `name` (no override): with `lineage models promote`, or, where the registry refuses,
    with the signed records appended by plain SQL. The seq of the decision appended by SQL (None: the registry
    promoted it)."""
    with world.store() as store:
        try:
            registry.promote(store, name, world.signer(signer), "every gate passed")
            return None
        except registry.RegistryError:
            pass
    return insider.append(world.db, _promotion_by(world, name, signer))[0]


def _minted(name: str, md5: str, flow_run_id: str, accuracy: str | None) -> Context:
    """A candidate ModelVersion record as the recorder writes one, with the accuracy verdict `accuracy` (None: no
    accuracy_gate property, as a version recorded before the gate existed)."""
    verdicts = {"drift_gate": "passed", **({"accuracy_gate": accuracy} if accuracy is not None else {}),
                "fairness_gate": "passed"}  # fmt: skip
    properties: dict[str, PropertyValue] = {"status": "candidate", "model_md5": md5, "flow_run_id": flow_run_id}
    properties |= verdicts
    return Context(context_type=ContextType.MODEL_VERSION, name=name, source_uri=MODEL, properties=properties)


# -- 1. a version minted before its run: the pipeline's own signed rejection vouches for it ----------------------------


@pytest.mark.parametrize("accuracy", [None, "predates", "", "overridden"])
def test_a_version_minted_before_its_run_is_not_vouched_for_by_the_pipelines_rejection(
    world: World, tmp_path: Path, accuracy: str | None
) -> None:
    """Week 4's model is worse than the baseline. While the flow runs, the insider reads tune's model md5 (dvc.lock) and
    the flow run id, and appends the candidate's record first, with drift and fairness passed and no accuracy verdict.
    The pipeline then finds the version known, rejects it (accuracy failed) and signs a rejection quoting the minted
    verdicts. alice alone then tries the ordinary command, and appends her signed promotion by SQL where it refuses:
    a rejection vouches for nothing, so neither the registry, verify nor retail-serve takes it."""
    md5 = _workspace(tmp_path, 4, accurate=False)
    name = registry.version_name(md5)
    info = _info(accurate=False)
    insider.append(world.db, [_record(_minted(name, md5, info.flow_run_id, accuracy))])
    with world.store() as store:
        recorded = _run(store, tmp_path, world.keys, info)
    assert recorded.decision == "rejected"
    assert recorded.model_version is not None
    assert recorded.model_version.name == name
    rejection = _decision(world, "rejected", name)["parameters"]
    assert "accuracy check failed" in rejection["reason"]
    _one_approver_promotes(world, name)
    _expect(world, world.a, None)


def test_a_version_minted_in_dev_is_not_promoted_in_prod_by_one_approver(
    tmp_path: Path, ssh_keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same minting in dev (whose database the insider can write); alice exports the version honestly, prod (which
    trusts her key) imports it: the bundle's first record of the version has no accuracy verdict and the pipeline's
    signed rejection, attested by the import, would vouch for the two it quotes. bob alone tries to promote it in
    prod."""
    from lineage.bundle import export_bundle, import_bundle
    from lineage.objects import Objects
    from tests import bundle_world
    from tests.bundle_world import dvc_repository, real_workspace

    def worse(root: Path, week: int, fair: bool) -> None:
        write_workspace(root, week, fair=fair, accurate=False)

    monkeypatch.setattr(bundle_world, "write_workspace", worse)
    alice, bob = Signer("alice", ssh_keys["alice"]), Signer("bob", ssh_keys["bob"])
    dev_db, prod_db, storage, root = tmp_path / "dev.db", tmp_path / "prod.db", tmp_path / "remote", tmp_path / "dev"
    root.mkdir()
    with LedgerStore(f"sqlite:///{dev_db}") as dev:
        initialise(dev, alice, REFUSED, four_eyes=True)
        register(dev, PIPELINE, read_public_key(ssh_keys[PIPELINE].with_suffix(".pub")), alice)
    real_workspace(root, 4, storage)
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))
    md5 = str(next(out["md5"] for out in lock["stages"]["tune"]["outs"] if out["path"] == MODEL))
    name, info = registry.version_name(md5), _info(accurate=False)
    insider.append(dev_db, [_record(_minted(name, md5, info.flow_run_id, None))])
    with LedgerStore(f"sqlite:///{dev_db}") as dev:
        assert _run(dev, root, ssh_keys, info).decision == "rejected"
        export_bundle(dev, name, tmp_path / "v.json", alice)
    with LedgerStore(f"sqlite:///{prod_db}") as prod:
        initialise(prod, bob, REFUSED, four_eyes=True)
        register(prod, "dev-alice", read_public_key(ssh_keys["alice"].with_suffix(".pub")), bob)
        import_bundle(prod, tmp_path / "v.json", Objects(dvc_repository(tmp_path / "prod", storage)))
        with contextlib.suppress(registry.RegistryError):
            registry.promote(prod, name, bob, "every gate passed")
        found = registry.production(prod)
    assert found is None, f"{name} (accuracy failed in dev) is production in prod on bob's signature alone"


# -- 2. no key: a minted version with forged or replayed decisions -------------------------------------------------


def test_a_minted_version_without_an_accuracy_verdict_is_not_promoted_by_forged_or_replayed_decisions(
    world: World,
) -> None:
    """A candidate for a fresh model md5 with no accuracy_gate (so it reads `predates`), promoted by an unsigned
    'pipeline' decision (the policy refuses unsigned ones), by the pipeline's signed rejection of C turned into a
    promotion of the minted version (its signature no longer checks), and by A's signed promotion replayed as is."""
    md5 = uuid.uuid4().hex
    name = registry.version_name(md5)
    c = _version(world, world.c)
    [minted_at] = insider.append(world.db, [_record(_minted(name, md5, str(c.properties["flow_run_id"]), None))])
    with world.store() as store:
        minted = _version(world, name)
        current = registry.production(store)
    unsigned = registry.promotion(current, minted, f"{PIPELINE} (flow run x)", "every gate passed",
                                  ledger_id=_ledger_id(world))  # fmt: skip
    forged = [
        Action.model_validate({**e.model_dump(mode="json"), "parameters": {**e.parameters, "signature": "unsigned"}})
        if isinstance(e, Action) else e
        for e in unsigned
    ]  # fmt: skip
    [unsigned_at, *_] = insider.append(world.db, [_record(e) for e in forged])
    _expect(world, world.a, unsigned_at)

    rejection = _decision(world, "rejected", world.c)
    gates = {"drift_gate": "passed", "fairness_gate": "passed"}
    turned = {**rejection, "id": str(uuid.uuid4()),
              "parameters": {**rejection["parameters"], "decision": "promoted", "model_version": name,
                             "override": False, "gates": gates}}  # fmt: skip
    promoted = _decision(world, "promoted", world.a)
    seqs = insider.append(world.db, [("action", turned["id"], "Promotion", None, None, None, turned),
                                     ("action", promoted["id"], "Promotion", None, None, None, promoted)])  # fmt: skip
    assert minted_at < unsigned_at < seqs[0]
    _expect(world, world.a, unsigned_at)  # the first one that does not hold is named


# -- 3. the accuracy verdict dropped from a failed version's records ------------------------------------------------


def test_dropping_the_accuracy_verdict_from_a_later_record_does_not_make_the_version_promotable(world: World) -> None:
    """C's next record, its status unchanged (rejected), without accuracy_gate and with fairness passed: readers take
    a version's verdicts from its first record, verify names the record that changes what C is, and alice alone still
    cannot promote C."""
    c = _version(world, world.c)
    dropped = Context.model_validate({**c.model_dump(mode="json"), "properties": _without_accuracy(c.properties)})
    [seq] = insider.append(world.db, [_record(dropped)])
    with world.store() as store:
        assert registry.get_version(store, world.c).properties["accuracy_gate"] == "failed"
        with pytest.raises(registry.RegistryError, match="did not pass every gate"):
            registry.promote(store, world.c, world.signer("alice"), "every gate passed")
    _expect(world, world.a, seq)


def test_dropping_the_accuracy_verdict_from_the_first_record_is_refused_by_the_pipelines_vouching(
    world: World,
) -> None:
    """C's FIRST record (and its later ones) rewritten without accuracy_gate and with fairness passed, the chain
    rehashed from there and the verification log emptied (only a published anchor would show it): C now reads
    `accuracy predates`, but the pipeline's signed rejection of C quoted `accuracy_gate: failed`, so `lineage models
    promote` refuses alice, and her signed promotion appended by SQL does not hold."""
    c_id = context_id(ContextType.MODEL_VERSION, world.c)
    with sqlite3.connect(world.db) as raw:
        rows = raw.execute("SELECT seq, body FROM ledger_records WHERE entity_id = ? ORDER BY seq", (c_id,)).fetchall()
        for seq, body in rows:  # every record of C, so none says otherwise
            edited = json.loads(body)
            edited["properties"] = _without_accuracy(edited["properties"])
            raw.execute("UPDATE ledger_records SET body = ? WHERE seq = ?", (insider.canonical(edited), seq))
        raw.execute("DELETE FROM ledger_verifications")  # the log's earlier head would show the rewrite
    insider.rehash_from(world.db, rows[0][0])
    assert _verify(world, "--full").startswith("exit 0")  # the rewrite alone: no anchor here to show it
    with world.store() as store:
        assert "accuracy_gate" not in registry.get_version(store, world.c).properties
        with pytest.raises(registry.RegistryError, match="are not what a pipeline decision on"):
            registry.promote(store, world.c, world.signer("alice"), "every gate passed")
    [seq, *_] = insider.append(world.db, _promotion_by(world, world.c, "alice"))
    _expect(world, world.a, seq)


# -- 4. decisions quoting other verdicts --------------------------------------------------------------------------


def test_a_pipeline_decision_quoting_two_gates_cannot_be_replayed_onto_another_version(world: World) -> None:
    """The pipeline's signed promotion of A, as an older decision quoted the verdicts (drift and fairness only), moved
    onto C (model_version C, no accuracy_gate quoted) under a fresh id: its signature covers the version and the
    quoted verdicts, so it does not hold, and C stays out of production."""
    promoted = _decision(world, "promoted", world.a)
    gates = {k: v for k, v in promoted["parameters"]["gates"].items() if k != "accuracy_gate"}
    moved = {**promoted, "id": str(uuid.uuid4()), "command": f"promoted {world.c}",
             "parameters": {**promoted["parameters"], "model_version": world.c, "gates": gates,
                            "previous_production": world.a}}  # fmt: skip
    [seq] = insider.append(world.db, [("action", moved["id"], "Promotion", None, None, None, moved)])
    _expect(world, world.a, seq)


def test_a_decision_quoting_accuracy_predates_does_not_promote_a_version_whose_accuracy_failed(world: World) -> None:
    """alice alone signs a promotion of C (no override) that quotes `accuracy_gate: predates` (or leaves it out):
    the verdicts relied on are C's first record's (accuracy failed), whatever the decision quotes."""
    c = {k: v for k, v in _version(world, world.c).properties.items() if k.endswith("_gate")}
    for quoted in ({**_without_accuracy(c), "accuracy_gate": "predates"}, _without_accuracy(c)):
        [seq, *_] = insider.append(world.db, _promotion_by(world, world.c, "alice", **quoted))
        _expect(world, world.a, seq)
        insider.truncate(world.db, seq - 1, clear_log=True)


# -- 5. the gate's action rewritten ------------------------------------------------------------------------------


def test_a_rewritten_accuracy_gate_action_does_not_make_the_version_promotable(world: World) -> None:
    """C's AccuracyGate action recorded again with `verdict: passed`, and another action spelled `accuracygate` (passed)
    tied to C: promotion relies on the version's first record, never on gate actions, so alice alone cannot promote C
    and production stays A."""
    [(_, gate_id, gate)] = [
        (seq, entity_id, body)
        for seq, entity_id, body in _bodies(world, "AccuracyGate")
        if body["parameters"]["verdict"] == "failed"
    ]
    passed = {**gate, "parameters": {**gate["parameters"], "verdict": "passed"}}
    spelled = {**passed, "id": str(uuid.uuid4()), "action_type": "accuracygate"}
    c_id = context_id(ContextType.MODEL_VERSION, world.c)
    edge = Association(source_id=spelled["id"], destination_id=c_id, association_type=AssociationType.CONTRIBUTED_TO)
    insider.append(world.db, [("action", gate_id, "AccuracyGate", None, None, None, passed),
                              ("action", spelled["id"], "accuracygate", None, None, None, spelled),
                              _record(edge)])  # fmt: skip
    with world.store() as store, pytest.raises(registry.RegistryError, match="did not pass every gate"):
        registry.promote(store, world.c, world.signer("alice"), "the accuracy gate passed")
    [seq, *_] = insider.append(world.db, _promotion_by(world, world.c, "alice"))
    _expect(world, world.a, seq)
