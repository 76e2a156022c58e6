"""OpenLineage export: RunEvents per stage from a ledger of three recorded runs, schema checks, JSON lines,
and the HTTP transport against a real local server."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from openlineage.client.event_v2 import RunEvent, RunState
from openlineage.client.serde import Serde

from lineage.dvc_workspace import host, remote_object, remote_of_run_record
from lineage.entities import Action, ActionStatus, Context, ContextType, context_id, stage_run_id
from lineage.openlineage import (
    FACETS_DIR,
    PRODUCER,
    SPEC_DIR,
    DvcDatasetFacet,
    DvcStageRunFacet,
    GateVerdictsRunFacet,
    GitRunFacet,
    ImageRunFacet,
    OpenLineageError,
    SendError,
    run_events,
    send,
    stage_event,
    to_json_lines,
    validate,
)
from lineage.recorder import RunInfo, StageRun, record_run
from lineage.store import Kind, LedgerStore
from tasks.etl import COLUMN_LINEAGE
from tests.conftest import Receiver
from tests.lineage_workspace import ALLOWED, STAGES, write_workspace

T0 = dt.datetime(2024, 3, 4, 6, 0, tzinfo=dt.UTC)
COMPLETED = str(uuid.UUID(int=1))
GATE_FAILED = str(uuid.UUID(int=2))
PARTIAL = "local-run-2024-03-18"  # not a UUID: the parent run id is a uuid5 of it
IMAGE = "registry.example.com/retail-lineage:1.4"
API_KEY = "ol-secret-key-123"
REMOTE = "s3://lineage-bucket/dvc"  # where COMPLETED pushed
REPOSITORY = "https://github.com/retail-lineage/retail-lineage"
OFFICIAL_FACETS = [  # every standard facet the events carry
    "ParentRunFacet",
    "JobTypeJobFacet",
    "DatasetVersionDatasetFacet",
    "SchemaDatasetFacet",
    "ColumnLineageDatasetFacet",
    "ErrorMessageRunFacet",
]


@dataclass
class Ledger:
    store: LedgerStore
    roots: dict[str, Path]
    events: list[RunEvent]

    def lock(self, flow: str, stage: str) -> dict[str, Any]:
        lock = yaml.safe_load((self.roots[flow] / "dvc.lock").read_text(encoding="utf-8"))
        return dict(lock["stages"][stage])


def _record(store: LedgerStore, root: Path, flow: str, week: int, statuses: dict[str, ActionStatus], **kw: Any) -> None:
    start = T0 + dt.timedelta(days=7 * week)
    stages = [
        StageRun(stage, status, start + dt.timedelta(minutes=10 * i), start + dt.timedelta(minutes=10 * i + 5))
        if status != ActionStatus.NOT_RUN
        else StageRun(stage, status)
        for i, (stage, status) in enumerate(statuses.items())
    ]
    info = RunInfo(flow, stages, start, start + dt.timedelta(hours=1), pushed_to=kw.pop("pushed_to", None), **kw)
    record_run(store, info, root)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    monkeypatch.setenv("IMAGE_URI", IMAGE)
    monkeypatch.setenv("IMAGE_REVISION", "rev-abc123")
    monkeypatch.setenv("GIT_COMMIT", "c0ffee0123456789")
    monkeypatch.setenv("GIT_REPOSITORY", "https://github.com/retail-lineage/retail-lineage")
    monkeypatch.delenv("OPENLINEAGE_NAMESPACE", raising=False)
    monkeypatch.delenv("OPENLINEAGE_API_KEY", raising=False)
    roots = {flow: tmp_path / f"w{i}" for i, flow in enumerate((COMPLETED, GATE_FAILED, PARTIAL))}
    for root in roots.values():
        root.mkdir()
    with LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}") as store:
        completed = dict.fromkeys(STAGES, ActionStatus.COMPLETED)
        write_workspace(roots[COMPLETED], week=0)
        _write_parquet(roots[COMPLETED])
        pushed = f"{REMOTE}/runs/{COMPLETED}"
        _record(store, roots[COMPLETED], COMPLETED, 0, completed, pushed_to=pushed, column_lineage=COLUMN_LINEAGE)
        # the fairness gate refuses the model: the stage completed, the flow failed
        write_workspace(roots[GATE_FAILED], week=1, fair=False)
        failure = "fairness check failed: is_registered: log-residual gap 0.61 > 0.25"
        _record(store, roots[GATE_FAILED], GATE_FAILED, 1, completed, failure=failure)
        # etl unchanged, drift allowed, preprocess failed, the rest never started
        write_workspace(roots[PARTIAL], week=2, drift=True, allow_drift=True)
        partial = dict.fromkeys(STAGES, ActionStatus.NOT_RUN) | {
            "etl": ActionStatus.SKIPPED,
            "drift_check": ActionStatus.COMPLETED,
            "preprocess": ActionStatus.FAILED,
        }
        _record(store, roots[PARTIAL], PARTIAL, 2, partial, failure="preprocess failed", overrides=ALLOWED)
        yield Ledger(store, roots, run_events(store))


def _write_parquet(root: Path) -> None:
    """etl's two Parquet outputs with their real column names, so the recorder keeps their schemas."""
    (root / "data").mkdir(exist_ok=True)
    raw = pd.DataFrame({"InvoiceNo": ["1"], "StockCode": ["85123A"], "Quantity": [3], "UnitPrice": [2.5]})
    raw.to_parquet(root / "data/transactions.parquet", index=False)
    processed = pd.DataFrame({column: [1.0] for column in COLUMN_LINEAGE["data/processed.parquet"]})
    processed["invoice_date"] = pd.to_datetime(["2024-03-04"])
    processed.to_parquet(root / "data/processed.parquet", index=False)


