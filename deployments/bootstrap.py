"""Idempotent setup for the weekly deployment: the ECR repository of the worker image and the Prefect work pools.

    python deployments/bootstrap.py ecr --name retail-lineage-worker --region eu-west-1
    python deployments/bootstrap.py work-pools [--process-pool retail-process] [--docker-pool retail-docker]

Running either again changes nothing. AWS credentials come from the environment or an AWS profile,
the Prefect API from PREFECT_API_URL (or the active Prefect profile).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import boto3
import httpx
from botocore.client import BaseClient
from botocore.exceptions import BotoCoreError, ClientError

from common.redact import redact_text, redact_url

log = logging.getLogger("bootstrap")


def ensure_ecr_repository(name: str, region: str, client: BaseClient | None = None) -> str:
    """Create the ECR repository unless it exists, with immutable tags and scan on push; return its URI."""
    # No endpoint argument: boto3 itself reads AWS_ENDPOINT_URL_ECR, then AWS_ENDPOINT_URL, which is
    # how tests (and any local stand-in for AWS) redirect it.
    ecr = client if client is not None else boto3.client("ecr", region_name=region)
    try:
        repository = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        try:
            repository = ecr.create_repository(
                repositoryName=name,
                # Tags are git commits and the lineage ledger records them: a tag must never move.
                imageTagMutability="IMMUTABLE",
                imageScanningConfiguration={"scanOnPush": True},
            )["repository"]
            log.info("created ECR repository %s", repository["repositoryUri"])
            return str(repository["repositoryUri"])
        except ecr.exceptions.RepositoryAlreadyExistsException:  # created concurrently since we looked
            repository = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    _enforce_repository_settings(ecr, repository)
    return str(repository["repositoryUri"])


def _enforce_repository_settings(ecr: BaseClient, repository: dict[str, object]) -> None:
    """Bring an existing repository to immutable tags and scan on push (a repository made by hand may lack them)."""
    name, uri = repository["repositoryName"], repository["repositoryUri"]
    log.info("ECR repository %s exists", uri)
    if repository.get("imageTagMutability") != "IMMUTABLE":
        ecr.put_image_tag_mutability(repositoryName=name, imageTagMutability="IMMUTABLE")
        log.warning("ECR repository %s had mutable tags; set them to IMMUTABLE", uri)
    scanning = repository.get("imageScanningConfiguration")
    if not (isinstance(scanning, dict) and scanning.get("scanOnPush")):
        ecr.put_image_scanning_configuration(repositoryName=name, imageScanningConfiguration={"scanOnPush": True})
        log.warning("ECR repository %s did not scan on push; turned scanning on", uri)


def ensure_work_pools(process_pool: str = "retail-process", docker_pool: str = "retail-docker") -> None:
    """Create whichever of the process and Docker work pools does not exist yet."""
    asyncio.run(_ensure_work_pools({process_pool: "process", docker_pool: "docker"}))


async def _ensure_work_pools(pools: dict[str, str]) -> None:
    # Imported here so that the `ecr` command does not pay for importing Prefect.
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.base import BaseWorker

    async with get_client() as client:
        log.info("Prefect API %s", redact_url(str(client.api_url)))
        for name, pool_type in pools.items():
            try:
                existing = await client.read_work_pool(name)
            except ObjectNotFound:
                pass
            else:
                if existing.type != pool_type:
                    raise ValueError(f"work pool {name!r} exists with type {existing.type!r}, expected {pool_type!r}")
                log.info("work pool %s (%s) exists", name, pool_type)
                continue
            # A pool created without a base job template ignores deployments' job variables (the Docker
            # image among them), so give it the one the worker defines, as `prefect work-pool create` does.
            worker = BaseWorker.get_worker_class_from_type(pool_type)
            if worker is None:
                raise ValueError(f"no Prefect worker of type {pool_type!r} is installed (prefect-docker for docker)")
            try:
                await client.create_work_pool(
                    WorkPoolCreate(name=name, type=pool_type, base_job_template=worker.get_default_base_job_template())
                )
            except ObjectAlreadyExists:  # created concurrently since we looked
                log.info("work pool %s (%s) exists", name, pool_type)
            else:
                log.info("created work pool %s (%s)", name, pool_type)


def main(argv: list[str] | None = None) -> None:
    """Command line: `ecr` prints the repository URI on stdout; progress goes to stderr."""
    parser = argparse.ArgumentParser(prog="bootstrap.py", description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    ecr = commands.add_parser("ecr", help="create the ECR repository of the worker image; print its URI")
    ecr.add_argument("--name", required=True, help="repository name, e.g. retail-lineage-worker")
    ecr.add_argument("--region", required=True, help="AWS region, e.g. eu-west-1")
    pools = commands.add_parser("work-pools", help="create the Prefect process and Docker work pools")
    pools.add_argument("--process-pool", default="retail-process")
    pools.add_argument("--docker-pool", default="retail-docker")
    args = parser.parse_args(argv)

    # Our progress lines only: botocore and Prefect log chatter at INFO too.
    logging.basicConfig(level=logging.WARNING, format="bootstrap: %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    try:
        if args.command == "ecr":
            print(ensure_ecr_repository(args.name, args.region))
        else:
            ensure_work_pools(args.process_pool, args.docker_pool)
    except (BotoCoreError, ClientError, httpx.HTTPError, ValueError) as error:  # AWS, the Prefect API, a conflict
        raise SystemExit(f"bootstrap: error: {redact_text(str(error))}") from None


if __name__ == "__main__":
    main()
