"""Stage preprocess: enforce the drift gate, split by time, fit the feature transformer on train only.

The table is read a batch at a time (PIPELINE_PARTITION_ROWS rows), so memory does not grow with it: the
splits are cut by position in the time-ordered table, the transformer is fitted on a bounded sample of
training rows drawn by row key, and each batch is written to its split as it is and as model inputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from gates.drift import GATE as DRIFT
from gates.gate import GateVerdict
from tasks.columns import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TARGET
from tasks.engine import Layout
from tasks.hashed_sample import ROW_KEY, HashedSample
from tasks.params import DriftGate, PreprocessParams, load_params
from tasks.row_groups import RowGroupWriter, batches, positioned, row_count
from tasks.stage import GateRefused, InputError, atomic_path, run_stage, write_json

PROCESSED = Path("data/processed.parquet")
DRIFT_METRICS = Path("metrics/drift_check.json")
SPLITS_DIR = Path("data/splits")  # the processed rows of each split, every column
FEATURES_DIR = Path("data/features")  # the transformed model inputs of each split, plus the target
PREPROCESSOR_OUT = Path("models/preprocessor.joblib")
FEATURE_NAMES_OUT = Path("models/feature_names.json")
METRICS_OUT = Path("metrics/preprocess.json")
SPLITS = ("train", "val", "test")
FEATURE_COLUMNS = [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]  # all the transformer reads


def enforce_drift_gate(drift: dict[str, Any], gate: DriftGate) -> dict[str, object]:
    """Refuse on a drift verdict unless drift.allow names who overrides it and why; return the record."""
    record: dict[str, object] = {
        "drift_detected": bool(drift["drift_detected"]),
        "drifted_columns": list(drift["drifted_columns"]),
        "overridden": False,
        "allowed_by": "",
        "reason": "",
    }
    verdict = DRIFT.verdict(drift, gate)
    if verdict == GateVerdict.PASSED:
        return record
    if verdict == GateVerdict.FAILED:
        raise GateRefused(
            f"drift detected in {', '.join(drift['drifted_columns'])} "
            f"({drift['drifted_count']}/{len(drift['columns_checked'])} columns, threshold {drift['threshold']}); "
            f"see {drift['report']}; to proceed anyway set drift.allow: true with drift.allowed_by and drift.reason"
        )
    record.update(overridden=True, allowed_by=gate.allowed_by, reason=gate.reason)
    return record


def split_bounds(path: Path, params: PreprocessParams, batch_rows: int) -> dict[str, tuple[int, int]]:
    """Each split's rows of the time-ordered table, as [start, stop) positions: train, then validation,
    then test; rows sharing a timestamp stay in one split.

    Two passes over the invoice dates, a batch at a time: where the cuts fall, then where their
    timestamps begin.
    """
    rows = row_count(path)
    last = rows - 1
    at = [
        min(last, int(rows * (1 - params.val_fraction - params.test_fraction))),
        min(last, int(rows * (1 - params.test_fraction))),
    ]
    cuts: list[np.datetime64] = []
    position, previous = 0, None
    for times in _dates(path, batch_rows):
        if len(times) and ((previous is not None and times[0] < previous) or (times[1:] < times[:-1]).any()):
            raise InputError(f"{path}: not in time order (etl writes it so; run etl again)")
        cuts += [times[p - position] for p in at if position <= p < position + len(times)]
        position, previous = position + len(times), times[-1] if len(times) else previous
    starts = [0, 0]  # no rows: every split is empty, refused below
    if rows:
        for times in _dates(path, batch_rows):
            starts = [start + int((times < cut).sum()) for start, cut in zip(starts, cuts, strict=True)]
    bounds = {"train": (0, starts[0]), "val": (starts[0], starts[1]), "test": (starts[1], rows)}
    for name, (start, stop) in bounds.items():
        if stop <= start:
            raise InputError(f"{path}: {rows} rows are too few for a non-empty chronological {name} split")
    return bounds


def _dates(path: Path, batch_rows: int) -> Iterator[np.ndarray]:
    for batch in batches(path, ["invoice_date"], batch_rows):
        yield batch.column(0).to_numpy()


def _pieces(
    path: Path, bounds: dict[str, tuple[int, int]], columns: list[str] | None, batch_rows: int
) -> Iterator[tuple[str, int, pa.RecordBatch]]:
    """The table's rows a batch at a time, cut where the splits meet: (split, first position, rows)."""
    for position, batch in positioned(batches(path, columns, batch_rows)):
        for name, (start, stop) in bounds.items():
            first, end = max(start, position), min(stop, position + batch.num_rows)
            if first < end:
                yield name, first, batch.slice(first - position, end - first)


def fitting_rows(path: Path, train: tuple[int, int], rows: int, seed: int, batch_rows: int) -> pd.DataFrame:
    """The transformer's fitting rows: a sample of at most `rows` training rows, drawn by a seeded hash of
    the row key (tasks/hashed_sample.py), in time order; the whole training split when it is no larger."""
    sample = HashedSample(rows, seed, ROW_KEY)
    for _, first, piece in _pieces(path, {"train": train}, [*FEATURE_COLUMNS, *ROW_KEY], batch_rows):
        sample.add(piece.to_pandas(), np.arange(first, first + piece.num_rows), FEATURE_COLUMNS)
    return sample.rows()


