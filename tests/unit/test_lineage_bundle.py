"""Bundles between two SQLite ledgers: export is deterministic and signed; import checks hashes, trust,
the attestation, decisions and files, refuses in one line appending nothing, appends only what is new,
qualifies the contexts whose names clash, links SameAs, and leaves both ledgers verifying; records
appended as if imported, without an approver's attestation, fail verify; promotion in the importing
ledger says where the version was trained; a version's ascendants cross SameAs into the other ledger."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import JsonValue

from lineage import registry
from lineage.authority import approver, approver_record, approvers, register
from lineage.bundle import BundleError, build_bundle, export_bundle, import_bundle, ledger_id, read_bundle, to_bytes
from lineage.console.app import create_app
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
    ModelStatus,
    context_id,
)
from lineage.objects import Objects
from lineage.query import Direction, query_lineage
from lineage.registry import RegistryError
from lineage.reproduce import expected
from lineage.signatures import Signer, body_sha256, read_public_key, sign
from lineage.store import HASHED_COLUMNS, Kind, LedgerStore, canonical_json, record_columns, record_hash
from lineage.verification import check_decisions
from tests.bundle_world import dvc_repository, object_path, record_weeks


@dataclass
class World:
    dev: LedgerStore
    prod: LedgerStore
    keys: dict[str, Path]
    storage: Path  # the DVC remote both sides share
    repository: Path  # prod's DVC repository, its default remote `storage`
    versions: list[tuple[str, str]]  # dev's model versions and flow run ids
    folder: Path

    def export(self, name: str = "b.json", version: int = 0, by: str = "alice") -> Path:
        path = self.folder / name
        export_bundle(self.dev, self.versions[version][0], path, Signer(by, self.keys[by]), force=True)
        return path

    def objects(self) -> Objects:
        return Objects(self.repository)

    def trust(self, name: str = "dev-alice", key: str = "alice") -> None:
        register(self.prod, name, read_public_key(self.keys[key].with_suffix(".pub")), Signer("bob", self.keys["bob"]))


def _world(tmp_path: Path, ssh_keys: dict[str, Path], *fair: bool) -> World:
    dev = LedgerStore(f"sqlite:///{tmp_path / 'dev.db'}")
    prod = LedgerStore(f"sqlite:///{tmp_path / 'prod.db'}")
    alice = Signer("alice", ssh_keys["alice"])
    register(dev, "alice", read_public_key(ssh_keys["alice"].with_suffix(".pub")), alice)
    register(dev, "lineage-pipeline", read_public_key(ssh_keys["lineage-pipeline"].with_suffix(".pub")), alice)
    register(prod, "bob", read_public_key(ssh_keys["bob"].with_suffix(".pub")), Signer("bob", ssh_keys["bob"]))
    root, storage = tmp_path / "dev", tmp_path / "remote"
    root.mkdir()
    versions = record_weeks(dev, root, storage, Signer("lineage-pipeline", ssh_keys["lineage-pipeline"]), *fair)
    return World(dev, prod, ssh_keys, storage, dvc_repository(tmp_path / "prod", storage), versions, tmp_path)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, ssh_keys: dict[str, Path]) -> World:
    """Weeks 1 (promoted) and 2 (rejected) recorded in dev, bob the first approver in prod: built once."""
    built = _world(tmp_path_factory.mktemp("bundle-world"), ssh_keys, True, False)
    built.dev.close()
    built.prod.close()
    return built


@pytest.fixture
def world(template: World, tmp_path: Path) -> Iterator[World]:
    """A copy of the template world of its own (ledgers, storage, prod's DVC repository)."""
    folder = tmp_path / "world"
    shutil.copytree(template.folder, folder)
    shutil.rmtree(folder / "prod")
    copy = World(
        LedgerStore(f"sqlite:///{folder / 'dev.db'}"),
        LedgerStore(f"sqlite:///{folder / 'prod.db'}"),
        template.keys,
        folder / "remote",
        dvc_repository(folder / "prod", folder / "remote"),
        list(template.versions),
        folder,
    )
    yield copy
    copy.dev.close()
    copy.prod.close()


def test_export_is_signed_deterministic_and_carries_the_version_lineage(world: World) -> None:
    first = world.export("one.json")
    second = world.export("two.json")
    assert first.read_bytes() == second.read_bytes()  # same ledger state, same bytes (Ed25519 signs deterministically)
    bundle, _, _ = read_bundle(first)
    version, flow_run_id = world.versions[0]
    assert bundle.version == version
    assert bundle.source.ledger_id == ledger_id(world.dev) == next(world.dev.records(upto=1)).record_hash
    assert (bundle.source.head_count, bundle.source.head_hash) == (world.dev.head().count, world.dev.head().head_hash)
    assert bundle.signer is not None
    assert bundle.signer.name == "alice"
    assert bundle.signature
    attested = bundle.attestation
    assert attested is not None
    assert bundle.attestation_signature
    assert (attested["ledger_id"], attested["head_count"], attested["version"]) == (
        bundle.source.ledger_id, bundle.source.head_count, version,
    )  # fmt: skip
    alice_key = read_public_key(world.keys["alice"].with_suffix(".pub")).openssh_str()
    assert attested["approvers"]["alice"] == alice_key
    assert set(attested["approvers"]) == {"alice", "lineage-pipeline"}
    decisions = {r.entity_id: r.body for r in bundle.records if r.entity_type == ActionType.PROMOTION}
    assert decisions
    assert attested["decisions"] == {i: body_sha256(body) for i, body in decisions.items()}
    stored = {record.seq: record for record in world.dev.records()}
    assert all(stored[r.seq] == r.columns() for r in bundle.records)  # every record exactly as stored
    names = {r.name for r in bundle.records}
    assert {"data/processed.parquet", "models/model.pt", flow_run_id, version} <= names
    assert {"alice", "lineage-pipeline"} <= names  # the signers of its decisions and of the bundle
    assert "reports/shap_values.parquet" in names  # a stage output that feeds nothing: for reproduce
    assert world.versions[1][0] not in names  # week 2's version is not this version's lineage


def test_export_refuses_a_missing_folder_an_existing_file_and_a_non_approver(world: World) -> None:
    version = world.versions[0][0]
    alice = Signer("alice", world.keys["alice"])
    with pytest.raises(BundleError, match=r"the folder .*nowhere does not exist"):
        export_bundle(world.dev, version, world.folder / "nowhere" / "b.json", alice)
    path = world.export()
    before = path.read_bytes()
    with pytest.raises(BundleError, match="exists: pass --force to replace it"):
        export_bundle(world.dev, version, path, alice)
    assert path.read_bytes() == before
    with pytest.raises(BundleError, match="'mallory' is not an active approver"):
        export_bundle(world.dev, version, world.folder / "m.json", Signer("mallory", world.keys["mallory"]))
    assert not (world.folder / "m.json").exists()
    assert [p.name for p in world.folder.glob(".*.tmp")] == []  # no temporary file left behind


def test_import_links_the_lineage_and_both_ledgers_verify(world: World) -> None:
    version, flow_run_id = world.versions[0]
    path = world.export()
    world.trust()
    head = world.prod.head()
    done = import_bundle(world.prod, path, world.objects())
    origin = ledger_id(world.dev)
    assert done.appended == world.prod.head().count - head.count > 100
    assert done.line().startswith(f"imported {done.appended} records from ledger {origin} head ")
    assert f"version {version} as candidate, {done.same_as} linked SameAs" in done.line()
    assert done.created
    assert done.same_as >= 1

    local = registry.get_version(world.prod, version)
    assert local.properties["status"] == ModelStatus.CANDIDATE
    assert local.properties["trained_in"] == origin
    assert local.properties["flow_run_id"] == flow_run_id
    # The dev version's record is kept under a qualified name, with its dev status, and SameAs the local one.
    qualified = world.prod.get(context_id(ContextType.MODEL_VERSION, f"{version}@{origin[:12]}"))
    assert isinstance(qualified, Context)
    assert qualified.properties["status"] == ModelStatus.PRODUCTION
    same_as = Association(source_id=qualified.id, destination_id=local.id, association_type=AssociationType.SAME_AS)
    assert world.prod.get(same_as.id) is not None
    assert registry.production(world.prod) is None  # a dev production is not prod's
    assert [v.name for v in registry.versions(world.prod)] == [version]

    # The Import action records where it came from and is tied to the local version.
    (action,) = [a for a in world.prod.find(Kind.ACTION, ActionType.IMPORT) if isinstance(a, Action)]
    p = action.parameters
    assert (p["source_ledger"], p["version"], p["trusted_as"], p["signer"]) == (origin, version, "dev-alice", "alice")
    assert p["source_head_count"] == world.dev.head().count
    assert len(str(p["bundle_sha256"])) == 64
    assert p["attestation"] == read_bundle(path)[0].attestation  # kept for verify, with its signature
    assert str(p["attestation_signature"]).startswith("-----BEGIN SSH SIGNATURE-----")
    assert action.id in {e.id for e in world.prod.linked([local.id], "destination")[local.id]}

    graph = query_lineage(world.prod, version, Direction.ASCENDANTS)
    labels = {vertex.label for vertex in graph.vertices}
    assert {"data/processed.parquet", flow_run_id, qualified.name} <= labels
    # The console lists dev's record as imported, with its status there: never as prod's production.
    page = (
        TestClient(create_app(world.prod, world.objects(), world.repository), base_url="http://127.0.0.1")
        .get("/models")
        .text
    )
    assert f"imported: production in ledger {origin[:12]}" in page
    assert page.count('class="badge production"') == 0

    for ledger in (world.dev, world.prod):
        assert ledger.verify().ok
        report = check_decisions(ledger)
        assert report.ok, report
    assert check_decisions(world.prod).imported == 1  # the pipeline's signed promotion in dev

    # reproduce reads the same run from either side
    on_dev, on_prod = expected(world.dev, version), expected(world.prod, version)
    assert (on_prod.hashes, on_prod.commit, on_prod.params_md5) == (on_dev.hashes, on_dev.commit, on_dev.params_md5)
    assert len(on_dev.hashes) > 20


def test_reimport_adds_nothing_and_a_newer_bundle_only_its_news(tmp_path: Path, ssh_keys: dict[str, Path]) -> None:
    world = _world(tmp_path, ssh_keys, True)  # week 1 only: its version is dev's production
    world.trust()
    first = import_bundle(world.prod, world.export(), world.objects())
    head = world.prod.head()
    again = import_bundle(world.prod, world.export(), world.objects())
    assert again.appended == 0
    assert world.prod.head() == head
    assert again.line().startswith("nothing to import: 0 records appended")
    # Week 2 passes too: dev archives week 1's version. Its newer bundle brings that one record.
    world.versions += record_weeks(world.dev, tmp_path / "dev", world.storage, None, True, first=2)
    version = world.versions[0][0]
    dev_version = registry.get_version(world.dev, version)
    assert dev_version.properties["status"] == ModelStatus.ARCHIVED
    older = world.folder / "b.json"
    shutil.copy(older, world.folder / "older.json")
    newer = import_bundle(world.prod, world.export(), world.objects())
    assert first.appended > 100
    assert newer.appended == 3  # the Import action, the version's archived record, the Import's edge
    # The older bundle again (as if it arrived late): the archived record is not undone.
    assert import_bundle(world.prod, world.folder / "older.json", world.objects()).appended == 0
    origin = ledger_id(world.dev)
    qualified = world.prod.get(context_id(ContextType.MODEL_VERSION, f"{version}@{origin[:12]}"))
    assert isinstance(qualified, Context)
    assert qualified.properties["status"] == dev_version.properties["status"]
    assert check_decisions(world.prod).ok
    assert world.prod.verify().ok
    world.dev.close()
    world.prod.close()


def test_promotion_of_an_imported_version_says_where_it_was_trained(world: World) -> None:
    version = world.versions[0][0]
    world.trust()
    import_bundle(world.prod, world.export(), world.objects())
    origin = ledger_id(world.dev)
    with pytest.raises(RegistryError, match=f"is ledger {origin}'s record, imported: decide on {version}"):
        registry.promote(world.prod, f"{version}@{origin[:12]}", Signer("bob", world.keys["bob"]), "no")
    promoted = registry.promote(world.prod, version, Signer("bob", world.keys["bob"]), "validated in staging")
    assert promoted.properties["status"] == ModelStatus.PRODUCTION
    (decision,) = registry.report(world.prod, version).decisions
    assert decision.parameters["trained_in"] == origin
    assert decision.parameters["signed_by"] == "bob"
    assert registry.production(world.prod) == promoted
    assert check_decisions(world.prod).ok


def test_a_trusted_exporter_cannot_rewrite_a_decision_of_the_importing_ledger(world: World) -> None:
    """dev-alice's key is trusted in prod. A bundle she signs carries a record with the id of prod's own signed
    promotion and another reason (unsigned, so no signature check stops it): refused in one line, nothing
    appended, and prod's decision still reads as bob signed it."""
    version = world.versions[0][0]
    world.trust()
    import_bundle(world.prod, world.export(), world.objects())
    registry.promote(world.prod, version, Signer("bob", world.keys["bob"]), "validated in staging")
    (own,) = registry.report(world.prod, version).decisions
    rewritten = Action.model_validate(
        {
            **own.model_dump(mode="json"),
            "parameters": {
                **{k: v for k, v in own.parameters.items() if k != "signed_by"},
                "reason": "forged",
                "signature": "unsigned",
            },
        }
    )

    def carry(data: dict) -> None:
        head = data["source"]["head_count"] + 1
        columns = {"seq": head, **record_columns(rewritten), "prev_hash": data["source"]["head_hash"]}
        columns["record_hash"] = record_hash([columns[c] for c in HASHED_COLUMNS])
        data["records"].append(columns)
        data["source"] |= {"head_count": head, "head_hash": columns["record_hash"]}
        data["attestation"] |= {"head_count": head, "head_hash": columns["record_hash"]}
        data["attestation"]["decisions"][own.id] = body_sha256(columns["body"])

    forged = _resigned(world, carry)
    head = world.prod.head()
    with pytest.raises(BundleError) as refused:
        import_bundle(world.prod, forged, world.objects())
    assert str(refused.value) == (
        f"{forged}: refused, nothing appended: its Action {own.id} would take the id of a record this ledger "
        "already holds, with other content"
    )
    assert world.prod.head() == head
    (still,) = registry.report(world.prod, version).decisions
    assert (still.parameters["reason"], still.parameters["signed_by"]) == ("validated in staging", "bob")


def test_imported_approvers_grant_no_rights(world: World) -> None:
    world.trust()
    import_bundle(world.prod, world.export(), world.objects())
    origin = ledger_id(world.dev)[:12]
    imported = world.prod.get(context_id(ContextType.APPROVER, f"alice@{origin}"))
    assert isinstance(imported, Context)
    assert imported.properties["imported_from"] == ledger_id(world.dev)
    assert approver(world.prod, f"alice@{origin}") is None
    assert sorted(a.name for a in approvers(world.prod)) == ["bob", "dev-alice"]
    with pytest.raises(RegistryError, match="is not a registered approver"):
        registry.promote(world.prod, world.versions[0][0], Signer(f"alice@{origin}", world.keys["alice"]), "x")


def _edit(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def _body_byte(data: dict) -> None:
    record = next(r for r in data["records"] if r["name"] == "data/processed.parquet")
    record["body"] = record["body"].replace('"size":', '"size":1', 1)


def _processed_md5(world: World, path: str = "data/processed.parquet") -> str:
    bundle, _, _ = read_bundle(world.folder / "b.json")
    return next(json.loads(r.body)["md5"] for r in bundle.records if r.name == path)


REFUSALS: dict[str, tuple[Callable[[World, Path], object], str]] = {
    "tampered body": (
        lambda w, p: _edit(p, _body_byte),
        r"tampered: record seq \d+ \(entity artifact-\w+\): its columns hash to \w+, its record_hash says \w+",
    ),
    "bad signature": (
        lambda w, p: _edit(p, lambda d: d.update(version="model-000000000000")),
        "bad signature: it does not match the bundle's contents",
    ),
    "unsigned": (lambda w, p: _edit(p, lambda d: d.pop("signature")), "the bundle is not signed"),
    "attestation edited": (
        lambda w, p: _edit(p, lambda d: d["attestation"].update(version="x")),
        "bad signature: it does not match the bundle's contents",  # the bundle's signature covers it
    ),
    "missing object": (
        lambda w, p: object_path(w.storage, _processed_md5(w)).unlink(),
        r"data/processed.parquet \(md5 \w+\) is in neither the DVC cache nor the remote",
    ),
    "altered object": (
        lambda w, p: object_path(w.storage, _processed_md5(w)).write_bytes(b"other bytes"),
        r"data/processed.parquet: the stored object \w+ is altered: its bytes hash to \w+",
    ),
    "altered input": (  # no stage made it, so it may be absent (kept in git), but never other bytes
        lambda w, p: object_path(w.storage, _processed_md5(w, "data/raw")).write_bytes(b"other bytes"),
        r"data/raw: the stored listing \w+\.dir is altered: its bytes hash to \w+",
    ),
    "not json": (lambda w, p: p.write_text("hello", encoding="utf-8"), "not a lineage bundle: truncated or not JSON"),
    "truncated": (
        lambda w, p: p.write_bytes(p.read_bytes()[:5000]),
        "not a lineage bundle: truncated or not JSON",
    ),
    "wrong format version": (
        lambda w, p: _edit(p, lambda d: d.update(format_version=2)),
        "bundle format version 2; this lineage reads version 1",
    ),
    "other json": (lambda w, p: p.write_text('{"a": 1}', encoding="utf-8"), 'not a lineage bundle \\(no "format"'),
    "bad field": (
        lambda w, p: _edit(p, lambda d: d["records"][0].update(seq="one")),
        "records.0.seq: Input should be a valid integer",
    ),
}


def test_an_input_no_stage_made_may_be_absent_from_storage(world: World) -> None:
    """data/raw kept in git: DVC hashed it for the stage, but never stored it; outputs are all there."""
    path = world.export()
    world.trust()
    object_path(world.storage, _processed_md5(world, "data/raw")).unlink()
    assert import_bundle(world.prod, path, world.objects()).appended > 100


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_bad_bundle_is_refused_in_one_line_appending_nothing(world: World, case: str) -> None:
    path = world.export()
    world.trust()
    damage, message = REFUSALS[case]
    damage(world, path)
    head = world.prod.head()
    with pytest.raises(BundleError, match=message) as refused:
        import_bundle(world.prod, path, world.objects())
    assert "\n" not in str(refused.value)
    assert world.prod.head() == head


def test_an_untrusted_key_is_refused_with_its_fingerprint_and_how_to_register_it(world: World) -> None:
    path = world.export()
    world.trust("mallory", "mallory")  # another key is trusted, not alice's
    head = world.prod.head()
    fingerprint = read_public_key(world.keys["alice"].with_suffix(".pub")).sha256_str()
    with pytest.raises(BundleError, match="untrusted signer") as refused:
        import_bundle(world.prod, path, world.objects())
    assert fingerprint in str(refused.value)
    assert "lineage approvers add" in str(refused.value)
    assert world.prod.head() == head


def _resigned(world: World, change: Callable[[dict], None], attested_by: str = "alice") -> Path:
    """Week 1's bundle changed by `change`, its attestation signed again with `attested_by`'s key and the
    bundle with alice's (trusted): only the checks after the bundle's signature can catch it."""
    data = build_bundle(world.dev, world.versions[0][0], Signer("alice", world.keys["alice"]))
    data.pop("signature")
    change(data)
    attestation = canonical_json(data["attestation"]).encode()
    data["attestation_signature"] = Signer("alice", world.keys[attested_by]).sign(attestation)[0]
    data["signature"] = Signer("alice", world.keys["alice"]).sign(canonical_json(data).encode())[0]
    path = world.folder / "forged.json"
    path.write_bytes(to_bytes(data))
    return path


def _without_pipeline(data: dict) -> None:
    """Drop the pipeline's Approver record from the records and from the attestation alike."""
    data["records"] = [r for r in data["records"] if r["name"] != "lineage-pipeline"]
    data["attestation"]["approvers"].pop("lineage-pipeline")


def _other_decision_hash(data: dict) -> None:
    decision = next(iter(data["attestation"]["decisions"]))
    data["attestation"]["decisions"][decision] = "0" * 64


def _mallory_as_alice(world: World) -> Callable[[dict], None]:
    mallory = read_public_key(world.keys["mallory"].with_suffix(".pub")).openssh_str()
    return lambda data: data["attestation"]["approvers"].update(alice=mallory)


RESIGNED: dict[str, tuple[Callable[[World], Callable[[dict], None]], str, str]] = {
    "decision's signer not in the bundle": (
        lambda w: _without_pipeline,
        "alice",
        r"\(decision [\w-]+\): signed by 'lineage-pipeline', who is not an active approver",
    ),
    "attestation with another decision hash": (
        lambda w: _other_decision_hash,
        "alice",
        r"the attestation disagrees with the bundle's records: its decisions\.[\w-]+ is '0{64}', the records give '\w",
    ),
    "attestation with another approver key": (
        _mallory_as_alice,
        "alice",
        r"the attestation disagrees with the bundle's records: its approvers\.alice is 'ssh-ed25519 \S+', the records",
    ),
    "attestation without the approvers": (
        lambda w: lambda data: data["attestation"].pop("approvers"),
        "alice",
        r"the attestation disagrees with the bundle's records: its approvers is 'None', the records give ",
    ),
    "attestation signed by another key": (
        lambda w: lambda data: None,
        "mallory",
        r"the attestation is signed with key SHA256:\S+, not the bundle's key SHA256:",
    ),
    "no attestation": (
        lambda w: lambda data: data.update(attestation={}),
        "alice",
        r"the attestation disagrees with the bundle's records: its approvers is 'None'",
    ),
}


@pytest.mark.parametrize("case", sorted(RESIGNED))
def test_a_bundle_signed_by_a_trusted_key_is_still_refused_when_its_contents_disagree(world: World, case: str) -> None:
    change, attested_by, message = RESIGNED[case]
    path = _resigned(world, change(world), attested_by)
    world.trust()
    head = world.prod.head()
    with pytest.raises(BundleError, match=message) as refused:
        import_bundle(world.prod, path, world.objects())
    assert "\n" not in str(refused.value)
    assert world.prod.head() == head


def test_a_same_as_edge_is_crossed_from_the_local_entity_to_the_imported_record(tmp_path: Path) -> None:
    """A -> B' (Produced, in the other ledger) and B' SameAs B (B' imported, B local): B's ascendants reach
    A across SameAs, and A's descendants reach B."""
    from lineage.entities import Artifact, ArtifactType

    with LedgerStore(f"sqlite:///{tmp_path / 'l.db'}") as store:
        a = Artifact(artifact_type=ArtifactType.DATASET, source_uri="a", md5="1" * 32)
        imported = Context(context_type=ContextType.MODEL_VERSION, name="b@x")
        local = Context(context_type=ContextType.MODEL_VERSION, name="b")
        store.append([
            a, imported, local,
            Association(source_id=a.id, destination_id=imported.id, association_type=AssociationType.PRODUCED),
            Association(source_id=imported.id, destination_id=local.id, association_type=AssociationType.SAME_AS),
        ])  # fmt: skip
        up = {v.id for v in query_lineage(store, local.id, Direction.ASCENDANTS).vertices}
        assert up == {a.id, imported.id, local.id}
        down = {v.id for v in query_lineage(store, a.id, Direction.DESCENDANTS).vertices}
        assert down == {a.id, imported.id, local.id}


def test_verify_checks_an_import_from_its_head_on(world: World) -> None:
    world.trust()
    before = world.prod.head()
    import_bundle(world.prod, world.export(), world.objects())
    since = check_decisions(world.prod, since=before.count)  # as `lineage verify` after an earlier verification
    assert since.ok, since
    assert since.imported == 1


NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
FORGERIES = {
    # case: which record `check_decisions` stops at (0: the Import action, 1: the next record) and why
    "no attestation": (0, "an Import action without a signed attestation"),
    "made-up attestation signed by mallory": (0, "an import attested with key {mallory}, not an active approver's"),
    "made-up attestation with a copied signature": (0, "its attestation's signature does not match the attestation"),
    "copied attestation listing the forged decision": (
        0,
        "it lists decision {decision}, which its attestation does not",
    ),
    "copied attestation, the forged approver record": (1, "imported Approver record 'alice': its key {mallory} is not"),
    "no import, the forged approver record": (0, "imported Approver record 'alice': its key {mallory} is not"),
    "copied attestation, dev's decision forged": (1, "imported decision: its body is not the one its import's attest"),
}


def _forgery(world: World, case: str) -> tuple[list[Entity], dict[str, str]]:
    """What someone able to append to prod's ledger, holding only mallory's key, appends so that alice of
    dev seems to have signed a decision: an Import action naming dev-alice's trusted key, an Approver record
    `alice@<dev>` with mallory's key, a decision signed with it as alice's (or dev's real decision, altered);
    the attestation missing, made up or copied from the real Import before it. With the values the expected
    failure names."""
    origin = ledger_id(world.dev)
    as_alice = Signer("alice", world.keys["mallory"])
    mallory = read_public_key(world.keys["mallory"].with_suffix(".pub"))
    registration, _ = sign(approver_record("alice", mallory, "alice", origin), as_alice)
    assert isinstance(registration, Context)
    origin_properties = {IMPORTED_FROM: origin, ORIGIN_NAME: "alice"}
    forged_alice = Context(context_type=ContextType.APPROVER, name=f"alice@{origin[:12]}",
                           properties={**registration.properties, **origin_properties})  # fmt: skip
    (real_import,) = [a for a in world.prod.find(Kind.ACTION, ActionType.IMPORT) if isinstance(a, Action)]
    real = dict(real_import.parameters)
    real_attestation = real["attestation"]
    assert isinstance(real_attestation, dict)
    attested_decisions = real_attestation["decisions"]
    assert isinstance(attested_decisions, dict)
    (dev_decision,) = attested_decisions
    altered = "dev's decision" in case
    promotion = Action(action_type=ActionType.PROMOTION, status=ActionStatus.COMPLETED, start=NOW,
                       parameters={"decision": "promoted", "reason": "forged"})  # fmt: skip
    if altered:  # a new record of dev's real decision, saying something else
        promotion = promotion.model_copy(update={"id": dev_decision})
    decision, _ = sign(promotion, as_alice)
    made_up: dict[str, JsonValue] = {**real_attestation, "approvers": {"alice": mallory.openssh_str()},
               "decisions": {decision.id: body_sha256(canonical_json(decision.model_dump(mode="json")))}}  # fmt: skip
    parameters: dict[str, JsonValue] = {**real, "decisions": [decision.id], "attestation": made_up}
    if case.startswith("no attestation"):
        parameters = {k: v for k, v in parameters.items() if not k.startswith("attestation")}
    elif case.startswith("made-up attestation signed"):
        parameters["attestation_signature"] = as_alice.sign(canonical_json(made_up).encode())[0]
        parameters["signer_fingerprint"] = mallory.sha256_str()
    elif case.startswith("copied attestation"):
        parameters["attestation"] = real_attestation
        if "approver record" in case:
            parameters["decisions"] = []
    forged_import = Action(action_type=ActionType.IMPORT, status=ActionStatus.COMPLETED, start=NOW,
                           parameters=parameters)  # fmt: skip
    records: list[Entity] = [forged_import, forged_alice, decision]
    if case.startswith("no import"):
        records = [forged_alice, decision]
    elif altered:
        records = [forged_import, decision]
    return records, {"mallory": mallory.sha256_str(), "decision": decision.id}


@pytest.mark.parametrize("case", list(FORGERIES))
def test_records_appended_as_if_imported_without_an_approvers_attestation_fail_verify(world: World, case: str) -> None:
    """Nobody signs the Import action itself: its attestation, signed by a key trusted here, is what
    verify checks. Without it, mallory could sign decisions as dev's alice."""
    world.trust()
    import_bundle(world.prod, world.export(), world.objects())
    assert check_decisions(world.prod).ok
    records, names = _forgery(world, case)
    seqs = world.prod.append(records)
    assert world.prod.verify().ok  # the chain holds: only the signatures can tell
    at, message = FORGERIES[case]
    report = check_decisions(world.prod)
    assert not report.ok
    assert (report.seq, report.entity_id) == (seqs[at], records[at].id), report
    assert message.format(**names) in report.detail
    assert f"at seq {seqs[at]} (entity {records[at].id})" in str(report)
