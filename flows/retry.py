"""The one retry policy of every Prefect task in the flows: retry what may pass on a later attempt
(network, S3, a lock another process holds), never what cannot (bad input, a workspace changed by hand,
a gate's refusal). Names and retries live on the task decorators: `@task(name=..., **RETRIES)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import Task, exponential_backoff


class Rejected(Exception):
    """A deterministic failure (bad input, a workspace changed outside DVC, a gate's refusal): never retried."""


class TransientFailure(Exception):
    """A failure that may pass on retry: network, S3, a DVC lock held by another process."""


GATE_FAILED = "GateFailed"  # the Failed state a gate stage ends in when its verdict stops the run
SKIPPED = "Skipped"  # the Completed state of a stage DVC had nothing to do for


def _unless_rejected(_task: Task[..., Any], _task_run: TaskRun, state: State[Any]) -> bool:
    if state.name == GATE_FAILED:
        return False
    try:
        state.result()
    except Rejected:
        return False
    except Exception:
        return True
    return True


class RetryOptions(TypedDict):
    retries: int
    retry_delay_seconds: list[float]
    retry_jitter_factor: float
    retry_condition_fn: Callable[[Task[..., Any], TaskRun, State[Any]], bool]


# Three more attempts after 2, 4 and 8 s (each +-20%), which outlasts a restarted S3 endpoint or DVC lock.
RETRIES = RetryOptions(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2)(3),
    retry_jitter_factor=0.2,
    retry_condition_fn=_unless_rejected,
)
