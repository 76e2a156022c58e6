"""The flow's gates and retry rules: a drift, accuracy or fairness verdict ends the run Failed; bad input is never
retried."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.summary import summary
from gates.accuracy import GATE as ACCURACY
from gates.drift import GATE as DRIFT
from gates.fairness import GATE as FAIRNESS
from lineage import registry
from lineage.entities import Action, ActionType, Context
from lineage.store import LedgerStore
from tests.conftest import STAGES, context_id_of, locked_outs, run_flow, set_params

pytestmark = pytest.mark.integration


def test_drift_ends_the_run_failed_naming_columns_and_report(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_params(built_copy, data={"inject_drift": {"start": "2011-11-01", "price_factor": 1.5, "non_uk_share": 0.35}})
    state, attempts = run_flow(built_copy, monkeypatch)
    assert state.is_failed()
    assert state.message.startswith("drift detected in ")
    assert "unit_price" in state.message
    assert state.message.endswith("see reports/drift.html")
    assert {"etl", "drift_check"} <= set(attempts)
    assert not {"preprocess", "tune", "inference", "fairness"} & set(attempts)  # later stages did not run
    assert any(name.startswith("push") for name in attempts)  # the verdict is still pushed
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        run = store.latest([context_id_of(state)])[context_id_of(state)]
        assert isinstance(run, Context)
        assert str(run.properties["outcome"]).startswith("failed: drift detected in ")
        assert run.properties["model_version"] == ""  # tune never ran: no model, nothing to promote
        assert registry.versions(store) == []
        gates = [a for a in store.latest(e.source_id for e in store.edges([run.id], "destination")).values()]
        drift_gate = next(a for a in gates if getattr(a, "action_type", None) == DRIFT.action_type)
        assert drift_gate.parameters["verdict"] == "failed"  # type: ignore[union-attr]
        assert store.verify().ok


@pytest.mark.parametrize(
    ("policy", "passed"),
    [({"max_error_ratio": 1.0}, False), ({}, True)],  # no two groups are served exactly alike; the default
    ids=["failed", "passed"],
)
def test_every_reader_of_the_fairness_verdict_agrees_with_metrics_fairness_json(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch, policy: dict[str, object], passed: bool
) -> None:
    """One source of truth, metrics/fairness.json: the flow's state, the summary, the ledger's FairnessGate
    action and the registry's decision all say what it says (gates/table.py decides for all of them)."""
    set_params(built_copy, fairness=policy)
    state, attempts = run_flow(built_copy, monkeypatch)
    verdict = json.loads((built_copy / "metrics/fairness.json").read_text())
    assert verdict["passed"] is passed
    assert set(verdict["attributes"]) == {"is_registered", "country"}
    assert state.is_completed() is passed
    if passed:
        assert state.message.endswith("every gate passed")
    else:
        assert state.message == f"fairness check failed: {verdict['reason']}; the model is not promoted"
        assert verdict["reason"].startswith("is_registered: error ratio (RMSLE) ")
        assert attempts["fairness"] == 1  # a verdict is final: never retried
    lines = summary(STAGES, built_copy).splitlines()
    assert lines[-2] == f"fairness     {'passed' if passed else 'FAILED'}: {verdict['reason']}"
    assert lines[-1].endswith("the model may be promoted" if passed else "NOT passed: do not promote")
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        (version,) = registry.versions(store)
        assert version.properties["model_md5"] == locked_outs(built_copy)["models/model.pt"]
        assert version.properties["fairness_gate"] == ("passed" if passed else "failed")
        assert registry.gates_passed(version) is passed
        assert version.properties["status"] == ("production" if passed else "rejected")
        assert (registry.production(store) is not None) is passed  # a failed gate is never promoted
        decisions = [d.parameters["decision"] for d in registry.report(store, version.name).decisions]
        assert decisions == ["promoted" if passed else "rejected"]
        (gate,) = [g for g in registry.report(store, version.name).gates if g.action_type == FAIRNESS.action_type]
        assert gate.parameters["verdict"] == ("passed" if passed else "failed")
        assert gate.parameters["reason"] == verdict["reason"]
        assert gate.parameters["attributes"] == {name: a["passed"] for name, a in verdict["attributes"].items()}


def test_a_network_worse_than_the_baseline_stops_the_run_after_inference_and_is_never_promoted(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At max_ratio 1.0 the small network (test RMSLE about 1.07 times the baseline's) is refused: in the flow's
    state, the inference task's, the summary the UI shows, the ledger's AccuracyGate action and the registry."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId

    set_params(built_copy, gates={"accuracy": {"max_ratio": 1.0}})
    state, attempts = run_flow(built_copy, monkeypatch)
    measured = json.loads((built_copy / "metrics/inference.json").read_text())["accuracy"]
    assert measured["ratio"] > 1.0
    assert (measured["passed"], measured["max_ratio"]) == (False, 1.0)
    assert state.is_failed()
    assert state.message.startswith(f"accuracy check failed: test RMSLE / baseline's {measured['judged']:.4f} > 1.0")
    assert state.message.endswith("the model is not promoted")
    assert attempts["inference"] == 1  # a verdict is final: never retried
    assert "fairness" not in attempts  # the run stopped at the gate
    lines = summary(STAGES, built_copy).splitlines()
    assert lines[-3].startswith(f"inference    FAILED: test RMSLE / baseline's {measured['judged']:.4f} > 1.0 (")
    assert lines[-1].endswith("NOT passed: do not promote")
    with get_client(sync_client=True) as api:
        (shown,) = api.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["pipeline-summary"])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])),
        )
    shown_text = str(shown.data)
    criterion = f"| accuracy | test RMSLE / baseline's, far end of 95% interval | {measured['judged']:.4g} | <= 1 |"
    assert f"{criterion} FAILED |" in shown_text
    assert "| verdicts | this run's gates | drift passed, accuracy failed, fairness not_run |" in shown_text
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        (version,) = registry.versions(store)
        assert (version.properties["accuracy_gate"], version.properties["status"]) == ("failed", "rejected")
        assert registry.production(store) is None
        (gate,) = [g for g in registry.report(store, version.name).gates if g.action_type == ACCURACY.action_type]
        assert (gate.parameters["verdict"], gate.parameters["judged"]) == ("failed", measured["judged"])
        assert store.verify().ok


def test_bad_input_fails_at_once_without_retries(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_params(built_copy, data={"source": "/elsewhere/sales.csv"})
    state, attempts = run_flow(built_copy, monkeypatch)
    assert state.is_failed()
    assert attempts["etl"] == 1  # a deterministic failure is never retried
    assert "drift_check" not in attempts
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        run_id = context_id_of(state)
        stages = {
            action.parameters["stage"]: action.status
            for action in store.latest(edge.source_id for edge in store.edges([run_id], "destination")).values()
            if isinstance(action, Action) and action.action_type == ActionType.STAGE
        }
        assert stages == {"etl": "Failed"} | {stage: "NotRun" for stage in STAGES[1:]}
        assert registry.versions(store) == []
