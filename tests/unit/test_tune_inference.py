"""tune's search and inference's predictions and SHAP output, on small in-memory data."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
import torch

from tasks.inference import explain, importance, predictions_table
from tasks.model import DemandNet, Hyperparameters, make_deterministic, predict, train
from tasks.params import SearchSpace, TuneParams
from tasks.tune import TrialJob, best_hyperparameters, in_process_runner, search, suggest, trials_table

TINY = TuneParams(n_trials=4, max_epochs=3, patience=2, search_space=SearchSpace(layers=[1, 2], units=[4, 16]))


def _split(rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(rows, 6, generator=generator)
    return features, features[:, 0] - 0.5 * features[:, 2] + 0.1 * torch.randn(rows, generator=generator)


def _search() -> optuna.Study:
    make_deterministic(seed=5, threads=1)
    return search(TrialJob("tiny", 5, TINY, {}), in_process_runner(_split(400, 0), _split(100, 1)))


def test_suggestions_stay_inside_the_search_space() -> None:
    space = SearchSpace(layers=[2, 2], units=[8, 8], dropout=[0.2, 0.2], batch_size=[32])
    chosen = suggest(optuna.trial.FixedTrial({"layers": 2, "units_0": 8, "units_1": 8, "dropout_0": 0.2,
                                              "dropout_1": 0.2, "batch_norm": False, "optimizer": "adamw",
                                              "learning_rate": 0.001, "batch_size": 32}), space)  # fmt: skip
    assert chosen == Hyperparameters([8, 8], [0.2, 0.2], False, "adamw", 0.001, 32)


def test_search_runs_the_fixed_number_of_trials_deterministically(capsys: pytest.CaptureFixture[str]) -> None:
    first = _search()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("tune: trial")]
    assert len(first.trials) == TINY.n_trials
    assert lines[0].startswith("tune: trial 1 of 4 complete: val loss ")
    assert lines[-1].startswith("tune: trial 4 of 4 ")
    assert all(", best " in line for line in lines)
    second = _search()
    assert first.best_trial.params == second.best_trial.params
    assert [t.value for t in first.trials] == [t.value for t in second.trials]


def test_trials_table_and_best_configuration() -> None:
    study = _search()
    table = trials_table(study)
    assert list(table["trial"]) == [0, 1, 2, 3]
    assert {"state", "val_loss", "epochs", "layers", "learning_rate", "optimizer"} <= set(table.columns)
    assert table["val_loss"].notna().all()
    chosen = best_hyperparameters(study, TINY.search_space)
    assert len(chosen.units) == study.best_trial.params["layers"]


def _trained() -> DemandNet:
    make_deterministic(seed=2, threads=1)
    hyper = Hyperparameters([8], [0.0], True, "adam", 0.01, 32)
    return train(*_split(300, 0), *_split(100, 1), hyper, seed=2, max_epochs=3, patience=2).model


def test_predictions_one_per_test_row_in_order_with_the_raw_attribute() -> None:
    test = pd.DataFrame({
        "invoice_no": ["3", "1", "2"], "stock_code": ["A", "B", "C"],
        "invoice_date": pd.to_datetime(["2011-12-01", "2011-12-02", "2011-12-03"]),
        "is_registered": np.array([1, 0, 1], dtype="int8"), "country": ["EIRE", "France", "EIRE"],
        "quantity": [4, 2, 7],
    })  # fmt: skip
    table = predictions_table(test, np.array([np.log1p(3.0), -0.2, np.log1p(6.0)]))
    assert list(table["invoice_no"]) == ["3", "1", "2"]
    assert list(table["is_registered"]) == [1, 0, 1]
    assert table["y_true"].tolist() == [4.0, 2.0, 7.0]
    assert table["y_pred"].tolist() == pytest.approx([3.0, 0.0, 6.0])


def test_shap_values_have_one_column_per_named_feature_and_add_up() -> None:
    model = _trained()
    background, _ = _split(50, 3)
    explained, _ = _split(20, 4)
    names = [f"feature_{i}" for i in range(6)]
    explanation = explain(model, background.numpy(), explained.numpy(), names)
    assert explanation.values.shape == (20, 6)
    assert list(explanation.feature_names) == names
    # DeepLIFT's efficiency: contributions sum to the prediction minus the expected value
    totals = explanation.values.sum(axis=1) + explanation.base_values
    np.testing.assert_allclose(totals, predict(model, explained).numpy(), atol=1e-4)
    ranked = importance(explanation)
    assert ranked[0]["feature"] == "feature_0"  # the strongest true effect
    assert sorted(ranked, key=lambda entry: -float(entry["mean_abs_shap"])) == ranked  # type: ignore[arg-type]