def _flow_run(flow: str) -> str:
    return flow if flow != PARTIAL else str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PRODUCER}/{flow}"))


def _facet(event: RunEvent, name: str) -> Any:
    return (event.run.facets or {})[name]


def _of(events: list[RunEvent], flow: str, stage: str) -> list[RunEvent]:
    parent, job = _flow_run(flow), f"lineage-pipeline.{stage}"
    return [e for e in events if _facet(e, "parent").run.runId == parent and e.job.name == job]


def _types(events: list[RunEvent]) -> list[str]:
    return [e.eventType.value for e in events if e.eventType]


def _dicts(events: list[RunEvent]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in to_json_lines(events).splitlines()]


def test_start_and_complete_or_fail_per_stage_none_when_not_run(ledger: Ledger) -> None:
    for flow in (COMPLETED, GATE_FAILED):
        for stage in STAGES:
            assert _types(_of(ledger.events, flow, stage)) == ["START", "COMPLETE"], (flow, stage)
    assert _types(_of(ledger.events, PARTIAL, "etl")) == ["START", "COMPLETE"]  # skipped: unchanged, not failed
    assert _types(_of(ledger.events, PARTIAL, "drift_check")) == ["START", "COMPLETE"]
    assert _types(_of(ledger.events, PARTIAL, "preprocess")) == ["START", "FAIL"]
    for stage in ("tune", "inference", "fairness"):
        assert _of(ledger.events, PARTIAL, stage) == []
    assert len(ledger.events) == 2 * len(STAGES) * 2 + 3 * 2


