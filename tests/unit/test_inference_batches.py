"""inference reads the test split and the SHAP background a batch at a time: the same predictions file, the
same explained and background rows, whatever the batch size (in whole chunks of the network's)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.compose import ColumnTransformer

from tasks import inference
from tasks.columns import TARGET
from tasks.data import generate_transactions, validate_transactions
from tasks.etl import add_features, clean
from tasks.model import DemandNet, Hyperparameters, predict
from tasks.preprocess import FEATURE_COLUMNS, build_preprocessor, model_inputs, readable_feature_names
from tasks.sampling import seeded_rows
from tasks.stage import InputError


@pytest.fixture(scope="module")
def split() -> pd.DataFrame:
    """A test split as preprocess writes it: processed rows, every column."""
    return add_features(clean(validate_transactions(generate_transactions(12_000, seed=3), "synthetic"))[0])


@dataclass
class Run:
    predictions_md5: str
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # y_true, y_pred, explained inputs, background
    model: DemandNet
    preprocessor: ColumnTransformer
    names: list[str]


def _run(split: pd.DataFrame, workspace: Path, batch_rows: int, patch: pytest.MonkeyPatch) -> Run:
    (workspace / "data/splits").mkdir(parents=True)
    (workspace / "data/features").mkdir()
    split.to_parquet(workspace / "data/splits/test.parquet", index=False)
    preprocessor = build_preprocessor(100).fit(split[FEATURE_COLUMNS])
    names = readable_feature_names(preprocessor)
    model_inputs(preprocessor, split[FEATURE_COLUMNS], split[TARGET].to_numpy(), names).to_parquet(
        workspace / "data/features/train.parquet", index=False
    )
    torch.manual_seed(0)
    model = DemandNet(len(names), Hyperparameters([8], [0.0], True, "adam", 0.001, 256)).eval()
    patch.chdir(workspace)
    patch.setattr(inference, "PREDICT_ROWS", 512)
    patch.setattr(inference, "BATCH_ROWS", batch_rows)
    explained = seeded_rows(len(split), 300, 7)
    y_true, y_pred, inputs = inference.predict_test(preprocessor, model, names, explained)
    background = inference.background_rows(seeded_rows(len(split), 50, 8))
    written = hashlib.md5((workspace / "data/predictions.parquet").read_bytes()).hexdigest()
    return Run(written, (y_true, y_pred, inputs, background), model, preprocessor, names)


def test_batches_give_the_bytes_of_one_pass(split: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        whole = _run(split, tmp_path / "whole", 10**7, patch)
    with pytest.MonkeyPatch.context() as patch:
        cut = _run(split, tmp_path / "cut", 3 * 512, patch)  # 3 network chunks a batch: 7 batches
    assert len(split) > 6 * 3 * 512
    assert cut.predictions_md5 == whole.predictions_md5
    for got, expected in zip(cut.arrays, whole.arrays, strict=True):
        np.testing.assert_array_equal(got, expected)
    y_true, y_pred, inputs, background = whole.arrays
    features = whole.preprocessor.transform(split).astype(np.float32)  # the stage before: the whole split at once
    np.testing.assert_array_equal(inputs, features[seeded_rows(len(split), 300, 7)])
    predicted = predict(whole.model, torch.from_numpy(features), 512).numpy()
    np.testing.assert_array_equal(y_pred, inference.to_quantity(predicted))
    np.testing.assert_array_equal(y_true, split["quantity"].to_numpy(dtype=np.float64))
    train = pd.read_parquet(tmp_path / "whole/data/features/train.parquet").drop(columns=[TARGET])
    np.testing.assert_array_equal(background, train.to_numpy(dtype=np.float32)[seeded_rows(len(split), 50, 8)])
    assert background.shape == (50, len(whole.names))


def test_an_empty_test_split_is_one_line(split: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data/splits").mkdir(parents=True)
    split.iloc[:0].to_parquet(tmp_path / "data/splits/test.parquet", index=False)
    monkeypatch.chdir(tmp_path)
    preprocessor = build_preprocessor(100).fit(split[FEATURE_COLUMNS])
    names = readable_feature_names(preprocessor)
    model = DemandNet(len(names), Hyperparameters([8], [0.0], False, "adam", 0.001, 256))
    with pytest.raises(InputError, match=r"^data/splits/test.parquet: no test rows$"):
        inference.predict_test(preprocessor, model, names, np.arange(0))
    assert not (tmp_path / "data/predictions.parquet").exists()
