"""A short summary of the pipeline's state from its metrics files: every gate's verdict and key metrics.

`make run` prints it after the flow run (`python -m flows.summary`); the flow publishes the same text in
its `pipeline-summary` artifact. Stages come in dvc.yaml's order; this module only knows how to describe them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gates.gate import NO_OVERRIDE, GateVerdict
from gates.table import Overrides, at, may_promote, overrides, verdicts
from tasks.params import load_params
from tasks.stage import InputError

Metrics = dict[str, Any]


def _etl(m: Metrics) -> str:
    return f"{m['rows']['read']:,} rows read, {m['rows']['written']:,} kept"


def _preprocess(m: Metrics) -> str:  # an override it honoured is the drift_check line's
    return f"train {m['rows']['train']:,}, val {m['rows']['val']:,}, test {m['rows']['test']:,} rows"


def _tune(m: Metrics) -> str:
    trials = m["trials"]
    return f"validation RMSLE {m['validation']['rmsle']:.4f} ({trials['completed']} trials, {trials['pruned']} pruned)"


# The stages that judge no gate; a gate's stage is described by its gates' verdicts (gates/table.py).
DESCRIBE: dict[str, Callable[[Metrics], str]] = {"etl": _etl, "preprocess": _preprocess, "tune": _tune}


def gate_verdict(stage: str, metrics: Metrics, allowed: Overrides) -> tuple[bool, str] | None:
    """A gate stage's verdict as its task run shows it: whether the run may go on, and a line `passed: ...`
    or `FAILED: ...` naming the criterion, the value and the bound. None for the other stages."""
    gates = at(stage)
    if not gates:
        return None
    go_on = all(gate.verdict(metrics, allowed.get(gate.name, NO_OVERRIDE)) != GateVerdict.FAILED for gate in gates)
    return go_on, describe(stage, metrics, allowed)


def describe(stage: str, metrics: Metrics | None, allowed: Overrides | None = None) -> str:
    """What a stage's metrics say, in one line ('not run' without them): for a gate's stage, its verdicts."""
    if metrics is None:
        return "not run"
    if gates := at(stage):
        return "; ".join(gate.line(metrics, (allowed or {}).get(gate.name, NO_OVERRIDE)) for gate in gates)
    return DESCRIBE[stage](metrics) if stage in DESCRIBE else f"metrics/{stage}.json written"


def read_metrics(stages: list[str], root: Path = Path(".")) -> dict[str, Metrics | None]:
    """Each stage's metrics file, or None where the stage has not run."""
    found: dict[str, Metrics | None] = {}
    for stage in stages:
        path = root / "metrics" / f"{stage}.json"
        found[stage] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    return found


def gates_passed(metrics: dict[str, Metrics | None], allowed: Overrides) -> bool:
    """Every gate passed (or a named person allowed its failure in params.yaml), as gates/table.py decides."""
    return may_promote(verdicts(metrics, allowed))


def summary(stages: list[str], root: Path = Path(".")) -> str:
    """One line per stage ('not run' where it has no metrics) and whether the model may be promoted.

    Raises InputError when params.yaml (which holds the gates' overrides) does not validate.
    """
    metrics = read_metrics(stages, root)
    allowed = overrides(load_params(root / "params.yaml"))
    lines = [f"{stage:<12} {describe(stage, metrics[stage], allowed)}" for stage in stages]
    passed = gates_passed(metrics, allowed)
    verdict = "every one passed: the model may be promoted" if passed else "NOT passed: do not promote"
    return "\n".join([*lines, f"{'gates':<12} {verdict}"])


if __name__ == "__main__":
    from flows.dvc_lock import stage_order

    try:
        print(summary(stage_order()))
    except InputError as error:
        raise SystemExit(f"summary: {error}") from None
