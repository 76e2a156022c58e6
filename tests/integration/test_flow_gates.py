"""The flow's gates and retry rules: a drift or fairness verdict ends the run Failed; bad input is never retried."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.testing.utilities import prefect_test_harness

from flows.pipeline import lineage_pipeline
from tests.conftest import set_params

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_test_harness():
        yield


def run_flow(clone: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, dict[str, int]]:
    """Run the flow in `clone`; its final state and each task run's attempt count."""
    monkeypatch.chdir(clone)
    state = lineage_pipeline(return_state=True)
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    with get_client(sync_client=True) as api:
        run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        attempts = {task_run.name: task_run.run_count for task_run in api.read_task_runs(flow_run_filter=run_filter)}
    return state, attempts


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


def test_a_failed_fairness_verdict_ends_the_run_failed(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_params(built_copy, fairness={"mod_threshold": 0.0})
    state, attempts = run_flow(built_copy, monkeypatch)
    assert state.is_failed()
    assert state.message.startswith("fairness check failed: |mean outcome difference| ")
    assert state.message.endswith("the model is not promoted")
    assert attempts["fairness"] == 1


def test_bad_input_fails_at_once_without_retries(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_params(built_copy, data={"source": "/elsewhere/sales.csv"})
    state, attempts = run_flow(built_copy, monkeypatch)
    assert state.is_failed()
    assert attempts["etl"] == 1  # a deterministic failure is never retried
    assert "drift_check" not in attempts
