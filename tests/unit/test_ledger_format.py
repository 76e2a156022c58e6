"""A ledger written years ago stays readable: the committed format-1 ledger (tests/fixtures/ledger_v1, written by the
code of bfa1c65 with `python -m tests.ledger_fixture`) is read record by record, verified, queried and diffed by
today's code; a field renamed through an upgrade step reads from its old records under the new name; appending
declares the new format without changing a byte of the old records; a format newer than the code's is refused in one
line (lineage/ledger_format.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from lineage import ledger_format, store
from lineage.entities import Action, ActionStatus, ActionType, Artifact, ContextType
from lineage.reproduce import expected
from lineage.store import Head, Kind, LedgerStore, NewerFormat
from lineage.verification import verify
from tests.conftest import VENV_BIN

ROOT = Path(__file__).parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "ledger_v1"
ANCHOR = json.loads((FIXTURE / "anchor.json").read_text(encoding="utf-8"))


@pytest.fixture
def old(tmp_path: Path) -> Path:
    """A copy of the committed old ledger (the original is never opened for writing)."""
    shutil.copyfile(FIXTURE / "ledger.db", tmp_path / "ledger.db")
    return tmp_path / "ledger.db"


def _clear_caches() -> None:
    store._parse.cache_clear()
    store._well_filed_at.cache_clear()


class _RenamedArtifact(Artifact):
    """Artifact with `size` renamed `size_bytes`: what a format-2 change of lineage/entities.py would make."""

    size: None = Field(default=None, exclude=True)  # gone: a body that still has it is refused
    size_bytes: int | None = Field(default=None, ge=0)


def _size_to_size_bytes(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The upgrade step such a change adds: an artifact's `size` is now `size_bytes`."""
    if kind != Kind.ARTIFACT.value:
        return body
    renamed = {key: value for key, value in body.items() if key != "size"}
    return renamed | {"size_bytes": body.get("size")}


@pytest.fixture
def format_2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The code as it would be after renaming Artifact.size: format 2, one upgrade step, the renamed model."""
    monkeypatch.setattr(ledger_format, "CURRENT", 2)
    monkeypatch.setitem(ledger_format.UPGRADES, 1, _size_to_size_bytes)
    monkeypatch.setitem(store._MODELS, Kind.ARTIFACT, _RenamedArtifact)
    _clear_caches()
    yield
    _clear_caches()


def lineage(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed CLI on `db`, run outside any DVC checkout (no anchor is published to this project's remote), on
    this checkout's code."""
    command = [str(VENV_BIN / "lineage"), *args, "--db", f"sqlite:///{db}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=db.parent, env=env)


def _rows(db: Path, upto: int) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT * FROM ledger_records WHERE seq <= ? ORDER BY seq", (upto,)).fetchall()


def test_every_record_of_the_old_ledger_reads(old: Path) -> None:
    with LedgerStore(f"sqlite:///{old}") as ledger:
        records = list(ledger.records())
        entities = [record.entity() for record in records]
        assert len(entities) == ANCHOR["record_count"] == ledger.head().count
        assert {record.format for record in records} == {1}
        assert ledger.verify().ok


def test_the_old_ledger_verifies_in_full_against_its_anchor(old: Path) -> None:
    done = lineage(old, "verify", "--full", "--anchor-count", str(ANCHOR["record_count"]),
                   "--anchor-hash", ANCHOR["head_hash"], "--repository", str(old.parent))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"chain ok: {ANCHOR['record_count']} records, head {ANCHOR['head_hash']}" in done.stdout
    assert f"anchor ok: record {ANCHOR['record_count']} hashes to the given" in done.stdout
    assert "signatures ok: " in done.stdout
    assert "checked: every record" in done.stdout


def test_the_old_ledger_answers_queries_listings_and_diffs(old: Path) -> None:
    week1, week2 = ANCHOR["versions"]
    query = lineage(old, "query", "production", "--format", "json")
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout)["vertices"]
    models = lineage(old, "models", "list", "--format", "json")
    assert models.returncode == 0, models.stderr
    statuses = {row["name"]: row["status"] for row in json.loads(models.stdout)}
    assert statuses[week1] == "production"
    assert statuses[week2] == "rejected"
    diff = lineage(old, "diff", week1, week2, "--format", "json")
    assert diff.returncode == 0, diff.stderr
    assert json.loads(diff.stdout)
    # Written before the accuracy gate: its versions have no verdict of it, which does not undo their decisions.
    shown = lineage(old, "models", "list")
    assert shown.returncode == 0, shown.stderr
    assert f"{week1:<20} production  drift passed     accuracy predates   fairness passed" in shown.stdout


