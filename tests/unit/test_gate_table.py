"""The gate table (gates/table.py) is the one place a gate is declared: it agrees with dvc.yaml and the ledger's
vocabulary, and no code outside gates/ and the stages names a gate to decide anything."""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

import yaml

from gates.gate import GateVerdict
from gates.table import BY_NAME, GATES, PROPERTIES, may_promote, recorded, said
from lineage.entities import ActionType

REPO = Path(__file__).resolve().parents[2]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _entries(stage: str, key: str) -> set[str]:
    return {next(iter(e)) if isinstance(e, dict) else e for e in STAGES[stage].get(key, [])}


def test_each_gate_judges_a_metrics_file_its_stage_writes_and_names_outputs_of_the_pipeline() -> None:
    outputs = {path for stage in STAGES for key in ("outs", "metrics", "plots") for path in _entries(stage, key)}
    for gate in GATES:
        assert gate.stage in STAGES, f"{gate.name}: no stage {gate.stage} in dvc.yaml"
        assert gate.metrics_file in _entries(gate.stage, "metrics"), f"{gate.name}: {gate.metrics_file}"
        assert set(gate.evidence) <= outputs, f"{gate.name}: {set(gate.evidence) - outputs} made by no stage"


def test_names_properties_and_action_types_are_unique_and_apart_from_the_other_action_types() -> None:
    assert len(BY_NAME) == len(set(PROPERTIES)) == len({gate.action_type for gate in GATES}) == len(GATES) == 3
    assert not {gate.action_type for gate in GATES} & {member.value for member in ActionType}


def test_gates_come_in_the_order_the_pipeline_reaches_them() -> None:
    order = list(STAGES)
    assert [order.index(gate.stage) for gate in GATES] == sorted(order.index(gate.stage) for gate in GATES)


def test_a_model_is_promoted_only_when_every_gate_passed_or_predates_the_version() -> None:
    passed = {prop: GateVerdict.PASSED for prop in PROPERTIES}
    assert may_promote(passed)
    for prop in PROPERTIES:
        for verdict in (GateVerdict.FAILED, GateVerdict.NOT_RUN):
            assert not may_promote({**passed, prop: verdict}), (prop, verdict)
    assert may_promote({**passed, "drift_gate": GateVerdict.OVERRIDDEN})
    # A version recorded before the accuracy gate existed (the committed format-1 ledger's) has no verdict of it.
    older = {"drift_gate": "passed", "fairness_gate": "passed"}
    assert recorded(older)["accuracy_gate"] == "predates"
    assert may_promote(older)
    assert said(older) == "drift passed, accuracy predates, fairness passed"


def _string_literals(path: Path) -> set[str]:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return {token.string.strip("'\"") for token in tokens if token.type == tokenize.STRING}


def test_no_code_outside_the_gates_and_the_stages_names_a_gate_or_its_property() -> None:
    names = {*BY_NAME, *PROPERTIES, *(gate.action_type for gate in GATES)}
    found = {
        f"{path.relative_to(REPO)}: {sorted(literals & names)}"
        for package in ("flows", "lineage", "serving", "common")
        for path in (REPO / package).rglob("*.py")
        if (literals := _string_literals(path)) & names
    }
    assert not found, "gates are named in gates/table.py, not here"
