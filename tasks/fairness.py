"""Stage fairness: does the model serve each group of customers equally well?

For each sensitive attribute (params `fairness.attributes`: a column and its privileged value) the
stage compares the privileged group with everyone else on the model's *errors*, not on what the
groups buy: registered customers buying three times what guests buy is demand, and a model that
predicts it is right. Criteria (README "Fairness policy"):

- `log_residual_gap`: |mean log-residual of one group - the other's|, where a row's log-residual is
  log1p(predicted) - log1p(actual): one group systematically over- or under-predicted;
- `error_ratio`: RMSLE of the worse-served group / the better-served group's;
- `mean_outcome_difference`: mean prediction of the unprivileged group - the privileged group's, in
  units (the seed's criterion: it measures demand as much as the model; reported, decides if chosen).

Per-group metrics come from Fairlearn's MetricFrame; each criterion also gets a seeded bootstrap 95%
interval, and the policy says whether its point value or the interval's far end is judged. A group
below `fairness.min_group_rows` fails its attribute with the reason: never a silent pass. The gate
passes only if every attribute passes. Like drift_check, the stage always completes: the verdict is
data that the flow and the model registry act on (gates/rules.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from fairlearn.metrics import MetricFrame, count
from sklearn.metrics import mean_absolute_error, root_mean_squared_log_error

from tasks.params import FairnessParams, load_params
from tasks.stage import InputError, run_stage, write_json

PREDICTIONS = Path("data/predictions.parquet")
METRICS_OUT = Path("metrics/fairness.json")
CONFIDENCE = 0.95
GROUPS = ("privileged", "unprivileged")
LABELS = {
    "log_residual_gap": "log-residual gap",
    "error_ratio": "error ratio (RMSLE)",
    "mean_outcome_difference": "|mean outcome difference|",
}


def _mean_log_residual(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.log1p(y_pred) - np.log1p(y_true)))


GROUP_METRICS = {
    "rows": count,
    "mean_actual": lambda y_true, y_pred: float(np.mean(y_true)),
    "mean_prediction": lambda y_true, y_pred: float(np.mean(y_pred)),
    "mae": mean_absolute_error,
    "rmsle": root_mean_squared_log_error,
    "mean_residual": lambda y_true, y_pred: float(np.mean(y_pred - y_true)),
    "mean_log_residual": _mean_log_residual,
}


def group_table(y_true: np.ndarray, y_pred: np.ndarray, privileged: np.ndarray) -> dict[str, dict[str, float]]:
    """Fairlearn's MetricFrame by group: rows, mean actual and predicted units, MAE, RMSLE, mean residual
    and mean log-residual (prediction minus actual). A group without rows is absent."""
    labels = pd.Series(np.where(privileged, "privileged", "unprivileged"), name="group")
    frame = MetricFrame(metrics=GROUP_METRICS, y_true=y_true, y_pred=y_pred, sensitive_features=labels)
    by_group: pd.DataFrame = frame.by_group
    return {
        str(group): {str(name): int(value) if name == "rows" else float(value) for name, value in row.items()}
        for group, row in by_group.iterrows()
    }


def criteria_values(groups: dict[str, dict[str, float]]) -> dict[str, float]:
    """The three criteria from the two groups' metrics (signed where a sign means something)."""
    p, u = groups["privileged"], groups["unprivileged"]
    return {
        "log_residual_gap": u["mean_log_residual"] - p["mean_log_residual"],
        "error_ratio": max(u["rmsle"], p["rmsle"]) / min(u["rmsle"], p["rmsle"]),
        "mean_outcome_difference": u["mean_prediction"] - p["mean_prediction"],
    }


def bootstrap_criteria(
    y_true: np.ndarray, y_pred: np.ndarray, privileged: np.ndarray, samples: int, seed: int
) -> dict[str, np.ndarray]:
    """Each criterion over `samples` seeded bootstrap resamples of the rows (same seed, same values).

    Sums per group with np.bincount, one resample at a time: Fairlearn's own bootstrap (MetricFrame's
    n_boot) rebuilds a whole MetricFrame per resample, minutes for a thousand resamples of 78,000 rows.
    """
    log_residual = np.log1p(y_pred) - np.log1p(y_true)
    group = (~privileged).astype(np.int64)  # 0 privileged, 1 unprivileged
    rng = np.random.default_rng(seed)
    found: dict[str, list[float]] = {name: [] for name in LABELS}
    for _ in range(samples):
        rows = rng.integers(0, len(group), size=len(group))
        g = group[rows]
        n = np.bincount(g, minlength=2)
        if n.min() == 0:
            continue  # a resample without one of the groups has no criterion value
        mean_lr = np.bincount(g, weights=log_residual[rows], minlength=2) / n
        rmsle = np.sqrt(np.bincount(g, weights=log_residual[rows] ** 2, minlength=2) / n)
        mean_pred = np.bincount(g, weights=y_pred[rows], minlength=2) / n
        found["log_residual_gap"].append(float(mean_lr[1] - mean_lr[0]))
        found["error_ratio"].append(float(rmsle.max() / rmsle.min()))
        found["mean_outcome_difference"].append(float(mean_pred[1] - mean_pred[0]))
    return {name: np.asarray(values) for name, values in found.items()}


