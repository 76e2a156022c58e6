"""preprocess: the drift gate, a chronological split, and a transformer fitted on train only."""

from __future__ import annotations

import hashlib
import io
import json
import tempfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from tasks import preprocess
from tasks.columns import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TARGET
from tasks.data import generate_transactions, validate_transactions
from tasks.etl import add_features, clean
from tasks.hashed_sample import ROW_KEY, HashedSample
from tasks.params import DriftGate, PreprocessParams
from tasks.preprocess import (
    FEATURE_COLUMNS,
    build_preprocessor,
    enforce_drift_gate,
    model_inputs,
    readable_feature_names,
    split_bounds,
)
from tasks.stage import GateRefused, InputError

DRIFT = {
    "drift_detected": True,
    "drifted_columns": ["unit_price", "country"],
    "drifted_count": 2,
    "drifted_share": 2 / 3,
    "columns_checked": ["unit_price", "country", "is_registered"],
    "columns": {},  # each column's test, as drift_check writes them: the gate judges the share
    "threshold": 0.5,
    "report": "reports/drift.html",
}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return add_features(clean(validate_transactions(generate_transactions(20_000, seed=11), "synthetic"))[0])


def _split(
    frame: pd.DataFrame, params: PreprocessParams | None = None, batch_rows: int = 10**7
) -> dict[str, pd.DataFrame]:
    """split_bounds on the frame written as Parquet, read `batch_rows` rows at a time; the splits' rows."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "processed.parquet"
        frame.to_parquet(path, index=False)
        bounds = split_bounds(path, params or PreprocessParams(), batch_rows)
    return {name: frame.iloc[start:stop].reset_index(drop=True) for name, (start, stop) in bounds.items()}


def _previous_chronological_split(frame: pd.DataFrame, params: PreprocessParams) -> dict[str, pd.DataFrame]:
    """The pandas implementation chronological_split replaced, to compare against."""
    frame = frame.sort_values("invoice_date", kind="stable").reset_index(drop=True)
    times = frame["invoice_date"]
    last = len(frame) - 1
    val_start = times.iloc[min(last, int(len(frame) * (1 - params.val_fraction - params.test_fraction)))]
    test_start = times.iloc[min(last, int(len(frame) * (1 - params.test_fraction)))]
    splits = {
        "train": frame[times < val_start],
        "val": frame[(times >= val_start) & (times < test_start)],
        "test": frame[times >= test_start],
    }
    return {name: part.reset_index(drop=True) for name, part in splits.items()}


def test_gate_refuses_on_drift_naming_columns_and_report() -> None:
    with pytest.raises(GateRefused) as refused:
        enforce_drift_gate(DRIFT, DriftGate())
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("drift detected in unit_price, country (2/3 columns, threshold 0.5)")
    assert "see reports/drift.html" in message
    assert "drift.allow: true" in message


def test_gate_override_is_recorded_with_who_and_why() -> None:
    gate = DriftGate(allow=True, allowed_by="Jane Doe", reason="price list changed on purpose")
    assert enforce_drift_gate(DRIFT, gate) == {
        "drift_detected": True,
        "drifted_columns": ["unit_price", "country"],
        "overridden": True,
        "allowed_by": "Jane Doe",
        "reason": "price list changed on purpose",
    }


def test_gate_passes_without_drift_and_records_no_override() -> None:
    gate = DriftGate(allow=True, allowed_by="Jane Doe", reason="standing waiver")
    record = enforce_drift_gate({**DRIFT, "drift_detected": False, "drifted_columns": []}, gate)
    assert record["overridden"] is False
    assert record["allowed_by"] == ""


def test_an_unattributed_override_is_a_params_error() -> None:
    with pytest.raises(ValueError, match=r"drift\.allow: true needs drift\.allowed_by"):
        DriftGate(allow=True, allowed_by="", reason="")


def test_split_is_chronological_with_the_requested_sizes(frame: pd.DataFrame) -> None:
    splits = _split(frame)
    train, val, test = splits["train"], splits["val"], splits["test"]
    assert train["invoice_date"].max() < val["invoice_date"].min()
    assert val["invoice_date"].max() < test["invoice_date"].min()
    assert len(train) + len(val) + len(test) == len(frame)
    assert len(val) / len(frame) == pytest.approx(0.15, abs=0.01)
    assert len(test) / len(frame) == pytest.approx(0.15, abs=0.01)


def test_rows_sharing_a_timestamp_stay_in_one_split() -> None:
    dates = pd.to_datetime(["2011-01-01"] * 3 + ["2011-01-02"] * 3 + ["2011-01-03"] * 4)
    splits = _split(pd.DataFrame({"invoice_date": dates}), PreprocessParams(val_fraction=0.3, test_fraction=0.3))
    assert [len(splits[name]) for name in ("train", "val", "test")] == [3, 3, 4]


def test_too_few_timestamps_for_three_splits_is_an_error() -> None:
    frame = pd.DataFrame({"invoice_date": pd.to_datetime(["2011-01-01"] * 5)})
    with pytest.raises(InputError, match="too few for a non-empty chronological train split"):
        _split(frame)


def test_transformer_statistics_come_from_train_only(frame: pd.DataFrame) -> None:
    splits = _split(frame)
    preprocessor = build_preprocessor(min_category_rows=100).fit(splits["train"])
    numeric = preprocessor.named_transformers_["numeric"]
    train = splits["train"][NUMERIC_FEATURES]
    medians = train.median().to_numpy()
    np.testing.assert_allclose(numeric.named_steps["impute"].statistics_, medians)
    imputed = train.fillna(train.median())
    np.testing.assert_allclose(numeric.named_steps["scale"].mean_, imputed.mean().to_numpy())
    np.testing.assert_allclose(numeric.named_steps["scale"].scale_, imputed.std(ddof=0).to_numpy())
    whole = frame[NUMERIC_FEATURES].fillna(frame[NUMERIC_FEATURES].median())
    assert not np.allclose(numeric.named_steps["scale"].mean_, whole.mean().to_numpy())


def test_features_are_readable_and_exclude_identifiers(frame: pd.DataFrame) -> None:
    splits = _split(frame)
    preprocessor = build_preprocessor(min_category_rows=100).fit(splits["train"])
    names = readable_feature_names(preprocessor)
    assert names[: len(NUMERIC_FEATURES)] == NUMERIC_FEATURES
    assert "country=United Kingdom" in names
    assert "country=other" in names  # rare countries share one column
    assert "day_of_week=3" in names
    assert not any(n.startswith(("invoice", "stock_code", "customer_id", "year")) for n in names)
    assert set(CATEGORICAL_FEATURES) == {n.split("=")[0] for n in names if "=" in n}


def test_unseen_categories_do_not_break_transform(frame: pd.DataFrame) -> None:
    splits = _split(frame)
    preprocessor = build_preprocessor(min_category_rows=100).fit(splits["train"])
    names = readable_feature_names(preprocessor)
    unseen = splits["test"].head(3).assign(country="Atlantis")
    inputs = model_inputs(preprocessor, unseen, unseen[TARGET].to_numpy(), names)
    assert (inputs["country=other"] == 1.0).all()
    assert list(inputs.columns) == [*names, TARGET]
    assert all(dtype == np.float32 for dtype in inputs[names].dtypes)


def test_fitted_preprocessor_serialises_to_the_same_bytes(frame: pd.DataFrame) -> None:
    splits = _split(frame)
    dumps = []
    for _ in range(2):
        buffer = io.BytesIO()
        joblib.dump(build_preprocessor(min_category_rows=100).fit(splits["train"]), buffer)
        dumps.append(buffer.getvalue())
    assert dumps[0] == dumps[1]


@pytest.mark.parametrize("batch_rows", [10**7, 1000, 7])
def test_split_matches_the_previous_pandas_implementation(frame: pd.DataFrame, batch_rows: int) -> None:
    for params in (PreprocessParams(), PreprocessParams(val_fraction=0.2, test_fraction=0.1)):
        splits, previous = _split(frame, params, batch_rows), _previous_chronological_split(frame, params)
        for name in ("train", "val", "test"):
            pd.testing.assert_frame_equal(splits[name], previous[name])


@pytest.mark.parametrize("batch_rows", [10**7, 1000])
def test_a_table_out_of_time_order_is_refused_in_one_line(frame: pd.DataFrame, batch_rows: int) -> None:
    shuffled = frame.iloc[[*list(range(1, 2000)), 0, *list(range(2000, len(frame)))]]  # one row late
    with pytest.raises(InputError, match=r"processed.parquet: not in time order \(etl writes it so; run etl again\)$"):
        _split(shuffled, batch_rows=batch_rows)


def test_chunked_transform_equals_one_transform_of_the_whole_split(frame: pd.DataFrame) -> None:
    train = _split(frame)["train"]
    features = train[FEATURE_COLUMNS]
    assert [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES] == FEATURE_COLUMNS
    preprocessor = build_preprocessor(min_category_rows=100).fit(features)
    names = readable_feature_names(preprocessor)
    target = train[TARGET].to_numpy()
    whole = model_inputs(preprocessor, features, target, names)
    chunked = model_inputs(preprocessor, features, target, names, chunk_rows=777)
    pd.testing.assert_frame_equal(chunked, whole, check_exact=True)
    previous = pd.DataFrame(preprocessor.transform(features).astype(np.float32), columns=names)  # as before
    pd.testing.assert_frame_equal(whole[names], previous, check_exact=True)
    np.testing.assert_array_equal(whole[TARGET], target)


def _run_stage(frame: pd.DataFrame, workspace: Path, fit_rows: int, batch_rows: int) -> dict[str, str]:
    """The stage's main in `workspace` on `frame`, without drift; the md5 of every output."""
    (workspace / "data").mkdir(parents=True)
    (workspace / "metrics").mkdir()
    frame.to_parquet(workspace / "data/processed.parquet", index=False)
    verdict = {**DRIFT, "drift_detected": False, "drifted_columns": [], "drifted_count": 0, "drifted_share": 0.0}
    (workspace / "metrics/drift_check.json").write_text(json.dumps(verdict), encoding="utf-8")
    (workspace / "params.yaml").write_text(
        f"seed: 42\ndata: {{}}\npreprocess:\n  fit_rows: {fit_rows}\n", encoding="utf-8"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workspace)
        patch.setenv("PIPELINE_PARTITION_ROWS", str(batch_rows))
        preprocess.main()
    outputs = [*workspace.glob("data/*/*.parquet"), *workspace.glob("models/*"), workspace / "metrics/preprocess.json"]
    return {str(p.relative_to(workspace)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(outputs)}


def test_the_stage_writes_the_same_bytes_at_any_batch_size(frame: pd.DataFrame, tmp_path: Path) -> None:
    train = _split(frame)["train"]
    sampled = [_run_stage(frame, tmp_path / f"{rows}", fit_rows=3000, batch_rows=rows) for rows in (10**7, 1000, 777)]
    assert len(sampled[0]) == 9
    assert sampled[0] == sampled[1] == sampled[2]
    whole = _run_stage(frame, tmp_path / "whole", fit_rows=len(train), batch_rows=777)
    assert whole["models/preprocessor.joblib"] != sampled[0]["models/preprocessor.joblib"]
    assert whole["data/splits/train.parquet"] == sampled[0]["data/splits/train.parquet"]
    # fit on the whole training split when it is no larger than fit_rows: the transformer pandas fitted on it
    expected = io.BytesIO()
    joblib.dump(build_preprocessor(min_category_rows=100).fit(train[FEATURE_COLUMNS]), expected)
    assert (tmp_path / "whole/models/preprocessor.joblib").read_bytes() == expected.getvalue()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "whole/data/splits/train.parquet"), train)


def test_the_fitting_sample_is_drawn_by_row_key_with_the_rare_category_cut_scaled(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    _run_stage(frame, tmp_path, fit_rows=3000, batch_rows=1000)
    train = _split(frame)["train"]
    sample = HashedSample(3000, 42, ROW_KEY)
    sample.add(train, np.arange(len(train)), FEATURE_COLUMNS)
    min_rows = -(-100 * 3000 // len(train))  # 100 training rows, scaled to 3,000 of them and rounded up
    assert min_rows < 100
    expected = io.BytesIO()
    joblib.dump(build_preprocessor(min_rows).fit(sample.rows()), expected)
    assert (tmp_path / "models/preprocessor.joblib").read_bytes() == expected.getvalue()
