"""Stage preprocess: enforce the drift gate, split by time, fit the feature transformer on train only."""

from __future__ import annotations

import json
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
from tasks.params import DriftGate, PreprocessParams, load_params
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


def chronological_split(table: pa.Table, params: PreprocessParams) -> dict[str, pa.Table]:
    """Train, validation and test in time order; rows sharing a timestamp stay in one split.

    Works on an Arrow table: the splits are slices of it (no copy), and the identifier and text
    columns never become millions of Python objects.
    """
    times = table.column("invoice_date").to_numpy()
    if not (times[1:] >= times[:-1]).all():  # etl writes time order; anything else is sorted, stably
        order = np.argsort(times, kind="stable")
        table, times = table.take(order), times[order]
    val_at = test_at = 0  # no rows: every split is empty, refused below
    if len(times):
        last = len(times) - 1
        val_start = times[min(last, int(len(times) * (1 - params.val_fraction - params.test_fraction)))]
        test_start = times[min(last, int(len(times) * (1 - params.test_fraction)))]
        val_at, test_at = (int(at) for at in np.searchsorted(times, [val_start, test_start], side="left"))
    splits = {
        "train": table.slice(0, val_at),
        "val": table.slice(val_at, test_at - val_at),
        "test": table.slice(test_at),
    }
    for name, part in splits.items():
        if part.num_rows == 0:
            raise InputError(f"{PROCESSED}: {len(times)} rows are too few for a non-empty chronological {name} split")
    return splits


def model_columns(split: pa.Table) -> pd.DataFrame:
    """The columns the transformer reads, as pandas (identifiers and text stay in Arrow)."""
    return split.select(FEATURE_COLUMNS).to_pandas()


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


def metrics(splits: dict[str, pa.Table], names: list[str], gate: dict[str, object]) -> dict[str, object]:
    """metrics/preprocess.json: split sizes and dates, the feature count, the drift gate record."""
    dates = {name: part.column("invoice_date").to_pandas() for name, part in splits.items()}
    return {
        "rows": {name: part.num_rows for name, part in splits.items()},
        "dates": {name: {"first": str(day.min()), "last": str(day.max())} for name, day in dates.items()},
        "features": len(names),
        "drift_gate": gate,
    }


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
    splits = chronological_split(pq.read_table(PROCESSED), params.preprocess)
    features = {name: model_columns(part) for name, part in splits.items()}
    preprocessor = build_preprocessor(params.preprocess.min_category_rows).fit(features["train"])
    names = readable_feature_names(preprocessor)
    inputs = {
        name: model_inputs(preprocessor, features[name], part.column(TARGET).to_numpy(), names)
        for name, part in splits.items()
    }

    for name in SPLITS:
        with atomic_path(SPLITS_DIR / f"{name}.parquet") as tmp:
            pq.write_table(splits[name], tmp, compression="snappy")  # what pandas' to_parquet writes
        with atomic_path(FEATURES_DIR / f"{name}.parquet") as tmp:
            inputs[name].to_parquet(tmp, index=False)
    with atomic_path(PREPROCESSOR_OUT) as tmp:
        joblib.dump(preprocessor, tmp)
    with atomic_path(FEATURE_NAMES_OUT) as tmp:
        tmp.write_text(json.dumps(names, indent=2) + "\n", encoding="utf-8")
    write_json(METRICS_OUT, metrics(splits, names, gate))
    sizes = ", ".join(f"{name} {part.num_rows}" for name, part in splits.items())
    print(f"preprocess: {sizes} rows; {len(names)} features")


if __name__ == "__main__":
    run_stage("preprocess", main)
