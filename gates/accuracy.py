"""The accuracy gate: refuse a network that predicts worse than the gradient-boosting baseline beside it.

Judges the `accuracy` part of metrics/inference.json: the network's test RMSLE over the baseline's, on the
same test rows, at most gates.accuracy.max_ratio (tasks/accuracy.py computes it, with its bootstrap interval).
"""

from __future__ import annotations

from typing import Any

from gates.gate import Gate, GateMetrics, judged_on


class Accuracy(GateMetrics):
    network_rmsle: float
    baseline_rmsle: float
    ratio: float  # network / baseline, on every test row
    judged: float  # the ratio, or the far end of its bootstrap interval (gates.accuracy.judge)
    judge: str
    max_ratio: float
    passed: bool


class AccuracyMetrics(GateMetrics):
    accuracy: Accuracy


def _said(m: AccuracyMetrics) -> str:
    a = m.accuracy
    relation = "<=" if a.passed else ">"
    return (
        f"test RMSLE / baseline's {a.judged:.4f} {relation} {a.max_ratio} ({judged_on(a.judge)}; "
        f"network {a.network_rmsle:.4f}, baseline {a.baseline_rmsle:.4f})"
    )


def _criteria(m: AccuracyMetrics) -> list[tuple[str, str, str, bool | str]]:
    a = m.accuracy
    return [(f"test RMSLE / baseline's, {judged_on(a.judge)}", f"{a.judged:.4g}", f"<= {a.max_ratio:.4g}", a.passed)]


def _facts(m: AccuracyMetrics) -> dict[str, Any]:
    a = m.accuracy
    return {"ratio": a.ratio, "judged": a.judged, "max_ratio": a.max_ratio, "reason": _said(m)}


GATE = Gate(
    name="accuracy",
    stage="inference",
    action_type="AccuracyGate",
    metrics=AccuracyMetrics,
    passes=lambda m: m.accuracy.passed,
    said=_said,
    stop=lambda m: f"accuracy check failed: {_said(m)}; the model is not promoted",
    criteria=_criteria,
    facts=_facts,
    evidence=("models/model.pt",),
)
