"""Benchmark: pipeline stages on the 541,909-row synthetic default, each as DVC runs it.

Each stage runs as `python -m tasks.<stage>` in a scratch workspace; the script prints its wall
time, rows/s and peak memory, and the ratios to the targets:
  etl                        <= 15 s wall and <= 1.5 GB peak
  drift_check + preprocess   <= 30 s wall together
Run with `make bench` or `python bench/bench_stages.py [rows]`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ["etl", "drift_check", "preprocess"]


def run_stage(workspace: Path, stage: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one stage process."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", f"tasks.{stage}"], cwd=workspace, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)  # this child's own peak, not the maximum over all children
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{stage} failed: {process.stderr.read().decode() if process.stderr else ''}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 541_909
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch)
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["data"].update({"source": "synthetic", "rows": rows, "stockcode": ""})
        (workspace / "params.yaml").write_text(yaml.safe_dump(params))
        shutil.copytree(REPO / "tasks", workspace / "tasks")
        (workspace / "data" / "reference").mkdir(parents=True)
        results = {stage: run_stage(workspace, stage) for stage in STAGES}

    print(f"stages on {rows:,} synthetic rows (python -m tasks.<stage>: interpreter start, reads and writes included)")
    print(f"  {'stage':<12}{'wall s':>8}{'rows/s':>11}{'peak MB':>9}")
    for stage, (seconds, peak_mb) in results.items():
        print(f"  {stage:<12}{seconds:8.2f}{rows / seconds:11,.0f}{peak_mb:9.0f}")
    etl_seconds, etl_peak = results["etl"]
    gate_seconds = results["drift_check"][0] + results["preprocess"][0]
    print("targets:")
    print(f"  etl wall                   {etl_seconds:6.2f} s  / 15 s     ratio {etl_seconds / 15:.2f}")
    print(f"  etl peak memory            {etl_peak:6.0f} MB / 1536 MB  ratio {etl_peak / 1536:.2f}")
    print(f"  drift_check + preprocess   {gate_seconds:6.2f} s  / 30 s     ratio {gate_seconds / 30:.2f}")


if __name__ == "__main__":
    main()
