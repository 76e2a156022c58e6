"""Stage drift_check: Evidently's data drift tests between reference and current data.

The stage always completes, so the report and the verdict are versioned either way; the
`preprocess` stage enforces the verdict.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.presets import DataDriftPreset

from tasks.engine import Layout
from tasks.hashed_sample import ROW_KEY, HashedSample
from tasks.params import DriftGate, load_params
from tasks.row_groups import batches, positioned
from tasks.stage import InputError, atomic_path, require_under, run_stage, write_json

PROCESSED = Path("data/processed.parquet")
REFERENCE_DIR = Path("data/reference")
REPORT_OUT = Path("reports/drift.html")
SCORES_OUT = Path("reports/drift_scores.json")  # per-column scores, a DVC bar plot
METRICS_OUT = Path("metrics/drift_check.json")


@dataclass(frozen=True)
class ColumnDrift:
    test: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """Evidently's verdicts: per column, and for the data set (share of drifted columns >= threshold)."""

    drift_detected: bool
    columns: dict[str, ColumnDrift]
    threshold: float

    @property
    def drifted_columns(self) -> list[str]:
        return [name for name, column in self.columns.items() if column.drifted]

    @property
    def drifted_share(self) -> float:
        return len(self.drifted_columns) / len(self.columns)


@dataclass(frozen=True)
class Window:
    """Where a compared data set came from, its extent, the rows tested and a hash of its checked columns."""

    source: str
    rows: int
    rows_tested: int  # Evidently's seeded sample of the window (drift.sample_rows at most)
    first_date: str
    last_date: str
    md5: str


@dataclass
class WindowScan:
    """A window read batch by batch: its row count, dates, an md5 of its checked columns, and its sample."""

    checked: list[str]
    sample: HashedSample
    rows: int = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    digest: Any = field(default_factory=hashlib.md5)  # of every row's hash, in order: the whole window's md5

    def add(self, batch: pd.DataFrame, positions: np.ndarray) -> None:
        dates = batch["invoice_date"]
        self.first = dates.min() if self.first is None else min(self.first, dates.min())
        self.last = dates.max() if self.last is None else max(self.last, dates.max())
        self.rows += len(batch)
        self.digest.update(pd.util.hash_pandas_object(batch[self.checked], index=False).to_numpy().tobytes())
        self.sample.add(batch, positions, list(dict.fromkeys([*self.checked, "invoice_date"])))

    def describe(self, source: str, rows_tested: int) -> Window:
        return Window(source, self.rows, rows_tested, str(self.first), str(self.last), self.digest.hexdigest())


Bounds = tuple[pd.Timestamp | None, pd.Timestamp | None]  # [start, end) of invoice dates; None leaves it open


