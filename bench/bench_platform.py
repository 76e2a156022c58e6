"""Benchmark: what the numeric platform costs. The six stages on the 541,909-row synthetic default, each
`dvc repro --single-item <stage>`, in two scratch copies: one as committed (dispatch capped at
NUMERIC_LEVEL, MKL in reproducible mode, library threads fixed), one with NUMERIC_LEVEL "native" (every
library picks its own kernels). Prints each stage's wall time, the ratio pinned / native and the target:
  whole pipeline   <= 1.15 x native
and which outputs the two copies made differently (on an AVX-512 CPU they differ: that is the point).
Run with `python -m bench.bench_platform [rows]`.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml

from bench.bench_stages import STAGES, run_stage, scratch_copy, stage_env
from bench.report import Cell, save_results, table

TARGET = 1.15


def timed_copy(root: Path, rows: int, level: str) -> tuple[dict[str, float], dict[str, str]]:
    """Each stage's wall seconds, and every output's md5, in a scratch copy at `level`."""
    scratch_copy(root, rows)
    init = root / "tasks" / "__init__.py"
    committed = 'NUMERIC_LEVEL = "avx2"'
    assert committed in init.read_text(), "bench_platform expects the committed level avx2"
    init.write_text(init.read_text().replace(committed, f'NUMERIC_LEVEL = "{level}"'))
    env = stage_env()
    seconds = {stage: run_stage(root, stage, env)[0] for stage in STAGES}
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    outs = {out["path"]: out["md5"] for stage in lock.values() for out in stage.get("outs", [])}
    return seconds, outs


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 541_909
    with tempfile.TemporaryDirectory() as pinned_dir, tempfile.TemporaryDirectory() as native_dir:
        pinned, pinned_outs = timed_copy(Path(pinned_dir), rows, "avx2")
        native, native_outs = timed_copy(Path(native_dir), rows, "native")
    print(f"stages on {rows:,} synthetic rows: pinned numeric platform (avx2) against native dispatch")
    print(f"  {'stage':<12}{'pinned s':>10}{'native s':>10}{'ratio':>8}")
    for stage in STAGES:
        print(f"  {stage:<12}{pinned[stage]:10.2f}{native[stage]:10.2f}{pinned[stage] / native[stage]:8.2f}")
    total_pinned, total_native = sum(pinned.values()), sum(native.values())
    ratio = total_pinned / total_native
    print(f"  {'pipeline':<12}{total_pinned:10.2f}{total_native:10.2f}{ratio:8.2f}")
    print(f"target: whole pipeline <= {TARGET} x native: ratio {ratio:.2f} ({'met' if ratio <= TARGET else 'MISSED'})")
    differ = sorted(path for path in pinned_outs if pinned_outs[path] != native_outs.get(path))
    print(f"outputs that differ between the two: {', '.join(differ) or 'none (this CPU offers nothing above avx2)'}")
    rows_: list[list[Cell]] = [
        [stage, round(pinned[stage], 1), round(native[stage], 1), round(pinned[stage] / native[stage], 2)]
        for stage in STAGES
    ]
    rows_.append(
        [f"whole pipeline (target <= {TARGET})", round(total_pinned, 1), round(total_native, 1), round(ratio, 2)]
    )
    save_results(
        "bench_platform",
        "The numeric platform's cost: pinned (avx2) against native dispatch",
        [table(["stage", "pinned, avx2 (s)", "native (s)", "ratio"], rows_)],
        [f"{len(differ)} of the {len(pinned_outs)} outputs came out different natively: {', '.join(differ) or 'none'}"],
    )


if __name__ == "__main__":
    main()
