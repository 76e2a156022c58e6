"""Benchmark: etl, drift_check and preprocess on the default rows and on ten times as many.

Each stage runs as the orchestration runs it, `dvc repro --single-item <stage>` in a scratch git
copy of the project (bench_stages' helpers), on the 541,909-row synthetic default and on 5,419,090
rows. Both sizes run twice, alternately, and each stage's faster run counts: other processes on a
shared machine only ever add time (peak memory is the larger of the two). Prints wall time, rows/s
and peak memory (the largest process in the stage's tree) per stage and size, then the targets:
  time(10x) / time(1x)   <= 11, per stage and for the three together
  peak memory at 10x     <  8 GB, per stage
Run with `make bench` or `python -m bench.bench_scale`.
"""

from __future__ import annotations

from bench.bench_stages import run_stages
from bench.report import Cell, save_results, table

STAGES = ["etl", "drift_check", "preprocess"]
DEFAULT_ROWS = 541_909
SCALE = 10
MAX_RATIO = 11.0
MAX_PEAK_MB = 8 * 1024
ROUNDS = 2


def measure(rows: int) -> tuple[dict[str, tuple[float, float]], dict[str, dict[str, int]]]:
    """Wall seconds and peak MB per stage on `rows` synthetic rows, and the drift windows' sizes."""
    results, drift = run_stages(rows, STAGES, "metrics/drift_check.json")
    windows = {name: {key: drift[name][key] for key in ("rows", "rows_tested")} for name in ("reference", "current")}
    return results, windows


def best(runs: list[dict[str, tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    """Per stage, the shortest wall time and the largest peak memory over several runs."""
    return {stage: (min(run[stage][0] for run in runs), max(run[stage][1] for run in runs)) for stage in runs[0]}


def main() -> None:
    sizes = (DEFAULT_ROWS, DEFAULT_ROWS * SCALE)
    rounds = [{rows: measure(rows) for rows in sizes} for _ in range(ROUNDS)]
    measured = {rows: (best([run[rows][0] for run in rounds]), rounds[0][rows][1]) for rows in sizes}

    print(f"{', '.join(STAGES)} on 1x and {SCALE}x the default synthetic rows, each `dvc repro --single-item`,")
    print(f"the faster of {ROUNDS} runs of each")
    print(f"  {'stage':<12}{'rows':>11}{'wall s':>9}{'rows/s':>11}{'peak MB':>9}")
    for rows in sizes:
        results = measured[rows][0]
        for stage, (seconds, peak_mb) in results.items():
            print(f"  {stage:<12}{rows:>11,}{seconds:9.2f}{rows / seconds:11,.0f}{peak_mb:9.0f}")
        total = sum(seconds for seconds, _ in results.values())
        peak = max(peak_mb for _, peak_mb in results.values())
        print(f"  {'3 stages':<12}{rows:>11,}{total:9.2f}{rows / total:11,.0f}{peak:9.0f}")
    for rows in sizes:
        windows = measured[rows][1]
        tested = ", ".join(f"{name} {w['rows_tested']:,} of {w['rows']:,}" for name, w in windows.items())
        print(f"  drift_check at {rows:,} rows tested: {tested} rows")

    small, large = measured[sizes[0]][0], measured[sizes[1]][0]
    print(f"targets: time({SCALE}x) / time(1x) <= {MAX_RATIO:g}; peak memory at {SCALE}x < {MAX_PEAK_MB} MB")
    for stage in STAGES:
        ratio = large[stage][0] / small[stage][0]
        peak = large[stage][1]
        print(
            f"  {stage:<12}time ratio {ratio:6.2f} ({ratio / MAX_RATIO:.2f} of target)   "
            f"peak {peak:6.0f} MB ({peak / MAX_PEAK_MB:.2f} of target)"
        )
    total_ratio = sum(s for s, _ in large.values()) / sum(s for s, _ in small.values())
    peak = max(mb for _, mb in large.values())
    print(
        f"  {'3 stages':<12}time ratio {total_ratio:6.2f} ({total_ratio / MAX_RATIO:.2f} of target)   "
        f"peak {peak:6.0f} MB ({peak / MAX_PEAK_MB:.2f} of target)"
    )
    figures: list[list[Cell]] = []
    for rows in sizes:
        results = measured[rows][0]
        figures += [[stage, rows, round(s, 1), round(rows / s), round(mb)] for stage, (s, mb) in results.items()]
        seconds = sum(s for s, _ in results.values())
        figures.append(
            ["all three", rows, round(seconds, 1), round(rows / seconds), round(max(mb for _, mb in results.values()))]
        )
    targets: list[list[Cell]] = [
        [
            f"{stage}: time({SCALE}x) / time(1x) <= {MAX_RATIO:g}",
            round(large[stage][0] / small[stage][0], 2),
            round(large[stage][0] / small[stage][0] / MAX_RATIO, 2),
        ]
        for stage in STAGES
    ]
    targets.append(
        [
            f"all three: time({SCALE}x) / time(1x) <= {MAX_RATIO:g}",
            round(total_ratio, 2),
            round(total_ratio / MAX_RATIO, 2),
        ]
    )
    targets.append([f"peak memory at {SCALE}x < 8 GB", f"{peak:,.0f} MB", round(peak / MAX_PEAK_MB, 2)])
    drift_windows: list[list[Cell]] = [
        [name, rows, measured[rows][1][name]["rows"], measured[rows][1][name]["rows_tested"]]
        for rows in sizes
        for name in ("reference", "current")
    ]
    save_results(
        "bench_scale",
        f"Ten times the data: {', '.join(STAGES)}",
        [
            table(["stage", "rows", "wall (s)", "rows/s", "peak memory (MB)"], figures),
            table(["target", "measured", "ratio"], targets),
            table(["drift window", "data rows", "rows in window", "rows tested"], drift_windows,
                  "drift_check's samples"),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
