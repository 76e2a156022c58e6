"""The deployment as the Prefect server holds it when a run starts, for the ledger's configuration
history (lineage/configuration.py records it and compares it with the deployment's previous run)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.runtime import deployment

from lineage.configuration import mask


def deployment_configuration(deployment_id: str | None = None) -> dict[str, Any] | None:
    """The run's deployment (or `deployment_id`'s): id, version, schedules, work pool and its type, job
    variables, concurrency limit, image, parameters; secrets masked. None outside a deployment.

    Timestamps are left out: re-deploying what did not change is no configuration change.
    """
    deployment_id = deployment_id or deployment.get_id()
    if not deployment_id:
        return None
    with get_client(sync_client=True) as client:
        held = client.read_deployment(UUID(str(deployment_id)))
        pool = client.read_work_pool(held.work_pool_name) if held.work_pool_name else None
    limit = held.global_concurrency_limit.limit if held.global_concurrency_limit else held.concurrency_limit
    options = held.concurrency_options
    job_variables = dict(held.job_variables or {})
    return mask(
        {
            "id": str(held.id),
            "name": held.name,
            "version": held.version,
            "entrypoint": held.entrypoint,
            "paused": held.paused,
            "schedules": [
                {
                    "schedule": schedule.schedule.model_dump(mode="json", exclude_none=True),
                    "active": schedule.active,
                    "parameters": schedule.parameters,
                }
                for schedule in held.schedules
            ],
            "work_pool": held.work_pool_name,
            "work_pool_type": pool.type if pool else None,
            "work_queue": held.work_queue_name,
            "job_variables": job_variables,
            "image": job_variables.get("image"),
            "concurrency_limit": limit,
            "collision_strategy": str(options.collision_strategy.value) if options else None,
            "parameters": held.parameters,
            "tags": sorted(held.tags),
            "updated_by": held.updated_by.display_value if held.updated_by else None,
        }
    )
