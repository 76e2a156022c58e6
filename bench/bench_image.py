"""The worker image: its size by layer against the 2.0 GB target, and what leaving out bytecode costs.

Builds docker/worker.Dockerfile from this checkout (on docker/base-image.sh's base), then reads each layer's
size from `docker history`. The first import of the pipeline's stack in a fresh container compiles it into
PYTHONPYCACHEPREFIX; a second import in the same container reads that cache: both timed, median of 3
containers. Needs a Docker engine. `python -m bench.bench_image [--tag TAG]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

from bench.report import save_results, table

REPO = Path(__file__).resolve().parents[1]
TARGET_GB = 2.0
STACK = "import torch, pandas, sklearn, shap, evidently, prefect, dvc.repo, tasks.tune, flows.pipeline"


def _docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"docker {' '.join(args[:2])} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def _imports(tag: str) -> tuple[float, float]:
    """Seconds for the stack's first import in a fresh container, then its second in the same container."""
    importing = f"subprocess.run([sys.executable, '-c', {STACK!r}])"
    once = f"t = time.perf_counter(); {importing}; times.append(time.perf_counter() - t)"
    script = f"import time, subprocess, sys; times = []; {once}; {once}; print(*times)"
    first, second = _docker("run", "--rm", "--entrypoint", "python", tag, "-c", script).split()
    return float(first), float(second)


def _layers(tag: str) -> list[list[str | float]]:
    """Each non-empty layer, base first: its Dockerfile step and its size in MB."""
    history = _docker("history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", tag)
    layers: list[list[str | float]] = []
    for line in reversed(history.splitlines()):
        size, created_by = line.split("\t", 1)
        if int(size) > 0:
            step = " ".join(created_by.removeprefix("/bin/sh -c ").removeprefix("#(nop) ").split()) or "base image"
            layers.append([step[:90], round(int(size) / 1e6, 1)])
    return layers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tag", default="retail-lineage-worker:bench")
    tag = parser.parse_args().tag
    subprocess.run(["bash", "docker/base-image.sh"], cwd=REPO, check=True)
    began = time.perf_counter()
    _docker("build", "--file", "docker/worker.Dockerfile", "--tag", tag, ".")
    built = time.perf_counter() - began
    layers = _layers(tag)
    gb = int(_docker("image", "inspect", "--format", "{{.Size}}", tag)) / 1e9
    first, second = (statistics.median(times) for times in zip(*[_imports(tag) for _ in range(3)], strict=True))
    print(f"image {tag}: {gb:.2f} GB (target {TARGET_GB} GB: {gb / TARGET_GB:.2f}x), built in {built:.0f} s")
    for step, size in layers:
        print(f"  {size:>8} MB  {step}")
    print(f"stack import: first in a container {first:.1f} s, then {second:.1f} s ({first / second:.2f}x)")
    totals = ["image GB", "target GB", "ratio to target", "build s", "first import s", "second import s"]
    figures = [round(gb, 2), TARGET_GB, round(gb / TARGET_GB, 2), round(built), round(first, 1), round(second, 1)]
    note = "The base is docker/base-image.sh's stand-in where Docker Hub does not answer."
    save_results(
        "bench_image",
        "Worker image: size by layer, bytecode cached per container",
        [table(["layer (Dockerfile step)", "MB"], layers, "Layers, base first"), table(totals, [figures], "Totals")],
        notes=[note],
    )


if __name__ == "__main__":
    main()
