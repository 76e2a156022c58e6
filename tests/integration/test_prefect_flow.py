"""The flow under a real `prefect server`: deploy `dev`, run it on a process worker, read the UI's records.

The server and the lineage ledger (LINEAGE_DB_URL) run on the machine's PostgreSQL, as in production; where
none answers, the server runs on SQLite and the ledger in the clone's lineage.db. (The SQLite server is
also what the flows in the fault and bootstrap tests run against.)
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.schedules import CronSchedule
from prefect.client.schemas.sorting import FlowRunSort
from prefect.settings import PREFECT_API_URL, temporary_settings

from lineage import registry
from lineage.entities import Action, ActionStatus
from lineage.query import query_lineage
from lineage.recorder import RunInfo, StageRun, record_run
from lineage.store import Head, LedgerStore
from tests.conftest import (
    POSTGRES_ASYNCPG,
    POSTGRES_PSYCOPG,
    STAGES,
    VENV_BIN,
    browser_page,
    fresh_clone,
    locked_outs,
    postgres_answers,
    postgres_database,
    prefect,
    prefect_server,
    set_params,
)
from tests.ledger_oracle import assert_reads_match_scan
from tests.lineage_workspace import write_workspace

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)
CONSOLE = "http://console.example:8765"  # where `lineage ui` would serve (nothing answers there)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`prefect server start` on loopback, on the machine's PostgreSQL with the lineage ledger there too
    (the production layout); on SQLite, the ledger in the clone's lineage.db, where no PostgreSQL answers.
    Yields the client environment."""
    home = tmp_path_factory.mktemp("prefect-home")
    if not postgres_answers():
        with prefect_server(home) as env:
            yield env
        return
    with postgres_database("prefect_test") as database:
        backend = {
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": POSTGRES_ASYNCPG.format(database=database),
            "LINEAGE_DB_URL": POSTGRES_PSYCOPG.format(database=database),
        }
        with prefect_server(home, **backend) as env:
            yield env


def client(env: dict[str, str]) -> Any:
    return temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]})


def run_deployment(env: dict[str, str], clone: Path, name: str = "lineage-pipeline/dev") -> dict[str, Any]:
    """`prefect deployment run <name>`, then one pass of a process worker; the run's record."""
    output = prefect(env, clone, "deployment", "run", name)
    run_id = next(line.split()[-1] for line in output.splitlines() if "UUID" in line)
    prefect(env, clone, "worker", "start", "--pool", "retail-process", "--run-once")
    with client(env), get_client(sync_client=True) as api:
        return describe_run(api, uuid.UUID(run_id))


def describe_run(api: SyncPrefectClient, run_id: uuid.UUID) -> dict[str, Any]:
    flow_run = api.read_flow_run(run_id)
    task_runs = api.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    artifacts = api.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return {
        "id": str(run_id),
        "state": flow_run.state.type.value if flow_run.state else None,
        "message": flow_run.state.message if flow_run.state else "",
        "tasks": sorted(task_run.name for task_run in task_runs),
        "artifacts": {artifact.key: artifact for artifact in artifacts if artifact.key},
    }