def build_preprocessor(min_category_rows: int) -> ColumnTransformer:
    """Median imputation and scaling for numbers; one-hot for categories, rare and unseen ones as 'other'."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = OneHotEncoder(
        handle_unknown="infrequent_if_exist", min_frequency=min_category_rows, sparse_output=False
    )
    return ColumnTransformer(
        [("numeric", numeric, NUMERIC_FEATURES), ("categorical", categorical, CATEGORICAL_FEATURES)],
        verbose_feature_names_out=False,
    )


def readable_feature_names(preprocessor: ColumnTransformer) -> list[str]:
    """Output columns as people read them: `unit_price`, `country=France`, `country=other`."""
    names = []
    for name in preprocessor.get_feature_names_out():
        column = next((c for c in CATEGORICAL_FEATURES if name.startswith(f"{c}_")), None)
        if column is not None:
            value = name[len(column) + 1 :]
            name = f"{column}={'other' if value == 'infrequent_sklearn' else value}"
        names.append(str(name))
    return names


def model_inputs(
    preprocessor: ColumnTransformer,
    features: pd.DataFrame,
    target: np.ndarray,
    names: list[str],
    chunk_rows: int = 500_000,
) -> pd.DataFrame:
    """The transformed features as float32 columns, and the target beside them.

    Transformed `chunk_rows` rows at a time into one float32 array: the transformer's float64
    output for millions of rows at once would take gigabytes. Every step works row by row, so
    the values are the same. The array is column-major, so Parquet writes each column from
    contiguous memory (twice as fast; the same bytes).
    """
    values = np.empty((len(features), len(names)), dtype=np.float32, order="F")
    for start in range(0, len(features), chunk_rows):
        values[start : start + chunk_rows] = preprocessor.transform(features.iloc[start : start + chunk_rows])
    inputs = pd.DataFrame(values, columns=names, copy=False)
    inputs[TARGET] = target
    return inputs


def write_splits(
    path: Path, bounds: dict[str, tuple[int, int]], preprocessor: ColumnTransformer, names: list[str], batch_rows: int
) -> dict[str, dict[str, str]]:
    """Each split's rows, whole and as model inputs, a batch at a time; each split's first and last date."""
    schema = pq.ParquetFile(path).schema_arrow
    dates: dict[str, list[pd.Timestamp]] = {}
    with ExitStack() as stack:
        rows, inputs = {}, {}
        for name in SPLITS:
            rows[name] = RowGroupWriter(stack.enter_context(atomic_path(SPLITS_DIR / f"{name}.parquet")), schema)
            stack.callback(rows[name].close)  # closed before its atomic_path renames it: callbacks run last first
        for name, _, piece in _pieces(path, bounds, None, batch_rows):
            rows[name].write_table(pa.Table.from_batches([piece]))
            frame = piece.select([*FEATURE_COLUMNS, TARGET]).to_pandas()
            transformed = model_inputs(preprocessor, frame[FEATURE_COLUMNS], frame[TARGET].to_numpy(), names)
            if name not in inputs:
                tmp = stack.enter_context(atomic_path(FEATURES_DIR / f"{name}.parquet"))
                inputs[name] = RowGroupWriter(tmp, RowGroupWriter.schema_of(transformed))
                stack.callback(inputs[name].close)
            inputs[name].write(transformed)
            times = piece.column("invoice_date").to_numpy()
            dates.setdefault(name, [pd.Timestamp(times[0])]).append(pd.Timestamp(times[-1]))
    return {name: {"first": str(dates[name][0]), "last": str(dates[name][-1])} for name in SPLITS}


def _read_drift_metrics() -> dict[str, Any]:
    try:
        drift: dict[str, Any] = json.loads(DRIFT_METRICS.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{DRIFT_METRICS}: cannot read the drift verdict ({error})") from None
    if not isinstance(drift.get("drift_detected"), bool):
        raise InputError(f"{DRIFT_METRICS}: no boolean 'drift_detected' verdict")
    return drift


def main() -> None:
    params = load_params()
    gate = enforce_drift_gate(_read_drift_metrics(), params.drift)  # before any work: a refusal is cheap
    batch_rows = Layout.from_env().partition_rows
    bounds = split_bounds(PROCESSED, params.preprocess, batch_rows)
    fitting = fitting_rows(PROCESSED, bounds["train"], params.preprocess.fit_rows, params.seed, batch_rows)
    train_rows = bounds["train"][1] - bounds["train"][0]
    # The rare-category cut counts training rows: scaled to the sample, rounded up (exact when it is the split).
    min_rows = -(-params.preprocess.min_category_rows * len(fitting) // train_rows)
    preprocessor = build_preprocessor(min_rows).fit(fitting)
    names = readable_feature_names(preprocessor)
    dates = write_splits(PROCESSED, bounds, preprocessor, names, batch_rows)
    with atomic_path(PREPROCESSOR_OUT) as tmp:
        joblib.dump(preprocessor, tmp)
    with atomic_path(FEATURE_NAMES_OUT) as tmp:
        tmp.write_text(json.dumps(names, indent=2) + "\n", encoding="utf-8")
    rows = {name: stop - start for name, (start, stop) in bounds.items()}
    write_json(METRICS_OUT, {"rows": rows, "dates": dates, "features": len(names), "drift_gate": gate})
    sizes = ", ".join(f"{name} {count}" for name, count in rows.items())
    print(f"preprocess: {sizes} rows; {len(names)} features, fitted on {len(fitting)} training rows")


if __name__ == "__main__":
    run_stage("preprocess", main)
