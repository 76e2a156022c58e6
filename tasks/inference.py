"""Stage inference: predict every test row with the tuned network, explain it with SHAP, and measure it against
the baseline for the accuracy gate (tasks/accuracy.py)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import joblib
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import shap
import torch

from tasks import accuracy
from tasks.columns import TARGET
from tasks.metrics import regression_metrics, to_quantity
from tasks.model import DemandNet, load_model, make_deterministic, predict
from tasks.params import load_params
from tasks.row_groups import RowGroupWriter, batches, positioned, row_count, take_rows
from tasks.sampling import seeded_rows
from tasks.stage import InputError, atomic_path, run_stage, verify_against_lock, write_json

TEST_SPLIT = Path("data/splits/test.parquet")
TRAIN_FEATURES = Path("data/features/train.parquet")
PREPROCESSOR = Path("models/preprocessor.joblib")
MODEL = Path("models/model.pt")
TUNE_METRICS = Path("metrics/tune.json")
BASELINE_PREDICTIONS = Path("data/baseline_predictions.parquet")  # tune's baseline, on the same test rows
PREDICTIONS_OUT = Path("data/predictions.parquet")
SHAP_VALUES_OUT = Path("reports/shap_values.parquet")
SHAP_IMPORTANCE_OUT = Path("reports/shap_importance.json")  # a DVC bar plot
SHAP_BAR_OUT = Path("reports/shap_bar.png")
SHAP_BEESWARM_OUT = Path("reports/shap_beeswarm.png")
METRICS_OUT = Path("metrics/inference.json")
ATTRIBUTES = ["is_registered", "country"]  # raw values, for the fairness stage
PREDICT_ROWS = 65_536  # rows the network predicts at once
BATCH_ROWS = 8 * PREDICT_ROWS  # whole chunks of those, so each prediction is computed as in one pass over the split

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer


def predictions_table(test: pd.DataFrame, predicted_log: np.ndarray) -> pd.DataFrame:
    """One row per test row, in order: identifiers, raw attributes, y_true and y_pred in units sold."""
    return pd.DataFrame(
        {
            "invoice_no": test["invoice_no"].to_numpy(),
            "stock_code": test["stock_code"].to_numpy(),
            "invoice_date": test["invoice_date"].to_numpy(),
            **{name: test[name].to_numpy() for name in ATTRIBUTES},
            "y_true": test["quantity"].to_numpy(dtype=np.float64),
            "y_pred": to_quantity(predicted_log),
        }
    )


def explain(
    model: DemandNet, background: np.ndarray, explained: np.ndarray, feature_names: list[str]
) -> shap.Explanation:
    """DeepExplainer SHAP values (contributions to predicted log1p quantity) for the explained rows."""
    explainer = shap.DeepExplainer(model, torch.from_numpy(background))
    values = np.asarray(explainer.shap_values(torch.from_numpy(explained))).reshape(len(explained), -1)
    base = float(np.asarray(explainer.expected_value).reshape(-1)[0])
    return shap.Explanation(
        values=values, base_values=np.full(len(explained), base), data=explained, feature_names=feature_names
    )


def importance(explanation: shap.Explanation) -> list[dict[str, object]]:
    """Mean |SHAP| per feature, largest first (ties by name), for `dvc plots`."""
    means = np.abs(explanation.values).mean(axis=0)
    pairs = sorted(zip(explanation.feature_names, means, strict=True), key=lambda pair: (-pair[1], pair[0]))
    return [{"feature": name, "mean_abs_shap": float(value)} for name, value in pairs]


def _save_plot(path: Path, draw: object) -> None:
    with atomic_path(path) as tmp:
        plt.figure()
        draw(show=False)  # type: ignore[operator]
        plt.tight_layout()
        plt.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
        plt.close("all")


def predict_test(
    preprocessor: ColumnTransformer, model: DemandNet, feature_names: list[str], explained_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict the test split a batch at a time into PREDICTIONS_OUT; y_true and y_pred in units sold, and the
    model inputs of `explained_rows` (sorted positions)."""
    y_true, y_pred, explained = [], [], []
    with atomic_path(PREDICTIONS_OUT) as tmp, ExitStack() as stack:
        writer = None
        for first, batch in positioned(batches(TEST_SPLIT, None, BATCH_ROWS)):
            test = batch.to_pandas()
            features = preprocessor.transform(test).astype(np.float32)
            if features.shape[1] != len(feature_names):
                raise InputError(
                    f"{MODEL}: expects {len(feature_names)} features, the preprocessor gives {features.shape[1]}"
                )
            predicted_log = predict(model, torch.from_numpy(features), batch_size=PREDICT_ROWS).numpy()
            table = predictions_table(test, predicted_log)
            if writer is None:
                writer = RowGroupWriter(tmp, RowGroupWriter.schema_of(table))
                stack.callback(writer.close)
            writer.write(table)
            y_true.append(table["y_true"].to_numpy())
            y_pred.append(table["y_pred"].to_numpy())
            inside = explained_rows[(explained_rows >= first) & (explained_rows < first + len(test))]
            explained.append(features[inside - first])
        if writer is None:
            raise InputError(f"{TEST_SPLIT}: no test rows")
    return np.concatenate(y_true), np.concatenate(y_pred), np.concatenate(explained)


