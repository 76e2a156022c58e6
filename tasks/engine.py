"""Where a stage's data work runs: in memory with pandas, out of core with Dask on this machine, or on a
Dask cluster. Light to import (no pandas, no numpy): the flow reads its names before the numeric platform is set.

The layout is operations, not lineage: it never changes an output's bytes (tests/integration/test_etl_layouts.py
proves it), so it comes from the environment, not params.yaml, and the ledger records it with the run's platform.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from common.redact import redact_url
from tasks.stage import InputError

if TYPE_CHECKING:
    from distributed import Client

# Dask's own variable (its config key scheduler-address): a Dask client made without an address connects there.
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
# Above this many input rows a stage works out of core, partition by partition.
IN_MEMORY_ROWS_ENV = "PIPELINE_IN_MEMORY_ROWS"
IN_MEMORY_ROWS = 10_000_000  # etl in memory peaks at about 0.45 GB per million rows (docs/scaling.md)
# Rows per Dask partition: what one worker thread holds at a time, several times over while it transforms them.
PARTITION_ROWS_ENV = "PIPELINE_PARTITION_ROWS"
PARTITION_ROWS = 500_000
# Memory the Dask worker on this machine keeps partitions in before it spills them to disk (Dask's own units).
MEMORY_LIMIT_ENV = "PIPELINE_MEMORY_LIMIT"
MEMORY_LIMIT = "2GiB"


@dataclass(frozen=True)
class Layout:
    """The engine layout, from the environment."""

    scheduler: str | None
    in_memory_rows: int
    partition_rows: int

    @classmethod
    def from_env(cls) -> Layout:
        return cls(
            scheduler=os.environ.get(SCHEDULER_ENV) or None,
            in_memory_rows=_positive(IN_MEMORY_ROWS_ENV, IN_MEMORY_ROWS),
            partition_rows=_positive(PARTITION_ROWS_ENV, PARTITION_ROWS),
        )

    def out_of_core(self, rows: int) -> bool:
        """A cluster, when one is configured, takes the work whatever its size; else only what will not fit."""
        return self.scheduler is not None or rows > self.in_memory_rows

    def partitions(self, rows: int) -> int:
        return max(1, -(-rows // self.partition_rows))


def _positive(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise InputError(f"environment: {name}: '{value}' is not a positive whole number of rows")
    return int(value)


@contextmanager
def dask_client(layout: Layout) -> Iterator[tuple[Client, str]]:
    """A Dask client on the configured cluster, or on a worker process of this machine's that spills to disk
    what does not fit in PIPELINE_MEMORY_LIMIT; and where that is, for the stage's message (the address with
    any secret masked)."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"dataframe.convert-string": False}):  # text stays pandas' object, as in memory
        if layout.scheduler is None:
            threads = len(os.sched_getaffinity(0))
            limit = os.environ.get(MEMORY_LIMIT_ENV) or MEMORY_LIMIT
            with (
                # A worker process of its own: Dask measures a worker's memory as its process's, so in this one it
                # would count the stage's own share and pause the worker for good.
                # Silent: it logs every shuffle as a WARNING and a task's error with a traceback; the stage reports
                # what matters, in one line.
                LocalCluster(
                    n_workers=1,
                    threads_per_worker=threads,
                    processes=True,
                    memory_limit=limit,
                    dashboard_address=":0",
                    silence_logs=logging.CRITICAL,
                ) as local,
                Client(local) as client,
            ):
                yield client, "this machine, out of core"
            return
        where = redact_url(layout.scheduler)
        try:
            # Waits Dask's distributed.comm.timeouts.connect (30 s; DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT).
            remote = Client(layout.scheduler)
        except (OSError, TimeoutError, ValueError) as error:
            detail = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise InputError(
                f"environment: {SCHEDULER_ENV}: cannot reach the Dask scheduler at {where}: {detail}"
            ) from None
        with remote:
            yield remote, f"the Dask cluster at {where} ({len(remote.scheduler_info()['workers'])} workers)"
