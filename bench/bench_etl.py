"""Benchmark: the etl stage on the 541,909-row synthetic default, as DVC runs it.

Prints wall time, rows/s and peak memory of `python -m tasks.etl` in a scratch workspace, their
ratios to the targets (15 s, 1.5 GB), and an in-process breakdown by step.
Run with `make bench` (or `python bench/bench_etl.py [rows]`).
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 15.0
TARGET_PEAK_MB = 1536.0


def run_stage(rows: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one `python -m tasks.etl` run on `rows` synthetic rows."""
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch)
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["data"].update({"source": "synthetic", "rows": rows, "stockcode": ""})
        (workspace / "params.yaml").write_text(yaml.safe_dump(params))
        shutil.copytree(REPO / "tasks", workspace / "tasks")
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tasks.etl"], cwd=workspace, check=True, capture_output=True)
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux reports KiB
    return seconds, peak_mb


def breakdown(rows: int) -> dict[str, float]:
    """Seconds per etl step, in this process."""
    from tasks.data import generate_transactions, validate_transactions
    from tasks.etl import add_features, clean

    timings: dict[str, float] = {}
    started = time.perf_counter()
    raw = generate_transactions(rows, seed=42)
    timings["generate"] = time.perf_counter() - started
    started = time.perf_counter()
    raw = validate_transactions(raw, "synthetic")
    timings["validate (pandera)"] = time.perf_counter() - started
    started = time.perf_counter()
    cleaned, _ = clean(raw)
    timings["clean"] = time.perf_counter() - started
    started = time.perf_counter()
    add_features(cleaned)
    timings["features"] = time.perf_counter() - started
    return timings


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 541_909
    seconds, peak_mb = run_stage(rows)
    print(f"etl on {rows:,} synthetic rows (python -m tasks.etl, includes interpreter start and writes)")
    print(f"  wall        {seconds:8.2f} s    target {TARGET_SECONDS:.0f} s     ratio {seconds / TARGET_SECONDS:.2f}")
    print(f"  throughput  {rows / seconds:8,.0f} rows/s")
    print(f"  peak RSS    {peak_mb:8.0f} MB   target {TARGET_PEAK_MB:.0f} MB  ratio {peak_mb / TARGET_PEAK_MB:.2f}")
    print("in-process breakdown:")
    for step, step_seconds in breakdown(rows).items():
        print(f"  {step:<20}{step_seconds:6.2f} s")


if __name__ == "__main__":
    main()
