"""Benchmark: etl, drift_check and preprocess on the default rows and on ten times as many; drift_check and
preprocess on a hundred times as many (a stand-in table).

Each stage runs as the orchestration runs it, `dvc repro --single-item <stage>` in a scratch git
copy of the project (bench_stages' helpers), on the 541,909-row synthetic default and on 5,419,090
rows. Both sizes run twice, alternately, and each stage's faster run counts: other processes on a
shared machine only ever add time (peak memory is the larger of the two). Prints wall time, rows/s
and peak memory (the largest process in the stage's tree) per stage and size, then the targets:
  time(10x) / time(1x)   <= 11, per stage and for the three together
  peak memory at 10x     <  8 GB, per stage
Then the stand-in for 100x (until etl finishes 100x on this machine): each line of the 10x processed table ten
times in a row, the copy's number added to its invoice number (about 52 million rows, in time order), and
drift_check and preprocess on it, once each, against the issue's targets:
  time(100x) / time(10x) <= 12, per stage
  peak memory at 100x    <= 8 GB, per stage
Run with `make bench` or `python -m bench.bench_scale`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.bench_stages import run_stage, run_stages, scratch_copy, stage_env
from bench.report import Cell, save_results, table

STAGES = ["etl", "drift_check", "preprocess"]
DEFAULT_ROWS = 541_909
SCALE = 10
MAX_RATIO = 11.0
MAX_PEAK_MB = 8 * 1024
ROUNDS = 2
STAND_IN_COPIES = 10
STAND_IN_STAGES = ["drift_check", "preprocess"]
MAX_STAND_IN_RATIO = 12.0


def measure(rows: int) -> tuple[dict[str, tuple[float, float]], dict[str, dict[str, int]]]:
    """Wall seconds and peak MB per stage on `rows` synthetic rows, and the drift windows' sizes."""
    results, drift = run_stages(rows, STAGES, "metrics/drift_check.json")
    windows = {name: {key: drift[name][key] for key in ("rows", "rows_tested")} for name in ("reference", "current")}
    return results, windows


def stand_in(source: Path, target: Path, copies: int = STAND_IN_COPIES) -> int:
    """`copies` of each line of a processed table in a row, the copy's number added to the invoice number: the
    same shop `copies` times as busy, still in time order. Returns its rows."""
    table_file = pq.ParquetFile(source)
    with pq.ParquetWriter(target, table_file.schema_arrow, compression="snappy") as out:
        for batch in table_file.iter_batches(batch_size=100_000):
            lines = pa.Table.from_batches([batch]).take(pa.array(np.repeat(np.arange(batch.num_rows), copies)))
            copy = pa.array(np.tile(np.arange(copies), batch.num_rows).astype(str))
            invoice = lines.schema.get_field_index("invoice_no")
            out.write_table(
                lines.set_column(invoice, "invoice_no", pc.binary_join_element_wise(lines["invoice_no"], copy, "/"))
            )
    return int(pq.ParquetFile(target).metadata.num_rows)


def measure_stand_in(rows: int) -> tuple[int, dict[str, tuple[float, float]]]:
    """etl on `rows` synthetic rows, its processed table made STAND_IN_COPIES times as large, then wall seconds
    and peak MB of each of STAND_IN_STAGES on it."""
    env = stage_env()
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch)
        scratch_copy(workspace, rows)
        run_stage(workspace, "etl", env)
        processed = workspace / "data/processed.parquet"
        larger = stand_in(processed, workspace / "data/larger.parquet")
        (workspace / "data/larger.parquet").replace(processed)
        return larger, {stage: run_stage(workspace, stage, env) for stage in STAND_IN_STAGES}


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
    stand_in_rows, hundred = measure_stand_in(DEFAULT_ROWS * SCALE)
    print(f"100x stand-in: {stand_in_rows:,} processed rows ({STAND_IN_COPIES} copies of each 10x line), one run each")
    print(f"targets: time(100x) / time({SCALE}x) <= {MAX_STAND_IN_RATIO:g}; peak memory at 100x <= {MAX_PEAK_MB} MB")
    for stage, (seconds, peak_mb) in hundred.items():
        ratio = seconds / large[stage][0]
        print(
            f"  {stage:<12}{seconds:9.2f} s {peak_mb:7.0f} MB   time ratio {ratio:6.2f} "
            f"({ratio / MAX_STAND_IN_RATIO:.2f} of target)   peak ({peak_mb / MAX_PEAK_MB:.2f} of target)"
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
    for stage, (seconds, peak_mb) in hundred.items():
        ratio = seconds / large[stage][0]
        targets.append([f"{stage}: time(100x) / time({SCALE}x) <= {MAX_STAND_IN_RATIO:g}", round(ratio, 2),
                        round(ratio / MAX_STAND_IN_RATIO, 2)])  # fmt: skip
        targets.append([f"{stage}: peak memory at 100x <= 8 GB", f"{peak_mb:,.0f} MB", round(peak_mb / MAX_PEAK_MB, 2)])
    drift_windows: list[list[Cell]] = [
        [name, rows, measured[rows][1][name]["rows"], measured[rows][1][name]["rows_tested"]]
        for rows in sizes
        for name in ("reference", "current")
    ]
    save_results(
        "bench_scale",
        f"Ten and a hundred times the data: {', '.join(STAGES)}",
        [
            table(["stage", "rows", "wall (s)", "rows/s", "peak memory (MB)"], figures),
            table(["stage", "processed rows", "wall (s)", "peak memory (MB)"],
                  [[stage, stand_in_rows, round(s, 1), round(mb)] for stage, (s, mb) in hundred.items()],
                  f"100x stand-in: {STAND_IN_COPIES} copies of each line of the 10x processed table"),
            table(["target", "measured", "ratio"], targets),
            table(["drift window", "data rows", "rows in window", "rows tested"], drift_windows,
                  "drift_check's samples"),
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
