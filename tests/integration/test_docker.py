"""The production path, run for real: the worker image built from docker/worker.Dockerfile and pushed by
`prefect deploy` through prefect.yaml's own `weekly` steps, a schedule fired by a real Prefect server, a real
Docker worker running the flow in that image (S3 remote on moto's server, the ledger on the machine's
PostgreSQL, the signing key from its Secret block), and the same image serving.

What cannot run here is stood in for, and only that: ECR's registry by Debian's docker-registry on loopback
(so the deployment skips the `ecr_login` step and does not pull the base from Docker Hub: a derived
prefect file changes those two things), ECR's API by moto, and the worker host's IAM role by throwaway
credentials in the Docker work pool's default environment."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
import yaml

from tests.conftest import (
    POSTGRES_PSYCOPG,
    REPO,
    VENV_BIN,
    deploy,
    free_port,
    fresh_clone,
    postgres_database,
    prefect,
    prefect_server,
    run,
    set_params,
)
from tests.platform_fixture import PARAMS, load_table, mismatch, outputs

pytestmark = [pytest.mark.integration, pytest.mark.docker]

AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "weekly"
REPOSITORY = "retail-lineage-worker"
POLLS = 1800  # one a second: the run in the container takes two to four minutes on 2 cores


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    assert not check or done.returncode == 0, f"docker {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def engine() -> None:
    """A Docker engine that answers; else the whole group skips, with `docker info`'s own reason."""
    done = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"no Docker engine answers `docker info` after .ci/run tried to start one: {reason}")
    docker_base = subprocess.run(["bash", str(REPO / "docker" / "base-image.sh")], capture_output=True, text=True)
    assert docker_base.returncode == 0, docker_base.stderr


@pytest.fixture(scope="module")
def registry(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry on loopback, standing in for ECR's registry; yields host:port."""
    folder = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    config = {"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(folder / "data")}},
              "http": {"addr": address}}  # fmt: skip
    (folder / "config.yml").write_text(yaml.safe_dump(config))
    with (folder / "registry.log").open("w") as log:
        process = subprocess.Popen(["docker-registry", "serve", str(folder / "config.yml")], stdout=log, stderr=log)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"docker-registry did not start: {(folder / 'registry.log').read_text()[-2000:]}")
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)


def derived_prefect_file(clone: Path) -> Path:
    """prefect.yaml as production has it, but for the two steps a loopback registry cannot take: no ECR login,
    and no pull of the base image from Docker Hub (docker/base-image.sh made it here)."""
    project = yaml.safe_load((clone / "prefect.yaml").read_text())
    weekly = next(d for d in project["deployments"] if d["name"] == "weekly")
    pushes = [step for step in weekly["push"] if next(iter(step.values())).get("id") != "ecr_login"]
    assert len(pushes) == len(weekly["push"]) - 1, "prefect.yaml's weekly push has no ecr_login step"
    weekly["push"] = pushes
    (build,) = [s for s in weekly["build"] if "prefect_docker.deployments.steps.build_docker_image" in s]
    build["prefect_docker.deployments.steps.build_docker_image"]["pull"] = False
    derived = clone / "prefect.loopback.yaml"
    derived.write_text(yaml.safe_dump(project, sort_keys=False))
    return derived


