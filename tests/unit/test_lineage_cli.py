"""The `lineage` command as users run it: installed entry point, JSON/mermaid/dot output, registry
commands, verify's exit status, export, and one-line errors that change nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from lineage.openlineage import validate
from lineage.store import LedgerStore
from tests.conftest import VENV_BIN, record_two_weeks
from tests.ledger_oracle import assert_reads_match_scan
from tests.lineage_workspace import STAGES


def lineage(db: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LINEAGE_DB_URL": f"sqlite:///{db}"}
    done = subprocess.run(
        [str(VENV_BIN / "lineage"), *args], env=env, capture_output=True, text=True, check=False, cwd=db.parent
    )  # outside any DVC checkout: no anchor goes to this project's remote
    assert (done.returncode == 0) == ok, f"lineage {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command."""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert done.returncode == 1
    return lines[0]


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    """A ledger with two runs: week 1 promoted, week 2 rejected by fairness; their versions and run ids."""
    root = tmp_path_factory.mktemp("cli")
    with LedgerStore(f"sqlite:///{root / 'lineage.db'}") as store:
        names, runs = record_two_weeks(store, root)
    return root / "lineage.db", names, runs


@pytest.fixture
def db(ledger: tuple[Path, list[str], list[str]], tmp_path: Path) -> Path:
    """A private copy of the ledger, for commands that change it."""
    copy = tmp_path / "lineage.db"
    copy.write_bytes(ledger[0].read_bytes())
    return copy


def test_indexed_reads_equal_a_scan_on_recorded_runs(ledger: tuple[Path, list[str], list[str]]) -> None:
    with LedgerStore(f"sqlite:///{ledger[0]}") as store:
        assert assert_reads_match_scan(store) > 300


def test_models_list_and_show(ledger: tuple[Path, list[str], list[str]]) -> None:
    db, (good, bad), (first_run, _) = ledger
    listed = json.loads(lineage(db, "models", "list", "--format", "json").stdout)
    assert [(v["name"], v["status"]) for v in listed] == [(good, "production"), (bad, "rejected")]
    assert (
        json.loads(lineage(db, "models", "list", "--status", "rejected", "--format", "json").stdout)[0]["name"] == bad
    )
    text = lineage(db, "models", "list").stdout.splitlines()
    assert text[0].split()[:2] == [good, "production"]
    assert text[0].endswith(f"run {first_run}")
    shown = json.loads(lineage(db, "models", "show", bad, "--format", "json").stdout)
    assert shown["fairness_gate"] == "failed"
    assert {g["action_type"]: g["parameters"]["verdict"] for g in shown["gates"]} == {
        "DriftGate": "passed",
        "AccuracyGate": "passed",
        "FairnessGate": "failed",
    }
    assert [d["parameters"]["decision"] for d in shown["decisions"]] == ["rejected"]
    assert "rejected by lineage-pipeline" in lineage(db, "models", "show", bad).stdout


def test_signed_decisions_from_init_to_a_four_eyes_override_and_a_rollback(
    ledger: tuple[Path, list[str], list[str]], db: Path, ssh_keys: dict[str, Path]
) -> None:
    _, (good, bad), _ = ledger
    alice, bob = str(ssh_keys["alice"]), str(ssh_keys["bob"])
    assert lineage(db, "init", "--approver", "alice", "--key", alice).stdout.startswith(
        "alice is the ledger's first approver (SHA256:"
    )
    assert error_line(lineage(db, "init", "--approver", "bob", "--key", bob, ok=False)) == (
        "lineage: error: the ledger already has approvers: add one with `lineage approvers add`"
    )
    pub = str(ssh_keys["bob"].with_suffix(".pub"))
    lineage(db, "approvers", "add", "bob", "--public-key", pub, "--by", "alice", "--key", alice)
    listed = json.loads(lineage(db, "approvers", "list", "--format", "json").stdout)
    assert [(a["name"], a["status"], a["registered_by"]) for a in listed] == [
        ("alice", "active", "alice"),
        ("bob", "active", "alice"),
    ]
    before = db.read_bytes()
    refused = lineage(db, "models", "promote", bad, "--by", "alice", "--key", alice, "--reason", "urgent", ok=False)
    assert error_line(refused) == (
        f"lineage: error: {bad} did not pass every gate (drift passed, accuracy passed, fairness failed): "
        "request an override with --override"
    )
    forged = lineage(
        db, "models", "promote", bad, "--by", "bob", "--key", alice, "--reason", "x", "--override", ok=False
    )
    assert error_line(forged).startswith(f"lineage: error: {alice} is not bob's registered key (SHA256:")
    assert db.read_bytes() == before
    asked = lineage(
        db, "models", "promote", bad, "--by", "alice", "--key", alice, "--reason", "exception", "--override"
    )
    assert asked.stdout.strip() == f"{bad} is pending: another approver promotes it with `lineage models approve {bad}`"
    same = lineage(db, "models", "approve", bad, "--by", "alice", "--key", alice, "--reason", "me", ok=False)
    assert error_line(same) == "lineage: error: alice requested this override: another approver must approve it"
    approved = lineage(db, "models", "approve", bad, "--by", "bob", "--key", bob, "--reason", "ok", "--format", "json")
    assert (json.loads(approved.stdout)["status"], json.loads(approved.stdout)["override_by"]) == (
        "production",
        "alice and bob",
    )
    rolled = lineage(db, "models", "rollback", "--by", "bob", "--key", bob, "--reason", "bad week", "--format", "json")
    assert (json.loads(rolled.stdout)["name"], json.loads(rolled.stdout)["status"]) == (good, "production")
    verified = lineage(db, "verify").stdout.splitlines()
    assert verified[0].startswith("chain ok: ")
    assert verified[1] == "anchor: none checked: no DVC remote here (see --repository and --remote)"
    assert verified[2] == (
        "signatures ok: 6 valid (by alice, bob), 2 unsigned decisions (allowed by the policy then); "
        "policy: unsigned decisions refused; two approvers sign every approver or policy change"
    )