def test_reproduce_reads_what_an_old_run_used(old: Path) -> None:
    with LedgerStore(f"sqlite:///{old}") as ledger:
        want = expected(ledger, ANCHOR["versions"][0])
    assert want.version.name == ANCHOR["versions"][0]
    assert want.flow_run_id
    assert want.hashes
    assert want.originals
    assert all(isinstance(artifact, Artifact) for artifact in want.originals.values())


@pytest.mark.usefixtures("format_2")
def test_a_renamed_field_reads_from_old_records_under_its_new_name(old: Path) -> None:
    with LedgerStore(f"sqlite:///{old}") as ledger:
        artifacts = [e for r in ledger.records() if isinstance(e := r.entity(), Artifact)]
        sizes = [a.size_bytes for a in artifacts if isinstance(a, _RenamedArtifact)]
        assert len(sizes) == len(artifacts)
        assert any(size for size in sizes)
        stored = json.loads(next(r.body for r in ledger.records() if r.kind == Kind.ARTIFACT.value))
        assert "size" in stored
        assert "size_bytes" not in stored


@pytest.mark.usefixtures("format_2")
def test_appending_declares_the_format_and_changes_no_old_byte(old: Path) -> None:
    count = ANCHOR["record_count"]
    before = _rows(old, count)
    artifact = _RenamedArtifact.model_validate(
        {"artifact_type": "DataSet", "source_uri": "data/new.parquet", "md5": "f" * 32, "size_bytes": 10}
    )
    with LedgerStore(f"sqlite:///{old}") as ledger:
        assert ledger.append([artifact]) == [count + 2]  # after the declaration
        ledger.append([artifact])  # already there: nothing, and no second declaration
        declaration = ledger.record(count + 1)
        assert declaration is not None
        assert declaration.entity_type == ContextType.LEDGER_FORMAT.value
        assert json.loads(declaration.body)["properties"]["version"] == 2
        assert ledger.head().count == count + 2
        assert [r.format for r in ledger.records(after=count - 1)] == [1, 1, 2]
        assert all(r.entity() for r in ledger.records())
        assert ledger.get(artifact.id) == artifact
        assert json.loads(ledger.record(count + 2).body)["size_bytes"] == 10  # type: ignore[union-attr]
        anchor = Head(count, ANCHOR["head_hash"])
        verified = verify(ledger, full=True, anchor=anchor)  # chain, anchor, signatures, decisions: lineage verify
        assert verified.ok, verified.lines()
    assert _rows(old, count) == before
    with LedgerStore(f"sqlite:///{old}") as again:  # a store that did not write it reads the declaration too
        assert again.append([_action()]) == [count + 3]
        assert again.count(Kind.CONTEXT, ContextType.LEDGER_FORMAT) == 1


def _action() -> Action:
    at = dt.datetime(2026, 12, 7, 10, tzinfo=dt.UTC)
    return Action(action_type=ActionType.STAGE, status=ActionStatus.COMPLETED, start=at)


def test_a_newer_format_than_the_code_knows_is_refused_in_one_line(old: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    count = ANCHOR["record_count"]
    monkeypatch.setattr(ledger_format, "CURRENT", 7)  # code from the future writes format 7
    monkeypatch.setitem(ledger_format.UPGRADES, 1, lambda _kind, body: body)
    written = _action()
    with LedgerStore(f"sqlite:///{old}") as future:
        future.append([written])
    monkeypatch.undo()
    _clear_caches()
    with LedgerStore(f"sqlite:///{old}") as ledger:
        assert ledger.record(count).entity()  # type: ignore[union-attr]  # the old records still read
        with pytest.raises(NewerFormat, match=f"^record {count + 2} is written in ledger format 7, and this code"):
            ledger.record(count + 2).entity()  # type: ignore[union-attr]
        with pytest.raises(NewerFormat, match=f"^record {count + 1} declares ledger format 7"):
            ledger.append([_action()])  # today's records must not follow a newer declaration
        assert ledger.verify().ok  # the chain itself is sound
    done = lineage(old, "query", written.id)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"lineage: error: record {count + 2} is written in ledger format 7, and this code reads formats 1 to "
        f"{ledger_format.CURRENT}: read the ledger with a newer release"
    ]


def test_a_format_declaration_is_the_stores_own(tmp_path: Path) -> None:
    with LedgerStore(f"sqlite:///{tmp_path / 'l.db'}") as ledger:
        with pytest.raises(store.LedgerError, match="format declaration is the store's own record"):
            ledger.append([ledger_format.declaration(1)])
        assert ledger.head().count == 0