def window_bounds(last: pd.Timestamp, current_weeks: int, reference_weeks: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Where the reference and the current windows start: the current one `current_weeks` weeks back
    from the day after the last invoice, the reference `reference_weeks` weeks before that."""
    current = last.normalize() + pd.Timedelta(days=1) - pd.Timedelta(weeks=current_weeks)
    return current - pd.Timedelta(weeks=reference_weeks), current


def date_extent(path: Path, batch_rows: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The first and the last invoice date of a table, read one column a batch at a time."""
    extents = [
        (times.min(), times.max())
        for batch in batches(path, ["invoice_date"], batch_rows)
        if len(times := batch.column(0).to_numpy())
    ]
    if not extents:
        raise InputError(f"{path}: no rows to test for drift")
    return pd.Timestamp(min(e[0] for e in extents)), pd.Timestamp(max(e[1] for e in extents))


def scan(path: Path, needed: list[str], windows: list[tuple[Bounds, WindowScan]], batch_rows: int) -> None:
    """Read `needed` columns of `path` once, `batch_rows` rows at a time, offering each window its rows.

    Memory holds one batch and the samples, whatever the table's size. Only a window's rows become
    pandas.
    """
    for position, batch in positioned(batches(path, needed, batch_rows)):
        times = batch.column("invoice_date").to_numpy()
        for (start, end), window in windows:
            inside = np.ones(len(times), dtype=bool)
            if start is not None:
                inside &= times >= start.to_datetime64()
            if end is not None:
                inside &= times < end.to_datetime64()
            if inside.any():
                window.add(batch.filter(pa.array(inside)).to_pandas(), position + np.flatnonzero(inside))


def detect_drift(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], threshold: float
) -> tuple[DriftResult, Snapshot]:
    """Run DataDriftPreset on `columns`; Evidently picks each column's test from its type and size."""
    # Binary and text columns are categories; testing is_registered with a distance on 0/1 would
    # measure nothing useful.
    categorical = [c for c in columns if not pd.api.types.is_numeric_dtype(reference[c]) or reference[c].nunique() <= 2]
    definition = DataDefinition(
        numerical_columns=[c for c in columns if c not in categorical], categorical_columns=categorical
    )
    report = Report([DataDriftPreset(columns=columns, drift_share=threshold)], include_tests=True)
    snapshot = report.run(
        current_data=Dataset.from_pandas(current[columns].reset_index(drop=True), data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns].reset_index(drop=True), data_definition=definition),
    )
    return _read_result(snapshot.dict(), threshold), snapshot


def _read_result(snapshot: dict[str, Any], threshold: float) -> DriftResult:
    failed = {test["metric_config"]["metric_id"] for test in snapshot["tests"] if str(test["status"]).endswith("FAIL")}
    columns: dict[str, ColumnDrift] = {}
    drift_detected = False
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            columns[config["column"]] = ColumnDrift(
                test=config["method"],
                score=float(metric["value"]),
                threshold=float(config["threshold"]),
                drifted=metric["id"] in failed,
            )
        elif config["type"].endswith("DriftedColumnsCount"):
            drift_detected = metric["id"] in failed
    return DriftResult(drift_detected=drift_detected, columns=columns, threshold=threshold)


def stable_report_ids(html: str) -> str:
    """Replace the random ids Evidently stamps on each render with counters.

    The report is a versioned output: the same data must render to the same bytes. The ids are
    collected from the report's own data script only, so the bundled JavaScript is untouched.
    """
    start = html.index("var metric_")
    data = html[start : html.index("</script>", start)]
    ids = dict.fromkeys(re.findall(r"metric_[0-9a-f]{32}|[0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12}", data))
    replacement = {
        old: f"metric_{number:032x}" if old.startswith("metric_") else str(uuid.UUID(int=number))
        for number, old in enumerate(ids, start=1)
    }
    if not replacement:
        return html
    return re.sub("|".join(map(re.escape, replacement)), lambda match: replacement[match.group(0)], html)


def metrics(result: DriftResult, reference: Window, current: Window, sample_rows: int) -> dict[str, object]:
    """metrics/drift_check.json: the verdict, per-column tests, and what was compared."""
    return {
        "sample_rows": sample_rows,
        "drift_detected": result.drift_detected,
        "drifted_columns": result.drifted_columns,
        "drifted_count": len(result.drifted_columns),
        "drifted_share": result.drifted_share,
        "threshold": result.threshold,
        "columns_checked": list(result.columns),
        "columns": {name: asdict(column) for name, column in result.columns.items()},
        "reference": asdict(reference),
        "current": asdict(current),
        "report": str(REPORT_OUT),
    }


def column_scores(result: DriftResult) -> list[dict[str, object]]:
    """One record per column for `dvc plots`: score beside the threshold it is judged against."""
    return [
        {"column": name, "score": column.score, "threshold": column.threshold, "drifted": column.drifted}
        for name, column in result.columns.items()
    ]


def _require_columns(path: Path, columns: list[str], missing: Callable[[str], str]) -> None:
    """InputError naming the first of `columns` the Parquet file lacks (its schema only is read)."""
    try:
        present = set(pq.read_schema(path).names)
    except (OSError, pa.ArrowException) as error:
        raise InputError(f"{path}: not a readable Parquet file ({str(error).splitlines()[0]})") from None
    absent = [c for c in columns if c not in present]
    if absent:
        raise InputError(missing(absent[0]))


