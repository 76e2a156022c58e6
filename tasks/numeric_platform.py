"""What the stages' numeric results can depend on, as a stage process sees it: `python -m tasks.numeric_platform`
prints it as JSON (run by the flow for the ledger, and by `lineage reproduce` to explain a mismatch), MKL's
own report of the branch it runs included; where MKL runs another branch than the platform's it refuses, in
one line, as the stages would.

It starts like a stage, on the numeric platform tasks/__init__.py sets up, so the dispatch it reports is
the stages' own. It is no stage: nothing it prints goes into a versioned output.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, NoReturn

import tasks
from common.redact import redact_url
from tasks.stage import InputError

LIBRARIES = (
    "numpy", "torch", "scikit-learn", "pandas", "pyarrow", "evidently", "shap", "optuna", "fairlearn", "scipy",
    "dask", "distributed",
)  # fmt: skip


def enter() -> None:
    """Put this process on the numeric platform, as tasks/__init__.py does for a stage's: for a process that
    is no stage but computes for one (a tuning worker's trial). Before numpy and torch load, which read
    these settings once; a CPU below the platform raises, naming what it lacks."""
    wanted = tasks.platform_env(dict(os.environ))
    wanted.pop("PYTHONHASHSEED")  # fixed at interpreter start-up; trials hash no strings
    loaded = [module for module in ("numpy", "torch") if module in sys.modules]
    if loaded and any(os.environ.get(name) != value for name, value in wanted.items()):
        raise RuntimeError(f"numeric platform: {', '.join(loaded)} loaded before it was set up in this process")
    os.environ.update(wanted)
    if "NPY_DISABLE_CPU_FEATURES" in wanted and (missing := tasks.missing_features()):
        raise RuntimeError(f"numeric platform: this CPU lacks {', '.join(missing)}; it needs an x86-64 CPU with AVX2")


def cpuinfo(field: str) -> str | None:
    """The first value of a /proc/cpuinfo field (Linux), or None."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith(field)), None)


def _native_level() -> str:
    """The highest x86-64 level this CPU offers (whatever the caps), or the architecture."""
    flags = set((cpuinfo("flags") or "").split())
    if not flags:
        return platform.machine()
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "avx512"
    if {"avx2", "fma", "f16c"} <= flags:
        return "avx2"
    return "below avx2"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, Any]:
    """Architecture, CPU, levels, the effective dispatch of numpy, torch and the BLAS libraries, versions."""
    import torch
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    from threadpoolctl import threadpool_info

    blas = sorted(
        {f"{pool['internal_api']} {pool['version']} ({pool.get('architecture', '?')})" for pool in threadpool_info()}
        - {"openmp None (?)"}
    )
    enabled = [feature for feature in __cpu_dispatch__ if __cpu_features__.get(feature)]
    config = torch.__config__.show().splitlines()
    mkl = next((line.strip(" -") for line in config if "Math Kernel Library" in line), "no MKL")
    return {
        "architecture": platform.machine(),
        "cpu": cpuinfo("model name") or platform.processor() or "unknown",
        "cpu_vendor": cpuinfo("vendor_id") or "unknown",
        "cpu_level": _native_level(),
        "numeric_level": tasks.NUMERIC_LEVEL,
        "numpy_dispatch": max(enabled, key=__cpu_dispatch__.index, default="baseline"),
        "torch_capability": str(torch.backends.cpu.get_cpu_capability()),
        "blas": "; ".join(blas),
        "torch_blas": mkl,
        "mkl_cnr": tasks.mkl_branch() or "no MKL",  # the branch MKL reports it runs, not the one asked for
        "python": platform.python_version(),
        **{f"version.{package}": _version(package) for package in LIBRARIES},
    }


def cluster() -> dict[str, str]:
    """The Dask cluster the stages' data work goes to, where one is configured (tasks/engine.py): its address
    (any secret masked), its workers and the versions they run. InputError if it cannot be reached."""
    from tasks.engine import Layout, dask_client

    layout = Layout.from_env()
    if layout.scheduler is None:
        return {}
    with dask_client(layout) as (client, _):
        versions: dict[str, Any] = client.get_versions()  # type: ignore[assignment]  # sync client: the dict
        workers = versions["workers"]
    packages = {
        ", ".join(f"{name} {value}" for name, value in sorted(worker["packages"].items()))
        for worker in workers.values()
    }
    return {
        "dask_scheduler": redact_url(layout.scheduler),
        "dask_workers": str(len(workers)),
        "dask_worker_versions": "; ".join(sorted(packages)),
    }


def refuse(problem: str) -> NoReturn:
    """One line and tasks.stage.EXIT_BAD_INPUT, as the stages' refusal: the flow then runs no stage."""
    print(f"numeric_platform: error: {problem}", file=sys.stderr)
    sys.stdout.flush()
    os._exit(65)


if __name__ == "__main__":
    if (refusal := tasks.mkl_refusal()) is not None:  # each stage would refuse
        refuse(refusal)
    try:
        where = cluster()
    except InputError as error:
        refuse(str(error))
    print(json.dumps(describe() | where, indent=2, sort_keys=True))
    sys.stdout.flush()