def judge_attribute(
    predictions: pd.DataFrame, column: str, privileged_value: int | str, policy: FairnessParams, seed: int
) -> dict[str, Any]:
    """One attribute's groups, every criterion with its interval, and its verdict with a one-line reason."""
    if column not in predictions.columns:
        raise InputError(f"{PREDICTIONS}: no column '{column}' (fairness.attributes)")
    privileged = (predictions[column].astype(str) == str(privileged_value)).to_numpy()
    y_true = predictions["y_true"].to_numpy(dtype=np.float64)
    y_pred = predictions["y_pred"].to_numpy(dtype=np.float64)
    record: dict[str, Any] = {"privileged_value": privileged_value, "groups": {}, "criteria": {}}
    sizes = {"privileged": int(privileged.sum()), "unprivileged": int((~privileged).sum())}
    small = [name for name in GROUPS if sizes[name] < policy.min_group_rows]
    if small:
        name = small[0]
        relation = "==" if name == "privileged" else "!="
        record["groups"] = group_table(y_true, y_pred, privileged) if min(sizes.values()) > 0 else {}
        reason = (
            f"{column}: the {name} group ({column} {relation} {privileged_value!r}) has {sizes[name]} test rows, "
            f"fewer than fairness.min_group_rows {policy.min_group_rows}: too few to judge"
        )
        return {**record, "passed": False, "reason": reason}

    groups = group_table(y_true, y_pred, privileged)
    points = criteria_values(groups)
    resampled = bootstrap_criteria(y_true, y_pred, privileged, policy.bootstrap_samples, seed)
    tail = (1 - CONFIDENCE) / 2
    bounds = {
        "log_residual_gap": policy.max_log_residual_gap,
        "error_ratio": policy.max_error_ratio,
        "mean_outcome_difference": policy.mod_threshold,
    }
    failures: list[str] = []
    passes: list[str] = []
    for name, point in points.items():
        low, high = (float(q) for q in np.quantile(resampled[name], [tail, 1 - tail]))
        # Judged: the size of the criterion (its absolute value for signed ones), at the point or at
        # the interval's end farthest from fair.
        judged = max(abs(low), abs(high)) if policy.judge == "interval" else abs(point)
        decides = name in policy.criteria
        passed = judged <= bounds[name]
        record["criteria"][name] = {
            "value": point,
            "interval": [low, high],
            "judged": judged,
            "bound": bounds[name],
            "decides": decides,
            "passed": passed,
        }
        line = f"{LABELS[name]} {judged:.4f} {'<=' if passed else '>'} {bounds[name]}"
        if decides:
            (passes if passed else failures).append(line)
    on = "point values" if policy.judge == "point" else f"far ends of {CONFIDENCE:.0%} intervals"
    verdict = f"{', '.join(failures or passes)} ({on})"
    return {**record, "groups": groups, "passed": not failures, "reason": f"{column}: {verdict}"}


def assess(predictions: pd.DataFrame, policy: FairnessParams, seed: int) -> dict[str, Any]:
    """Every attribute judged on its own; the gate passes only if every attribute passes."""
    attributes = {
        column: judge_attribute(predictions, column, value, policy, seed) for column, value in policy.attributes.items()
    }
    failed = [record["reason"] for record in attributes.values() if not record["passed"]]
    if failed:
        more = f" (and {len(failed) - 1} more attribute(s) failed)" if len(failed) > 1 else ""
        reason = failed[0] + more
    else:
        reason = "; ".join(record["reason"] for record in attributes.values())
    return {
        "passed": not failed,
        "reason": reason,
        "policy": {**policy.model_dump(mode="json"), "confidence": CONFIDENCE, "seed": seed},
        "attributes": attributes,
    }


def main() -> None:
    params = load_params()
    present = pq.read_schema(PREDICTIONS).names  # only what is judged: identifiers never load
    columns = [name for name in [*params.fairness.attributes, "y_true", "y_pred"] if name in present]
    verdict = assess(pd.read_parquet(PREDICTIONS, columns=columns), params.fairness, params.seed)
    write_json(METRICS_OUT, verdict)
    print(f"fairness: {'passed' if verdict['passed'] else 'FAILED'}: {verdict['reason']}")


if __name__ == "__main__":
    run_stage("fairness", main)
