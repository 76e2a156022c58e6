"""Our ledger beside MLflow's tracking store and model registry, both on SQLite, holding the same N weekly
runs (N = 1,000 and 10,000), then ours alone at 100,000 runs.

Each MLflow run logs 30 params, 20 metrics and 10 datasets (`mlflow.log_input`), logs the model file as an
artifact, registers it as a new version of the `demand` model and moves the `production` alias to it
(bench/mlflow_side.py, run in its own virtualenv, created when missing outside the repository). Each of our
runs is what `record_run` records of a pipeline run on the stand-in workspace (bench/bench_lineage.py):
the ledgers are built by tests/bulk_ledger.py, then runs are recorded with `record_run`.

Measured on each side, warm, median of 7: (a) recording one run; (b) the production model's provenance:
ours `query_lineage(store, "production", ASCENDANTS, depth=10)`, MLflow alias -> version -> run -> params,
metrics, tags, datasets; (c) which version is in production: ours `registry.production`, MLflow
`get_model_version_by_alias`; (d) (b) in a fresh process: ours `lineage query production --format json`,
MLflow a script doing (b). Targets, ours / MLflow: provenance and production lookup <= 1.0, recording
<= 0.5. At 100,000 runs: provenance <= 50 ms, production lookup <= 1 ms, recording <= 50 ms, `lineage
verify` after one new run <= 1 s, `lineage query production` in a fresh process <= 300 ms.

Ledgers and MLflow stores are built once and kept under /tmp/bench_vs_mlflow (BENCH_VS_MLFLOW_CACHE),
keyed by size; each measurement works on a copy.
`python -m bench.bench_vs_mlflow [--sizes 1000,10000] [--large 100000]` (`--large 0` skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.bench_lineage import record_week
from bench.report import REPO, save_results, table
from lineage.query import Direction, query_lineage
from lineage.registry import production
from lineage.store import LedgerStore
from tests.bulk_ledger import build

MLFLOW = "mlflow==3.17.2"
MLFLOW_SIDE = REPO / "bench" / "mlflow_side.py"
LINEAGE = Path(sys.executable).parent / "lineage"
CACHE = Path(os.environ.get("BENCH_VS_MLFLOW_CACHE", "/tmp/bench_vs_mlflow"))
MLFLOW_VENV = CACHE / "venv-mlflow"  # outside the repository: neither the image nor the code scan sees it
REPEAT = 7
RATIO_TARGETS = {"record": 0.5, "provenance": 1.0, "production": 1.0, "fresh": 1.0}
LARGE_TARGETS = {"provenance": 0.050, "production": 0.001, "record": 0.050, "verify": 1.0, "fresh": 0.300}
LABELS = {
    "record": "(a) record one run",
    "provenance": "(b) the production model's provenance",
    "production": "(c) which version is in production",
    "fresh": "(d) provenance in a fresh process",
    "verify": "`lineage verify` after one new run (a fresh process)",
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _median(samples: Callable[[], float]) -> float:
    """One warm-up sample, then the median of REPEAT."""
    samples()
    return statistics.median(samples() for _ in range(REPEAT))


def _timed(action: Callable[[], Any]) -> Callable[[], float]:
    def sample() -> float:
        began = time.perf_counter()
        action()
        return time.perf_counter() - began

    return sample


def _process(command: Sequence[str | Path]) -> Callable[[], float]:
    """A sample: the wall time of `command` in a fresh process (which must succeed)."""

    def sample() -> float:
        began = time.perf_counter()
        subprocess.run([str(part) for part in command], check=True, capture_output=True)
        return time.perf_counter() - began

    return sample


# -- MLflow ----------------------------------------------------------------------------------------------


def mlflow_python() -> Path:
    """The MLflow virtualenv's python, the virtualenv created (with MLflow pinned) if missing."""
    python = MLFLOW_VENV / "bin" / "python"
    if python.exists():
        done = subprocess.run(
            [str(python), "-c", "import mlflow; print(mlflow.__version__)"], capture_output=True, text=True
        )
        if done.returncode == 0 and MLFLOW.endswith(done.stdout.strip()):
            return python
    _log(f"creating {MLFLOW_VENV} with {MLFLOW}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(MLFLOW_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", MLFLOW], check=True)
    return python