@pytest.fixture(scope="module")
def deployed(server: dict[str, str], origin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    clone = fresh_clone(origin, tmp_path_factory.mktemp("deployed") / "clone")
    prefect(server, clone, "work-pool", "create", "retail-process", "--type", "process")
    prefect(server, clone, "--no-prompt", "deploy", "--name", "dev")
    prefect(server, clone, "--no-prompt", "deploy", "--name", "on-demand")
    return clone


def test_dev_deployment_runs_each_stage_as_a_task_and_publishes_artifacts(
    server: dict[str, str], deployed: Path
) -> None:
    first = run_deployment(server, deployed)
    assert first["state"] == "COMPLETED", first["message"]
    stage_tasks = [name for name in first["tasks"] if name in STAGES]
    assert sorted(stage_tasks) == sorted(STAGES)  # one task run per stage
    assert {"pipeline-summary", "pipeline-metrics", "tuning-progress"} <= set(first["artifacts"])
    assert "drift-report" not in first["artifacts"]  # a local remote has no URL a browser opens: the path, as text
    summary = first["artifacts"]["pipeline-summary"].data
    assert "Every gate passed" in summary
    assert all(f"| {stage} | ran |" in summary for stage in STAGES)
    assert first["artifacts"]["tuning-progress"].data == 100.0
    assert (deployed / ".dvc-storage" / "runs").is_dir()  # the run record went to the default remote
    assert "```mermaid" not in summary  # the OSS UI shows mermaid as source: the lineage is a table
    assert f"`python -m webbrowser file://{deployed / 'reports' / 'drift.html'}` opens the first" in summary
    ledger_url = server.get("LINEAGE_DB_URL") or f"sqlite:///{deployed / 'lineage.db'}"
    with LedgerStore(ledger_url) as store:
        version = registry.production(store)
        assert version is not None  # both gates passed: promoted
        assert version.properties["model_md5"] == locked_outs(deployed)["models/model.pt"]
        assert f"## Model version `{version.name}`\n\nPromoted to production by this run" in summary
        found = {(v.type, v.label) for v in query_lineage(store, "production").vertices}
        assert {
            ("DataSet", "data/raw"),
            ("Code", "tasks/tune.py"),
            ("Params", "params.yaml"),
            ("Image", "local"),
        } <= found
        assert ("Promotion", "promoted (Completed)") in found

    second = run_deployment(server, deployed)
    assert second["state"] == "COMPLETED", second["message"]
    assert "ran nothing" in second["message"]
    summary = second["artifacts"]["pipeline-summary"].data
    assert all(f"| {stage} | skipped (unchanged) |" in summary for stage in STAGES)
    assert "(decision: kept)" in summary  # the same model bytes: the same version, already production
    with LedgerStore(ledger_url) as store:
        assert registry.production(store) == version
        # The head published beside the second run's record anchors the ledger.
        anchor = json.loads((deployed / ".dvc-storage" / "runs" / second["id"] / "ledger-head.json").read_text())
        head = Head(anchor["record_count"], anchor["head_hash"])
        assert head == store.head()
        assert store.verify(head).ok
        assert assert_reads_match_scan(store) > 0  # the indexed reads, on a ledger real runs wrote

    # On demand, the reproduce flow rebuilds the production model and reports the comparison.
    rebuilt = run_deployment(server, deployed, "reproduce/on-demand")
    assert rebuilt["state"] == "COMPLETED", rebuilt["message"]
    assert rebuilt["message"].startswith(f"{version.name} reproduced byte for byte")
    table = json.loads(rebuilt["artifacts"]["reproduction"].data)
    assert {row["artifact"] for row in table} >= set(locked_outs(deployed))
    assert all(row["match"] for row in table)


def test_a_second_dev_run_waits_for_the_first(server: dict[str, str], deployed: Path) -> None:
    """The deployment's concurrency limit: two runs triggered together never overlap; both complete."""
    ids = []
    for _ in range(2):
        output = prefect(server, deployed, "deployment", "run", "lineage-pipeline/dev")
        ids.append(uuid.UUID(next(line.split()[-1] for line in output.splitlines() if "UUID" in line)))
    worker = subprocess.Popen(
        [str(VENV_BIN / "prefect"), "worker", "start", "--pool", "retail-process"],
        cwd=deployed, env=server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with client(server), get_client(sync_client=True) as api:
            for _ in range(600):
                runs = [api.read_flow_run(run_id) for run_id in ids]
                if all(run.state and run.state.is_final() for run in runs):
                    break
                time.sleep(0.5)
            histories = [[state.name for state in api.read_flow_run_states(run_id)] for run_id in ids]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert [run.state.type.value if run.state else None for run in runs] == ["COMPLETED", "COMPLETED"], histories
    assert sum("AwaitingConcurrencySlot" in history for history in histories) == 1, histories
    spans = sorted(
        (run.start_time.isoformat(), run.end_time.isoformat()) for run in runs if run.start_time and run.end_time
    )
    assert len(spans) == 2
    assert spans[0][1] <= spans[1][0]  # the second started after the first ended


def test_weekly_deployment_carries_its_cron_schedule(server: dict[str, str], deployed: Path) -> None:
    """Registered without the Docker build (no engine here): the schedule creates Scheduled runs."""
    weekly = next(
        d for d in yaml.safe_load((deployed / "prefect.yaml").read_text())["deployments"] if d["name"] == "weekly"
    )
    prefect(server, deployed, "work-pool", "create", "retail-docker", "--type", "docker")
    script = f"""
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.schedules import Cron
from flows.pipeline import lineage_pipeline
schedule = {weekly["schedules"][0]!r}
lineage_pipeline.deploy(
    name="weekly", work_pool_name="retail-docker", image="registry.invalid/retail-lineage-worker:test",
    build=False, push=False, parameters={weekly["parameters"]!r},
    schedules=[Cron(schedule["cron"], timezone=schedule["timezone"], slug=schedule["slug"], active=schedule["active"])],
    concurrency_limit=ConcurrencyLimitConfig(**{weekly["concurrency_limit"]!r}),
)
"""
    subprocess.run([str(VENV_BIN / "python"), "-c", script], cwd=deployed, env=server, check=True, capture_output=True)
    with client(server), get_client(sync_client=True) as api:
        deployment = api.read_deployment_by_name("lineage-pipeline/weekly")
        assert deployment.global_concurrency_limit is not None
        assert deployment.global_concurrency_limit.limit == 1
        assert deployment.concurrency_options is not None
        assert deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
        (schedule,) = deployment.schedules
        assert isinstance(schedule.schedule, CronSchedule)
        assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 6 * * 1", "UTC")
        assert schedule.active
        for _ in range(60):
            runs = api.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["weekly"])),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            )
            if runs:
                break
            time.sleep(1)
    assert runs, "the scheduler created no runs for the weekly cron"
    assert all(run.state and run.state.type.value == "SCHEDULED" for run in runs)
    for run in runs:
        start = run.expected_start_time
        assert start is not None
        assert (start.weekday(), start.hour, start.minute) == (0, 6, 0)  # Mondays 06:00 UTC


