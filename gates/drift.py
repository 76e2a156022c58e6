"""The drift gate: stop before training when the newest weeks' data no longer look like the reference weeks.

Judges metrics/drift_check.json (tasks/drift_check.py, with Evidently). preprocess enforces it too, so that
`dvc repro` without the flow stops there; params.yaml's drift.allow, with who and why, lets a run go on.
"""

from __future__ import annotations

from typing import Any

from gates.gate import Gate, GateMetrics


class ColumnDrift(GateMetrics):
    test: str
    score: float
    threshold: float
    drifted: bool


class DriftMetrics(GateMetrics):
    drift_detected: bool
    drifted_columns: list[str]
    drifted_share: float
    threshold: float
    report: str
    columns: dict[str, ColumnDrift]


def _said(m: DriftMetrics) -> str:
    relation = ">=" if m.drift_detected else "<"
    drifted = ", ".join(m.drifted_columns) or "none"
    return f"share of drifted columns {m.drifted_share:.4g} {relation} {m.threshold} (drifted: {drifted})"


def _criteria(m: DriftMetrics) -> list[tuple[str, str, str, bool | str]]:
    rows: list[tuple[str, str, str, bool | str]] = [
        (f"{name}: {c.test}", f"{c.score:.4g}", f"threshold {c.threshold:.4g}", "drifted" if c.drifted else "no drift")
        for name, c in m.columns.items()
    ]
    drifted = ", ".join(m.drifted_columns) or "none"
    rows.append((f"share of drifted columns (drifted: {drifted})", f"{m.drifted_share:.4g}", f"< {m.threshold:.4g}",
                 not m.drift_detected))  # fmt: skip
    return rows


def _facts(m: DriftMetrics) -> dict[str, Any]:
    return {"drifted_columns": m.drifted_columns, "drifted_share": m.drifted_share}


GATE = Gate(
    name="drift",
    stage="drift_check",
    action_type="DriftGate",
    metrics=DriftMetrics,
    passes=lambda m: not m.drift_detected,
    said=_said,
    stop=lambda m: f"drift detected in {', '.join(m.drifted_columns)}; see {m.report}",
    criteria=_criteria,
    facts=_facts,
    evidence=("reports/drift.html",),
    override_section="drift",
)
