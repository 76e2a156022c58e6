"""Bundles between two SQLite ledgers: export is deterministic and signed; import checks hashes, trust,
decisions and files, refuses in one line appending nothing, appends only what is new, qualifies the
contexts whose names clash, links SameAs, and leaves both ledgers verifying; promotion in the importing
ledger says where the version was trained; SameAs is walked both ways."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lineage import registry
from lineage.console.app import create_app
from lineage.bundle import BundleError, export_bundle, import_bundle, ledger_id, read_bundle
from lineage.entities import (
    Action,
    ActionType,
    Association,
    AssociationType,
    Context,
    ContextType,
    ModelStatus,
    context_id,
)
from lineage.objects import Objects
from lineage.query import Direction, query_lineage
from lineage.registry import RegistryError
from lineage.reproduce import expected
from lineage.signatures import Signer, approver, approvers, check_ledger, read_public_key, register
from lineage.store import Kind, LedgerStore
from bench.bundle_world import dvc_repository, object_path, record_weeks


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
        report = check_ledger(ledger)
        assert report.ok, report
    assert check_ledger(world.prod).imported == 1  # the pipeline's signed promotion in dev

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
    assert check_ledger(world.prod).ok
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
    assert check_ledger(world.prod).ok


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


def _processed_md5(world: World) -> str:
    bundle, _, _ = read_bundle(world.folder / "b.json")
    return next(json.loads(r.body)["md5"] for r in bundle.records if r.name == "data/processed.parquet")


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
    "missing object": (
        lambda w, p: object_path(w.storage, _processed_md5(w)).unlink(),
        r"data/processed.parquet \(md5 \w+\) is in neither the DVC cache nor the remote",
    ),
    "altered object": (
        lambda w, p: object_path(w.storage, _processed_md5(w)).write_bytes(b"other bytes"),
        r"data/processed.parquet: the stored object \w+ is altered: its bytes hash to \w+",
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


def test_a_decision_whose_signer_is_not_in_the_bundle_is_refused(world: World) -> None:
    """A bundle without the Approver record of its decisions' signer, re-signed by a trusted key: only
    the decision check can catch it."""
    from lineage.bundle import build_bundle, to_bytes
    from lineage.store import canonical_json

    data = build_bundle(world.dev, world.versions[0][0], Signer("alice", world.keys["alice"]))
    data.pop("signature")
    data["records"] = [r for r in data["records"] if r["name"] != "lineage-pipeline"]
    data["signature"] = Signer("alice", world.keys["alice"]).sign(canonical_json(data).encode())[0]
    path = world.folder / "forged.json"
    path.write_bytes(to_bytes(data))
    world.trust()
    head = world.prod.head()
    with pytest.raises(
        BundleError, match=r"\(decision [\w-]+\): signed by 'lineage-pipeline', whose Approver record is not"
    ):
        import_bundle(world.prod, path, world.objects())
    assert world.prod.head() == head


def test_same_as_is_walked_both_ways(tmp_path: Path) -> None:
    """A -> B (Produced) and B' SameAs B: B's ascendants include A; B''s ascendants reach A across
    SameAs although the edge leaves B'; A's descendants reach B' across it backwards."""
    from lineage.entities import Artifact, ArtifactType

    with LedgerStore(f"sqlite:///{tmp_path / 'l.db'}") as store:
        a = Artifact(artifact_type=ArtifactType.DATASET, source_uri="a", md5="1" * 32)
        b = Artifact(artifact_type=ArtifactType.DATASET, source_uri="b", md5="2" * 32)
        b2 = Context(context_type=ContextType.MODEL_VERSION, name="b@x")
        store.append([
            a, b, b2,
            Association(source_id=a.id, destination_id=b.id, association_type=AssociationType.PRODUCED),
            Association(source_id=b2.id, destination_id=b.id, association_type=AssociationType.SAME_AS),
        ])  # fmt: skip
        up = {v.id for v in query_lineage(store, b2.id, Direction.ASCENDANTS).vertices}
        assert up == {a.id, b.id, b2.id}
        down = {v.id for v in query_lineage(store, a.id, Direction.DESCENDANTS).vertices}
        assert down == {a.id, b.id, b2.id}
        # Without SameAs, direction still rules: b's descendants are b and b2 (across SameAs) only.
        assert {v.id for v in query_lineage(store, b.id, Direction.DESCENDANTS).vertices} == {b.id, b2.id}


def test_verify_checks_an_import_from_its_head_on_and_refuses_one_nobody_trusted(world: World) -> None:
    import datetime as dt

    from lineage.entities import ActionStatus

    world.trust()
    before = world.prod.head()
    import_bundle(world.prod, world.export(), world.objects())
    since = check_ledger(world.prod, since=before.count)  # as `lineage verify` after an earlier verification
    assert since.ok, since
    assert since.imported == 1
    mallory = read_public_key(world.keys["mallory"].with_suffix(".pub")).sha256_str()
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    forged = Action(action_type=ActionType.IMPORT, status=ActionStatus.COMPLETED, start=now,
                    parameters={"source_ledger": "x", "signer_fingerprint": mallory, "decisions": []})  # fmt: skip
    (seq,) = world.prod.append([forged])
    report = check_ledger(world.prod)
    assert report.seq == seq
    assert f"signed with key {mallory}, not a registered approver's key here then" in report.detail