def test_a_redeployed_schedule_and_image_are_a_configuration_change(
    server: dict[str, str], deployed: Path, tmp_path: Path
) -> None:
    """Read from the server as the flow reads it at run time; secrets in job variables never reach the ledger."""
    from flows.configuration import deployment_configuration

    def deploy(cron: str, image: str) -> dict[str, Any]:
        script = f"""
from prefect.schedules import Cron
from flows.pipeline import lineage_pipeline
lineage_pipeline.deploy(
    name="config-history", work_pool_name="config-docker", image={image!r}, build=False, push=False,
    job_variables={{"env": {{"AWS_SECRET_ACCESS_KEY": "s3cr3t-value"}}}}, schedules=[Cron({cron!r}, timezone="UTC")],
)
"""
        command = [str(VENV_BIN / "python"), "-c", script]
        done = subprocess.run(command, cwd=deployed, env=server, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        with client(server), get_client(sync_client=True) as api:
            held = api.read_deployment_by_name("lineage-pipeline/config-history")
            configuration = deployment_configuration(str(held.id))
        assert configuration is not None
        return configuration

    prefect(server, deployed, "work-pool", "create", "config-docker", "--type", "docker")
    first = deploy("0 6 * * 1", "ecr.invalid/retail:abc")
    assert (first["work_pool"], first["work_pool_type"], first["image"]) == (
        "config-docker",
        "docker",
        "ecr.invalid/retail:abc",
    )
    assert first["job_variables"]["env"] == {"AWS_SECRET_ACCESS_KEY": "***"}
    assert first["schedules"][0]["schedule"]["cron"] == "0 6 * * 1"
    second = deploy("0 7 * * 1", "ecr.invalid/retail:def")

    write_workspace(tmp_path, 1)
    with LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}") as store:
        for run, configuration in (("run-1", first), ("run-2", second)):
            stages = [StageRun(s, ActionStatus.COMPLETED, NOW, NOW, None) for s in STAGES]
            info = RunInfo(run, stages, NOW, NOW, None, "runs/x", "lineage-pipeline/config-history",
                           deployment_configuration=configuration)  # fmt: skip
            record_run(store, info, tmp_path)
        records = list(store.records())
    [change] = [r.entity() for r in records if r.entity_type == "ConfigurationChange"]
    assert isinstance(change, Action)
    assert (change.parameters["previous_run"], change.parameters["first_seen_by"]) == ("run-1", "run-2")
    rows: list[dict[str, Any]] = change.parameters["changes"]  # type: ignore[assignment]
    changed = {row["key"]: (row["before"], row["after"]) for row in rows}
    assert changed["deployment:image"] == ("ecr.invalid/retail:abc", "ecr.invalid/retail:def")
    assert changed["deployment:job_variables.image"] == ("ecr.invalid/retail:abc", "ecr.invalid/retail:def")
    assert '"cron": "0 6 * * 1"' in str(changed["deployment:schedules"][0])
    assert '"cron": "0 7 * * 1"' in str(changed["deployment:schedules"][1])
    assert not any("s3cr3t-value" in record.body for record in records)