def test_every_event_validates(ledger: Ledger) -> None:
    events = _dicts(ledger.events)
    assert len(events) == 2 * len(STAGES) * 2 + 3 * 2  # every stage's START and end, of both runs: none skipped
    for event in events:
        validate(event)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("run", "runId"), "not-a-uuid", "run/runId"),
        (("eventTime",), "yesterday", "eventTime"),
        (("run", "facets", "image", "_producer"), None, "_producer"),
        (("inputs", 0, "facets", "dvc", "_schemaURL"), None, "_schemaURL"),
        (("inputs", 0, "facets", "version", "datasetVersion"), None, "inputs/0/facets/version: 'datasetVersion'"),
        (("run", "facets", "dvcStage", "_schemaURL"), "https://example.com/x.json", "run/facets/dvcStage/_schemaURL"),
        (("run", "facets", "dvcStage", "_schemaURL"), ImageRunFacet._get_schema(), "not the schema of this facet"),
        (("run", "facets", "custom"), {"_producer": PRODUCER, "_schemaURL": PRODUCER}, "custom/_schemaURL: no "),
        (("run", "facets", "dvcStage", "status"), "Done", "run/facets/dvcStage/status"),
        (("run", "facets", "parent", "run", "runId"), "nope", "run/facets/parent/run/runId"),
        (("job", "name"), None, "name"),
        (("eventType",), "FINISHED", "eventType"),
    ],
)
def test_validate_rejects_broken_events(ledger: Ledger, path: tuple[Any, ...], value: Any, message: str) -> None:
    event = _dicts(_of(ledger.events, COMPLETED, "tune"))[0]
    target = event
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(OpenLineageError, match=message):
        validate(event)


def _path(dataset: Any) -> str:
    """The dataset's path in the workspace (our `dvc` facet)."""
    return str((dataset.facets or {})["dvc"].path)


def _pushed_name(md5: str) -> tuple[str, str]:
    return "s3://lineage-bucket", f"dvc/files/md5/{md5[:2]}/{md5[2:]}"


@pytest.mark.parametrize("stage", STAGES)
def test_datasets_are_named_where_they_are_stored_with_dvc_and_version_facets(ledger: Ledger, stage: str) -> None:
    """COMPLETED pushed to S3: every stage output is named by its remote object (DVC 3 layout); a dependency
    DVC does not store (data/raw) by its file on this host. START has the inputs only."""
    lock = ledger.lock(COMPLETED, stage)
    deps = {d["path"]: d for d in lock["deps"] if not d["path"].endswith(".py")}
    outs = {o["path"]: o for o in lock["outs"]}
    made = {o["path"] for entry in yaml.safe_load((ledger.roots[COMPLETED] / "dvc.lock").read_text())["stages"].values()
            for o in entry["outs"]}  # fmt: skip
    start, end = _of(ledger.events, COMPLETED, stage)
    assert start.outputs == []
    assert [_path(d) for d in start.inputs or []] == sorted(deps)
    assert [_path(d) for d in end.inputs or []] == sorted(deps)
    assert [_path(d) for d in end.outputs or []] == sorted(outs)
    for dataset in [*(end.inputs or []), *(end.outputs or [])]:
        facets: Any = dataset.facets or {}
        entry = deps.get(facets["dvc"].path) or outs[facets["dvc"].path]
        assert facets["dvc"].md5 == entry["md5"] == facets["version"].datasetVersion
        if facets["dvc"].path in made:
            assert (dataset.namespace, dataset.name) == _pushed_name(entry["md5"])
        else:
            assert dataset.namespace == f"file://{host()}"
            assert dataset.name == f"{ledger.roots[COMPLETED].resolve()}/{facets['dvc'].path}"
    stage_facet = _facet(end, "dvcStage")
    code = {d["path"]: d["md5"] for d in lock["deps"] if d["path"].endswith(".py")}
    assert stage_facet.code == code
    assert (stage_facet.command, stage_facet.status) == (lock["cmd"], "Completed")
    assert _facet(start, "dvcStage").status == "InProgress"


def test_a_run_that_pushed_nothing_names_its_files_on_its_host(ledger: Ledger) -> None:
    root = ledger.roots[GATE_FAILED].resolve()
    for event in [e for e in ledger.events if _facet(e, "parent").run.runId == GATE_FAILED]:
        for dataset in [*(event.inputs or []), *(event.outputs or [])]:
            path = _path(dataset)
            assert (dataset.namespace, dataset.name) == (f"file://{host()}", f"{root}/{path}")


