"""Regression metrics on the original quantity scale, shared by tune, inference and fairness."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import mean_absolute_error, mean_squared_error, root_mean_squared_log_error


def to_quantity(log_quantity: ArrayLike) -> np.ndarray:
    """Undo the target transform log1p(quantity); a negative prediction means zero units."""
    return np.clip(np.expm1(np.asarray(log_quantity, dtype=np.float64)), 0.0, None)


def regression_metrics(true_quantity: ArrayLike, predicted_quantity: ArrayLike) -> dict[str, float]:
    """MSE, MAE and RMSLE in units sold."""
    y_true = np.asarray(true_quantity, dtype=np.float64)
    y_pred = np.asarray(predicted_quantity, dtype=np.float64)
    return {
        "mse": float(mean_squared_error(y_true, y_pred)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmsle": float(root_mean_squared_log_error(y_true, y_pred)),
    }