def _mlflow_side(python: Path, *arguments: str | Path) -> str:
    done = subprocess.run(
        [str(python), str(MLFLOW_SIDE), *map(str, arguments)], check=True, capture_output=True, text=True
    )
    return done.stdout


def mlflow_store(python: Path, runs: int) -> Path:
    """A store of `runs` runs, built once (DIR/done.json marks it complete)."""
    directory = CACHE / f"mlflow-{runs}"
    if not (directory / "done.json").exists():
        shutil.rmtree(directory, ignore_errors=True)
        _log(f"mlflow: recording {runs:,} runs into {directory} (about 0.1 s a run)")
        subprocess.run(
            [str(python), str(MLFLOW_SIDE), "build", "--dir", str(directory), "--runs", str(runs)], check=True
        )
    return directory


def measure_mlflow(python: Path, runs: int) -> dict[str, Any]:
    work = CACHE / "work" / "mlflow"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(mlflow_store(python, runs), work)
    result: dict[str, Any] = json.loads(_mlflow_side(python, "measure", "--dir", work, "--week", str(runs)))
    # The fresh process reads the store as measure left it: the alias on its last run, as ours is.
    result["fresh"] = _median(_process([python, MLFLOW_SIDE, "provenance", "--dir", work]))
    shutil.rmtree(work, ignore_errors=True)
    return result


# -- ours ------------------------------------------------------------------------------------------------------


def ledger(runs: int) -> tuple[Path, dict[str, Any]]:
    """A bulk-built ledger of `runs` runs, built once, verified in full once (DIR/built.json marks it
    complete); its directory (lineage.db, the workspace its runs were recorded on) and how it was built."""
    directory = CACHE / f"ledger-{runs}"
    built = directory / "built.json"
    if not built.exists():
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        url = f"sqlite:///{directory / 'lineage.db'}"
        _log(f"ours: building a {runs:,}-run ledger in {directory}")
        began = time.perf_counter()
        head = build(url, runs, directory / "workspace", progress=lambda line: _log(f"  {line}"))
        seconds = time.perf_counter() - began
        _log(f"ours: {head.count:,} records in {seconds:.0f} s; `lineage verify --full`")
        began = time.perf_counter()  # the first verification rehashes every record; later ones start there
        subprocess.run([str(LINEAGE), "verify", "--full", "--db", url], check=True, capture_output=True)
        verified = time.perf_counter() - began
        facts = {
            "runs": runs,
            "records": head.count,
            "head": head.head_hash,
            "seconds": seconds,
            "verify_full": verified,
        }
        built.write_text(json.dumps(facts), encoding="utf-8")
    return directory, json.loads(built.read_text(encoding="utf-8"))


def measure_ours(runs: int, verify: bool = False) -> dict[str, Any]:
    source, facts = ledger(runs)
    work = CACHE / "work" / "ours"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copyfile(source / "lineage.db", work / "lineage.db")
    url = f"sqlite:///{work / 'lineage.db'}"
    root = source / "workspace"  # the runs' workspace: later runs share its code artifacts, as in the flow
    result: dict[str, Any] = {"built": facts}
    with LedgerStore(url) as store:
        graph = query_lineage(store, "production", Direction.ASCENDANTS, depth=10)
        result["graph"] = {"vertices": len(graph.vertices), "edges": len(graph.edges)}
        result["provenance"] = _median(_timed(lambda: query_lineage(store, "production", Direction.ASCENDANTS, 10)))
        result["production"] = _median(_timed(lambda: production(store)))
        result["fresh"] = _median(_process([LINEAGE, "query", "production", "--format", "json", "--db", url]))
        weeks = iter(range(runs, runs + 100))
        result["record"] = _median(lambda: record_week(store, root, next(weeks)))
        if verify:  # one new run, then the incremental verification a fresh `lineage verify` does
            checks = []
            for _ in range(3):
                record_week(store, root, next(weeks))
                checks.append(_process([LINEAGE, "verify", "--db", url])())
            result["verify"] = statistics.median(checks)
    shutil.rmtree(work, ignore_errors=True)
    return result


