"""preprocess: the drift gate, a chronological split, and a transformer fitted on train only."""

from __future__ import annotations

import io

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tasks.columns import CATEGORICAL_FEATURES, NUMERIC_FEATURES, TARGET
from tasks.data import generate_transactions, validate_transactions
from tasks.etl import add_features, clean
from tasks.params import DriftGate, PreprocessParams
from tasks.preprocess import (
    build_preprocessor,
    chronological_split,
    enforce_drift_gate,
    model_columns,
    model_inputs,
    readable_feature_names,
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


def _split(frame: pd.DataFrame, params: PreprocessParams | None = None) -> dict[str, pd.DataFrame]:
    """chronological_split on the frame as an Arrow table, its splits back as pandas."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return {name: part.to_pandas() for name, part in chronological_split(table, params or PreprocessParams()).items()}


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
    splits = _split(frame.sample(frac=1.0, random_state=0))  # input order ignored
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


def test_split_matches_the_previous_pandas_implementation(frame: pd.DataFrame) -> None:
    shuffled = frame.sample(frac=1.0, random_state=3)
    for params in (PreprocessParams(), PreprocessParams(val_fraction=0.2, test_fraction=0.1)):
        splits, previous = _split(shuffled, params), _previous_chronological_split(shuffled, params)
        for name in ("train", "val", "test"):
            pd.testing.assert_frame_equal(splits[name], previous[name])


def test_chunked_transform_equals_one_transform_of_the_whole_split(frame: pd.DataFrame) -> None:
    splits = chronological_split(pa.Table.from_pandas(frame, preserve_index=False), PreprocessParams())
    features = model_columns(splits["train"])
    assert list(features.columns) == [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]
    preprocessor = build_preprocessor(min_category_rows=100).fit(features)
    names = readable_feature_names(preprocessor)
    target = splits["train"].column(TARGET).to_numpy()
    whole = model_inputs(preprocessor, features, target, names)
    chunked = model_inputs(preprocessor, features, target, names, chunk_rows=777)
    pd.testing.assert_frame_equal(chunked, whole, check_exact=True)
    previous = pd.DataFrame(preprocessor.transform(features).astype(np.float32), columns=names)  # as before
    pd.testing.assert_frame_equal(whole[names], previous, check_exact=True)
    np.testing.assert_array_equal(whole[TARGET], target)