def test_a_directory_md5_keeps_its_dir_suffix_in_the_remote_name(ledger: Ledger) -> None:
    lock = yaml.safe_load((ledger.roots[COMPLETED] / "dvc.lock").read_text())
    lock["stages"]["etl"]["outs"].append({"path": "data/parts", "hash": "md5", "md5": "ab" * 16 + ".dir", "nfiles": 2})
    (ledger.roots[COMPLETED] / "dvc.lock").write_text(yaml.safe_dump(lock))
    event = stage_event(RunState.COMPLETE, "etl", COMPLETED, T0, ledger.roots[COMPLETED], REMOTE)
    parts = [d for d in event.outputs or [] if _path(d) == "data/parts"]
    assert [(d.namespace, d.name) for d in parts] == [("s3://lineage-bucket", "dvc/files/md5/ab/" + "ab" * 15 + ".dir")]
    nfiles: Any = (parts[0].facets or {})["dvc"]
    assert nfiles.nfiles == 2


def test_schema_facet_is_the_parquet_files_schema(ledger: Ledger) -> None:
    _, end = _of(ledger.events, COMPLETED, "etl")
    for dataset in end.outputs or []:
        path = _path(dataset)
        if not path.endswith(".parquet"):
            assert "schema" not in (dataset.facets or {})
            continue
        schema = pq.read_schema(ledger.roots[COMPLETED] / path)
        facet: Any = (dataset.facets or {})["schema"]
        assert [(f.name, f.type) for f in facet.fields] == [(f.name, str(f.type)) for f in schema]


def test_column_lineage_of_etl_maps_features_to_raw_fields(ledger: Ledger) -> None:
    _, end = _of(ledger.events, COMPLETED, "etl")
    by_path = {_path(d): d for d in end.outputs or []}
    raw, processed = by_path["data/transactions.parquet"], by_path["data/processed.parquet"]
    facet: Any = (processed.facets or {})["columnLineage"]
    assert list(facet.fields) == sorted(COLUMN_LINEAGE["data/processed.parquet"])
    price = facet.fields["log_unit_price"].inputFields
    assert [(f.namespace, f.name, f.field) for f in price] == [(raw.namespace, raw.name, "UnitPrice")]
    assert (price[0].transformations[0].type, price[0].transformations[0].subtype) == ("DIRECT", "TRANSFORMATION")
    assert "columnLineage" not in (raw.facets or {})
    for event in _dicts(_of(ledger.events, COMPLETED, "etl")):
        validate(event)


def test_fail_carries_the_error_message(ledger: Ledger) -> None:
    _, fail = _dicts(_of(ledger.events, PARTIAL, "preprocess"))
    assert fail["run"]["facets"]["errorMessage"]["message"] == "preprocess failed"
    assert fail["run"]["facets"]["dvcStage"]["status"] == "Failed"


@pytest.mark.parametrize("stage", STAGES)
def test_live_stage_events_equal_the_exported_ones(ledger: Ledger, stage: str) -> None:
    """stage_event, from the same workspace, gives the export's START and COMPLETE (gate verdicts aside: the
    flow decides them after the stage)."""
    start, end = _dicts(_of(ledger.events, COMPLETED, stage))
    assert start["run"]["runId"] == stage_run_id(COMPLETED, stage)
    root, when = ledger.roots[COMPLETED], dt.datetime.fromisoformat(start["eventTime"])
    live_start = stage_event(RunState.START, stage, COMPLETED, when, root, REMOTE, column_lineage=COLUMN_LINEAGE)
    assert _dicts([live_start]) == [start]
    when = dt.datetime.fromisoformat(end["eventTime"])
    live_end = stage_event(RunState.COMPLETE, stage, COMPLETED, when, root, REMOTE, column_lineage=COLUMN_LINEAGE)
    end["run"]["facets"].pop("gateVerdicts", None)
    assert _dicts([live_end]) == [end]


