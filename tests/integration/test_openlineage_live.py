"""Live OpenLineage events from a real flow run: a loopback receiver gets each stage's START and COMPLETE in
order, as the stages run, with the content `lineage export openlineage` gives later from the ledger; a
receiver that is down costs the run less than a second in all and one line in its log."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.serde import Serde

from lineage.openlineage import run_events, validate
from lineage.store import LedgerStore
from tests.conftest import STAGES, Receiver, free_port, run_flow

pytestmark = pytest.mark.integration

API_KEY = "ol-flow-key-0815"


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENLINEAGE_CONFIG", "OPENLINEAGE_DISABLED", "OPENLINEAGE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENLINEAGE_API_KEY", API_KEY)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def _flow_log(flow_run_id: Any) -> list[tuple[int, str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # the run's last lines are still on their way to the API
    with get_client(sync_client=True) as api:
        logs = api.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [(log.level, log.message) for log in logs]


def _exported(clone: Path, flow_run_id: str) -> list[dict[str, Any]]:
    with LedgerStore(f"sqlite:///{clone / 'lineage.db'}") as store:
        return [json.loads(Serde.to_json(event)) for event in run_events(store, flow_run_id)]


def test_each_stage_reaches_the_receiver_as_it_runs_with_the_content_the_export_gives_later(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver, configured: None
) -> None:
    from prefect.blocks.system import Secret

    from flows.pipeline import lineage_pipeline

    monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
    monkeypatch.delenv("OPENLINEAGE_API_KEY")  # the key comes from a Secret block, as a deployment keeps it
    Secret.model_validate({"value": API_KEY}).save("openlineage-key", overwrite=True)
    monkeypatch.chdir(built_copy)
    state = lineage_pipeline(openlineage_api_key_block="openlineage-key", return_state=True)
    assert state.is_completed(), state.message
    flow_run_id = str(state.state_details.flow_run_id)

    got = receiver.bodies()
    assert [(e["job"]["name"], e["eventType"]) for e in got] == [
        (f"lineage-pipeline.{stage}", kind) for stage in STAGES for kind in ("START", "COMPLETE")
    ]
    assert set(receiver.authorizations()) == {f"Bearer {API_KEY}"}
    assert {r.path for r in receiver.requests} == {"/api/v1/lineage"}
    for event in got:
        validate(event)
        assert event["run"]["facets"]["parent"]["run"]["runId"] == flow_run_id
    # Only the export knows the gates' verdicts (decided after the stage): the rest is the same event.
    exported = _exported(built_copy, flow_run_id)
    for event in exported:
        event["run"]["facets"].pop("gateVerdicts", None)
    assert got == exported
    assert not any(API_KEY in message for _, message in _flow_log(state.state_details.flow_run_id))


def test_a_receiver_that_is_down_costs_the_run_under_a_second_and_one_line(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch, configured: None
) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    state, _ = run_flow(built_copy, monkeypatch)
    assert state.is_completed(), state.message

    log = [(level, text) for level, text in _flow_log(state.state_details.flow_run_id) if "OpenLineage" in text]
    warnings = [message for level, message in log if level >= 30]
    assert len(warnings) == 1, log
    assert "lineage export openlineage" in warnings[0]
    summary = next(message for _, message in log if "the run spent" in message)
    found = re.search(r"(\d+) of (\d+) events delivered .* the run spent ([\d.]+) s", summary)
    assert found is not None, summary
    delivered, emitted, spent = int(found[1]), int(found[2]), float(found[3])
    assert (delivered, emitted) == (0, 2 * len(STAGES))
    assert spent < 1.0, summary
    # the ledger still holds every event, for a later `lineage export openlineage`
    assert len(_exported(built_copy, str(state.state_details.flow_run_id))) == 2 * len(STAGES)
