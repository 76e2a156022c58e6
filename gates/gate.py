"""What a gate is: a rule over one stage's metrics file that decides whether a run goes on and a model may be
promoted. Each gate is one `Gate` value in its own module (gates/drift.py, ...); gates/table.py lists them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

Metrics = Mapping[str, Any]


class GateVerdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    OVERRIDDEN = "overridden"  # it failed and a named person let the run go on (params.yaml's <section>.allow)
    NOT_RUN = "not_run"
    # Read only, never written: a model version recorded before this gate existed has no verdict of it, and
    # its decisions were taken without it (the recorder always writes a verdict of every gate of the table).
    PREDATES = "predates"


PROMOTABLE = {GateVerdict.PASSED, GateVerdict.OVERRIDDEN, GateVerdict.PREDATES}
WRITTEN = {GateVerdict.PASSED, GateVerdict.FAILED, GateVerdict.OVERRIDDEN, GateVerdict.NOT_RUN}  # by the recorder


class Override(Protocol):
    """Who let a failed gate's run go on, and why: the allow/allowed_by/reason keys of the gate's params section."""

    @property
    def allow(self) -> bool: ...
    @property
    def allowed_by(self) -> str: ...  # a person
    @property
    def reason(self) -> str: ...


@dataclass(frozen=True)
class NoOverride:
    allow: bool = False
    allowed_by: str = ""
    reason: str = ""


NO_OVERRIDE = NoOverride()


class GateMetrics(BaseModel):
    """The part of a stage's metrics file a gate reads (other keys are the stage's own)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


M = TypeVar("M", bound=GateMetrics)


def judged_on(judge: str) -> str:
    """What a bootstrapped criterion is judged on, as the verdict tables say it (params' `judge`)."""
    return "far end of 95% interval" if judge == "interval" else "point value"


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


@dataclass(frozen=True)
class Gate(Generic[M]):
    """One gate: which stage's metrics it judges, how, and what it says."""

    name: str  # how people, the UI and the ledger call it; its verdict is the version property `<name>_gate`
    stage: str  # the dvc.yaml stage whose metrics file (metrics/<stage>.json) it judges; the run stops after it
    action_type: str  # the ledger's Action type of its verdict
    metrics: type[M]  # what it reads of the metrics file
    passes: Callable[[M], bool]
    said: Callable[[M], str]  # the measured criterion, its value and bound, in one line
    stop: Callable[[M], str]  # why the run stopped, when it failed
    # Each criterion as (criterion, value, bound, passed); for one that does not decide, a word instead of passed.
    criteria: Callable[[M], list[tuple[str, str, str, bool | str]]]
    facts: Callable[[M], dict[str, Any]]  # what its ledger action records beside the verdict
    evidence: tuple[str, ...] = ()  # files besides the metrics file its ledger action names as inputs
    override_section: str | None = None  # the params.yaml section whose `allow` can let a failure go on

    @property
    def metrics_file(self) -> str:
        return f"metrics/{self.stage}.json"

    @property
    def version_property(self) -> str:
        """The model-version property holding this gate's verdict."""
        return f"{self.name}_gate"

    def read(self, metrics: Metrics) -> M:
        return self.metrics.model_validate(metrics)

    def verdict(self, metrics: Metrics | None, override: Override = NO_OVERRIDE) -> GateVerdict:
        """The verdict on the stage's metrics file (None: the stage has not run)."""
        if metrics is None:
            return GateVerdict.NOT_RUN
        if self.passes(self.read(metrics)):
            return GateVerdict.PASSED
        return GateVerdict.OVERRIDDEN if override.allow and self.override_section else GateVerdict.FAILED

    def line(self, metrics: Metrics, override: Override = NO_OVERRIDE) -> str:
        """The verdict as a task run shows it: `passed: ...`, `FAILED: ...` or who allowed it."""
        verdict, said = self.verdict(metrics, override), self.said(self.read(metrics))
        if verdict == GateVerdict.OVERRIDDEN:
            return f"passed, {self.name} allowed by {override.allowed_by} ({override.reason}): {said}"
        return f"{'passed' if verdict == GateVerdict.PASSED else 'FAILED'}: {said}"

    def rows(self, metrics: Metrics, override: Override = NO_OVERRIDE) -> list[Criterion]:
        """Its criteria as the verdict tables list them; a failed one reads `overridden` when it was allowed."""
        allowed = self.verdict(metrics, override) == GateVerdict.OVERRIDDEN
        failed = "overridden" if allowed else "FAILED"
        return [
            Criterion(self.name, criterion, value, bound,
                      passed if isinstance(passed, str) else "passed" if passed else failed,
                      decides=not isinstance(passed, str))
            for criterion, value, bound, passed in self.criteria(self.read(metrics))
        ]  # fmt: skip
