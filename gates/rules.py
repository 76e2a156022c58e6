"""What each gate's verdict is, when a run must stop, and when a model may be promoted.

The drift gate reads metrics/drift_check.json and the override in params.yaml (drift.allow); the
fairness gate reads the verdict the fairness stage wrote to metrics/fairness.json (its criteria are
that stage's: tasks/fairness.py). preprocess, the lineage-pipeline flow, its summary, the ledger's
recorder and the model registry all decide with these functions, so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

Metrics = Mapping[str, Any]


class GateVerdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    OVERRIDDEN = "overridden"  # drift was found and allowed in params.yaml, by a named person
    NOT_RUN = "not_run"


class DriftPolicy(Protocol):
    """The override of the drift gate, as params.yaml's `drift` section holds it (tasks.params.DriftGate)."""

    @property
    def allow(self) -> bool: ...  # go on despite a drift verdict
    @property
    def allowed_by(self) -> str: ...  # who decided (a person)
    @property
    def reason(self) -> str: ...  # why


@dataclass(frozen=True)
class DriftOverride:
    """A DriftPolicy as a plain value, for whoever holds no params object."""

    allow: bool = False
    allowed_by: str = ""
    reason: str = ""


NO_OVERRIDE = DriftOverride()


def drift_verdict(drift: Metrics | None, policy: DriftPolicy) -> GateVerdict:
    """The drift gate from metrics/drift_check.json (None: drift_check has not run) and the override."""
    if drift is None:
        return GateVerdict.NOT_RUN
    if not drift["drift_detected"]:
        return GateVerdict.PASSED
    return GateVerdict.OVERRIDDEN if policy.allow else GateVerdict.FAILED


def fairness_verdict(fairness: Metrics | None) -> GateVerdict:
    """The fairness gate from metrics/fairness.json (None: fairness has not run)."""
    if fairness is None:
        return GateVerdict.NOT_RUN
    return GateVerdict.PASSED if fairness["passed"] else GateVerdict.FAILED


def may_promote(drift: str | None, fairness: str | None) -> bool:
    """A model may be promoted only when no drift was found (or it was allowed) and fairness passed."""
    return drift in (GateVerdict.PASSED, GateVerdict.OVERRIDDEN) and fairness == GateVerdict.PASSED


def drift_found(drift: Metrics) -> str:
    """What a drift verdict says, in one line."""
    return f"drift detected in {', '.join(drift['drifted_columns'])}; see {drift['report']}"


def stop_reason(stage: str, metrics: Metrics | None, policy: DriftPolicy) -> str | None:
    """After drift_check or fairness: why the run must stop (and the model not be promoted), if it must."""
    if stage == "drift_check" and metrics is not None and drift_verdict(metrics, policy) == GateVerdict.FAILED:
        return drift_found(metrics)
    if stage == "fairness" and fairness_verdict(metrics) == GateVerdict.FAILED:
        assert metrics is not None
        return f"fairness check failed: {metrics['reason']}; the model is not promoted"
    return None
