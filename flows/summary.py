"""A short summary of the pipeline's state from its metrics files: both gate verdicts and key metrics.

`make run` prints it after the flow run (`python -m flows.summary`); the flow publishes the same text in
its `pipeline-summary` artifact. Stages come in dvc.yaml's order; this module only knows how to describe them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gates.rules import DriftPolicy, GateVerdict, drift_verdict, fairness_verdict, may_promote
from tasks.params import load_params
from tasks.stage import InputError

Metrics = dict[str, Any]


def _etl(m: Metrics) -> str:
    return f"{m['rows']['read']:,} rows read, {m['rows']['written']:,} kept"


def _drift(m: Metrics) -> str:
    verdict = f"DRIFT in {', '.join(m['drifted_columns'])}" if m["drift_detected"] else "no drift"
    return f"{verdict} ({m['drifted_count']}/{len(m['columns_checked'])} columns drifted); report {m['report']}"


def _preprocess(m: Metrics) -> str:
    gate = m["drift_gate"]
    override = f"; drift overridden by {gate['allowed_by']}: {gate['reason']}" if gate["overridden"] else ""
    return f"train {m['rows']['train']:,}, val {m['rows']['val']:,}, test {m['rows']['test']:,} rows{override}"


def _tune(m: Metrics) -> str:
    trials = m["trials"]
    return f"validation RMSLE {m['validation']['rmsle']:.4f} ({trials['completed']} trials, {trials['pruned']} pruned)"


def _inference(m: Metrics) -> str:
    return (
        f"test RMSLE {m['test']['rmsle']:.4f}, baseline {m['baseline_test']['rmsle']:.4f} "
        f"(ratio {m['rmsle_vs_baseline']:.3f})"
    )


def _fairness(m: Metrics) -> str:
    return f"{'passed' if m['passed'] else 'FAILED'}: {m['reason']}"


DESCRIBE: dict[str, Callable[[Metrics], str]] = {
    "etl": _etl,
    "drift_check": _drift,
    "preprocess": _preprocess,
    "tune": _tune,
    "inference": _inference,
    "fairness": _fairness,
}


def gate_verdict(stage: str, metrics: Metrics, drift: DriftPolicy) -> tuple[bool, str] | None:
    """A gate stage's verdict as its task run shows it: whether the run may go on, and a line `passed: ...`
    or `FAILED: ...` naming the criterion, the value and the bound. None for the other stages."""
    if stage == "fairness":
        return bool(metrics["passed"]), _fairness(metrics)
    if stage != "drift_check":
        return None
    relation = ">=" if metrics["drift_detected"] else "<"
    measured = (
        f"share of drifted columns {metrics['drifted_share']:.4g} {relation} {metrics['threshold']} "
        f"(drifted: {', '.join(metrics['drifted_columns']) or 'none'})"
    )
    verdict = drift_verdict(metrics, drift)
    if verdict == GateVerdict.OVERRIDDEN:
        return True, f"passed, drift allowed by {drift.allowed_by} ({drift.reason}): {measured}"
    return verdict == GateVerdict.PASSED, f"{'passed' if verdict == GateVerdict.PASSED else 'FAILED'}: {measured}"


def describe(stage: str, metrics: Metrics | None) -> str:
    """What a stage's metrics say, in one line ('not run' without them)."""
    if metrics is None:
        return "not run"
    return DESCRIBE[stage](metrics) if stage in DESCRIBE else f"metrics/{stage}.json written"


def read_metrics(stages: list[str], root: Path = Path(".")) -> dict[str, Metrics | None]:
    """Each stage's metrics file, or None where the stage has not run."""
    found: dict[str, Metrics | None] = {}
    for stage in stages:
        path = root / "metrics" / f"{stage}.json"
        found[stage] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    return found


def gates_passed(metrics: dict[str, Metrics | None], drift: DriftPolicy) -> bool:
    """Both gates passed, as gates/rules.py decides: no drift (or an override in params) and fairness passed."""
    return may_promote(drift_verdict(metrics.get("drift_check"), drift), fairness_verdict(metrics.get("fairness")))


def summary(stages: list[str], root: Path = Path(".")) -> str:
    """One line per stage ('not run' where it has no metrics) and whether the model may be promoted.

    Raises InputError when params.yaml (which holds the drift override) does not validate.
    """
    metrics = read_metrics(stages, root)
    drift = load_params(root / "params.yaml").drift
    lines = [f"{stage:<12} {describe(stage, metrics[stage])}" for stage in stages]
    verdict = "both passed: the model may be promoted" if gates_passed(metrics, drift) else "NOT passed: do not promote"
    return "\n".join([*lines, f"{'gates':<12} {verdict}"])


if __name__ == "__main__":
    from flows.dvc_lock import stage_order

    try:
        print(summary(stage_order()))
    except InputError as error:
        raise SystemExit(f"summary: {error}") from None