_WHY_READ = (
    f"drift_check reads drift.columns, invoice_date and the row key {', '.join(ROW_KEY)}, which draws the sample"
)


def _reference_path(gate: DriftGate, needed: list[str]) -> Path:
    how = "snapshot it there with `dvc get` and `dvc add` (see README)"
    path = require_under(gate.reference, REFERENCE_DIR, "drift.reference", how)
    if not path.is_file():
        raise InputError(
            f'params.yaml: drift.reference: {path} does not exist (run `dvc pull`, or set drift.reference: "")'
        )
    _require_columns(path, needed, lambda column: f"{path}: missing column '{column}' ({_WHY_READ})")
    return path


def read_windows(gate: DriftGate, seed: int, batch_rows: int) -> tuple[WindowScan, WindowScan, str]:
    """The reference and the current window, read `batch_rows` rows at a time, and where the reference came from."""
    needed = list(dict.fromkeys([*gate.columns, "invoice_date", *ROW_KEY]))
    _require_columns(
        PROCESSED, needed, lambda column: f"params.yaml: drift.columns: '{column}' is not a column of {PROCESSED}"
    )
    # One seed for both windows: a row is in one window only.
    reference, current = (WindowScan(gate.columns, HashedSample(gate.sample_rows, seed, ROW_KEY)) for _ in "rc")
    first, last = date_extent(PROCESSED, batch_rows)
    reference_start, current_start = window_bounds(last, gate.current_weeks, gate.reference_weeks)
    if gate.reference:
        path = _reference_path(gate, needed)
        scan(path, needed, [((None, None), reference)], batch_rows)
        if not reference.rows:
            raise InputError(f"{path}: no rows to test for drift")
        scan(PROCESSED, needed, [((current_start, None), current)], batch_rows)
        return reference, current, gate.reference
    scan(
        PROCESSED, needed, [((reference_start, current_start), reference), ((current_start, None), current)], batch_rows
    )
    if not reference.rows:
        raise InputError(
            f"params.yaml: drift.reference_weeks: no rows in the {gate.reference_weeks} weeks before "
            f"{current_start.date()}; the data starts {first.date()} (shorten the windows or set drift.reference)"
        )
    return reference, current, f"{PROCESSED} (the {gate.reference_weeks} weeks before current)"


def main() -> None:
    params = load_params()
    gate = params.drift
    reference, current, reference_source = read_windows(gate, params.seed, Layout.from_env().partition_rows)
    tested_reference, tested_current = reference.sample.rows(), current.sample.rows()
    result, snapshot = detect_drift(tested_reference, tested_current, gate.columns, gate.threshold)
    with atomic_path(REPORT_OUT) as tmp:
        snapshot.save_html(str(tmp))
        tmp.write_text(stable_report_ids(tmp.read_text(encoding="utf-8")), encoding="utf-8")
    with atomic_path(SCORES_OUT) as tmp:
        tmp.write_text(json.dumps(column_scores(result), indent=2) + "\n", encoding="utf-8")
    compared = (
        reference.describe(reference_source, len(tested_reference)),
        current.describe(f"{PROCESSED} (last {gate.current_weeks} weeks)", len(tested_current)),
    )
    write_json(METRICS_OUT, metrics(result, *compared, gate.sample_rows))
    verdict = f"drift in {', '.join(result.drifted_columns)}" if result.drift_detected else "no drift"
    print(
        f"drift_check: {verdict} ({len(result.drifted_columns)}/{len(result.columns)} columns drifted, "
        f"threshold {result.threshold}; tested {len(tested_reference)} of {reference.rows} reference and "
        f"{len(tested_current)} of {current.rows} current rows); report {REPORT_OUT}"
    )


if __name__ == "__main__":
    run_stage("drift_check", main)
