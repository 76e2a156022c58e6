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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from evidently import DataDefinition, Dataset, Report
from evidently.core.report import Snapshot
from evidently.presets import DataDriftPreset

from tasks.params import DriftGate, load_params
from tasks.sampling import seeded_rows
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


def _current_start(frame: pd.DataFrame, weeks: int) -> pd.Timestamp:
    """Start of the last `weeks` weeks, counted back from the day after the last invoice."""
    return frame["invoice_date"].max().normalize() + pd.Timedelta(days=1) - pd.Timedelta(weeks=weeks)


def current_window(frame: pd.DataFrame, weeks: int) -> pd.DataFrame:
    """The last `weeks` weeks of data (never empty: it holds the last invoice)."""
    return frame[frame["invoice_date"] >= _current_start(frame, weeks)]


def current_and_reference_windows(
    frame: pd.DataFrame, current_weeks: int, reference_weeks: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The current window, and the `reference_weeks` weeks just before it."""
    start = _current_start(frame, current_weeks)
    dates = frame["invoice_date"]
    reference = frame[(dates >= start - pd.Timedelta(weeks=reference_weeks)) & (dates < start)]
    if reference.empty:
        raise InputError(
            f"params.yaml: drift.reference_weeks: no rows in the {reference_weeks} weeks before "
            f"{start.date()}; the data starts {dates.min().date()} (shorten the windows or set drift.reference)"
        )
    return frame[dates >= start], reference


def sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """A seeded sample of at most `rows` rows, in the frame's order (the frame itself if it is no larger).

    Evidently's distances (Wasserstein, Jensen-Shannon) estimate the same value from a few hundred
    thousand rows as from millions, at a fraction of the time and memory.
    """
    return frame if len(frame) <= rows else frame.iloc[seeded_rows(len(frame), rows, seed)]


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


def describe_window(frame: pd.DataFrame, columns: list[str], source: str, rows_tested: int) -> Window:
    """The window's source, extent and md5 (of every row's checked columns), and how many rows were tested."""
    row_hashes = pd.util.hash_pandas_object(frame[columns], index=False).to_numpy()
    return Window(
        source=source,
        rows=len(frame),
        rows_tested=rows_tested,
        first_date=str(frame["invoice_date"].min()),
        last_date=str(frame["invoice_date"].max()),
        md5=hashlib.md5(row_hashes.tobytes()).hexdigest(),
    )


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


def _read_columns(path: Path, columns: list[str], missing: Callable[[str], str]) -> pd.DataFrame:
    """Only the columns the check needs (a columnar read); InputError naming the first absent one."""
    try:
        present = set(pq.read_schema(path).names)
    except (OSError, pa.ArrowException) as error:
        raise InputError(f"{path}: not a readable Parquet file ({str(error).splitlines()[0]})") from None
    absent = [c for c in columns if c not in present]
    if absent:
        raise InputError(missing(absent[0]))
    return pd.read_parquet(path, columns=columns)


def _load_reference(gate: DriftGate, needed: list[str]) -> pd.DataFrame:
    how = "snapshot it there with `dvc get` and `dvc add` (see README)"
    path = require_under(gate.reference, REFERENCE_DIR, "drift.reference", how)
    if not path.is_file():
        raise InputError(
            f'params.yaml: drift.reference: {path} does not exist (run `dvc pull`, or set drift.reference: "")'
        )
    return _read_columns(path, needed, lambda column: f"{path}: missing column '{column}' needed by drift.columns")


def main() -> None:
    params = load_params()
    gate = params.drift
    needed = list(dict.fromkeys([*gate.columns, "invoice_date"]))
    frame = _read_columns(
        PROCESSED, needed, lambda column: f"params.yaml: drift.columns: '{column}' is not a column of {PROCESSED}"
    )
    if gate.reference:
        current = current_window(frame, gate.current_weeks)
        reference, reference_source = _load_reference(gate, needed), gate.reference
    else:
        current, reference = current_and_reference_windows(frame, gate.current_weeks, gate.reference_weeks)
        reference_source = f"{PROCESSED} (the {gate.reference_weeks} weeks before current)"

    tested_reference = sample(reference, gate.sample_rows, params.seed)
    tested_current = sample(current, gate.sample_rows, params.seed + 1)
    result, snapshot = detect_drift(tested_reference, tested_current, gate.columns, gate.threshold)
    with atomic_path(REPORT_OUT) as tmp:
        snapshot.save_html(str(tmp))
        tmp.write_text(stable_report_ids(tmp.read_text(encoding="utf-8")), encoding="utf-8")
    with atomic_path(SCORES_OUT) as tmp:
        tmp.write_text(json.dumps(column_scores(result), indent=2) + "\n", encoding="utf-8")
    compared = (
        describe_window(reference, gate.columns, reference_source, len(tested_reference)),
        describe_window(current, gate.columns, f"{PROCESSED} (last {gate.current_weeks} weeks)", len(tested_current)),
    )
    write_json(METRICS_OUT, metrics(result, *compared, gate.sample_rows))
    verdict = f"drift in {', '.join(result.drifted_columns)}" if result.drift_detected else "no drift"
    print(
        f"drift_check: {verdict} ({len(result.drifted_columns)}/{len(result.columns)} columns drifted, "
        f"threshold {result.threshold}; tested {len(tested_reference)} of {len(reference)} reference and "
        f"{len(tested_current)} of {len(current)} current rows); report {REPORT_OUT}"
    )


if __name__ == "__main__":
    run_stage("drift_check", main)