@pytest.fixture
def upgrades_seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Format 2 with an upgrade step that changes nothing but notes the id of every body it upgrades."""
    seen: list[str] = []

    def step(_kind: str, body: dict[str, Any]) -> dict[str, Any]:
        seen.append(str(body.get("id") or body.get("source_id")))
        return body

    monkeypatch.setattr(ledger_format, "CURRENT", 2)
    monkeypatch.setitem(ledger_format.UPGRADES, 1, step)
    _clear_caches()
    yield seen
    _clear_caches()


def test_an_archive_of_a_ledger_in_two_formats_verifies_offline(old: Path, upgrades_seen: list[str]) -> None:
    from lineage.archive import export, verify_archive

    with LedgerStore(f"sqlite:///{old}") as ledger:
        ledger.append([_action()])
        head = export(ledger, old.parent / "ledger.jsonl.gz")
    result, signatures, stated = verify_archive(old.parent / "ledger.jsonl.gz", head)
    assert result.ok
    assert signatures is not None
    assert signatures.ok
    assert stated == head


def test_a_bundle_carries_its_ledgers_formats_and_its_old_records_import_unchanged(
    tmp_path: Path, ssh_keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lineage.authority import register
    from lineage.bundle import build_bundle, export_bundle, import_bundle
    from lineage.objects import Objects
    from lineage.signatures import Signer, read_public_key
    from tests.bundle_world import dvc_repository, record_weeks

    def key(name: str) -> Any:
        return read_public_key(ssh_keys[name].with_suffix(".pub"))

    alice, bob = Signer("alice", ssh_keys["alice"]), Signer("bob", ssh_keys["bob"])
    dev, prod = LedgerStore(f"sqlite:///{tmp_path / 'dev.db'}"), LedgerStore(f"sqlite:///{tmp_path / 'prod.db'}")
    register(dev, "alice", key("alice"), alice)
    register(dev, "lineage-pipeline", key("lineage-pipeline"), alice)
    (tmp_path / "dev").mkdir()
    pipeline = Signer("lineage-pipeline", ssh_keys["lineage-pipeline"])
    [(first, _)] = record_weeks(dev, tmp_path / "dev", tmp_path / "remote", pipeline, True)
    old_rows = _rows(tmp_path / "dev.db", dev.head().count)
    seen: list[str] = []
    monkeypatch.setattr(ledger_format, "CURRENT", 2)  # the code changes format, dev records another run in it

    def step(_kind: str, body: dict[str, Any]) -> dict[str, Any]:
        seen.append(str(body.get("id")))
        return body

    monkeypatch.setitem(ledger_format.UPGRADES, 1, step)
    _clear_caches()
    dev = LedgerStore(dev.url)
    [(second, _)] = record_weeks(dev, tmp_path / "dev", tmp_path / "remote", pipeline, True, first=2)
    register(prod, "bob", key("bob"), bob)
    register(prod, "dev-alice", key("alice"), bob)
    bundle = build_bundle(dev, second, alice)
    carried = [r for r in bundle["records"] if r["entity_type"] == ContextType.LEDGER_FORMAT.value]
    assert [json.loads(r["body"])["properties"]["version"] for r in carried] == [2]
    stored = {row[0]: row for row in _rows(tmp_path / "dev.db", dev.head().count)}
    assert all(tuple(r.values()) == stored[r["seq"]] for r in bundle["records"])  # as stored, byte for byte
    export_bundle(dev, second, tmp_path / "b.json", alice)
    seen.clear()
    _clear_caches()  # parses are kept by text: read the bundle afresh
    done = import_bundle(prod, tmp_path / "b.json", Objects(dvc_repository(tmp_path / "prod", tmp_path / "remote")))
    assert done.appended
    assert seen
    assert set(seen) <= {str(json.loads(row[7]).get("id")) for row in old_rows}
    assert _rows(tmp_path / "dev.db", len(old_rows)) == old_rows
    declarations = list(prod.records(of=[(Kind.CONTEXT, ContextType.LEDGER_FORMAT.value)]))
    assert len(declarations) == 1
    assert declarations[0].seq == 1
    assert prod.verify().ok
    assert dev.verify().ok
    assert first != second


def test_the_console_shows_a_ledger_with_a_format_declaration(old: Path, upgrades_seen: list[str]) -> None:
    from fastapi.testclient import TestClient

    from lineage.console.app import create_app

    with LedgerStore(f"sqlite:///{old}") as ledger:
        ledger.append([_action()])
        assert ledger.count(Kind.CONTEXT, ContextType.LEDGER_FORMAT) == 1
        client = TestClient(create_app(ledger, repository=old.parent), base_url="http://127.0.0.1")
        for path in ("/models", f"/models/{ANCHOR['versions'][0]}", "/ledger"):
            assert client.get(path).status_code == 200, path
        version = client.get(f"/models/{ANCHOR['versions'][0]}?format=json").json()
    assert [(v["gate"], v["verdict"]) for v in version["verdicts"]] == [
        ("drift", "passed"), ("accuracy", "predates"), ("fairness", "passed")
    ]  # fmt: skip
    assert {row["gate"] for row in version["gates"]} == {"drift", "fairness"}  # what their stages measured
    assert upgrades_seen  # the old records it showed were read through the upgrade step
