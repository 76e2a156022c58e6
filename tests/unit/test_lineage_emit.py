"""Live OpenLineage emission against real loopback receivers: a recording HTTP server, one that answers 500,
one that accepts and never answers, a closed port, and files. Configuration the standard OpenLineage ways."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde

from lineage.emit import HTTP_TIMEOUT, EmitReport, Emitter
from tests.conftest import Receiver

API_KEY = "ol-live-secret-4711"
STAGES = ("etl", "drift_check", "preprocess", "tune", "inference", "fairness")
T0 = dt.datetime(2024, 3, 4, 6, 0, tzinfo=dt.UTC)
PRODUCER = "https://github.com/retail-lineage/retail-lineage"


def _events() -> list[RunEvent]:
    """START then COMPLETE for each of the six stages: twelve events, fixed ids and times."""
    events = []
    for i, stage in enumerate(STAGES):
        for j, state in enumerate((RunState.START, RunState.COMPLETE)):
            events.append(
                RunEvent(
                    eventType=state,
                    eventTime=(T0 + dt.timedelta(minutes=10 * i + 5 * j)).isoformat(),
                    run=Run(runId=str(uuid.UUID(int=i + 1))),
                    job=Job(namespace="retail-lineage", name=f"lineage-pipeline.{stage}"),
                    producer=PRODUCER,
                )
            )
    return events


EVENTS = _events()
SERIALIZED = [json.loads(Serde.to_json(event)) for event in EVENTS]


@pytest.fixture(autouse=True)
def _no_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with no OpenLineage configuration anywhere: env, working directory or home."""
    for name in [n for n in os.environ if n.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(name)
    (tmp_path / "cwd").mkdir()
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@dataclass
class Hanging:
    url: str
    connections: list[socket.socket]


@pytest.fixture
def hanging() -> Iterator[Hanging]:
    """A receiver that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    connections: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connections.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield Hanging(f"http://127.0.0.1:{listener.getsockname()[1]}", connections)
    stop.set()
    thread.join()
    for connection in connections:
        connection.close()
    listener.close()


def _closed_port_url() -> str:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def _emitter(api_key: str | None = None, budget: float = 5.0) -> Emitter:
    emitter = Emitter.from_config(api_key=api_key, budget=budget)
    assert emitter is not None
    return emitter


def _send_all(api_key: str | None = None, budget: float = 5.0) -> tuple[Emitter, EmitReport]:
    with _emitter(api_key, budget) as emitter:
        for event in EVENTS:
            emitter.emit(event)
    return emitter, emitter.close()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every WARNING or worse, from any logger (urllib3's retry warnings would count too)."""
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def _write_yaml(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")


def test_events_arrive_in_order_as_serialized_with_the_key_from_the_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
    monkeypatch.setenv("OPENLINEAGE_API_KEY", API_KEY)
    emitter, report = _send_all()
    assert report == EmitReport(sent=12, failed=0, dropped=0, error=None)
    assert receiver.bodies() == SERIALIZED
    assert {(r.method, r.path) for r in receiver.requests} == {("POST", "/api/v1/lineage")}
    assert [r.headers["Authorization"] for r in receiver.requests] == [f"Bearer {API_KEY}"] * 12
    assert {r.headers["Content-Type"] for r in receiver.requests} == {"application/json"}
    assert emitter.describe() == f"{receiver.url}/api/v1/lineage"
    assert _warnings(caplog) == []
    assert API_KEY not in caplog.text


def test_the_callers_key_wins_over_the_environment_and_the_endpoint_is_configurable(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENLINEAGE_URL", receiver.url + "/")
    monkeypatch.setenv("OPENLINEAGE_ENDPOINT", "ingest/lineage")
    monkeypatch.setenv("OPENLINEAGE_API_KEY", "from-the-environment")
    _, report = _send_all(api_key=API_KEY)  # as the flow passes a Prefect Secret block's value
    assert report.sent == 12
    assert {r.path for r in receiver.requests} == {"/ingest/lineage"}
    assert {r.headers["Authorization"] for r in receiver.requests} == {f"Bearer {API_KEY}"}
    assert API_KEY not in caplog.text
    assert "from-the-environment" not in caplog.text


def test_no_key_sends_no_authorization_header(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
    _send_all()
    assert len(receiver.requests) == 12
    assert all("Authorization" not in r.headers for r in receiver.requests)


@pytest.mark.parametrize("place", ["working directory", "home", "OPENLINEAGE_CONFIG"])
def test_an_openlineage_yml_configures_http(
    place: str, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = {
        "working directory": tmp_path / "cwd" / "openlineage.yml",
        "home": tmp_path / "home" / ".openlineage" / "openlineage.yml",
        "OPENLINEAGE_CONFIG": tmp_path / "elsewhere" / "lineage-transport.yml",
    }
    auth = {"type": "api_key", "apiKey": "key-from-yml"}
    _write_yaml(paths[place], {"transport": {"type": "http", "url": receiver.url, "auth": auth}})
    if place == "OPENLINEAGE_CONFIG":
        monkeypatch.setenv("OPENLINEAGE_CONFIG", str(paths[place]))
    monkeypatch.setenv("OPENLINEAGE_API_KEY", "not-this-one")  # the file's own auth wins over the environment
    _, report = _send_all()
    assert report.sent == 12
    assert receiver.bodies() == SERIALIZED
    assert {r.headers["Authorization"] for r in receiver.requests} == {"Bearer key-from-yml"}


def test_an_openlineage_yml_configures_a_file_transport(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = tmp_path / "out" / "events.jsonl"
    events.parent.mkdir()
    config = tmp_path / "conf" / "openlineage.yml"
    _write_yaml(config, {"transport": {"type": "file", "log_file_path": str(events), "append": True}})
    monkeypatch.setenv("OPENLINEAGE_CONFIG", str(config))
    emitter, report = _send_all()
    assert report == EmitReport(sent=12, failed=0, dropped=0)
    assert [json.loads(line) for line in events.read_text(encoding="utf-8").splitlines()] == SERIALIZED
    assert emitter.describe() == f"file {events}"


def test_file_transport_without_append_writes_a_file_per_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = tmp_path / "out" / "ol"
    prefix.parent.mkdir()
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "file")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", str(prefix))
    emitter, report = _send_all()
    assert report.sent == 12
    assert emitter.describe() == f"files {prefix}-<time>.json"
    written = sorted(prefix.parent.glob("ol-*.json"))  # openlineage names them by the time of writing
    assert len(written) == 12
    assert sorted(json.loads(p.read_text(encoding="utf-8"))["eventTime"] for p in written) == sorted(
        e["eventTime"] for e in SERIALIZED
    )


def test_openlineage_transport_variables_configure_http_and_win_over_openlineage_url(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__TYPE", "http")
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__URL", receiver.url)
    monkeypatch.setenv("OPENLINEAGE__TRANSPORT__ENDPOINT", "api/v1/lineage-from-vars")
    monkeypatch.setenv("OPENLINEAGE_URL", _closed_port_url())  # as in openlineage-python: typed config first
    monkeypatch.setenv("OPENLINEAGE_API_KEY", API_KEY)  # an http transport without auth takes it
    _, report = _send_all()
    assert report.sent == 12
    assert {r.path for r in receiver.requests} == {"/api/v1/lineage-from-vars"}
    assert {r.headers["Authorization"] for r in receiver.requests} == {f"Bearer {API_KEY}"}


def test_no_configuration_turns_emission_off_silently(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert Emitter.from_config(api_key=API_KEY) is None
    ours = [r for r in caplog.records if r.name == "lineage.emit"]
    assert len(ours) <= 1
    assert all(r.levelno == logging.DEBUG for r in ours)
    assert _warnings(caplog) == []


@pytest.mark.parametrize("value", ["true", " TRUE "])
def test_openlineage_disabled_turns_emission_off(
    value: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
    monkeypatch.setenv("OPENLINEAGE_DISABLED", value)
    assert Emitter.from_config() is None
    _write_yaml(Path("openlineage.yml"), {"transport": {"type": "http", "url": receiver.url}})
    assert Emitter.from_config() is None
    assert _warnings(caplog) == []
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("transport: [unclosed\n", "openlineage.yml: the OpenLineage config is not valid YAML: "),
        ('transport:\n  type: http\n  auth: {apiKey: "' + API_KEY + "\n", "not valid YAML"),
        ("- a list\n", "openlineage.yml: the OpenLineage config must be a mapping, got list"),
        ("transport: http\n", "`transport` must be a mapping, got str"),
        ("transport:\n  type: carrier-pigeon\n", "type 'carrier-pigeon' (known: amazon_datazone_api, "),
        ("transport:\n  type: http\n", "`url` key not passed"),
        ("transport:\n  type: http\n  url: not a url\n", "Need valid url"),
        ("transport:\n  type: file\n", "`log_file_path` key not passed"),
    ],
)
def test_a_bad_configuration_is_one_warning_line_and_no_emitter(
    text: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    Path("openlineage.yml").write_text(text, encoding="utf-8")
    assert Emitter.from_config(api_key=API_KEY) is None
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    assert message in warnings[0]
    assert "lineage export openlineage" in warnings[0]
    assert "\n" not in warnings[0]
    assert API_KEY not in caplog.text


def test_a_missing_openlineage_config_file_is_named_then_the_usual_places_count(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no-such.yml"
    monkeypatch.setenv("OPENLINEAGE_CONFIG", str(missing))
    _write_yaml(Path("openlineage.yml"), {"transport": {"type": "http", "url": receiver.url}})
    _, report = _send_all()
    assert report.sent == 12
    assert _warnings(caplog) == [f"OPENLINEAGE_CONFIG={missing}: no readable file there; looking in the usual places"]


def _budgeted_run(caplog: pytest.LogCaptureFixture) -> tuple[Emitter, EmitReport]:
    """from_config, 12 emits and close with a 0.5 s budget. What that costs the caller in seconds is
    bench/bench_interop.py's to measure (receiver down, and one that never answers); here, what was tried."""
    caplog.set_level(logging.DEBUG)
    emitter = _emitter(api_key=API_KEY, budget=0.5)
    for event in EVENTS:
        emitter.emit(event)
    return emitter, emitter.close()


def test_a_receiver_that_is_down_costs_one_attempt_and_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = _closed_port_url()
    monkeypatch.setenv("OPENLINEAGE_URL", url)
    _, report = _budgeted_run(caplog)
    assert (report.sent, report.failed, report.dropped, report.undelivered) == (0, 1, 11, 12)
    assert report.error is not None
    assert "Connection refused" in report.error
    [warning] = _warnings(caplog)
    assert warning.startswith(f"OpenLineage events to {url}/api/v1/lineage stopped after a failure: ConnectionError")
    assert warning.endswith("the ledger keeps every event: `lineage export openlineage` sends them again")
    totals = [r.getMessage() for r in caplog.records if r.name == "lineage.emit" and r.levelno == logging.INFO]
    assert totals == [
        f"12 of 12 OpenLineage events not delivered to {url}/api/v1/lineage after a failure; "
        "the ledger keeps every event: `lineage export openlineage` sends them again"
    ]
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(report)


def test_a_receiver_that_answers_500_costs_one_request_and_one_line(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 500
    monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
    _, report = _budgeted_run(caplog)
    assert len(receiver.requests) == 1  # no retries, then the breaker: the other 11 are not attempted
    assert (report.sent, report.failed, report.dropped) == (0, 1, 11)
    [warning] = _warnings(caplog)
    assert "HTTPError: 500 Server Error" in warning
    assert API_KEY not in caplog.text + repr(report)


def test_a_receiver_that_hangs_is_given_up_at_the_close_budget_in_one_line(
    hanging: Hanging, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", hanging.url)
    emitter, report = _budgeted_run(caplog)
    assert report == EmitReport(sent=0, failed=0, dropped=12, error="no answer within the 0.5 s close budget")
    assert _warnings(caplog) == [
        f"12 of 12 OpenLineage events not delivered to {hanging.url}/api/v1/lineage "
        "(no answer within the 0.5 s close budget); "
        "the ledger keeps every event: `lineage export openlineage` sends them again"
    ]
    # The sending thread times out later, in the background: no second line, no second connection.
    emitter._thread.join(HTTP_TIMEOUT + 3)
    assert not emitter._thread.is_alive()
    assert len(_warnings(caplog)) == 1
    assert len(hanging.connections) == 1
    assert API_KEY not in caplog.text


def test_an_unwritable_file_is_one_line_and_no_exception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a-file").write_text("not a directory", encoding="utf-8")
    target = tmp_path / "a-file" / "events.jsonl"  # unwritable even for root: its parent is a file
    _write_yaml(Path("openlineage.yml"), {"transport": {"type": "file", "log_file_path": str(target), "append": True}})
    _, report = _budgeted_run(caplog)
    assert (report.sent, report.failed, report.dropped) == (0, 1, 11)
    [warning] = _warnings(caplog)
    assert f"OpenLineage events to file {target} stopped after a failure: RuntimeError" in warning
    assert "Not a directory" in warning


def test_credentials_in_the_url_stay_out_of_lines_and_reports(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 401
    monkeypatch.setenv("OPENLINEAGE_URL", receiver.url.replace("http://", "http://admin:hunter2@"))
    emitter, report = _budgeted_run(caplog)
    assert emitter.describe() == f"{receiver.url.replace('http://', 'http://admin:***@')}/api/v1/lineage"
    assert "401" in (report.error or "")
    assert "hunter2" not in caplog.text + repr(report)
    assert API_KEY not in caplog.text + repr(report)
    assert len(_warnings(caplog)) == 1


def test_close_reports_once_and_later_events_are_ignored(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLINEAGE_URL", receiver.url)
    emitter = _emitter()
    emitter.emit(EVENTS[0])
    first = emitter.close()
    emitter.emit(EVENTS[1])
    assert emitter.close() is first
    assert first == EmitReport(sent=1, failed=0, dropped=0)
    assert len(receiver.requests) == 1
    with pytest.raises(ValueError, match="budget must be >= 0 seconds, got -1"):
        Emitter.from_config(budget=-1)
