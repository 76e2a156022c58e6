"""The fairness policy on built predictions: a base-rate gap passes, a biased model fails on the criterion
that catches it, small groups fail with a reason, intervals are seeded, and the seed's MOD still works."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tasks.fairness import assess, bootstrap_criteria, criteria_values, group_table
from tasks.params import FairnessParams
from tasks.stage import InputError

POLICY = FairnessParams(bootstrap_samples=300)


def _demand(rows: int = 6000, seed: int = 0) -> pd.DataFrame:
    """Registered customers buy three times what guests buy, UK or not; an unbiased model predicts each
    line with the same relative error in every group."""
    rng = np.random.default_rng(seed)
    registered = (rng.random(rows) < 0.7).astype(np.int8)
    country = np.where(rng.random(rows) < 0.85, "United Kingdom", "France")
    actual = np.round(rng.lognormal(np.log(np.where(registered == 1, 12.0, 4.0)), 0.5))
    predicted = actual * rng.lognormal(0.0, 0.3, rows)
    return pd.DataFrame({"is_registered": registered, "country": country, "y_true": actual, "y_pred": predicted})


def _shift_guests(frame: pd.DataFrame, log_shift: float) -> pd.DataFrame:
    """The guests' predictions moved by a constant in log1p space: a model biased against one group."""
    guests = frame["is_registered"] == 0
    shifted = frame.copy()
    shifted.loc[guests, "y_pred"] = np.expm1(np.log1p(frame.loc[guests, "y_pred"]) + log_shift)
    return shifted


def test_a_real_base_rate_gap_without_model_bias_passes() -> None:
    frame = _demand()
    verdict = assess(frame, POLICY, seed=42)
    registered = verdict["attributes"]["is_registered"]
    assert registered["groups"]["privileged"]["mean_actual"] > 2.5 * registered["groups"]["unprivileged"]["mean_actual"]
    assert verdict["passed"] is True, verdict["reason"]
    assert set(verdict["attributes"]) == {"is_registered", "country"}  # each attribute judged
    # The seed's criterion, still reported, would have refused this fair model: it measures demand.
    mod = registered["criteria"]["mean_outcome_difference"]
    assert mod["decides"] is False
    assert abs(mod["value"]) > POLICY.mod_threshold
    assert mod["passed"] is False


def test_a_constant_added_to_one_groups_log_prediction_fails_on_the_residual_gap() -> None:
    verdict = assess(_shift_guests(_demand(), 0.5), POLICY, seed=42)
    registered = verdict["attributes"]["is_registered"]
    assert registered["passed"] is False
    assert registered["criteria"]["log_residual_gap"]["passed"] is False
    assert registered["criteria"]["log_residual_gap"]["value"] == pytest.approx(0.5, abs=0.05)
    assert verdict["passed"] is False
    assert verdict["reason"].startswith("is_registered: log-residual gap ")
    assert "> 0.25" in verdict["reason"]


def test_one_groups_errors_inflated_fail_on_the_error_ratio() -> None:
    frame = _demand()
    guests = frame["is_registered"] == 0
    noisy = frame.copy()  # guests predicted with three times the log error, and no systematic shift
    log_error = np.log1p(frame["y_pred"]) - np.log1p(frame["y_true"])
    noisy.loc[guests, "y_pred"] = np.expm1(np.log1p(frame.loc[guests, "y_true"]) + 3 * log_error[guests])
    registered = assess(noisy, POLICY, seed=42)["attributes"]["is_registered"]
    assert registered["criteria"]["error_ratio"]["passed"] is False
    assert registered["criteria"]["error_ratio"]["value"] > 2.5
    assert registered["passed"] is False
    assert "error ratio (RMSLE) " in registered["reason"]


def test_a_group_below_the_minimum_size_fails_with_one_line() -> None:
    frame = _demand()
    few_french = pd.concat([frame[frame["country"] == "United Kingdom"], frame[frame["country"] == "France"][:150]])
    verdict = assess(few_french, POLICY, seed=42)
    country = verdict["attributes"]["country"]
    assert country["passed"] is False
    assert country["reason"] == (
        "country: the unprivileged group (country != 'United Kingdom') has 150 test rows, "
        "fewer than fairness.min_group_rows 200: too few to judge"
    )
    assert verdict["passed"] is False
    assert verdict["reason"] == country["reason"]  # the first failure is the gate's reason, on one line
    assert "\n" not in verdict["reason"]


def test_an_empty_group_fails_rather_than_passing_silently() -> None:
    registered_only = _demand().query("is_registered == 1")
    verdict = assess(registered_only, POLICY, seed=42)
    assert verdict["attributes"]["is_registered"]["passed"] is False
    assert "has 0 test rows" in verdict["attributes"]["is_registered"]["reason"]


def test_the_mean_outcome_difference_when_chosen_behaves_as_before() -> None:
    hand = pd.DataFrame(
        {
            "is_registered": [1, 1, 1, 0, 0] * 40,
            "y_true": [2.0, 4.0, 6.0, 1.0, 3.0] * 40,
            "y_pred": [3.0, 4.0, 8.0, 1.0, 1.0] * 40,
        }
    )
    policy = FairnessParams(
        attributes={"is_registered": 1}, criteria=["mean_outcome_difference"], judge="point", min_group_rows=20
    )
    refused = assess(hand, policy.model_copy(update={"mod_threshold": 3.0}), seed=42)
    registered = refused["attributes"]["is_registered"]
    assert registered["criteria"]["mean_outcome_difference"]["value"] == pytest.approx(
        1.0 - 5.0
    )  # unprivileged - privileged
    assert registered["groups"]["privileged"]["mae"] == pytest.approx((1 + 0 + 2) / 3)
    assert registered["groups"]["privileged"]["rows"] == 120
    assert refused["passed"] is False
    assert refused["reason"] == "is_registered: |mean outcome difference| 4.0000 > 3.0 (point values)"
    assert assess(hand, policy.model_copy(update={"mod_threshold": 4.0}), seed=42)["passed"] is True


def test_intervals_are_seeded_and_hold_the_point_value() -> None:
    frame = _demand()
    first, again = assess(frame, POLICY, seed=42), assess(frame, POLICY, seed=42)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    other = assess(frame, POLICY, seed=43)
    gap = first["attributes"]["is_registered"]["criteria"]["log_residual_gap"]
    assert other["attributes"]["is_registered"]["criteria"]["log_residual_gap"]["interval"] != gap["interval"]
    low, high = gap["interval"]
    assert low <= gap["value"] <= high
    assert gap["judged"] == pytest.approx(max(abs(low), abs(high)))  # the interval's end farthest from fair


def test_the_bootstrap_measures_what_the_metric_frame_measures() -> None:
    """Without resampling, the bootstrap's arithmetic gives Fairlearn's values."""
    frame = _demand()
    privileged = (frame["is_registered"] == 1).to_numpy()
    y_true, y_pred = frame["y_true"].to_numpy(), frame["y_pred"].to_numpy()
    expected = criteria_values(group_table(y_true, y_pred, privileged))

    class Identity:
        def integers(self, low: int, high: int, size: int) -> np.ndarray:
            return np.arange(size)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(np.random, "default_rng", lambda seed: Identity())
        once = bootstrap_criteria(y_true, y_pred, privileged, samples=1, seed=0)
    for name, value in expected.items():
        assert once[name][0] == pytest.approx(value, rel=1e-9), name


def test_a_missing_sensitive_column_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"no column 'is_registered' \(fairness.attributes\)"):
        assess(_demand().drop(columns=["is_registered"]), POLICY, seed=42)
