"""The fairness gate: refuse a model whose errors differ too much between groups of customers.

Judges metrics/fairness.json, whose verdict and criteria the fairness stage computed (tasks/fairness.py).
"""

from __future__ import annotations

from typing import Any

from gates.gate import Gate, GateMetrics, judged_on

# The fairness stage's names for its criteria (tasks.fairness.LABELS, which a test holds this equal to;
# importing the stage would load its libraries here).
CRITERIA = {
    "log_residual_gap": "log-residual gap",
    "error_ratio": "error ratio (RMSLE)",
    "mean_outcome_difference": "|mean outcome difference|",
}


class Judged(GateMetrics):
    judged: float
    bound: float
    decides: bool
    passed: bool


class Attribute(GateMetrics):
    passed: bool
    criteria: dict[str, Judged]


class Policy(GateMetrics):
    judge: str
    min_group_rows: int


class FairnessMetrics(GateMetrics):
    passed: bool
    reason: str
    policy: Policy
    attributes: dict[str, Attribute]


def _criteria(m: FairnessMetrics) -> list[tuple[str, str, str, bool | str]]:
    basis = judged_on(m.policy.judge)
    rows: list[tuple[str, str, str, bool | str]] = []
    for column, attribute in m.attributes.items():
        if not attribute.criteria:  # a group too small to judge
            rows.append((f"{column}: group sizes", "too few rows", f">= {m.policy.min_group_rows}", False))
        for name, c in attribute.criteria.items():
            rows.append((f"{column}: {CRITERIA.get(name, name)}, {basis}", f"{c.judged:.4g}", f"<= {c.bound:.4g}",
                         c.passed if c.decides else "reported"))  # fmt: skip
    return rows


def _facts(m: FairnessMetrics) -> dict[str, Any]:
    return {"reason": m.reason, "attributes": {column: a.passed for column, a in m.attributes.items()}}


GATE = Gate(
    name="fairness",
    stage="fairness",
    action_type="FairnessGate",
    metrics=FairnessMetrics,
    passes=lambda m: m.passed,
    said=lambda m: m.reason,
    stop=lambda m: f"fairness check failed: {m.reason}; the model is not promoted",
    criteria=_criteria,
    facts=_facts,
    evidence=("models/model.pt",),
)