def test_live_fail_and_unpushed_events_validate(ledger: Ledger) -> None:
    root = ledger.roots[PARTIAL]
    fail = stage_event(RunState.FAIL, "preprocess", PARTIAL, T0, root, None, failure="preprocess failed")
    skipped = stage_event(RunState.COMPLETE, "etl", PARTIAL, T0, root, None, skipped=True)
    for event in _dicts([fail, skipped]):
        validate(event)
    assert _dicts([fail])[0]["run"]["facets"]["errorMessage"]["message"] == "preprocess failed"
    assert _facet(skipped, "dvcStage").status == "Skipped"
    assert {d.namespace for d in skipped.outputs or []} == {f"file://{host()}"}


def test_skipped_stage_keeps_its_outputs_and_failed_stage_has_none(ledger: Ledger) -> None:
    outs = sorted(o["path"] for o in ledger.lock(PARTIAL, "etl")["outs"])
    start, end = _of(ledger.events, PARTIAL, "etl")
    assert [_path(d) for d in end.outputs or []] == outs
    assert (_facet(start, "dvcStage").status, _facet(end, "dvcStage").status) == ("InProgress", "Skipped")
    for event in _of(ledger.events, PARTIAL, "preprocess"):
        assert (event.inputs, event.outputs) == ([], [])


def test_image_git_and_parent_facets(ledger: Ledger) -> None:
    stage_ids = {a.id for a in ledger.store.find(Kind.ACTION, entity_type="Stage") if isinstance(a, Action)}
    for event in _dicts(ledger.events):
        facets = event["run"]["facets"]
        assert (facets["image"]["uri"], facets["image"]["revision"]) == (IMAGE, "rev-abc123")
        assert facets["git"]["commit"] == "c0ffee0123456789"
        assert facets["parent"]["job"] == {"namespace": "retail-lineage", "name": "lineage-pipeline", "facets": {}}
        assert facets["parent"]["run"]["runId"] in {_flow_run(f) for f in (COMPLETED, GATE_FAILED, PARTIAL)}
        assert event["run"]["runId"] in stage_ids  # the action ids are uuid4s
        assert event["job"]["namespace"] == "retail-lineage"
        for facet in [*facets.values(), *event["job"]["facets"].values()]:
            assert facet["_producer"] == PRODUCER
            assert facet["_schemaURL"].startswith("https://")


def test_gate_verdicts_on_the_terminal_event_of_the_judged_stage(ledger: Ledger) -> None:
    def verdicts(flow: str, stage: str) -> list[Any]:
        events = _dicts(_of(ledger.events, flow, stage))
        return [e["run"]["facets"].get("gateVerdicts", {}).get("gates") for e in events]

    passed_drift, passed_fair = verdicts(COMPLETED, "drift_check"), verdicts(COMPLETED, "fairness")
    assert passed_drift[0] is None
    assert passed_drift[1]["DriftGate"]["verdict"] == "passed"
    assert passed_fair == [
        None,
        {
            "FairnessGate": {
                "verdict": "passed",
                "reason": "is_registered: log-residual gap 0.04 <= 0.25",
                "attributes": {"is_registered": True},
            }
        },
    ]
    failed = verdicts(GATE_FAILED, "fairness")[1]["FairnessGate"]
    assert (failed["verdict"], failed["reason"]) == ("failed", "is_registered: log-residual gap 0.61 > 0.25")
    assert failed["attributes"] == {"is_registered": False}
    overridden = verdicts(PARTIAL, "drift_check")[1]["DriftGate"]
    assert (overridden["verdict"], overridden["allowed_by"]) == ("overridden", "Ana Ruiz")
    assert overridden["drifted_columns"] == ["unit_price"]
    accuracy = verdicts(COMPLETED, "inference")[1]["AccuracyGate"]
    assert (accuracy["verdict"], accuracy["judged"], accuracy["max_ratio"]) == ("passed", 1.03, 1.1)
    for stage in ("etl", "preprocess", "tune"):
        assert verdicts(COMPLETED, stage) == [None, None]