def python(env: dict[str, str], code: str) -> str:
    done = subprocess.run([str(VENV_BIN / "python"), "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@dataclass
class Weekly:
    clone: Path
    env: dict[str, str]  # the Prefect API's clients, AWS on moto, the ledger's URL
    registry: str
    run: dict[str, Any]  # the scheduled flow run, as the API returns it
    worker_log: str
    s3: Any

    def lineage(self, *args: str) -> str:
        done = subprocess.run([str(VENV_BIN / "lineage"), *args], cwd=self.clone, env=self.env,
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, f"lineage {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout

    def digest(self) -> str:
        """The manifest digest the registry itself reports for the image of the clone's commit (its tag)."""
        commit = run(self.clone, "git", "rev-parse", "HEAD").strip()
        connection = http.client.HTTPConnection(self.registry, timeout=30)
        accept = "application/vnd.docker.distribution.manifest.v2+json"
        connection.request("HEAD", f"/v2/{REPOSITORY}/manifests/{commit}", headers={"Accept": accept})
        response = connection.getresponse()
        assert response.status == 200, response.status
        return str(response.getheader("Docker-Content-Digest"))

    def reference(self) -> str:
        """The image by digest, as the work pool pulls it and the ledger should name it."""
        return f"{self.registry}/{REPOSITORY}@{self.digest()}"


@pytest.fixture(scope="module")
def weekly(
    registry: str, s3_server: str, origin: Path, ssh_keys: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Weekly]:
    """`weekly` deployed on a real server, fired by a schedule, run to a final state by a real Docker worker."""
    from lineage.store import LedgerStore

    folder = tmp_path_factory.mktemp("weekly")
    clone = fresh_clone(origin, folder / "clone")
    set_params(clone, **PARAMS)  # the reproducibility fixture's: the container's bytes are compared with it
    run(clone, "git", "commit", "-qam", "the reproducibility fixture's params")
    s3 = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)
    (folder / "prefect").mkdir()
    with postgres_database("docker_ledger") as database, prefect_server(folder / "prefect") as server:
        ledger_url = POSTGRES_PSYCOPG.format(database=database)
        with LedgerStore(ledger_url) as store:
            deploy(store, ssh_keys)  # four eyes, unsigned decisions refused, the pipeline's key registered
        env = {**server, **AWS, "LINEAGE_DB_URL": ledger_url, "AWS_ENDPOINT_URL": s3_server}

        bootstrap = [str(VENV_BIN / "python"), "deployments/bootstrap.py"]
        ecr = subprocess.run([*bootstrap, "ecr", "--name", REPOSITORY, "--region", "us-east-1"], cwd=clone, env=env,
                             capture_output=True, text=True)  # fmt: skip
        assert ecr.returncode == 0, ecr.stderr
        assert ecr.stdout.strip().endswith(f".dkr.ecr.us-east-1.amazonaws.com/{REPOSITORY}")
        repository = boto3.client("ecr", endpoint_url=s3_server, region_name="us-east-1", aws_access_key_id="testing",
                                  aws_secret_access_key="testing").describe_repositories()["repositories"]  # fmt: skip
        assert [(r["repositoryName"], r["imageTagMutability"]) for r in repository] == [(REPOSITORY, "IMMUTABLE")]
        pools = subprocess.run([*bootstrap, "work-pools"], cwd=clone, env=env, capture_output=True, text=True)
        assert pools.returncode == 0, pools.stderr
        python(
            env,
            f"""
import asyncio
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolUpdate
from prefect.blocks.system import Secret

async def main():
    async with get_client() as client:
        pool = await client.read_work_pool("retail-docker")
        template = pool.base_job_template
        # The worker host's IAM role, which cannot run here: throwaway credentials for moto.
        template["variables"]["properties"]["env"]["default"] = {AWS!r}
        await client.update_work_pool("retail-docker", WorkPoolUpdate(base_job_template=template))

asyncio.run(main())
Secret(value={ledger_url!r}).save("lineage-db-url")
Secret(value={ssh_keys["lineage-pipeline"].read_text()!r}).save("lineage-pipeline-key")
""",
        )
        deploy_env = {
            **env,
            "ECR_REGISTRY": registry,
            "GIT_REPOSITORY": "https://example.invalid/retail-lineage",
            "DVC_REMOTE_S3_URL": f"s3://{BUCKET}/dvc",
            "DVC_REMOTE_S3_ENDPOINTURL": s3_server,
            "LINEAGE_CONSOLE_URL": "",
            "OPENLINEAGE_URL": "",
        }
        prefect(deploy_env, clone, "--no-prompt", "deploy", "--prefect-file", str(derived_prefect_file(clone)),
                "--name", "weekly")  # fmt: skip
        # The worker host has not got the image: it pulls it from the registry, by the digest the deployment names.
        commit = run(clone, "git", "rev-parse", "HEAD").strip()
        docker("image", "rm", "--no-prune", f"{registry}/{REPOSITORY}:{commit}")  # --no-prune: layers stay cached
        # A schedule the server fires within the test: the weekly cron's next run is days away.
        anchor = pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=20)
        prefect(env, clone, "--no-prompt", "deployment", "schedule", "create", "lineage-pipeline/weekly",
                "--interval", "604800", "--anchor-date", anchor.isoformat())  # fmt: skip
        with (folder / "worker.log").open("w") as log:
            worker = subprocess.Popen(
                [str(VENV_BIN / "prefect"), "worker", "start", "--pool", "retail-docker", "--type", "docker"],
                cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            finished = _scheduled_run(env, anchor)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        yield Weekly(clone, env, registry, finished, (folder / "worker.log").read_text(), s3)


def _scheduled_run(env: dict[str, str], anchor: pd.Timestamp) -> dict[str, Any]:
    """The weekly deployment's run the scheduler made for `anchor`, once it reached a final state."""
    code = """
import json
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
with get_client(sync_client=True) as client:
    runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["weekly"])))
print(json.dumps([r.model_dump(mode="json", include={"id", "name", "auto_scheduled", "expected_start_time",
                  "state"}) for r in runs]))
"""
    runs: list[dict[str, Any]] = []
    for _ in range(POLLS // 5):
        soon = anchor + pd.Timedelta(minutes=5)  # not the weekly cron's, days away
        runs = [r for r in json.loads(python(env, code)) if pd.Timestamp(r["expected_start_time"]) < soon]
        if runs and runs[0]["state"]["type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return dict(runs[0])
        time.sleep(5)
    pytest.fail(f"the scheduled run did not finish: {runs}")


def test_the_schedule_fires_and_a_docker_worker_runs_the_image_to_completed(weekly: Weekly) -> None:
    assert weekly.run["auto_scheduled"] is True  # made by the server's scheduler, not by a client
    assert weekly.run["state"]["type"] == "COMPLETED", weekly.worker_log[-4000:]
    digest, reference = weekly.digest(), weekly.reference()
    assert reference in weekly.worker_log  # the worker ran the image by digest
    assert docker("image", "inspect", reference).returncode == 0  # which it pulled from the registry
    # `lineage query production` names the image by that digest, its content address.
    table = weekly.lineage("query", "production", "--type", "Image")
    graph = json.loads(weekly.lineage("query", "production", "--type", "Image", "--format", "json"))
    images = {v["label"]: v["details"]["md5"] for v in graph["vertices"] if v["type"] == "Image"}
    assert images == {reference: digest}
    assert reference in table


def test_the_containers_outputs_are_in_s3_with_the_hosts_bytes(weekly: Weekly, tmp_path: Path) -> None:
    """Every output of the run in the container has the md5 a run in the host's virtualenv gives (the committed
    reproducibility fixture, which tests/integration/test_platform_fixture.py checks against this host)."""
    found = run_record(weekly, tmp_path)
    assert (problem := mismatch(load_table(), tmp_path, found)) is None, problem
    keys = {o["Key"] for o in weekly.s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    for md5 in found.values():  # each output is in the remote, under its content address
        assert f"dvc/files/md5/{md5[:2]}/{md5[2:]}" in keys


def run_record(weekly: Weekly, folder: Path) -> dict[str, str]:
    """The run's record in the remote: its dvc.lock, fetched into `folder`; every output's md5."""
    keys = [o["Key"] for o in weekly.s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    (record,) = {key.rsplit("/", 1)[0] for key in keys if key.startswith("dvc/runs/")}
    weekly.s3.download_file(BUCKET, f"{record}/dvc.lock", str(folder / "dvc.lock"))
    return outputs(folder)


def test_the_same_image_serves_the_production_version(weekly: Weekly, tmp_path: Path) -> None:
    """`docker run IMAGE retail-serve`, the ledger and remote in its environment: /health names the production
    version, /predict answers with it, and the EndpointUpdate it records names the image by digest."""
    reference = weekly.reference()
    production = json.loads(weekly.lineage("models", "list", "--status", "production", "--format", "json"))[0]["name"]
    port = free_port()
    variables = {**AWS, "LINEAGE_DB_URL": weekly.env["LINEAGE_DB_URL"], "DVC_REMOTE_S3_URL": f"s3://{BUCKET}/dvc",
                 "DVC_REMOTE_S3_ENDPOINTURL": weekly.env["AWS_ENDPOINT_URL"], "IMAGE_URI": reference}  # fmt: skip
    container = docker(
        "run", "--detach", "--network", "host", *[f"--env={k}={v}" for k, v in variables.items()],
        reference, "retail-serve", "--host", "127.0.0.1", "--port", str(port), "--remote", "s3",
    ).stdout.strip()  # fmt: skip
    try:
        health: dict[str, Any] = {}
        for _ in range(POLLS):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    health = json.loads(response.read())
                if health.get("model_version") == production:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert health.get("model_version") == production, docker("logs", container, check=False).stderr[-3000:]
        test_split = run_record(weekly, tmp_path)["data/splits/test.parquet"]
        weekly.s3.download_file(BUCKET, f"dvc/files/md5/{test_split[:2]}/{test_split[2:]}", str(tmp_path / "t.pq"))
        first = pd.read_parquet(tmp_path / "t.pq").iloc[0]
        rows = [
            {
                "stock_code": first["stock_code"],
                "unit_price": float(first["unit_price"]),
                "invoice_date": first["invoice_date"].strftime("%Y-%m-%dT%H:%M:%S"),
                "country": first["country"],
            }
        ]
        connection = http.client.HTTPConnection(f"127.0.0.1:{port}", timeout=60)
        connection.request("POST", "/predict", json.dumps({"rows": rows}), {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert (response.status, answer["model_version"]) == (200, production), answer
    finally:
        docker("rm", "--force", container, check=False)
    graph = json.loads(weekly.lineage("query", production, "--direction", "descendants", "--type", "EndpointUpdate",
                                      "--format", "json"))  # fmt: skip
    updates = [v["details"]["parameters"] for v in graph["vertices"] if v["type"] == "EndpointUpdate"]
    assert [(u["endpoint"], u["image"]) for u in updates] == [("retail-demand", reference)], updates