def test_the_ui_tells_the_story_of_a_run(server: dict[str, str], deployed: Path, tmp_path: Path) -> None:
    """What a person sees in the Prefect UI, read back through its API and in a browser: the stages as a
    chain, Skipped stages saying why, a refused gate as a red GateFailed task with its verdict and no
    traceback, and a summary that fits on one screen."""
    skipped = run_deployment(server, deployed)
    if "ran nothing" not in skipped["message"]:  # run alone, without the earlier tests' runs
        skipped = run_deployment(server, deployed)
    params = (deployed / "params.yaml").read_text()
    set_params(deployed, fairness={"max_error_ratio": 1.0})  # no two groups are served exactly alike
    try:  # with the lineage console's address configured, as a deployment's job variables would
        refused = run_deployment({**server, "LINEAGE_CONSOLE_URL": CONSOLE}, deployed)
    finally:
        (deployed / "params.yaml").write_text(params)
    assert skipped["state"] == "COMPLETED", skipped["message"]
    assert refused["state"] == "FAILED"
    assert refused["message"].startswith("fairness check failed: is_registered: error ratio (RMSLE) ")

    with client(server), get_client(sync_client=True) as api:
        tasks = {run["id"]: _task_runs(api, uuid.UUID(run["id"])) for run in (skipped, refused)}
        logs = api.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(refused["id"])])))
    for runs in tasks.values():  # the run graph is the pipeline: each task waits on the one before
        order = ["prepare-workspace", "numeric-platform", *STAGES, "push", "record-lineage"]
        chain = [name for name in order if name in runs]
        assert set(chain) >= {"prepare-workspace", *STAGES, "push", "record-lineage"}
        for before, after in itertools.pairwise(chain):
            assert runs[before]["id"] in runs[after]["waits_for"], (before, after, runs[after])
    for stage in STAGES:
        state = tasks[skipped["id"]][stage]
        assert (state["type"], state["name"]) == ("COMPLETED", "Skipped"), state
        assert state["message"].startswith("skipped, unchanged since dvc.lock: ")
    assert "passed: share of drifted columns " in tasks[skipped["id"]]["drift_check"]["message"]
    assert tasks[skipped["id"]]["fairness"]["message"].endswith("(far ends of 95% intervals)")

    fairness = tasks[refused["id"]]["fairness"]
    assert (fairness["type"], fairness["name"]) == ("FAILED", "GateFailed")
    assert fairness["message"].startswith("FAILED: is_registered: error ratio (RMSLE) ")
    assert " > 1.0 (far ends of 95% intervals)" in fairness["message"]
    assert fairness["run_count"] == 1  # a verdict is final: never retried
    assert tasks[refused["id"]]["drift_check"]["message"].startswith("skipped, unchanged since dvc.lock: passed: ")
    said = "\n".join(log.message for log in logs)
    assert "Traceback" not in said
    assert "Engine execution exited with unexpected exception" not in said
    assert "git add dvc.lock" not in said
    assert "Use `dvc push`" not in said

    summary = refused["artifacts"]["pipeline-summary"].data
    assert "```mermaid" not in summary
    lineage = summary.split("## Lineage\n\n")[1].split("\n\n")[0].splitlines()
    assert 8 <= len(lineage) - 2 <= 15, lineage  # header and rule, then the rows
    assert "| fairness | is_registered: error ratio (RMSLE), far end of 95% interval | " in summary
    assert " | <= 1 | FAILED |" in summary
    assert "Kept in production: this run made the same model bytes as this version, in production since " in summary
    assert "so this version would not be promoted today" in summary
    assert "| verdicts | this run's gates | drift passed, accuracy passed, fairness failed |" in summary
    version = re.findall(r"## Model version `([\w-]+)`", summary)[0]
    assert f"[Open {version} in the lineage console]({CONSOLE}/models/{version})" in summary
    values = [str(row["value"]) for row in json.loads(refused["artifacts"]["pipeline-metrics"].data)]
    decimals = [value for value in values if re.fullmatch(r"-?\d+\.\d+(e-?\d+)?", value)]
    assert decimals  # four significant digits at most, not 0.5534058780859339
    assert all(len(value.split("e")[0].lstrip("-0.").replace(".", "")) <= 4 for value in decimals), decimals

    # In a browser: the flow run page, and the summary artifact as the UI renders it.
    ui = server["PREFECT_API_URL"].removesuffix("/api")
    page = browser_page(f"{ui}/runs/flow-run/{refused['id']}", "flow-run-gate-failed", tmp_path)
    assert "GateFailed" in page
    artifact = browser_page(f"{ui}/artifacts/artifact/{refused['artifacts']['pipeline-summary'].id}",
                            "summary-gate-failed", tmp_path)  # fmt: skip
    assert "fairness check failed: is_registered: error ratio (RMSLE)" in artifact
    assert "would not be promoted today" in artifact
    assert f"Open {version} in the lineage console" in artifact  # rendered as a link


def _task_runs(api: SyncPrefectClient, run_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """Each task run of a flow run by name: its state, message, attempts and the task runs it waited on."""
    runs = api.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return {
        run.name: {
            "id": run.id,
            "type": run.state.type.value if run.state else None,
            "name": run.state.name if run.state else None,
            "message": (run.state.message or "") if run.state else "",
            "run_count": run.run_count,
            "waits_for": {getattr(upstream, "id", None) for upstream in run.task_inputs.get("wait_for", [])},
        }
        for run in runs
    }