def test_events_are_sorted_and_deterministic(ledger: Ledger) -> None:
    keys = [
        (dt.datetime.fromisoformat(e.eventTime), e.eventType != "START" and e.eventType is not None, e.job.name)
        for e in ledger.events
    ]
    assert keys == sorted(keys)
    assert to_json_lines(run_events(ledger.store)) == to_json_lines(ledger.events)


def test_one_flow_run_and_unknown_id(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLINEAGE_NAMESPACE", "prod")
    only = run_events(ledger.store, PARTIAL)
    assert len(only) == 6
    assert {e.job.namespace for e in only} == {"prod"}
    assert {_facet(e, "parent").run.runId for e in only} == {_flow_run(PARTIAL)}
    with pytest.raises(OpenLineageError, match="no-such-run") as caught:
        run_events(ledger.store, "no-such-run")
    assert "\n" not in str(caught.value)


def test_json_lines_parse_back_line_by_line(ledger: Ledger) -> None:
    text = to_json_lines(ledger.events)
    assert text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == len(ledger.events)
    assert [json.loads(line) for line in lines] == [Serde.to_dict(e) for e in ledger.events]


@pytest.fixture
def marquez(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Receiver:
    """The shared loopback receiver, as a Marquez stand-in, with no API key in the environment."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv("OPENLINEAGE_API_KEY", raising=False)
    return receiver


def test_send_posts_every_event_with_the_bearer_key(
    ledger: Ledger, marquez: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert send(ledger.events, marquez.url, api_key=API_KEY) == len(ledger.events)
    assert marquez.bodies() == _dicts(ledger.events)
    assert marquez.authorizations() == [f"Bearer {API_KEY}"] * len(ledger.events)
    assert {r.path for r in marquez.requests} == {"/api/v1/lineage"}
    assert API_KEY not in caplog.text


def test_send_takes_the_key_from_the_environment_or_sends_none(
    ledger: Ledger, marquez: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = run_events(ledger.store, PARTIAL)
    send(events, marquez.url)
    monkeypatch.setenv("OPENLINEAGE_API_KEY", "from-env")
    send(events, marquez.url)
    assert marquez.authorizations() == [None] * len(events) + ["Bearer from-env"] * len(events)


def test_send_raises_when_the_server_refuses(
    ledger: Ledger, marquez: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    marquez.status = 500
    with pytest.raises(SendError, match="500") as caught:
        send(ledger.events, marquez.url, api_key=API_KEY, retries=0)
    assert str(caught.value).startswith(f"sending event 1 to {marquez.url} failed")
    assert len(marquez.requests) == 1  # stopped at the first refusal
    assert API_KEY not in str(caught.value) + caplog.text


def test_send_raises_when_nothing_listens(ledger: Ledger) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SendError, match=rf"sending event 1 to http://127\.0\.0\.1:{port} failed"):
        send(ledger.events[:1], f"http://127.0.0.1:{port}", retries=0, timeout=2)


def test_send_keeps_credentials_out_of_errors(ledger: Ledger, marquez: Receiver) -> None:
    marquez.status = 401
    url = marquez.url.replace("http://", "http://admin:hunter2@")
    with pytest.raises(SendError, match="401") as caught:
        send(ledger.events, url, api_key=API_KEY, retries=0)
    assert "hunter2" not in str(caught.value)
    assert API_KEY not in str(caught.value)
    with pytest.raises(SendError, match="invalid OpenLineage URL"):
        send(ledger.events, "not a url")


def test_validate_rejects_a_schema_field_without_a_name(ledger: Ledger) -> None:
    _, end = _dicts(_of(ledger.events, COMPLETED, "etl"))
    index = next(i for i, d in enumerate(end["outputs"]) if "schema" in d["facets"])
    del end["outputs"][index]["facets"]["schema"]["fields"][1]["name"]
    where = f"outputs/{index}/facets/schema/fields/1"
    with pytest.raises(OpenLineageError, match=rf"^invalid OpenLineage RunEvent at {where}: ") as caught:
        validate(end)
    assert "'name' is a required property" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_record_without_workspace_and_host_falls_back_to_the_repository(ledger: Ledger) -> None:
    """Runs recorded before the PipelineRun kept its workspace and host: what the run did not push is named
    by the git repository and its path in it, what it pushed still by the remote object (`file` where a
    local remote's host is unknown)."""
    for flow, record in ((GATE_FAILED, ""), (COMPLETED, f"{REMOTE}/runs/{COMPLETED}")):
        (run,) = ledger.store.latest([context_id(ContextType.PIPELINE_RUN, flow)]).values()
        assert isinstance(run, Context)
        old = {k: v for k, v in run.properties.items() if k not in ("workspace", "host")} | {"run_record": record}
        ledger.store.append([run.model_copy(update={"properties": old})])
    for event in run_events(ledger.store, GATE_FAILED):
        for dataset in [*(event.inputs or []), *(event.outputs or [])]:
            assert (dataset.namespace, dataset.name) == (
                "https://github.com/retail-lineage/retail-lineage",
                _path(dataset),
            )
    _, end = _of(run_events(ledger.store, COMPLETED), COMPLETED, "etl")
    names = {_path(d): (d.namespace, d.name) for d in [*(end.inputs or []), *(end.outputs or [])]}
    md5 = ledger.lock(COMPLETED, "etl")["outs"][0]["md5"]
    assert names[ledger.lock(COMPLETED, "etl")["outs"][0]["path"]] == _pushed_name(md5)
    assert names["data/raw"] == (REPOSITORY, "data/raw")


def test_remote_object_names_by_remote_kind() -> None:
    md5 = "0123456789abcdef0123456789abcdef"
    assert remote_object("s3://bucket", md5, "h") == ("s3://bucket", "files/md5/01/23456789abcdef0123456789abcdef")
    assert remote_object("s3://bucket/a/b/", md5, "h")[1] == "a/b/files/md5/01/23456789abcdef0123456789abcdef"
    assert remote_object("/srv/dvc", md5, "box") == (
        "file://box",
        "/srv/dvc/files/md5/01/23456789abcdef0123456789abcdef",
    )
    assert remote_object("file:///srv/dvc", md5, None) == (
        "file",
        "/srv/dvc/files/md5/01/23456789abcdef0123456789abcdef",
    )
    assert remote_of_run_record(f"s3://b/p/runs/{COMPLETED}", COMPLETED) == "s3://b/p"
    assert remote_of_run_record("", COMPLETED) is None


@pytest.mark.parametrize("facet", [DvcDatasetFacet, ImageRunFacet, GitRunFacet, DvcStageRunFacet, GateVerdictsRunFacet])
def test_our_facets_schemas_are_committed_where_their_schema_urls_point(facet: Any) -> None:
    document, _, pointer = facet._get_schema().partition("#")
    schema = json.loads((FACETS_DIR / f"{facet.__name__}.json").read_text(encoding="utf-8"))
    assert schema["$id"] == document
    assert document.endswith(f"/lineage/openlineage_facets/{facet.__name__}.json")
    assert pointer == f"/$defs/{facet.__name__}"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_vendored_official_schemas_are_valid_schemas_of_their_commit() -> None:
    readme = (SPEC_DIR / "README.md").read_text(encoding="utf-8")
    assert re.search(r"commit\s+`[0-9a-f]{40}`", readme)
    assert "Apache License" in (SPEC_DIR / "LICENSE").read_text(encoding="utf-8")
    names = sorted(p.name for p in SPEC_DIR.rglob("*.json"))
    assert names == sorted(["OpenLineage.json", *(f"{n}.json" for n in OFFICIAL_FACETS)])
    for path in SPEC_DIR.rglob("*.json"):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text(encoding="utf-8")))
