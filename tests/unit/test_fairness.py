"""Fairness arithmetic on hand-built predictions, and the explicit empty-group verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.fairness import assess
from tasks.params import FairnessParams
from tasks.stage import InputError


def _predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "is_registered": [1, 1, 1, 0, 0],
            "country": ["United Kingdom", "United Kingdom", "France", "United Kingdom", "EIRE"],
            "y_true": [2.0, 4.0, 6.0, 1.0, 3.0],
            "y_pred": [3.0, 4.0, 8.0, 1.0, 1.0],
        }
    )


def test_group_metrics_mae_difference_and_mod_by_hand() -> None:
    verdict = assess(_predictions(), FairnessParams(mod_threshold=3.0))
    privileged, unprivileged = verdict["groups"]["privileged"], verdict["groups"]["unprivileged"]  # type: ignore[index]
    assert privileged["rows"] == 3
    assert privileged["mae"] == pytest.approx((1 + 0 + 2) / 3)
    assert privileged["mse"] == pytest.approx((1 + 0 + 4) / 3)
    assert privileged["mean_prediction"] == pytest.approx(5.0)
    expected_rmsle = np.sqrt(((np.log(4) - np.log(3)) ** 2 + 0 + (np.log(9) - np.log(7)) ** 2) / 3)
    assert privileged["rmsle"] == pytest.approx(expected_rmsle)
    assert unprivileged["rows"] == 2
    assert unprivileged["mae"] == pytest.approx(1.0)
    assert unprivileged["mean_prediction"] == pytest.approx(1.0)
    assert verdict["mae_difference"] == pytest.approx(1.0 - 1.0)
    assert verdict["mean_outcome_difference"] == pytest.approx(1.0 - 5.0)  # unprivileged minus privileged
    assert verdict["passed"] is False  # |-4| > 3
    assert verdict["reason"] == "|mean outcome difference| 4.0000 > threshold 3.0"


def test_passes_within_the_threshold() -> None:
    verdict = assess(_predictions(), FairnessParams(mod_threshold=4.0))
    assert verdict["passed"] is True


def test_an_empty_group_is_an_explicit_failure_not_a_zero() -> None:
    only_registered = _predictions().query("is_registered == 1")
    verdict = assess(only_registered, FairnessParams(mod_threshold=100.0))
    assert verdict["passed"] is False
    assert verdict["mean_outcome_difference"] is None
    assert verdict["mae_difference"] is None
    assert verdict["groups"]["unprivileged"] == {"rows": 0}  # type: ignore[index]
    assert "unprivileged group (is_registered != 1) has no test rows" in str(verdict["reason"])


def test_country_as_the_sensitive_column() -> None:
    params = FairnessParams(sensitive_column="country", privileged_value="United Kingdom", mod_threshold=10.0)
    verdict = assess(_predictions(), params)
    assert verdict["groups"]["privileged"]["rows"] == 3  # type: ignore[index]
    assert verdict["groups"]["unprivileged"]["mean_prediction"] == pytest.approx(4.5)  # type: ignore[index]


def test_a_missing_sensitive_column_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no column 'is_registered'"):
        assess(_predictions().drop(columns=["is_registered"]), FairnessParams())
