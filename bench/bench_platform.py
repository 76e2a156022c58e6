"""Benchmark: the numeric platform that holds across CPU vendors (issue 36) against the one before it. The six
stages on the 541,909-row synthetic default, each `dvc repro --single-item <stage>` (tune forced, and run
`tune runs` times), in three scratch copies; each stage runs in the three copies one after another, in a
rotating order, so that other work on the machine falls on all three alike:
  before       the platform as it was: MKL_CBWR=AVX2,STRICT (which MKL runs as AUTO on a CPU not Intel's),
               idle OpenMP threads spinning, tune.parallel_trials 1, everything in the stage's one process
  after, 1     this platform (MKL's COMPATIBLE branch, idle OpenMP threads asleep) at that same parallelism:
               tune.parallel_trials 1, TUNE_WORKERS=1
  after        this platform with the committed params: batches of two trials on the stage's own processes,
               one per core, and the baseline fitted beside the final fit
Prints each stage's wall time (tune's: each run, and their mean), the ratios and the targets:
  whole pipeline, after / before                        <= 1.0
  each stage, after at equal parallelism / before       <= 1.5
the CNR branch MKL reported in each copy, the outputs "before" and "after, 1" made differently, and whether
"after" made the committed dvc.lock's bytes (at the default size).
Run with `python -m bench.bench_platform [rows] [tune runs]` (default 541909 rows, 2 tune runs).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

import yaml

from bench.bench_stages import REPO, STAGES, run_stage, scratch_copy, stage_env
from bench.report import Cell, save_results, table
from tests.platform_fixture import BEFORE

WHOLE, PER_STAGE = 1.0, 1.5
DEFAULT_ROWS = 541_909


@dataclass
class Copy:
    label: str
    root: Path
    env: dict[str, str]
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def stage_seconds(self, stage: str) -> float:
        return mean(self.seconds[stage])

    def total(self) -> float:
        return sum(self.stage_seconds(stage) for stage in STAGES)

    def outs(self) -> dict[str, str]:
        lock = yaml.safe_load((self.root / "dvc.lock").read_text())["stages"]
        return {out["path"]: out["md5"] for stage in lock.values() for out in stage.get("outs", [])}

    def mkl_branch(self) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "tasks.numeric_platform"], cwd=self.root, env=self.env,
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return str(json.loads(done.stdout)["mkl_cnr"])


def prepare(root: Path, rows: int, label: str, before: bool, sequential: bool) -> Copy:
    """A scratch copy: the platform before issue 36 or this one; tune sequential in one process, or as committed."""
    scratch_copy(root, rows)
    if before:
        init = root / "tasks" / "__init__.py"
        text = init.read_text()
        for old, new in BEFORE:
            if old not in text:
                raise SystemExit(f"bench_platform: tasks/__init__.py no longer holds {old.strip()!r}; update BEFORE")
            text = text.replace(old, new)
        init.write_text(text)
    env = stage_env()
    if sequential:
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["tune"]["parallel_trials"] = 1
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env["TUNE_WORKERS"] = "1"
    return Copy(label, root, env)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ROWS
    tune_runs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        copies = [
            prepare(base / "before", rows, "before", before=True, sequential=True),
            prepare(base / "after-1", rows, "after, 1", before=False, sequential=True),
            prepare(base / "after", rows, "after", before=False, sequential=False),
        ]
        turn = 0
        for stage in STAGES:
            for attempt in range(tune_runs if stage == "tune" else 1):
                for copy in copies[turn % 3 :] + copies[: turn % 3]:
                    seconds, _ = run_stage(copy.root, stage, copy.env, force=attempt > 0)
                    copy.seconds.setdefault(stage, []).append(seconds)
                    print(f"  {stage:<12}{copy.label:<10}{seconds:8.1f} s", flush=True)
                turn += 1
        branches = {copy.label: copy.mkl_branch() for copy in copies}
        outs = {copy.label: copy.outs() for copy in copies}
    committed = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]
    locked = {out["path"]: out["md5"] for stage in committed.values() for out in stage.get("outs", [])}
    report(rows, copies, branches, outs, locked if rows == DEFAULT_ROWS else None)


def report(
    rows: int,
    copies: list[Copy],
    branches: dict[str, str],
    outs: dict[str, dict[str, str]],
    locked: dict[str, str] | None,
) -> None:
    before, equal, _ = copies
    print(f"stages on {rows:,} synthetic rows: the platform before issue 36 against this one")
    print(f"  {'stage':<12}{'before s':>10}{'after,1 s':>11}{'after s':>9}{'after,1/before':>16}{'after/before':>14}")
    rows_: list[list[Cell]] = []
    for stage in STAGES:
        b, e, a = (copy.stage_seconds(stage) for copy in copies)
        print(f"  {stage:<12}{b:10.1f}{e:11.1f}{a:9.1f}{e / b:16.2f}{a / b:14.2f}")
        rows_.append([stage, round(b, 1), round(e, 1), round(a, 1), round(e / b, 2), round(a / b, 2)])
    b, e, a = (copy.total() for copy in copies)
    print(f"  {'pipeline':<12}{b:10.1f}{e:11.1f}{a:9.1f}{e / b:16.2f}{a / b:14.2f}")
    rows_.append(["whole pipeline", round(b, 1), round(e, 1), round(a, 1), round(e / b, 2), round(a / b, 2)])
    worst = max(STAGES, key=lambda stage: equal.stage_seconds(stage) / before.stage_seconds(stage))
    worst_ratio = equal.stage_seconds(worst) / before.stage_seconds(worst)
    tune_runs = "; ".join(f"{c.label}: {', '.join(f'{s:.1f}' for s in c.seconds['tune'])} s" for c in copies)
    verdicts = [
        f"target: whole pipeline after <= {WHOLE} x before: {a / b:.2f} ({'met' if a / b <= WHOLE else 'MISSED'})",
        f"target: each stage after, 1 <= {PER_STAGE} x before: worst {worst} {worst_ratio:.2f} "
        f"({'met' if worst_ratio <= PER_STAGE else 'MISSED'})",
    ]
    differ = sorted(path for path in outs["before"] if outs["before"][path] != outs["after, 1"].get(path))
    notes = [
        f"tune's runs: {tune_runs}",
        "MKL reported the CNR branch " + ", ".join(f"{branch} ({label})" for label, branch in branches.items()),
        f"{len(differ)} of {len(outs['before'])} outputs differ between before and after, 1: "
        + (", ".join(differ) or "none"),
    ]
    if locked is not None:
        same = outs["after"] == locked
        notes.append(f"after made the committed dvc.lock's bytes: {'yes, every output' if same else 'NO'}")
        if not same:
            notes.append("  differing: " + ", ".join(sorted(p for p in locked if locked[p] != outs["after"].get(p))))
    for line in verdicts + notes:
        print(line)
    save_results(
        "bench_platform",
        "The numeric platform across CPU vendors: before issue 36 against this one",
        [
            table(
                [
                    "stage",
                    "before (s)",
                    "after, tune sequential (s)",
                    "after (s)",
                    "after, 1 / before",
                    "after / before",
                ],
                rows_,
            )
        ],
        verdicts + notes,
    )


if __name__ == "__main__":
    main()
