"""The gate table: every gate, in the order the pipeline reaches them. Everything that judges, shows or records
gates iterates over GATES; adding a gate is a module like gates/accuracy.py and one entry here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gates import accuracy, drift, fairness
from gates.gate import NO_OVERRIDE, PROMOTABLE, WRITTEN, Criterion, Gate, GateVerdict, Metrics, Override

GATES: tuple[Gate[Any], ...] = (drift.GATE, accuracy.GATE, fairness.GATE)

BY_NAME = {gate.name: gate for gate in GATES}
BY_ACTION_TYPE = {gate.action_type: gate for gate in GATES}
PROPERTIES = tuple(gate.version_property for gate in GATES)  # the model-version properties holding the verdicts

Overrides = Mapping[str, Override]  # by gate name


def overrides(params: object) -> dict[str, Override]:
    """Each overridable gate's override, from the typed params (the allow/allowed_by/reason of its section)."""
    return {gate.name: getattr(params, gate.override_section) for gate in GATES if gate.override_section}


def at(stage: str) -> list[Gate[Any]]:
    """The gates judging `stage`'s metrics."""
    return [gate for gate in GATES if gate.stage == stage]


def verdicts(metrics: Mapping[str, Metrics | None], allowed: Overrides) -> dict[str, GateVerdict]:
    """Every gate's verdict by its model-version property, from the metrics files by stage (None: not run)."""
    return {
        gate.version_property: gate.verdict(metrics.get(gate.stage), allowed.get(gate.name, NO_OVERRIDE))
        for gate in GATES
    }


def recorded(properties: Mapping[str, Any]) -> dict[str, str]:
    """The verdicts a model version's record holds; a gate it has no verdict of predates it."""
    return {prop: str(properties[prop]) if prop in properties else GateVerdict.PREDATES for prop in PROPERTIES}


def may_promote(found: Mapping[str, Any]) -> bool:
    """A model may be promoted only when every gate passed (or a named person allowed its failure, where the gate
    has an override)."""
    verdicts = recorded(found).values()
    return all(
        value in PROMOTABLE and (value != GateVerdict.OVERRIDDEN or gate.override_section)
        for gate, value in zip(GATES, verdicts, strict=True)
    )


def unwritten(properties: Mapping[str, Any]) -> list[str]:
    """The gate verdicts of a version's record that no run writes (`predates` is only ever read), as `prop=value`."""
    return [
        f"{gate.version_property}={value!r}"
        for gate in GATES
        if (value := properties.get(gate.version_property, GateVerdict.NOT_RUN)) not in WRITTEN
        or (value == GateVerdict.OVERRIDDEN and not gate.override_section)
    ]


def said(found: Mapping[str, Any]) -> str:
    """The verdicts in one phrase: `drift passed, accuracy passed, fairness failed`."""
    return ", ".join(f"{gate.name} {value}" for gate, value in zip(GATES, recorded(found).values(), strict=True))


def stop_reason(stage: str, metrics: Metrics | None, allowed: Overrides) -> str | None:
    """After `stage`: why the run must stop (and its model not be promoted), if one of its gates failed."""
    for gate in at(stage):
        if gate.verdict(metrics, allowed.get(gate.name, NO_OVERRIDE)) == GateVerdict.FAILED:
            assert metrics is not None
            return gate.stop(gate.read(metrics))
    return None


def criteria(metrics: Mapping[str, Metrics | None], allowed: Overrides) -> list[Criterion]:
    """Every criterion of every gate that ran, as the verdict tables list them."""
    return [
        row
        for gate in GATES
        if (found := metrics.get(gate.stage)) is not None
        for row in gate.rows(found, allowed.get(gate.name, NO_OVERRIDE))
    ]
