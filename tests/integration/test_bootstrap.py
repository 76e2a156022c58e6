"""deployments/: the ECR and work-pool bootstrap against local stand-ins (moto's ECR API, a temporary Prefect
server), and the IAM and bucket policy templates."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from deployments.bootstrap import ensure_ecr_repository, ensure_work_pools
from tests.conftest import REPO

BOOTSTRAP = REPO / "deployments" / "bootstrap.py"


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Throwaway credentials, no endpoint override yet, and no AWS config files from this machine."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"):
        monkeypatch.delenv(name, raising=False)


def _repositories(region: str) -> list[dict[str, Any]]:
    return list(boto3.client("ecr", region_name=region).describe_repositories()["repositories"])


@pytest.mark.integration
@pytest.mark.parametrize("endpoint_variable", ["AWS_ENDPOINT_URL_ECR", "AWS_ENDPOINT_URL"])
def test_ecr_repository_bootstrap_against_moto_ecr(
    s3_server: str, aws_env: None, monkeypatch: pytest.MonkeyPatch, endpoint_variable: str
) -> None:
    # Only the standard variable points boto3 at moto: bootstrap.py takes no endpoint of its own.
    monkeypatch.setenv(endpoint_variable, s3_server)
    name = f"retail-lineage-worker-{endpoint_variable.lower().replace('_', '-')}"

    uri = ensure_ecr_repository(name, "eu-west-1")
    before = _repositories("eu-west-1")
    assert ensure_ecr_repository(name, "eu-west-1") == uri
    after = _repositories("eu-west-1")

    assert after == before, "the second call changed or created something"
    (repository,) = [r for r in after if r["repositoryName"] == name]
    assert uri == repository["repositoryUri"]
    assert uri.endswith(f".dkr.ecr.eu-west-1.amazonaws.com/{name}")
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}


@pytest.mark.integration
def test_ecr_bootstrap_fixes_a_repository_made_by_hand_against_moto_ecr(
    s3_server: str, aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", s3_server)
    ecr = boto3.client("ecr", region_name="eu-west-1")
    made = ecr.create_repository(repositoryName="hand-made-worker", imageTagMutability="MUTABLE")["repository"]

    assert ensure_ecr_repository("hand-made-worker", "eu-west-1", client=ecr) == made["repositoryUri"]
    (repository,) = ecr.describe_repositories(repositoryNames=["hand-made-worker"])["repositories"]
    assert repository["createdAt"] == made["createdAt"]
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}


@pytest.mark.integration
def test_ecr_command_prints_only_the_uri_against_moto_ecr(s3_server: str, aws_env: None) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL_ECR": s3_server}
    command = [sys.executable, str(BOOTSTRAP), "ecr", "--name", "retail-lineage-cli", "--region", "eu-west-1"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=True)

    assert first.stdout == second.stdout == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/retail-lineage-cli\n"
    assert "created ECR repository" in first.stderr
    assert "created" not in second.stderr


@pytest.fixture(scope="module")
def prefect_api() -> Iterator[str]:
    """A temporary Prefect server on loopback with its own SQLite database; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here
        with prefect_test_harness(server_startup_timeout=60):
            yield str(PREFECT_API_URL.value())


def _pools() -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            return {pool.name: pool for pool in await client.read_work_pools()}

    return asyncio.run(read())


@pytest.mark.integration
def test_work_pools_created_once_on_a_temporary_prefect_server(prefect_api: str) -> None:
    ensure_work_pools("test-process", "test-docker")
    pools = _pools()
    assert pools["test-process"].type == "process"
    assert pools["test-docker"].type == "docker"
    # With the worker's job template, deployments' job variables (the image first) reach the container.
    assert "image" in pools["test-docker"].base_job_template["variables"]["properties"]

    ensure_work_pools("test-process", "test-docker")
    again = _pools()
    assert again.keys() == pools.keys()
    for name in ("test-process", "test-docker"):
        assert (again[name].id, again[name].created) == (pools[name].id, pools[name].created)


@pytest.mark.integration
def test_a_pool_of_the_wrong_type_is_an_error_on_a_temporary_prefect_server(prefect_api: str) -> None:
    ensure_work_pools("test-mixed-process", "test-mixed-docker")
    with pytest.raises(ValueError, match="'test-mixed-process' exists with type 'process', expected 'docker'"):
        ensure_work_pools("test-other-process", docker_pool="test-mixed-process")


@pytest.mark.integration
def test_work_pools_command_on_a_temporary_prefect_server(prefect_api: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    command = [
        sys.executable,
        str(BOOTSTRAP),
        "work-pools",
        "--process-pool",
        "cli-process",
        "--docker-pool",
        "cli-dock",
    ]
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=True)

    assert "created work pool cli-process (process)" in first.stderr
    assert "created work pool cli-dock (docker)" in first.stderr
    assert "created" not in second.stderr
    assert {"cli-process", "cli-dock"} <= _pools().keys()


def _policy(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((REPO / "deployments" / name).read_text())
    assert document["Version"] == "2012-10-17"
    return document


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_iam_policy_is_least_privilege() -> None:
    statements = _policy("iam-policy.json")["Statement"]
    for statement in statements:
        assert statement["Effect"] == "Allow"
        actions = _as_list(statement["Action"])
        assert not [a for a in actions if a.endswith("*")], f"wildcard action in {statement['Sid']}"
        if "*" in _as_list(statement["Resource"]):
            assert actions == ["ecr:GetAuthorizationToken"], "only the ECR login may name every resource"

    by_action = {action: statement for statement in statements for action in _as_list(statement["Action"])}
    assert by_action["s3:ListBucket"]["Resource"] == "arn:aws:s3:::BUCKET"
    assert by_action["s3:ListBucket"]["Condition"] == {"StringLike": {"s3:prefix": ["PREFIX/*"]}}
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert by_action[action]["Resource"] == "arn:aws:s3:::BUCKET/PREFIX/*"
    for action in (
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:InitiateLayerUpload",
        "ecr:UploadLayerPart",
        "ecr:CompleteLayerUpload",
        "ecr:PutImage",
        "ecr:DescribeImages",
    ):
        assert by_action[action]["Resource"] == "arn:aws:ecr:REGION:ACCOUNT_ID:repository/REPOSITORY"


def test_bucket_policy_denies_plain_http_and_unencrypted_puts() -> None:
    statements = _policy("s3-bucket-policy.json")["Statement"]
    assert all(statement["Effect"] == "Deny" for statement in statements)
    tls = [s for s in statements if s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}]
    assert len(tls) == 1
    assert tls[0]["Action"] == "s3:*"  # a deny: every request, whatever it asks
    assert sorted(tls[0]["Resource"]) == ["arn:aws:s3:::BUCKET", "arn:aws:s3:::BUCKET/*"]
    unencrypted = [s for s in statements if s.get("Condition") == {"Null": {"s3:x-amz-server-side-encryption": "true"}}]
    assert len(unencrypted) == 1
    assert unencrypted[0]["Action"] == "s3:PutObject"
    assert unencrypted[0]["Resource"] == "arn:aws:s3:::BUCKET/*"
