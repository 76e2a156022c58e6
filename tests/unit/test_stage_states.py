"""What a stage's task run says in the Prefect UI, without a server: its state (Completed, Skipped, GateFailed)
and message, and every gate's verdict criterion by criterion, from metrics files of a few lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from flows.dvc_ops import stage_state
from flows.pipeline import RunStopped, stopped
from flows.publish import _table
from flows.retry import GATE_FAILED, SKIPPED
from flows.summary import gate_verdict
from gates.fairness import CRITERIA
from gates.gate import NoOverride
from gates.table import criteria, stop_reason

NO_OVERRIDE: dict[str, NoOverride] = {}  # no gate overridden


def drift_metrics(drifted: list[str], threshold: float = 0.5) -> dict[str, Any]:
    columns = {
        name: {"test": "Wasserstein distance (normed)", "score": 0.123456 if name in drifted else 0.01,
               "threshold": 0.1, "drifted": name in drifted}
        for name in ("unit_price", "quantity", "country", "hour")
    }  # fmt: skip
    share = len(drifted) / len(columns)
    return {
        "drift_detected": share >= threshold,
        "drifted_columns": drifted,
        "drifted_count": len(drifted),
        "drifted_share": share,
        "threshold": threshold,
        "columns_checked": list(columns),
        "columns": columns,
        "report": "reports/drift.html",
    }


def accuracy_metrics(network: float, baseline: float, high: float, max_ratio: float = 1.1) -> dict[str, Any]:
    ratio = network / baseline
    return {
        "test": {"rmsle": network},
        "accuracy": {
            "network_rmsle": network, "baseline_rmsle": baseline, "ratio": ratio, "interval": [ratio - 0.01, high],
            "judged": high, "judge": "interval", "max_ratio": max_ratio, "passed": high <= max_ratio,
        },
    }  # fmt: skip


def fairness_metrics(error_ratio: float, bound: float = 1.5) -> dict[str, Any]:
    def criterion(judged: float, limit: float, decides: bool) -> dict[str, Any]:
        return {"value": -judged, "interval": [-judged, 0.0], "judged": judged, "bound": limit,
                "decides": decides, "passed": judged <= limit}  # fmt: skip

    passed = error_ratio <= bound
    reason = f"is_registered: error ratio (RMSLE) {error_ratio:.4f} {'<=' if passed else '>'} {bound}"
    return {
        "passed": passed,
        "reason": reason,
        "policy": {"judge": "interval", "min_group_rows": 200},
        "attributes": {
            "is_registered": {
                "criteria": {
                    "log_residual_gap": criterion(0.022222, 0.25, True),
                    "error_ratio": criterion(error_ratio, bound, True),
                    "mean_outcome_difference": criterion(0.90071, 1.0, False),
                },
                "passed": passed,
                "reason": reason,
            }
        },
    }


def test_drift_verdict_names_the_share_its_bound_and_the_drifted_columns() -> None:
    assert gate_verdict("drift_check", drift_metrics([]), NO_OVERRIDE) == (
        True,
        "passed: share of drifted columns 0 < 0.5 (drifted: none)",
    )
    assert gate_verdict("drift_check", drift_metrics(["unit_price", "country"]), NO_OVERRIDE) == (
        False,
        "FAILED: share of drifted columns 0.5 >= 0.5 (drifted: unit_price, country)",
    )
    allowed = {"drift": NoOverride(allow=True, allowed_by="Ada Lovelace", reason="new price list")}
    passed, said = gate_verdict("drift_check", drift_metrics(["unit_price", "country"]), allowed)  # type: ignore[misc]
    assert passed
    assert said.startswith("passed, drift allowed by Ada Lovelace (new price list): share of drifted columns 0.5 >=")


def test_fairness_verdict_is_the_stages_own_reason() -> None:
    assert gate_verdict("fairness", fairness_metrics(1.2982), NO_OVERRIDE) == (
        True,
        "passed: is_registered: error ratio (RMSLE) 1.2982 <= 1.5",
    )
    assert gate_verdict("fairness", fairness_metrics(1.6), NO_OVERRIDE)[0] is False  # type: ignore[index]
    assert gate_verdict("etl", {"rows": {}}, NO_OVERRIDE) is None


def test_accuracy_verdict_names_the_judged_ratio_its_bound_and_both_models() -> None:
    assert gate_verdict("inference", accuracy_metrics(0.5567, 0.5477, 1.0412), NO_OVERRIDE) == (
        True,
        "passed: test RMSLE / baseline's 1.0412 <= 1.1 (far end of 95% interval; network 0.5567, baseline 0.5477)",
    )
    # A network worse than the baseline allows stops the run, even where its point ratio is within the bound.
    worse = accuracy_metrics(0.6, 0.55, 1.12)
    assert worse["accuracy"]["ratio"] < 1.1
    assert gate_verdict("inference", worse, NO_OVERRIDE) == (
        False,
        "FAILED: test RMSLE / baseline's 1.1200 > 1.1 (far end of 95% interval; network 0.6000, baseline 0.5500)",
    )
    # params.yaml has no override for it: an `allow` in another gate's section does not let it pass.
    drift_allowed = {"drift": NoOverride(allow=True, allowed_by="Ada Lovelace", reason="new price list")}
    assert gate_verdict("inference", worse, drift_allowed)[0] is False  # type: ignore[index]


def test_stop_reason_names_the_gate_that_stopped_the_run() -> None:
    assert stop_reason("inference", accuracy_metrics(0.5, 0.55, 1.0), NO_OVERRIDE) is None
    said = stop_reason("inference", accuracy_metrics(0.7, 0.55, 1.3), NO_OVERRIDE)
    assert said is not None
    assert said.startswith("accuracy check failed: test RMSLE / baseline's 1.3000 > 1.1")
    assert said.endswith("the model is not promoted")
    assert stop_reason("drift_check", drift_metrics(["unit_price", "country"]), NO_OVERRIDE) == (
        "drift detected in unit_price, country; see reports/drift.html"
    )
    assert stop_reason("tune", {"anything": 1}, NO_OVERRIDE) is None  # no gate judges tune


def test_criteria_round_to_four_digits_judge_signed_ones_by_size_and_mark_what_does_not_decide() -> None:
    metrics = {"drift_check": drift_metrics(["unit_price"]), "inference": accuracy_metrics(0.6, 0.55, 1.12),
               "fairness": fairness_metrics(1.6)}  # fmt: skip
    rows = criteria(metrics, NO_OVERRIDE)
    table = {(row.gate, row.criterion): (row.value, row.bound, row.result) for row in rows}
    basis = "far end of 95% interval"
    assert table[("drift", "unit_price: Wasserstein distance (normed)")] == ("0.1235", "threshold 0.1", "drifted")
    assert table[("drift", "share of drifted columns (drifted: unit_price)")] == ("0.25", "< 0.5", "passed")
    assert [row.criterion for row in rows if not row.decides] == [
        *(f"{name}: Wasserstein distance (normed)" for name in ("unit_price", "quantity", "country", "hour")),
        f"is_registered: |mean outcome difference|, {basis}",
    ]
    assert table[("fairness", f"is_registered: error ratio (RMSLE), {basis}")] == ("1.6", "<= 1.5", "FAILED")
    assert table[("accuracy", f"test RMSLE / baseline's, {basis}")] == ("1.12", "<= 1.1", "FAILED")
    assert [row.gate for row in rows if row.decides] == ["drift", "accuracy", "fairness", "fairness"]
    assert table[("fairness", f"is_registered: log-residual gap, {basis}")] == ("0.02222", "<= 0.25", "passed")
    # One sign convention: the size that is judged, never the signed point value (-0.9007).
    assert table[("fairness", f"is_registered: |mean outcome difference|, {basis}")] == ("0.9007", "<= 1", "reported")


def test_a_group_too_small_to_judge_fails_its_row() -> None:
    metrics = fairness_metrics(1.0)
    metrics["attributes"]["is_registered"]["criteria"] = {}
    (row,) = criteria({"fairness": metrics}, NO_OVERRIDE)
    assert (row.criterion, row.bound, row.result) == ("is_registered: group sizes", ">= 200", "FAILED")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "metrics").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _write(workspace: Path, stage: str, metrics: dict[str, Any]) -> None:
    (workspace / "metrics" / f"{stage}.json").write_text(json.dumps(metrics))


def test_a_stage_that_ran_completes_with_its_summary(workspace: Path) -> None:
    _write(workspace, "etl", {"rows": {"read": 541_909, "written": 520_478}})
    state = stage_state("etl", True, "unused", NO_OVERRIDE)
    assert (state.type.value, state.name) == ("COMPLETED", "Completed")
    assert state.message == "541,909 rows read, 520,478 kept"
    assert state.result() is True


def test_a_skipped_stage_is_named_skipped_and_says_why(workspace: Path) -> None:
    _write(workspace, "drift_check", drift_metrics([]))
    state = stage_state("drift_check", False, "unchanged since dvc.lock", NO_OVERRIDE)
    assert (state.type.value, state.name) == ("COMPLETED", SKIPPED)
    verdict = "passed: share of drifted columns 0 < 0.5 (drifted: none)"
    assert state.message == f"skipped, unchanged since dvc.lock: {verdict}"
    assert state.result() is False


def test_a_refusing_gate_ends_in_gate_failed_with_its_verdict(workspace: Path) -> None:
    _write(workspace, "fairness", fairness_metrics(1.6))
    state = stage_state("fairness", True, "unused", NO_OVERRIDE)
    assert (state.type.value, state.name) == ("FAILED", GATE_FAILED)
    assert state.message == "FAILED: is_registered: error ratio (RMSLE) 1.6000 > 1.5"
    assert state.result(raise_on_failure=False) is True  # it ran: the ledger records it as completed


def test_markdown_cells_cannot_break_the_table() -> None:
    assert _table(["a", "b"], [["x | y", "two\nlines"]]).splitlines()[-1] == "| x \\| y | two lines |"


def test_a_stopped_run_is_logged_without_a_traceback_and_a_crash_with_one() -> None:
    """Prefect logs a deployment's Failed flow run as an unexpected exception; only a RunStopped loses it."""

    def engine_error(error: Exception) -> logging.LogRecord:
        return logging.LogRecord(
            "prefect.flow_runs", logging.ERROR, __file__, 1, "Engine execution exited with unexpected exception",
            None, (type(error), error, None),
        )  # fmt: skip

    logger = logging.getLogger("prefect.flow_runs")
    assert not logger.filter(engine_error(RunStopped("fairness check failed: ...")))
    assert logger.filter(engine_error(RuntimeError("a real crash")))
    assert stopped("why").message == "why"


def test_the_criteria_are_named_as_the_fairness_stage_names_them() -> None:
    from tasks.fairness import LABELS

    assert CRITERIA == LABELS
