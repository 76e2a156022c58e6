"""The archival export: the whole ledger and its anchor in one file, verified offline; an edit to the
archive, or an archive that is no archive, is reported in one line naming the record or the file."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid
from pathlib import Path

import pytest

from lineage.archive import ArchiveError, export, verify_archive
from lineage.entities import ActionStatus
from lineage.recorder import RunInfo, StageRun, record_run
from lineage.registry import promote
from lineage.signatures import Signer
from lineage.store import Head, LedgerStore, Problem
from tests.conftest import register_approvers
from tests.lineage_workspace import STAGES, write_workspace

NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)


@pytest.fixture
def ledger(tmp_path: Path, ssh_keys: dict[str, Path]) -> LedgerStore:
    """Two runs, the second rejected by fairness and then put forward by alice (pending)."""
    store = LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}")
    register_approvers(store, ssh_keys, "alice", "bob")
    for week, fair in ((1, True), (2, False)):
        write_workspace(tmp_path, week, fair=fair)
        stages = [StageRun(s, ActionStatus.COMPLETED, NOW, NOW, str(uuid.uuid4())) for s in STAGES]
        recorded = record_run(store, RunInfo(str(uuid.uuid4()), stages, NOW, NOW, None, "runs/x"), tmp_path)
    assert recorded.model_version is not None
    promote(store, recorded.model_version.name, Signer("alice", ssh_keys["alice"]), "exception", override=True)
    return store


@pytest.mark.parametrize("name", ["ledger.jsonl", "ledger.jsonl.gz"])
def test_an_archive_verifies_offline_with_its_anchor_and_signatures(
    ledger: LedgerStore, tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    head = export(ledger, path)
    assert head == ledger.head()
    ledger.close()
    (tmp_path / "ledger.db").unlink()  # offline: the database is gone
    chain, signatures, stated = verify_archive(path)
    assert (chain.ok, chain.count, chain.head_hash) == (True, head.count, head.head_hash)
    assert stated == head
    assert signatures is not None
    assert signatures.ok
    # alice's own registration, bob's (signed by alice), alice's override request; the pipeline had no key
    assert (signatures.valid, signatures.signers, signatures.unsigned) == (3, {"alice"}, 2)
    assert verify_archive(path, Head(5, stated.head_hash))[0].ok is False  # a published anchor is checked too


def test_an_edited_archive_fails_and_names_the_record(ledger: LedgerStore, tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    export(ledger, path)
    lines = path.read_text().splitlines()
    record = json.loads(lines[40])
    record[7] = record[7][:-1] + ',"x":1}'  # one more field in the body
    lines[40] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    chain, signatures, _ = verify_archive(path)
    assert (chain.ok, chain.seq, chain.entity_id) == (False, record[0], record[2])
    assert "hash mismatch, the record was edited" in str(chain)
    assert signatures is None
    export(ledger, path)
    lines = path.read_text().splitlines()[:-3]  # the last three records cut off: the header counts them
    path.write_text("\n".join(lines) + "\n")
    chain = verify_archive(path)[0]
    assert (chain.ok, chain.problem, chain.seq) == (False, Problem.HEAD_MISMATCH, len(lines))
    assert "records were truncated" in str(chain)


def test_what_is_no_archive_is_one_line_naming_the_file(ledger: LedgerStore, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(ArchiveError, match=r"notes.txt: not a lineage archive \(its first line is no "):
        verify_archive(text)
    bad_gzip = tmp_path / "x.jsonl.gz"
    bad_gzip.write_bytes(b"not gzip")
    with pytest.raises(ArchiveError, match=r"x.jsonl.gz: cannot read the archive"):
        verify_archive(bad_gzip)
    with pytest.raises(ArchiveError, match=r"cannot write the archive \(No such file or directory\)"):
        export(ledger, tmp_path / "missing" / "a.jsonl")
    with gzip.open(tmp_path / "y.jsonl.gz", "wt") as out:
        out.write(json.dumps({"format": "lineage-ledger-archive", "version": 1}) + "\n")
    with pytest.raises(ArchiveError, match=r"y.jsonl.gz: the header's columns are not \[seq, kind, "):
        verify_archive(tmp_path / "y.jsonl.gz")
