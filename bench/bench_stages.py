"""Benchmark: the six stages on the 541,909-row synthetic default, each run through DVC.

In a scratch git copy of the project, each stage runs as `dvc repro --single-item <stage>` (what
the orchestration does); the script prints each stage's wall time, rows/s and peak memory (the
largest process in its tree) and the ratios to the targets:
  etl                        <= 15 s wall, <= 1.5 GB peak
  drift_check + preprocess   <= 30 s wall together
  whole pipeline             <= 600 s wall, <= 4 GB peak
  network test RMSLE         <= 1.10 x the gradient-boosting baseline's
Run with `make bench`, or `python bench/bench_stages.py [rows]` for another size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.report import save_results, table

REPO = Path(__file__).resolve().parents[1]
STAGES = ["etl", "drift_check", "preprocess", "tune", "inference", "fairness"]


def scratch_copy(destination: Path, rows: int) -> None:
    """The project's files as a fresh git repository, set to `rows` synthetic rows."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (REPO / name).is_file() and name != "dvc.lock":
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, destination / name)
    params = yaml.safe_load((destination / "params.yaml").read_text())
    params["data"].update({"source": "synthetic", "rows": rows, "stockcode": ""})
    (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)


def stage_env(**extra: str) -> dict[str, str]:
    """This environment with the running interpreter's bin first on PATH (dvc.yaml calls `python`), and `extra`."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra}


def run_stage(workspace: Path, stage: str, env: dict[str, str], force: bool = False) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB, largest process in the tree) of one `dvc repro` of `stage` (`force`: even
    when DVC would skip it as unchanged)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        ["dvc", "repro", "--single-item", *(["--force"] if force else []), stage], cwd=workspace, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)  # maxrss covers reaped descendants too
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{stage} failed: {process.stderr.read().decode() if process.stderr else ''}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def run_stages(rows: int, stages: list[str], metrics: str) -> tuple[dict[str, tuple[float, float]], dict[str, Any]]:
    """Wall seconds and peak MB of each stage, run in order in a scratch copy on `rows` synthetic rows,
    and the stage metrics file `metrics` those runs wrote."""
    env = stage_env()
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch)
        scratch_copy(workspace, rows)
        results = {stage: run_stage(workspace, stage, env) for stage in stages}
        return results, json.loads((workspace / metrics).read_text())


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 541_909
    results, inference = run_stages(rows, STAGES, "metrics/inference.json")

    print(f"stages on {rows:,} synthetic rows, each `dvc repro --single-item <stage>` on 2 cores")
    print(f"  {'stage':<12}{'wall s':>8}{'rows/s':>11}{'peak MB':>9}")
    for stage, (seconds, peak_mb) in results.items():
        print(f"  {stage:<12}{seconds:8.2f}{rows / seconds:11,.0f}{peak_mb:9.0f}")
    total = sum(seconds for seconds, _ in results.values())
    peak = max(peak_mb for _, peak_mb in results.values())
    etl_seconds, etl_peak = results["etl"]
    gate_seconds = results["drift_check"][0] + results["preprocess"][0]
    ratio = inference["rmsle_vs_baseline"]
    network, baseline = inference["test"]["rmsle"], inference["baseline_test"]["rmsle"]
    print("targets:")
    print(f"  etl wall                  {etl_seconds:8.2f} s  / 15 s     ratio {etl_seconds / 15:.2f}")
    print(f"  etl peak memory           {etl_peak:8.0f} MB / 1536 MB  ratio {etl_peak / 1536:.2f}")
    print(f"  drift_check + preprocess  {gate_seconds:8.2f} s  / 30 s     ratio {gate_seconds / 30:.2f}")
    print(f"  whole pipeline wall       {total:8.2f} s  / 600 s    ratio {total / 600:.2f}")
    print(f"  whole pipeline peak       {peak:8.0f} MB / 4096 MB  ratio {peak / 4096:.2f}")
    print(f"  network test RMSLE        {network:8.4f}   baseline {baseline:.4f}  ratio {ratio:.3f} (target <= 1.10)")
    save_results(
        "bench_stages",
        f"The six stages on {rows:,} rows",
        [
            table(
                ["stage", "wall (s)", "rows/s", "peak memory (MB)"],
                [[stage, round(s, 1), round(rows / s), round(mb)] for stage, (s, mb) in results.items()],
            ),
            table(
                ["target", "measured", "ratio"],
                [
                    ["etl wall <= 15 s", f"{etl_seconds:.1f} s", round(etl_seconds / 15, 2)],
                    ["etl peak memory <= 1.5 GB", f"{etl_peak:.0f} MB", round(etl_peak / 1536, 2)],
                    ["drift_check + preprocess <= 30 s", f"{gate_seconds:.1f} s", round(gate_seconds / 30, 2)],
                    ["whole pipeline <= 10 min", f"{total:.0f} s", round(total / 600, 2)],
                    ["whole pipeline peak memory <= 4 GB", f"{peak:.0f} MB", round(peak / 4096, 2)],
                    ["network test RMSLE <= 1.10 x baseline", f"{network:.4f} vs {baseline:.4f}", round(ratio, 3)],
                ],
            ),
        ],
    )


if __name__ == "__main__":
    main()
