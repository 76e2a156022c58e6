"""The flow's gates and retry rules: a drift or fairness verdict ends the run Failed; bad input is never retried."""

from __future__ import annotations

from pathlib import Path

import pytest

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
        drift_gate = next(a for a in gates if getattr(a, "action_type", None) == ActionType.DRIFT_GATE)
        assert drift_gate.parameters["verdict"] == "failed"  # type: ignore[union-attr]
        assert store.verify().ok


def test_a_failed_fairness_verdict_ends_the_run_failed(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_params(built_copy, fairness={"mod_threshold": 0.0})
    state, attempts = run_flow(built_copy, monkeypatch)
    assert state.is_failed()
    assert state.message.startswith("fairness check failed: |mean outcome difference| ")
    assert state.message.endswith("the model is not promoted")
    assert attempts["fairness"] == 1
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        (version,) = registry.versions(store)
        assert version.properties["model_md5"] == locked_outs(built_copy)["models/model.pt"]
        assert version.properties["status"] == "rejected"
        assert version.properties["fairness_gate"] == "failed"
        assert registry.production(store) is None  # a failed gate is never promoted
        assert [d.parameters["decision"] for d in registry.report(store, version.name).decisions] == ["rejected"]


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
