"""One lineage across two environments, through the `lineage` command: dev (SQLite) trains and exports a
signed bundle; prod (the machine's PostgreSQL) trusts dev's key, imports it against its DVC remote,
promotes the version, and then answers for it: the production version's ascendants reach dev's data and
run, both ledgers verify, the promotion says where the version was trained, and `lineage reproduce`
reads the same run on both sides. Bad bundles (an attestation by another key among them) and missing
files are refused in one line, appending nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from lineage import registry
from lineage.bundle import ledger_id, read_bundle
from lineage.reproduce import expected
from lineage.signatures import Signer
from lineage.store import LedgerStore, canonical_json
from tests.bundle_world import dvc_repository, object_path, record_weeks
from tests.conftest import (
    POSTGRES_PSYCOPG,
    REPO,
    VENV_BIN,
    locked_outs,
    postgres_database,
    run_flow,
    stage_env,
)

pytestmark = pytest.mark.integration


def lineage(db: str, cwd: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(VENV_BIN / "lineage"), *args],
        cwd=cwd,
        env=stage_env(LINEAGE_DB_URL=db, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode == 0) == ok, f"lineage {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def refused(db: str, cwd: Path, bundle: Path, message: str) -> None:
    """`lineage import bundle` fails with one line naming the problem, and the ledger does not change."""
    with LedgerStore(db) as store:
        head = store.head()
    done = lineage(db, cwd, "import", "bundle", str(bundle), ok=False)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("lineage: error: "), done.stderr
    assert message in done.stderr, done.stderr
    with LedgerStore(db) as store:
        assert store.head() == head


def test_dev_to_prod(tmp_path: Path, ssh_keys: dict[str, Path]) -> None:
    dev_db = f"sqlite:///{tmp_path / 'dev.db'}"
    dev_root, storage = tmp_path / "dev", tmp_path / "remote"
    dev_root.mkdir()
    pub = {name: str(key.with_suffix(".pub")) for name, key in ssh_keys.items()}

    # dev: its approvers, two weekly runs (week 1 promoted, signed by the pipeline), a signed bundle
    lineage(dev_db, dev_root, "init", "--approver", "alice", "--key", str(ssh_keys["alice"]))
    lineage(dev_db, dev_root, "approvers", "add", "lineage-pipeline", "--public-key", pub["lineage-pipeline"],
            "--by", "alice", "--key", str(ssh_keys["alice"]))  # fmt: skip
    with LedgerStore(dev_db) as dev:
        pipeline = Signer("lineage-pipeline", ssh_keys["lineage-pipeline"])
        (version, flow_run_id), _ = record_weeks(dev, dev_root, storage, pipeline, True, False)
        dev_id = ledger_id(dev)
    bundle = tmp_path / "bundle.json"
    exported = lineage(dev_db, dev_root, "export", "bundle", version, "--output", str(bundle),
                       "--by", "alice", "--key", str(ssh_keys["alice"]))  # fmt: skip
    assert f"of ledger {dev_id} head" in exported.stdout
    assert "signed by alice" in exported.stdout
    lineage(dev_db, dev_root, "export", "bundle", version, "--output", str(bundle), ok=False)  # exists: --force
    processed = next(
        json.loads(r.body)["md5"] for r in read_bundle(bundle)[0].records if r.name == "data/processed.parquet"
    )

    with postgres_database("lineage_bundle") as name:
        prod_db = POSTGRES_PSYCOPG.format(database=name)
        prod = dvc_repository(tmp_path / "prod", storage)  # prod reads the remote dev pushed to
        lineage(prod_db, prod, "init", "--approver", "bob", "--key", str(ssh_keys["bob"]))

        refused(prod_db, prod, bundle, "untrusted signer: 'alice' of ledger")
        lineage(prod_db, prod, "approvers", "add", "dev-alice", "--public-key", pub["alice"],
                "--by", "bob", "--key", str(ssh_keys["bob"]))  # fmt: skip

        tampered = tmp_path / "tampered.json"
        text = bundle.read_text(encoding="utf-8")
        at = text.rfind('\\"size\\":1', 0, text.index('\\"source_uri\\":\\"data/processed.parquet\\"')) + 10
        tampered.write_text(text[:at] + "2" + text[at + 1 :], encoding="utf-8")  # one body byte
        refused(prod_db, prod, tampered, "tampered: record seq")
        wrong = tmp_path / "dvc.lock"
        shutil.copy(dev_root / "dvc.lock", wrong)
        refused(prod_db, prod, wrong, "not a lineage bundle: truncated or not JSON")
        truncated = tmp_path / "truncated.json"
        truncated.write_bytes(bundle.read_bytes()[:-200])
        refused(prod_db, prod, truncated, "not a lineage bundle: truncated or not JSON")
        other = tmp_path / "attested-by-another.json"  # the bundle signed by alice, its attestation by mallory
        data = json.loads(bundle.read_text(encoding="utf-8"))
        data.pop("signature")
        attestation = canonical_json(data["attestation"]).encode()
        data["attestation_signature"] = Signer("alice", ssh_keys["mallory"]).sign(attestation)[0]
        data["signature"] = Signer("alice", ssh_keys["alice"]).sign(canonical_json(data).encode())[0]
        other.write_text(json.dumps(data), encoding="utf-8")
        refused(prod_db, prod, other, "the attestation is signed with key SHA256:")

        stored = object_path(storage, processed)
        kept = stored.read_bytes()
        stored.unlink()
        refused(prod_db, prod, bundle, f"data/processed.parquet (md5 {processed}) is in neither the DVC cache nor")
        stored.write_bytes(b"not the processed data")
        refused(prod_db, prod, bundle, f"data/processed.parquet: the stored object {processed} is altered")
        stored.write_bytes(kept)

        imported = json.loads(lineage(prod_db, prod, "import", "bundle", str(bundle), "--format", "json").stdout)
        assert imported["appended"] > 100
        assert imported["source_ledger"] == dev_id
        assert (imported["version"], imported["status"], imported["signer"]) == (version, "candidate", "dev-alice")
        again = lineage(prod_db, prod, "import", "bundle", str(bundle))
        assert again.stdout.startswith("nothing to import: 0 records appended")

        lineage(prod_db, prod, "models", "promote", version, "--by", "bob", "--key", str(ssh_keys["bob"]),
                "--reason", "validated in staging")  # fmt: skip
        graph = json.loads(lineage(prod_db, prod, "query", "production", "--direction", "ascendants",
                                   "--format", "json").stdout)  # fmt: skip
        vertices = graph["vertices"]
        assert any(v["label"] == "data/processed.parquet" and v["details"]["md5"] == processed for v in vertices)
        assert any(v["type"] == "PipelineRun" and v["label"] == flow_run_id for v in vertices)

        shown = json.loads(lineage(prod_db, prod, "models", "show", version, "--format", "json").stdout)
        assert shown["trained_in"] == dev_id
        assert shown["status"] == "production"
        assert shown["decisions"][-1]["parameters"]["trained_in"] == dev_id
        assert f"(trained in ledger {dev_id})" in lineage(prod_db, prod, "models", "show", version).stdout

        for db, cwd in ((dev_db, dev_root), (prod_db, prod)):
            verified = lineage(db, cwd, "verify", "--full")
            assert "chain ok" in verified.stdout
            assert "signatures ok" in verified.stdout
        assert "1 imported decisions valid in their own ledger" in verified.stdout

        with LedgerStore(dev_db) as dev, LedgerStore(prod_db) as prod_store:
            on_dev, on_prod = expected(dev, version), expected(prod_store, "production")
        assert (on_prod.hashes, on_prod.commit, on_prod.params_md5, on_prod.flow_run_id) == (
            on_dev.hashes, on_dev.commit, on_dev.params_md5, on_dev.flow_run_id,
        )  # fmt: skip


def test_a_model_a_flow_run_trained_in_dev_is_promoted_in_prod_and_traced_back(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch, ssh_keys: dict[str, Path], tmp_path: Path
) -> None:
    """Dev is a real workspace: `dvc repro` trained the model, the lineage-pipeline flow recorded and promoted
    it in the workspace's SQLite ledger and pushed its files to the DVC remote; prod imports from that remote."""
    dev_db = f"sqlite:///{built_copy / 'lineage.db'}"
    monkeypatch.delenv("LINEAGE_DB_URL", raising=False)
    # A dev workspace whose flow runs without the pipeline's key: its policy allows unsigned pipeline decisions.
    lineage(dev_db, built_copy, "init", "--approver", "alice", "--key", str(ssh_keys["alice"]),
            "--unsigned-decisions", "allowed")  # fmt: skip
    state, _ = run_flow(built_copy, monkeypatch)
    assert state.is_completed(), state.message
    flow_run_id = str(state.state_details.flow_run_id)
    with LedgerStore(dev_db) as dev:
        version = registry.production(dev)
        assert version is not None
        assert version.properties["flow_run_id"] == flow_run_id
    bundle = tmp_path / "bundle.json"
    lineage(dev_db, built_copy, "export", "bundle", "production", "--output", str(bundle),
            "--by", "alice", "--key", str(ssh_keys["alice"]))  # fmt: skip

    with postgres_database("lineage_bundle_flow") as name:
        prod_db = POSTGRES_PSYCOPG.format(database=name)
        prod = dvc_repository(tmp_path / "prod", built_copy / ".dvc-storage")  # dev's default remote, shared
        lineage(prod_db, prod, "init", "--approver", "bob", "--key", str(ssh_keys["bob"]))
        alice = str(ssh_keys["alice"].with_suffix(".pub"))
        lineage(prod_db, prod, "approvers", "add", "dev-alice", "--public-key", alice,
                "--by", "bob", "--key", str(ssh_keys["bob"]))  # fmt: skip
        lineage(prod_db, prod, "import", "bundle", str(bundle))  # every file's bytes checked in dev's remote
        lineage(prod_db, prod, "models", "promote", version.name, "--by", "bob", "--key", str(ssh_keys["bob"]),
                "--reason", "trained and gated in dev")  # fmt: skip
        graph = json.loads(lineage(prod_db, prod, "query", "production", "--direction", "ascendants",
                                   "--format", "json").stdout)  # fmt: skip
        md5s = {v["label"]: v["details"].get("md5") for v in graph["vertices"] if v["kind"] == "artifact"}
        assert md5s["data/processed.parquet"] == locked_outs(built_copy)["data/processed.parquet"]
        assert md5s["models/model.pt"] == locked_outs(built_copy)["models/model.pt"]
        assert any(v["type"] == "PipelineRun" and v["label"] == flow_run_id for v in graph["vertices"])
        for db, cwd in ((dev_db, built_copy), (prod_db, prod)):
            assert "chain ok" in lineage(db, cwd, "verify", "--full").stdout