# -- the report ----------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="ledger sizes (runs) measured on both sides")
    parser.add_argument("--large", type=int, default=100_000, help="the size measured on our side alone (0: none)")
    arguments = parser.parse_args()
    sizes = [int(size) for size in arguments.sizes.split(",") if size]
    python = mlflow_python()
    version = _mlflow_side(python, "version").strip()

    rows: list[list[Any]] = []
    built_rows: list[list[Any]] = []
    shapes: list[str] = []
    for runs in sizes:
        ours = measure_ours(runs)
        _log(f"ours at {runs:,}: {ours}")
        theirs = measure_mlflow(python, runs)
        _log(f"mlflow at {runs:,}: {theirs}")
        counts = ", ".join(f"{n} {key}" for key, n in theirs["provenance_counts"].items())
        shapes.append(f"at {runs:,} runs, ours {ours['graph']['vertices']} vertices and {ours['graph']['edges']} "
                      f"edges back to the raw data, MLflow's {counts}")  # fmt: skip
        print(f"\n{runs:,} runs ({ours['built']['records']:,} ledger records)")
        for key in ("record", "provenance", "production", "fresh"):
            ratio = ours[key] / theirs[key]
            verdict = "ok" if ratio <= RATIO_TARGETS[key] else "MISSED"
            print(f"  {LABELS[key]:<42} ours {_ms(ours[key]):>10}  mlflow {_ms(theirs[key]):>10}  "
                  f"ratio {ratio:5.2f}  target <= {RATIO_TARGETS[key]:.1f}  {verdict}")  # fmt: skip
            rows.append([f"{runs:,}", LABELS[key], _ms(ours[key]), _ms(theirs[key]), round(ratio, 2),
                         f"<= {RATIO_TARGETS[key]}", verdict])  # fmt: skip
        built_rows.append([f"{runs:,}", f"{ours['built']['records']:,}", f"{ours['built']['seconds']:.0f} s"])

    large_rows: list[list[Any]] = []
    if arguments.large:
        runs = arguments.large
        ours = measure_ours(runs, verify=True)
        _log(f"ours at {runs:,}: {ours}")
        built = ours["built"]
        print(f"\n{runs:,} runs, ours alone ({built['records']:,} records, built in {built['seconds']:.0f} s, "
              f"`lineage verify --full` {built['verify_full']:.0f} s)")  # fmt: skip
        for key in ("provenance", "production", "record", "verify", "fresh"):
            target = LARGE_TARGETS[key]
            verdict = "ok" if ours[key] <= target else "MISSED"
            print(f"  {LABELS[key]:<52} {_ms(ours[key]):>10}  target <= {_ms(target):>8}  "
                  f"ratio {ours[key] / target:5.2f}  {verdict}")  # fmt: skip
            large_rows.append([LABELS[key], _ms(ours[key]), f"<= {_ms(target)}", round(ours[key] / target, 2), verdict])
        built_rows.append([f"{runs:,}", f"{built['records']:,}", f"{built['seconds']:.0f} s"])
        large_rows.append(["`lineage verify --full` (every record)", _ms(built["verify_full"]), "", "", ""])

    tables = [
        table(["runs", "measure", "ours", f"MLflow {version}", "ours / MLflow", "target", "verdict"], rows,
              "Ours beside MLflow (warm, median of 7)"),
    ]  # fmt: skip
    if large_rows:
        tables.append(
            table(["measure", "measured", "target", "ratio", "verdict"], large_rows,
                  f"Ours alone at {arguments.large:,} runs (warm, median of 7; verify: median of 3)")
        )  # fmt: skip
    tables.append(table(["runs", "ledger records", "bulk build (tests/bulk_ledger.py)"], built_rows, "Our ledgers"))
    save_results(
        "bench_vs_mlflow",
        "Our ledger beside MLflow",
        tables,
        notes=[
            f"MLflow {version} in its own virtualenv, SQLite tracking and registry store; ours SQLite.",
            f"The provenance each answers: {'; '.join(shapes)}.",
            "Ours keeps parsed records by their text (8,192 of them), so a warm repeat skips parsing; "
            "the fresh-process rows start with nothing cached.",
        ],
    )


if __name__ == "__main__":
    main()
