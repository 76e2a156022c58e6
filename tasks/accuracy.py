"""The accuracy gate's measure (gates/accuracy.py judges it): the network's test RMSLE over the gradient-boosting
baseline's on the same rows, with a seeded bootstrap 95% interval over paired resamples of those rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.params import AccuracyParams

CONFIDENCE = 0.95


def _squared_log_errors(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    return (np.log1p(y_pred) - np.log1p(y_true)) ** 2


def assess(
    y_true: np.ndarray, network: np.ndarray, baseline: np.ndarray, policy: AccuracyParams, seed: int
) -> dict[str, Any]:
    """The ratio on every row, its interval, what is judged and whether it passes (quantities in units sold)."""
    net, base = _squared_log_errors(y_true, network), _squared_log_errors(y_true, baseline)
    network_rmsle, baseline_rmsle = float(np.sqrt(net.mean())), float(np.sqrt(base.mean()))
    rng = np.random.default_rng(seed)
    resampled = np.empty(policy.bootstrap_samples)
    for i in range(policy.bootstrap_samples):  # the same rows for both models: a paired comparison
        rows = rng.integers(0, len(net), size=len(net))
        resampled[i] = np.sqrt(net[rows].mean() / base[rows].mean())
    tail = (1 - CONFIDENCE) / 2
    low, high = (float(q) for q in np.quantile(resampled, [tail, 1 - tail]))
    ratio = network_rmsle / baseline_rmsle
    judged = high if policy.judge == "interval" else ratio  # the worse end, for the network
    return {
        "network_rmsle": network_rmsle,
        "baseline_rmsle": baseline_rmsle,
        "ratio": ratio,
        "interval": [low, high],
        "judged": judged,
        "judge": policy.judge,
        "max_ratio": policy.max_ratio,
        "confidence": CONFIDENCE,
        "bootstrap_samples": policy.bootstrap_samples,
        "seed": seed,
        "passed": judged <= policy.max_ratio,
    }