def background_rows(rows: np.ndarray) -> np.ndarray:
    """The model inputs of the training rows at `rows` (sorted positions), read a batch at a time."""
    columns = [name for name in pq.read_schema(TRAIN_FEATURES).names if name != TARGET]
    return take_rows(TRAIN_FEATURES, rows, columns, BATCH_ROWS).to_pandas().to_numpy(dtype=np.float32)


def main() -> None:
    params = load_params()
    make_deterministic(params.seed, params.tune.threads)
    verify_against_lock(PREPROCESSOR)  # before unpickling: a tampered file must never load
    preprocessor = joblib.load(PREPROCESSOR)
    model, feature_names = load_model(MODEL)
    explained_rows = seeded_rows(row_count(TEST_SPLIT), params.inference.shap_explained, params.seed + 1)
    y_true, y_pred, explained = predict_test(preprocessor, model, feature_names, explained_rows)
    background = background_rows(seeded_rows(row_count(TRAIN_FEATURES), params.inference.shap_background, params.seed))
    explanation = explain(model, background, explained, feature_names)

    shap_frame = pd.DataFrame(explanation.values, columns=feature_names).assign(test_row=explained_rows)
    with atomic_path(SHAP_VALUES_OUT) as tmp:
        shap_frame.to_parquet(tmp, index=False)
    with atomic_path(SHAP_IMPORTANCE_OUT) as tmp:
        tmp.write_text(json.dumps(importance(explanation), indent=2) + "\n", encoding="utf-8")
    _save_plot(SHAP_BAR_OUT, lambda show: shap.plots.bar(explanation, max_display=15, show=show))
    _save_plot(SHAP_BEESWARM_OUT, lambda show: shap.plots.beeswarm(explanation, max_display=15, show=show))

    network = regression_metrics(y_true, y_pred)
    baseline = json.loads(TUNE_METRICS.read_text(encoding="utf-8"))["baseline"]["test"]
    baseline_predicted = pd.read_parquet(BASELINE_PREDICTIONS)["y_pred"].to_numpy(dtype=np.float64)
    if len(baseline_predicted) != len(y_true):
        raise InputError(f"{BASELINE_PREDICTIONS}: {len(baseline_predicted)} rows, the test split {len(y_true)}")
    versus = accuracy.assess(y_true, y_pred, baseline_predicted, params.gates.accuracy, params.seed)
    write_json(
        METRICS_OUT,
        {
            "test": network,
            "rows": len(y_true),
            "baseline_test": baseline,
            "rmsle_vs_baseline": network["rmsle"] / baseline["rmsle"],
            "shap": {"background_rows": len(background), "explained_rows": len(explained_rows)},
            "accuracy": versus,
        },
    )
    print(
        f"inference: {len(y_true)} test rows, RMSLE {network['rmsle']:.4f} (baseline {baseline['rmsle']:.4f}); "
        f"accuracy {'passed' if versus['passed'] else 'FAILED'}: ratio {versus['judged']:.4f} "
        f"({'far end of 95% interval' if versus['judge'] == 'interval' else 'point value'}), "
        f"bound {versus['max_ratio']}"
    )


if __name__ == "__main__":
    run_stage("inference", main)
