"""`lineage reproduce`: a recorded model version rebuilt from its commit, params and inputs, byte for byte,
even after the code has moved on; an altered or missing object in the remote is named."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from lineage import registry
from lineage.entities import ActionType, Artifact, AssociationType
from lineage.store import Kind, LedgerStore
from tasks.data import generate_transactions
from tests.conftest import VENV_BIN, locked_outs, run, run_flow, set_params, stage_env

pytestmark = pytest.mark.integration


def commit(clone: Path, message: str) -> None:
    run(clone, "git", "add", "-A")
    run(clone, "git", "commit", "-qm", message)


def reproduce(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "lineage"), "reproduce", *args],
        cwd=clone, env=stage_env(), capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip


def test_a_version_reproduces_byte_for_byte_after_the_code_moved_on(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_params(built_copy, fairness={"max_error_ratio": 2.5})  # a stage runs: the run records its platform
    commit(built_copy, "the small settings this run trains with")
    first, _ = run_flow(built_copy, monkeypatch)
    assert first.is_completed(), first.message
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        version = registry.production(store)
        (platform,) = store.find(Kind.ARTIFACT, "Platform")
    assert version is not None
    facts = platform.properties  # type: ignore[union-attr]
    for fact in ("architecture", "cpu", "cpu_level", "numeric_level", "numpy_dispatch", "torch_capability", "blas"):
        assert facts[fact], fact
    assert facts["numeric_level"] == "avx2"
    assert facts["numpy_dispatch"] == facts["torch_capability"] == "AVX2"
    assert all(facts[f"version.{name}"] != "not installed" for name in ("numpy", "torch", "scikit-learn", "pandas"))
    recorded = locked_outs(built_copy)

    # The code moves on: a change that alters the fairness report, committed and run.
    fairness = built_copy / "tasks/fairness.py"
    fairness.write_text(fairness.read_text().replace("log-residual gap", "log gap"))
    commit(built_copy, "shorter fairness reason")
    second, _ = run_flow(built_copy, monkeypatch)
    assert second.is_completed(), second.message
    assert locked_outs(built_copy)["metrics/fairness.json"] != recorded["metrics/fairness.json"]

    done = reproduce(built_copy, version.name, "--format", "json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    compared = {row["artifact"]: row for row in report["artifacts"]}
    assert set(recorded) <= set(compared)  # every output, and every dep besides
    assert all(row["match"] for row in compared.values())
    assert compared["metrics/fairness.json"]["reproduced"] == recorded["metrics/fairness.json"]
    assert compared["models/model.pt"]["reproduced"] == recorded["models/model.pt"]
    assert compared["tasks/fairness.py"]["recorded"] != locked_deps(built_copy)["tasks/fairness.py"]  # old code

    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        model = next(a for a in store.find(Kind.ARTIFACT, name="models/model.pt") if isinstance(a, Artifact))
        same_as = [e for e in store.edges([model.id], "destination") if e.association_type == AssociationType.SAME_AS]
        assert len(same_as) == 1
        shown = registry.report(store, version.name)
        reproductions = [
            a
            for a in store.latest(e.source_id for e in store.edges([version.id], "destination")).values()
            if getattr(a, "action_type", None) == ActionType.REPRODUCTION
        ]
        assert [a.status for a in reproductions] == ["Completed"]  # type: ignore[union-attr]
        assert shown.version.properties["status"] == "production"
        assert store.verify().ok
    assert report["first_difference"] is None
    assert report["platform"]["differences"] == {}  # the same machine, the same libraries
    text = reproduce(built_copy, version.name)
    assert text.returncode == 0
    lines = text.stdout.strip().splitlines()
    assert lines[-3] == f"{version.name}: reproduced byte for byte"
    equal = lines[-2].removeprefix("platform equal: ").split(", ")  # which platform facts were equal
    assert lines[-1] == "image: the run's local, this reproduction's none (this machine's environment)"
    assert {"architecture", "numeric_level", "numpy_dispatch", "torch_capability", "version.torch"} <= set(equal)


def locked_deps(clone: Path) -> dict[str, str]:
    stages = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    return {dep["path"]: dep["md5"] for stage in stages.values() for dep in stage.get("deps", [])}


def test_an_altered_or_missing_object_in_the_remote_is_named(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A DVC-tracked raw file beside the synthetic source: an input that lives in the remote.
    generate_transactions(rows=500, seed=3).to_parquet(built_copy / "data/raw/extra.parquet")
    run(built_copy, "dvc", "add", "data/raw/extra.parquet")
    commit(built_copy, "track a raw file")
    state, _ = run_flow(built_copy, monkeypatch)
    assert state.is_completed(), state.message
    md5 = yaml.safe_load((built_copy / "data/raw/extra.parquet.dvc").read_text())["outs"][0]["md5"]
    stored = built_copy / ".dvc-storage" / "files" / "md5" / md5[:2] / md5[2:]
    assert stored.is_file()
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        head = store.head()

    stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")
    altered = reproduce(built_copy, "production")
    assert altered.returncode == 1
    assert altered.stderr.strip() == (
        f"lineage: error: data/raw/extra.parquet: the remote's object is altered (md5 {_md5(stored)}, recorded {md5})"
    )
    stored.unlink()
    missing = reproduce(built_copy, "production")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"lineage: error: data/raw/extra.parquet (md5 {md5}) is missing from remote 'local'"
    )
    unknown = reproduce(built_copy, "model-000000000000")
    assert unknown.stderr.strip() == (
        "lineage: error: 'model-000000000000' is no entity id, model version, endpoint or artifact URI in the ledger"
    )
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        assert store.head() == head  # failed reproductions record nothing
    assert not list((built_copy / ".git" / "worktrees").glob("*"))  # and leave no worktree behind


def _md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()
