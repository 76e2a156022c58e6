"""The `s3` DVC remote against a real S3 API (moto's standalone server): push, fresh-clone pull, retries."""

from __future__ import annotations

import hashlib
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from flows.dvc_ops import REPORTS, Pushed, push
from lineage.openlineage import validate
from tests.conftest import VENV_BIN, free_port, fresh_clone, locked_outs, run, stage_env

pytestmark = pytest.mark.integration


def use_s3_remote(clone: Path, endpoint: str, bucket: str) -> None:
    """Point the clone's `s3` remote at a bucket on the test server (config.local: never committed)."""
    run(clone, "dvc", "remote", "modify", "--local", "s3", "url", f"s3://{bucket}/dvc")
    run(clone, "dvc", "remote", "modify", "--local", "s3", "endpointurl", endpoint)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def test_flow_pushes_to_s3_and_a_fresh_clone_restores_every_output_from_the_run_record(
    aws: None, s3_server: str, built_copy: Path, origin: Path, tmp_path: Path
) -> None:
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="lineage-push")
    # as in the worker image: the remote's bucket and endpoint arrive as environment variables
    env = stage_env(
        PREFECT_HOME=str(tmp_path / "prefect"),
        DVC_REMOTE_S3_URL="s3://lineage-push/dvc",
        DVC_REMOTE_S3_ENDPOINTURL=s3_server,
    )
    result = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "flows.pipeline", "--remote", "s3"],
        cwd=built_copy, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    s3 = boto3.client("s3", endpoint_url=s3_server)
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket="lineage-push")["Contents"]]
    records = sorted({key.rsplit("/", 1)[0] for key in keys if key.startswith("dvc/runs/")})
    assert len(records) == 1, records
    assert {f"{records[0]}/dvc.lock", f"{records[0]}/params.yaml"} <= set(keys)

    # A fresh clone knows nothing of the run but its record: fetch dvc.lock and params.yaml, then pull.
    fresh = fresh_clone(origin, tmp_path / "fresh")
    use_s3_remote(fresh, s3_server, "lineage-push")
    for name in ("dvc.lock", "params.yaml"):
        s3.download_file("lineage-push", f"{records[0]}/{name}", str(fresh / name))
    run(fresh, "dvc", "pull", "--remote", "s3")
    assert locked_outs(fresh) == locked_outs(built_copy)
    for path in locked_outs(fresh):
        assert (fresh / path).is_file(), path
    assert "up to date" in run(fresh, "dvc", "status")
    assert "Cache and remote 's3' are in sync" in run(fresh, "dvc", "status", "--cloud", "--remote", "s3")
    _exported_events_name_the_pushed_objects(built_copy, set(keys))


def _exported_events_name_the_pushed_objects(workspace: Path, keys: set[str]) -> None:
    """The run's OpenLineage events validate against the vendored official schemas, and every output it
    pushed is named by its object in the bucket (s3://<bucket> + <prefix>/files/md5/<ab>/<cdef..>)."""
    exported = run(workspace, "lineage", "export", "openlineage", "--db", f"sqlite:///{workspace / 'lineage.db'}")
    events = [json.loads(line) for line in exported.splitlines() if line.startswith("{")]
    stages = yaml.safe_load((workspace / "dvc.lock").read_text())["stages"]
    assert len(events) == 2 * len(stages)
    named = 0
    for event in events:
        validate(event)
        for dataset in event["inputs"] + event["outputs"]:
            path, md5 = dataset["facets"]["dvc"]["path"], dataset["facets"]["version"]["datasetVersion"]
            if path in locked_outs(workspace):
                assert dataset["namespace"] == "s3://lineage-push"
                assert dataset["name"] == f"dvc/files/md5/{md5[:2]}/{md5[2:]}" in keys
                named += 1
            else:  # a dependency DVC hashes but does not store: the file on this machine
                assert dataset["namespace"].startswith("file://")
                assert dataset["name"] == f"{workspace.resolve()}/{path}"
    assert named > 0


@pytest.fixture
def late_s3_server() -> Iterator[tuple[str, Callable[[], threading.Event]]]:
    """An S3 API that refuses connections until 3 s after `begin()`, then answers with the bucket ready."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    started = threading.Event()
    processes: list[subprocess.Popen[bytes]] = []

    def start_later() -> None:
        time.sleep(3)
        server = [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
        processes.append(subprocess.Popen(server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(100):
            try:
                boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="lineage-late")
                break
            except Exception:
                time.sleep(0.1)
        started.set()

    def begin() -> threading.Event:
        threading.Thread(target=start_later, daemon=True).start()
        return started

    yield endpoint, begin
    started.wait(timeout=30)
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def test_push_retries_while_s3_refuses_then_succeeds(
    aws: None,
    late_s3_server: tuple[str, Callable[[], threading.Event]],
    built_copy: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, begin = late_s3_server
    use_s3_remote(built_copy, endpoint, "lineage-late")
    monkeypatch.chdir(built_copy)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # let Prefect's retries, not botocore's, do the waiting

    @flow
    def push_only() -> Pushed:
        return push("s3")

    with prefect_test_harness(server_startup_timeout=180):
        started = begin()  # S3 refuses connections for the next 3 seconds
        state = push_only(return_state=True)
        with get_client(sync_client=True) as api:
            (task_run,) = api.read_task_runs()
    assert started.is_set()
    assert state.is_completed(), state.message
    assert task_run.run_count >= 2  # the first attempt met a refused connection
    assert "runs/" in state.result().record
    s3 = boto3.client("s3", endpoint_url=endpoint)
    assert s3.list_objects_v2(Bucket="lineage-late")["KeyCount"] >= len(locked_outs(built_copy))


def test_report_links_open_in_a_browser_with_their_type_and_name(
    aws: None, s3_server: str, built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The UI's links to the drift report and the SHAP plots: HTTPS (here HTTP) URLs presigned with the run's
    credentials, served as text/html or image/png under the report's own file name, not a 404."""
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="lineage-links")
    use_s3_remote(built_copy, s3_server, "lineage-links")
    monkeypatch.chdir(built_copy)

    @flow
    def push_only() -> Pushed:
        return push("s3")

    with prefect_test_harness(server_startup_timeout=180):
        pushed = push_only()
    assert {report.path for report in pushed.reports} == set(REPORTS)
    for report in pushed.reports:
        assert report.url is not None
        assert "X-Amz-Signature=" in report.url
        assert report.expires is not None
        assert report.stored.startswith("s3://lineage-links/dvc/files/md5/")
        with urllib.request.urlopen(report.url) as response:  # what a browser's GET receives
            assert response.status == 200
            assert response.headers["Content-Type"] == REPORTS[report.path][1]
            assert f'filename="{Path(report.path).name}"' in response.headers["Content-Disposition"]
            assert hashlib.md5(response.read()).hexdigest() == locked_outs(built_copy)[report.path]
