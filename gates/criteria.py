"""Both gates' verdicts criterion by criterion, from their metrics files: the table the Prefect UI's summary,
the lineage console and evidence packs show, so that they cannot disagree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gates.rules import DriftPolicy, GateVerdict, drift_verdict

Metrics = Mapping[str, Any]

# The fairness stage's names for its criteria (tasks.fairness.LABELS, which a test holds this equal to;
# importing the stage would load its libraries here). Each is judged, and shown, by its size.
CRITERIA = {
    "log_residual_gap": "log-residual gap",
    "error_ratio": "error ratio (RMSLE)",
    "mean_outcome_difference": "|mean outcome difference|",
}


@dataclass(frozen=True)
class Criterion:
    """One measured criterion of a gate: its value (4 significant digits), the bound it is held to, and
    `passed`, `FAILED`, `overridden`, or `reported` for what is measured but does not decide."""

    gate: str
    criterion: str
    value: str
    bound: str
    result: str
    decides: bool = True  # False: a column's drift score, or a fairness criterion the policy does not use


def criteria(metrics: Mapping[str, Metrics | None], drift: DriftPolicy) -> list[Criterion]:
    """Every criterion of both gates, from their metrics files, as the UI's verdict table lists them."""
    rows: list[Criterion] = []
    if found := metrics.get("drift_check"):
        for name, column in found["columns"].items():
            result = "drifted" if column["drifted"] else "no drift"
            rows.append(Criterion("drift", f"{name}: {column['test']}", f"{column['score']:.4g}",
                                  f"threshold {column['threshold']:.4g}", result, decides=False))  # fmt: skip
        verdict = drift_verdict(found, drift)
        result = {GateVerdict.PASSED: "passed", GateVerdict.OVERRIDDEN: "overridden"}.get(verdict, "FAILED")
        drifted = ", ".join(found["drifted_columns"]) or "none"
        rows.append(Criterion("drift", f"share of drifted columns (drifted: {drifted})",
                              f"{found['drifted_share']:.4g}", f"< {found['threshold']:.4g}", result))  # fmt: skip
    if found := metrics.get("fairness"):
        basis = "far end of 95% interval" if found["policy"]["judge"] == "interval" else "point value"
        for column, record in found["attributes"].items():
            if not record["criteria"]:  # a group too small to judge
                rows.append(Criterion("fairness", f"{column}: group sizes", "too few rows",
                                      f">= {found['policy']['min_group_rows']}", "FAILED"))  # fmt: skip
            for name, judged in record["criteria"].items():
                result = ("passed" if judged["passed"] else "FAILED") if judged["decides"] else "reported"
                rows.append(Criterion("fairness", f"{column}: {CRITERIA.get(name, name)}, {basis}",
                                      f"{judged['judged']:.4g}", f"<= {judged['bound']:.4g}", result,
                                      decides=judged["decides"]))  # fmt: skip
    return rows
