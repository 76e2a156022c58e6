"""Stage fairness: errors and mean predictions per group, and a verdict on the mean outcome difference.

Like drift_check, the stage always completes; the verdict is data that orchestration and the
model registry act on.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tasks.metrics import regression_metrics
from tasks.params import FairnessParams, load_params
from tasks.stage import InputError, run_stage, write_json

PREDICTIONS = Path("data/predictions.parquet")
METRICS_OUT = Path("metrics/fairness.json")


def group_metrics(group: pd.DataFrame) -> dict[str, float | int]:
    """MSE, MAE, RMSLE, mean prediction and row count of one group (an empty group has rows 0 only)."""
    if group.empty:
        return {"rows": 0}
    return {
        **regression_metrics(group["y_true"], group["y_pred"]),
        "mean_prediction": float(group["y_pred"].mean()),
        "rows": len(group),
    }


def assess(predictions: pd.DataFrame, params: FairnessParams) -> dict[str, object]:
    """Per-group metrics, MAE difference and mean outcome difference (unprivileged minus privileged).

    Passes when |MOD| <= mod_threshold. An empty group fails with a reason: never a silent zero.
    """
    column = params.sensitive_column
    if column not in predictions.columns:
        raise InputError(f"{PREDICTIONS}: no column '{column}' (fairness.sensitive_column)")
    is_privileged = predictions[column].astype(str) == str(params.privileged_value)
    groups = {
        "privileged": group_metrics(predictions[is_privileged]),
        "unprivileged": group_metrics(predictions[~is_privileged]),
    }
    record: dict[str, object] = {
        "sensitive_column": column,
        "privileged_value": params.privileged_value,
        "mod_threshold": params.mod_threshold,
        "groups": groups,
    }
    empty = [name for name, metrics in groups.items() if metrics["rows"] == 0]
    if empty:
        return {
            **record,
            "mae_difference": None,
            "mean_outcome_difference": None,
            "passed": False,
            "reason": f"the {empty[0]} group ({column} {'==' if empty[0] == 'privileged' else '!='} "
            f"{params.privileged_value!r}) has no test rows, so fairness cannot be assessed",
        }
    mod = float(groups["unprivileged"]["mean_prediction"] - groups["privileged"]["mean_prediction"])
    passed = abs(mod) <= params.mod_threshold
    return {
        **record,
        "mae_difference": float(groups["unprivileged"]["mae"] - groups["privileged"]["mae"]),
        "mean_outcome_difference": mod,
        "passed": passed,
        "reason": (
            f"|mean outcome difference| {abs(mod):.4f} {'<=' if passed else '>'} threshold {params.mod_threshold}"
        ),
    }


def main() -> None:
    params = load_params()
    verdict = assess(pd.read_parquet(PREDICTIONS), params.fairness)
    write_json(METRICS_OUT, verdict)
    print(f"fairness: {'passed' if verdict['passed'] else 'FAILED'}: {verdict['reason']}")


if __name__ == "__main__":
    run_stage("fairness", main)