def test_diff_and_the_archive_through_the_command(ledger: tuple[Path, list[str], list[str]], tmp_path: Path) -> None:
    db, (good, bad), (first_run, second_run) = ledger
    text = lineage(db, "diff", good, bad).stdout
    assert text.splitlines()[0] == f"from {good}: run {first_run}, {good}"
    assert "  fairness" in text
    assert "passed -> failed" in text
    as_json = json.loads(lineage(db, "diff", first_run, second_run, "--format", "json").stdout)
    assert as_json["gates"] == [
        {"gate": "drift", "before": "passed", "after": "passed"},
        {"gate": "accuracy", "before": "passed", "after": "passed"},
        {"gate": "fairness", "before": "passed", "after": "failed"},
    ]
    assert error_line(lineage(db, "diff", "previous", "production", ok=False)) == (
        f"lineage: error: {good} replaced no earlier version: there is no 'previous'"
    )
    archive = tmp_path / "ledger.jsonl.gz"
    written = lineage(db, "export", "archive", "--output", str(archive)).stdout
    assert written.startswith(f"{sum(1 for _ in LedgerStore(f'sqlite:///{db}').records())} records written to ")
    checked = lineage(db, "verify", "--archive", str(archive)).stdout.splitlines()
    assert checked[0].startswith("chain ok: ")
    assert f"archive {archive}, anchor in its header" in checked[0]
    assert checked[1].startswith("signatures ok: 0 valid")
    assert error_line(lineage(db, "export", "archive", "--output", str(tmp_path / "no" / "a.jsonl"), ok=False)) == (
        f"lineage: error: {tmp_path / 'no' / 'a.jsonl'}: cannot write the archive (No such file or directory)"
    )


def test_query_outputs(ledger: tuple[Path, list[str], list[str]]) -> None:
    db, (good, _), _ = ledger
    graph = json.loads(lineage(db, "query", good, "--format", "json", "--include-edges").stdout)
    types = {vertex["type"] for vertex in graph["vertices"]}
    assert {"ModelVersion", "Model", "DataSet", "Code", "Params", "Image", "Stage", "DriftGate"} <= types
    assert graph["edges"]
    only = json.loads(
        lineage(
            db, "query", "data/raw", "--direction", "descendants", "--type", "ModelVersion", "--format", "json"
        ).stdout
    )
    assert [v["label"] for v in only["vertices"] if v["type"] == "ModelVersion"] == [ledger[1][1]]  # the newest raw
    assert lineage(db, "query", "production", "--format", "mermaid").stdout.startswith("flowchart LR")
    assert lineage(db, "query", "production", "--format", "dot").stdout.startswith("digraph lineage {")
    assert "models/model.pt" in lineage(db, "query", "production", "--depth", "1").stdout
    unknown = lineage(db, "query", "production", "--format", "xml", ok=False)
    assert unknown.returncode == 2  # a usage error, as click reports them: usage, a hint, then one error line
    assert unknown.stderr.strip().splitlines()[-1] == (
        "Error: Invalid value for '--format': Value error, 'xml' is not one of 'table', 'json', 'mermaid', 'dot'."
    )
    assert error_line(lineage(db, "query", "nowhere", ok=False)) == (
        "lineage: error: 'nowhere' is no entity id, model version, endpoint or artifact URI in the ledger"
    )


