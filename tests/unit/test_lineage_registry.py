"""What a run records, and the registry's rules: a failed gate is never promoted, the previous production
version stays on any failure, an override of a failed gate takes two signed approvers, rollback restores
the replaced version."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gates.accuracy import GATE as ACCURACY
from gates.drift import GATE as DRIFT
from gates.table import BY_ACTION_TYPE
from lineage import registry
from lineage.authority import register
from lineage.entities import Action, ActionStatus, ActionType, Artifact, ArtifactType, Context, ContextType
from lineage.query import Direction, query_lineage
from lineage.recorder import Provenance, RunInfo, StageRun, record_run
from lineage.registry import ModelStatus, RegistryError
from lineage.signatures import Signer, read_public_key
from lineage.store import Kind, LedgerConflict, LedgerStore
from lineage.verification import check_decisions
from tests.conftest import register_approvers
from tests.lineage_workspace import ALLOWED, STAGES, write_workspace

NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LedgerStore]:
    with LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        yield ledger


def info(stopped_at: str | None = None, failure: str | None = None, pushed: bool = True) -> RunInfo:
    """A run whose stages all ran, or ran up to `stopped_at` (which failed) with the rest not run."""
    stages, stopped = [], False
    for stage in STAGES:
        if stopped:
            stages.append(StageRun(stage, ActionStatus.NOT_RUN))
            continue
        status = ActionStatus.FAILED if stage == stopped_at else ActionStatus.COMPLETED
        stages.append(StageRun(stage, status, NOW, NOW + dt.timedelta(seconds=30), str(uuid.uuid4())))
        stopped = stage == stopped_at
    return RunInfo(str(uuid.uuid4()), stages, NOW, NOW, failure, "s3://bucket/runs/x" if pushed else None)


def week(store: LedgerStore, root: Path, n: int, run: RunInfo | None = None, **workspace: bool) -> Context | None:
    write_workspace(root, n, **workspace)
    run = run or info()
    if workspace.get("allow_drift"):  # the flow hands the recorder params.yaml's override
        run = dataclasses.replace(run, overrides=ALLOWED)
    return record_run(store, run, root).model_version


def statuses(store: LedgerStore) -> dict[str, str]:
    return {v.name: str(v.properties["status"]) for v in registry.versions(store)}


def test_a_passing_run_is_promoted_and_a_failing_one_rejected(store: LedgerStore, tmp_path: Path) -> None:
    first = week(store, tmp_path, 1)
    assert first is not None
    assert first.properties["status"] == ModelStatus.PRODUCTION
    unfair = week(store, tmp_path, 2, info(failure="fairness check failed"), fair=False)
    assert unfair is not None
    assert unfair.properties["status"] == ModelStatus.REJECTED
    assert unfair.properties["fairness_gate"] == "failed"
    assert registry.production(store) == first  # the previous production version stays
    # Drift stops the run before tune: no model version, nothing changes in the registry.
    drifted = week(store, tmp_path, 3, info(stopped_at="drift_check", failure="drift detected"), drift=True)
    assert drifted is None
    assert statuses(store) == {first.name: "production", unfair.name: "rejected"}
    assert store.verify().ok


def test_a_failed_push_holds_the_candidate_and_a_later_run_promotes_it(store: LedgerStore, tmp_path: Path) -> None:
    held = week(store, tmp_path, 1, info(pushed=False))
    assert held is not None
    assert held.properties["status"] == ModelStatus.CANDIDATE
    assert registry.production(store) is None
    again = week(store, tmp_path, 1)  # same data, same model bytes: the same version
    assert again is not None
    assert again.name == held.name
    assert again.properties["status"] == ModelStatus.PRODUCTION
    decisions = [d.parameters["decision"] for d in registry.report(store, held.name).decisions]
    assert decisions == ["held", "promoted"]
    assert week(store, tmp_path, 1) == again  # a third run keeps it as it is
    assert [d.parameters["decision"] for d in registry.report(store, held.name).decisions][-1] == "kept"


def test_a_stage_failing_after_tune_rejects_the_model(store: LedgerStore, tmp_path: Path) -> None:
    version = week(store, tmp_path, 1, info(stopped_at="inference", failure="inference: error: bad rows"))
    assert version is not None
    assert version.properties["status"] == ModelStatus.REJECTED
    assert version.properties["fairness_gate"] == "not_run"
    assert version.properties["status_reason"] == "inference: error: bad rows"


def test_a_network_worse_than_the_baseline_is_rejected_and_cannot_be_promoted_without_an_override(
    store: LedgerStore, tmp_path: Path
) -> None:
    assert week(store, tmp_path, 1) is not None  # production: an accurate one
    worse = week(store, tmp_path, 2, info(failure="accuracy check failed"), accurate=False)
    assert worse is not None
    assert (worse.properties["accuracy_gate"], worse.properties["status"]) == ("failed", "rejected")
    gate = next(g for g in registry.report(store, worse.name).gates if g.action_type == ACCURACY.action_type)
    assert (gate.parameters["verdict"], gate.parameters["judged"], gate.parameters["max_ratio"]) == ("failed", 1.2, 1.1)
    (decision,) = registry.report(store, worse.name).decisions
    assert decision.parameters["gates"] == {
        "drift_gate": "passed",
        "accuracy_gate": "failed",
        "fairness_gate": "passed",
    }
    assert registry.production(store).name != worse.name  # type: ignore[union-attr]
    assert not registry.gates_passed(worse)
    assert store.verify().ok


def test_an_allowed_drift_is_recorded_as_an_override(store: LedgerStore, tmp_path: Path) -> None:
    version = week(store, tmp_path, 1, drift=True, allow_drift=True)
    assert version is not None
    assert version.properties["drift_gate"] == "overridden"
    assert version.properties["status"] == ModelStatus.PRODUCTION
    gate = next(g for g in registry.report(store, version.name).gates if g.action_type == DRIFT.action_type)
    assert (gate.parameters["allowed_by"], gate.parameters["reason"]) == ("Ana Ruiz", "reviewed")


def test_overriding_a_failed_gate_takes_two_different_signed_approvers(
    store: LedgerStore, tmp_path: Path, ssh_keys: dict[str, Path]
) -> None:
    register_approvers(store, ssh_keys, "alice", "bob")
    alice, bob = Signer("alice", ssh_keys["alice"]), Signer("bob", ssh_keys["bob"])
    good = week(store, tmp_path, 1)
    bad = week(store, tmp_path, 2, info(failure="fairness check failed"), fair=False)
    assert good is not None
    assert bad is not None
    head = store.head()
    with pytest.raises(
        RegistryError, match=rf"{bad.name} did not pass every gate \(drift passed, accuracy passed, fairness failed\)"
    ):
        registry.promote(store, bad.name, alice, reason="urgent")
    with pytest.raises(RegistryError, match="'mallory' is not a registered approver"):
        registry.promote(store, bad.name, Signer("mallory", ssh_keys["mallory"]), "urgent", override=True)
    with pytest.raises(RegistryError, match="is not alice's registered key"):
        registry.promote(store, bad.name, Signer("alice", ssh_keys["bob"]), "urgent", override=True)
    with pytest.raises(RegistryError, match="no model version 'model-nope'"):
        registry.promote(store, "model-nope", alice, reason="x")
    assert store.head() == head  # refusals write nothing

    pending = registry.promote(store, bad.name, alice, reason="regulator-approved exception", override=True)
    assert pending.properties["status"] == ModelStatus.PENDING
    assert registry.production(store) == registry.get_version(store, good.name)  # nothing moves yet
    with pytest.raises(RegistryError, match="already awaits a second approver"):
        registry.promote(store, bad.name, bob, reason="again", override=True)
    with pytest.raises(RegistryError, match="alice requested this override: another approver must approve it"):
        registry.approve(store, bad.name, alice, reason="me again")
    # One person under a second name, with the same key, is still one person.
    register(store, "alice-2", read_public_key(ssh_keys["alice"].with_suffix(".pub")), alice)
    with pytest.raises(RegistryError, match="signed with the same key as the request: four eyes needed"):
        registry.approve(store, bad.name, Signer("alice-2", ssh_keys["alice"]), reason="me again")

    promoted = registry.approve(store, bad.name, bob, reason="reviewed the fairness report")
    assert promoted.properties["status"] == ModelStatus.PRODUCTION
    assert promoted.properties["override_by"] == "alice and bob"
    assert statuses(store)[good.name] == "archived"
    request, approval = registry.report(store, bad.name).decisions[-2:]
    assert {key: value for key, value in approval.parameters.items() if key != "signature"} == {
        "decision": "promoted",
        "model_version": bad.name,
        "previous_production": good.name,
        "by": "bob",
        "reason": "reviewed the fairness report",
        "override": True,
        "override_request": request.id,
        "override_requested_by": "alice",
        "signed_by": "bob",
        "gates": {"drift_gate": "passed", "accuracy_gate": "passed", "fairness_gate": "failed"},  # as recorded
        "ledger_id": store.ledger_id(),  # where it holds: never replayed into another ledger
    }
    assert str(approval.parameters["signature"]).startswith("-----BEGIN SSH SIGNATURE-----")
    report = check_decisions(store)
    assert report.ok, str(report)
    assert (report.signers, report.unsigned) == ({"alice", "bob"}, 2)  # the pipeline signed nothing: no key
    with pytest.raises(RegistryError, match="already in production"):
        registry.promote(store, bad.name, alice, reason="again", override=True)


def test_rollback_restores_the_replaced_version_and_rejects_the_current(
    store: LedgerStore, tmp_path: Path, ssh_keys: dict[str, Path]
) -> None:
    register_approvers(store, ssh_keys, "alice")
    ana = Signer("alice", ssh_keys["alice"])
    with pytest.raises(RegistryError, match="no model version is in production"):
        registry.rollback(store, ana, reason="x")
    first, second = week(store, tmp_path, 1), week(store, tmp_path, 2)
    assert first is not None
    assert second is not None
    assert statuses(store) == {first.name: "archived", second.name: "production"}
    with pytest.raises(RegistryError, match="a rollback needs --reason"):
        registry.rollback(store, ana, reason="")
    restored = registry.rollback(store, ana, reason="forecasts off by 40%")
    assert restored.name == first.name
    assert statuses(store) == {first.name: "production", second.name: "rejected"}
    assert (
        registry.get_version(store, second.name).properties["status_reason"]
        == "rolled back by alice: forecasts off by 40%"
    )
    assert registry.report(store, first.name).decisions[-1].parameters["signed_by"] == "alice"
    with pytest.raises(RegistryError, match=f"{first.name} replaced no earlier version"):
        registry.rollback(store, ana, reason="again")
    # A later run with the rolled-back model's bytes does not promote it again by itself.
    assert week(store, tmp_path, 2) is not None
    assert registry.production(store) == registry.get_version(store, first.name)
    with pytest.raises(RegistryError, match=f"{second.name} was never in production"):
        registry.rollback(store, ana, reason="x", to=second.name)


def test_a_decision_on_a_stale_read_is_refused(store: LedgerStore, tmp_path: Path) -> None:
    first, second = week(store, tmp_path, 1), week(store, tmp_path, 2)
    assert first is not None
    assert second is not None
    stale = store.head()
    records = registry.promotion(registry.production(store), registry.get_version(store, first.name), "ana", "r")
    week(store, tmp_path, 3)  # a run lands meanwhile and promotes its own model
    with pytest.raises(LedgerConflict):
        store.append(records, expected_head=stale)
    assert registry.production(store) is not None
    assert registry.production(store).name != first.name  # type: ignore[union-attr]


def test_a_run_records_commit_data_code_params_image_runs_metrics_and_gates(
    store: LedgerStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    write_workspace(tmp_path, 1)
    subprocess.run([*git, "-C", str(tmp_path), "add", "."], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-qm", "w1"], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path), "remote", "add", "origin", "https://bot:s3cr3t@git.example/retail.git"],
        check=True,
    )
    (tmp_path / "params.yaml").write_text("seed: 7\n", encoding="utf-8")  # a dirty tree
    monkeypatch.setenv("IMAGE_URI", "123.dkr.ecr.eu-west-1.amazonaws.com/retail-lineage-worker:abc")
    monkeypatch.setenv("IMAGE_REVISION", "abc")
    run = info()
    recorded = record_run(store, run, tmp_path)

    provenance = Provenance.read(tmp_path)
    assert provenance.repository == "https://git.example/retail.git"  # the token never reaches the ledger
    assert recorded.run.properties["git_commit"] == provenance.commit != "unknown"
    assert recorded.run.properties["git_dirty"] is True
    assert str(recorded.run.properties["image_uri"]).endswith("retail-lineage-worker:abc")
    assert recorded.run.properties["flow_run_id"] == run.flow_run_id
    assert "s3cr3t" not in "".join(record.body for record in store.records())

    lock = yaml.safe_load((tmp_path / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    artifacts = {(a.source_uri, a.md5) for a in store.find(Kind.ARTIFACT) if isinstance(a, Artifact)}
    for stage in lock.values():
        for entry in stage["deps"] + stage["outs"]:
            assert (entry["path"], entry["md5"]) in artifacts
    actions = [a for a in store.latest(e.source_id for e in store.edges([recorded.run.id], "destination")).values()]
    stage_runs = {a.parameters["stage"]: a for a in actions if isinstance(a, Action) and "stage" in a.parameters}
    assert {name: a.prefect_task_run_id for name, a in stage_runs.items()} == {
        s.stage: s.task_run_id for s in run.stages
    }
    assert stage_runs["tune"].command == "python -m tasks.tune"
    assert stage_runs["tune"].parameters["seed"] == 42
    assert {a.action_type for a in actions if isinstance(a, Action)} >= {ActionType.STAGE, *BY_ACTION_TYPE}
    metrics = next(a for a in store.find(Kind.ARTIFACT, name="metrics/inference.json") if isinstance(a, Artifact))
    assert metrics.properties["test.rmsle"] == 0.53
    # The production model's ascendants name the data, code, params and image that made it.
    found = {(v.type, v.label) for v in query_lineage(store, "production", Direction.ASCENDANTS, 10).vertices}
    assert {
        ("DataSet", "data/raw"),
        ("Code", "tasks/tune.py"),
        ("Code", "https://git.example/retail.git"),
        ("Params", "params.yaml"),
        ("Image", "123.dkr.ecr.eu-west-1.amazonaws.com/retail-lineage-worker:abc"),
        ("FairnessGate", "passed (Completed)"),
        ("DriftGate", "passed (Completed)"),
        ("Promotion", "promoted (Completed)"),
    } <= found
    image = next(a for a in store.find(Kind.ARTIFACT, ArtifactType.IMAGE) if isinstance(a, Artifact))
    assert image.md5 == "abc"
    run_context = store.latest([recorded.run.id])[recorded.run.id]
    assert isinstance(run_context, Context)
    assert run_context.context_type == ContextType.PIPELINE_RUN