def test_verify_exits_1_and_names_the_tampered_record(db: Path) -> None:
    with LedgerStore(f"sqlite:///{db}") as store:
        records = store.head().count  # grows with dvc.yaml's deps, which the stand-in workspace records
    assert records > 300
    first = lineage(db, "verify").stdout.splitlines()
    assert first[0].startswith(f"chain ok: {records} records, head ")
    assert first[-1] == "checked: every record"
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE ledger_records SET body = body || ' ' WHERE seq = 200")
    # Verifying again checks what was appended since, and says so: the edit before that is --full's.
    again = lineage(db, "verify").stdout.splitlines()
    assert again[-1].startswith("checked: nothing appended since the verification of ")
    assert again[-1].endswith(f"(which ended at record {records}); --full rehashes every record")
    failed = lineage(db, "verify", "--full", ok=False)
    assert failed.stdout.startswith("chain FAILED at seq 200 (entity ")
    assert "hash mismatch, the record was edited" in failed.stdout
    log = json.loads(lineage(db, "verifications", "--format", "json").stdout)
    checked = [(v["from_count"], v["record_count"], v["ok"]) for v in log]
    assert checked == [(0, records, True), (records, records, True), (0, records, False)]
    assert "FAILED at seq 200" in log[-1]["result"]
    assert error_line(lineage(db, "verify", "--anchor-count", "3", ok=False)) == (
        "lineage: error: --anchor-count and --anchor-hash go together"
    )
    for count, digest, message in (
        ("-5", "a" * 64, "--anchor-count must be at least 1, got -5"),
        ("3", "abc", "--anchor-hash must be 64 lowercase hex characters (a sha256), got 'abc'"),
    ):
        refused = lineage(db, "verify", "--anchor-count", count, "--anchor-hash", digest, ok=False)
        assert error_line(refused) == f"lineage: error: {message}"


def test_an_unreachable_ledger_is_one_line_without_the_password(tmp_path: Path) -> None:
    done = lineage(tmp_path / "x.db", "--help")
    assert "models" in done.stdout
    failed = subprocess.run(
        [str(VENV_BIN / "lineage"), "models", "list", "--db", "postgresql+psycopg://u:s3cret@127.0.0.1:1/x"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    line = error_line(failed)
    assert line.startswith("lineage: error: cannot open the lineage ledger at postgresql+psycopg://u:***@127.0.0.1:1/x")
    assert "s3cret" not in failed.stderr + failed.stdout


def test_export_openlineage(ledger: tuple[Path, list[str], list[str]], tmp_path: Path) -> None:
    db, _, (first_run, _) = ledger
    out = tmp_path / "events.jsonl"
    done = lineage(db, "export", "openlineage", "--flow-run", first_run, "--output", str(out))
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(events) == 2 * len(STAGES)  # START and COMPLETE per stage
    for event in events:
        validate(event)
    assert done.stderr.strip() == f"{len(events)} OpenLineage events"
    assert error_line(lineage(db, "export", "openlineage", "--flow-run", "nope", ok=False)) == (
        "lineage: error: no pipeline run with flow run id 'nope' in the ledger"
    )
    missing = tmp_path / "no" / "events.jsonl"
    assert error_line(lineage(db, "export", "openlineage", "--output", str(missing), ok=False)) == (
        f"lineage: error: {missing}: cannot write the events (No such file or directory)"
    )


def test_served_names_the_version_an_endpoint_served_at_a_time(
    db: Path, ledger: tuple[Path, list[str], list[str]]
) -> None:
    import datetime as dt

    from lineage.predictions import endpoint_update
    from lineage.registry import get_version

    first, second = ledger[1]
    monday = dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC)
    with LedgerStore(f"sqlite:///{db}") as store:
        for name, at in ((first, monday), (second, monday + dt.timedelta(days=2))):
            store.append(endpoint_update(store, "shop-eu", get_version(store, name), at, {"host": "web-1"}))
    every = json.loads(lineage(db, "served", "shop-eu", "--format", "json").stdout)
    assert [(row["model_version"], row["previous_version"]) for row in every] == [(first, None), (second, first)]
    tuesday = lineage(db, "served", "shop-eu", "--at", "2026-12-01T12:00:00").stdout
    assert tuesday.split()[:2] == ["2026-11-30T09:00:00+00:00", first]
    assert error_line(lineage(db, "served", "shop-eu", "--at", "2026-11-01", ok=False)) == (
        "lineage: error: endpoint 'shop-eu' served nothing at 2026-11-01T00:00:00+00:00: "
        "its first update is at 2026-11-30T09:00:00+00:00"
    )
    assert error_line(lineage(db, "served", "shop-eu", "--at", "monday", ok=False)) == (
        "lineage: error: --at: 'monday' is not an ISO 8601 time, e.g. 2026-12-05T10:00:00Z"
    )
    assert (
        error_line(lineage(db, "served", "nowhere", ok=False)) == "lineage: error: no endpoint 'nowhere' in the ledger"
    )
