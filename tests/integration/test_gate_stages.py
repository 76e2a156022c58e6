"""drift_check and preprocess run as DVC runs them: the verdict is versioned, then enforced."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tasks.stage import EXIT_BAD_INPUT, EXIT_GATE_REFUSED
from tests.conftest import run_module, write_params

PREPROCESS_OUTPUTS = [
    "data/splits/train.parquet",
    "data/features/test.parquet",
    "models/preprocessor.joblib",
    "models/feature_names.json",
    "metrics/preprocess.json",
]

pytestmark = pytest.mark.integration


def _workspace(tmp_path: Path, frame: pd.DataFrame, **drift: object) -> Path:
    write_params(tmp_path, drift=drift)
    (tmp_path / "data" / "reference").mkdir(parents=True)
    frame.to_parquet(tmp_path / "data/processed.parquet", index=False)
    return tmp_path


def _json(path: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


def test_without_drift_both_stages_run(tmp_path: Path, steady: pd.DataFrame) -> None:
    workspace = _workspace(tmp_path, steady)
    drift = run_module(workspace, "tasks.drift_check")
    assert drift.returncode == 0, drift.stderr
    assert "no drift" in drift.stdout
    verdict = _json(workspace / "metrics/drift_check.json")
    assert verdict["drift_detected"] is False
    assert (workspace / "reports/drift.html").stat().st_size > 0
    assert len(json.loads((workspace / "reports/drift_scores.json").read_text())) == len(verdict["columns_checked"])  # type: ignore[arg-type]

    result = run_module(workspace, "tasks.preprocess")
    assert result.returncode == 0, result.stderr
    for name in PREPROCESS_OUTPUTS:
        assert (workspace / name).exists(), name
    record = _json(workspace / "metrics/preprocess.json")
    assert record["drift_gate"] == {
        "drift_detected": False,
        "drifted_columns": verdict["drifted_columns"],  # some columns may drift without a drift verdict
        "overridden": False,
        "allowed_by": "",
        "reason": "",
    }


def test_drift_is_versioned_then_preprocess_refuses_then_override_runs(tmp_path: Path, drifted: pd.DataFrame) -> None:
    workspace = _workspace(tmp_path, drifted)
    drift = run_module(workspace, "tasks.drift_check")
    assert drift.returncode == 0, drift.stderr  # the stage completes: the verdict is data
    verdict = _json(workspace / "metrics/drift_check.json")
    assert verdict["drift_detected"] is True
    drifted_columns = verdict["drifted_columns"]
    assert "unit_price" in drifted_columns  # type: ignore[operator]

    refused = run_module(workspace, "tasks.preprocess")
    assert refused.returncode == EXIT_GATE_REFUSED
    lines = refused.stderr.splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith(f"preprocess: refused: drift detected in {', '.join(drifted_columns)} (")  # type: ignore[arg-type]
    assert "see reports/drift.html" in lines[0]
    assert "Traceback" not in refused.stderr
    for name in PREPROCESS_OUTPUTS:
        assert not (workspace / name).exists(), name

    write_params(workspace, drift={"allow": True, "allowed_by": "Jane Doe", "reason": "planned price rise"})
    allowed = run_module(workspace, "tasks.preprocess")
    assert allowed.returncode == 0, allowed.stderr
    gate = _json(workspace / "metrics/preprocess.json")["drift_gate"]
    assert gate == {
        "drift_detected": True,
        "drifted_columns": drifted_columns,
        "overridden": True,
        "allowed_by": "Jane Doe",
        "reason": "planned price rise",
    }


def test_outputs_are_the_same_bytes_whatever_the_callers_hash_seed(tmp_path: Path, steady: pd.DataFrame) -> None:
    """Evidently's category bins follow str hash order; the stage pins the seed so scores do not wobble."""
    workspace = _workspace(tmp_path, steady)
    outputs = ["metrics/drift_check.json", "reports/drift.html", "reports/drift_scores.json"]
    runs = []
    for seed in ("1", "2"):
        assert run_module(workspace, "tasks.drift_check", PYTHONHASHSEED=seed).returncode == 0
        runs.append([(workspace / name).read_bytes() for name in outputs])
    assert runs[0] == runs[1]


def test_evidently_tests_a_seeded_sample_of_each_window_and_records_both_sizes(
    tmp_path: Path, steady: pd.DataFrame
) -> None:
    workspace = _workspace(tmp_path, steady, sample_rows=1500)
    outputs = ["metrics/drift_check.json", "reports/drift.html", "reports/drift_scores.json"]
    runs = []
    for _ in range(2):
        result = run_module(workspace, "tasks.drift_check")
        assert result.returncode == 0, result.stderr
        runs.append([(workspace / name).read_bytes() for name in outputs])
    assert runs[0] == runs[1]  # a seeded sample: the same bytes every run
    verdict = _json(workspace / "metrics/drift_check.json")
    assert verdict["sample_rows"] == 1500
    for window in ("reference", "current"):
        sizes = verdict[window]
        assert sizes["rows"] > 1500  # type: ignore[index]
        assert sizes["rows_tested"] == 1500  # type: ignore[index]
    assert "tested 1500 of" in result.stdout

    params = yaml.safe_load((workspace / "params.yaml").read_text())
    (workspace / "params.yaml").write_text(yaml.safe_dump({**params, "seed": 7}))  # another seed, another sample
    assert run_module(workspace, "tasks.drift_check").returncode == 0
    assert (workspace / "reports/drift_scores.json").read_bytes() != runs[0][2]


def test_a_reference_snapshot_replaces_the_earlier_window(tmp_path: Path, steady: pd.DataFrame) -> None:
    # a current window covering all data leaves no earlier weeks: fine, they are not used
    workspace = _workspace(tmp_path, steady, reference="data/reference/train.parquet", current_weeks=60)
    snapshot = steady[steady["invoice_date"] < pd.Timestamp("2011-06-01")]
    snapshot.to_parquet(workspace / "data/reference/train.parquet", index=False)
    result = run_module(workspace, "tasks.drift_check")
    assert result.returncode == 0, result.stderr
    reference = _json(workspace / "metrics/drift_check.json")["reference"]
    assert reference["source"] == "data/reference/train.parquet"  # type: ignore[index]
    assert reference["rows"] == len(snapshot)  # type: ignore[index]
    assert _json(workspace / "metrics/drift_check.json")["current"]["rows"] == len(steady)  # type: ignore[index]


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        (
            {"reference": "data/reference/absent.parquet"},
            "drift.reference: data/reference/absent.parquet does not exist",
        ),
        (
            {"reference": "/tmp/elsewhere.parquet"},
            "drift.reference: '/tmp/elsewhere.parquet' is not a file under data/reference/",
        ),
        ({"columns": ["unit_price", "colour"]}, "drift.columns: 'colour' is not a column of data/processed.parquet"),
        ({"current_weeks": 60}, "drift.reference_weeks: no rows in the 12 weeks before 2010-10-"),
        ({"threshold": 0}, "params.yaml: drift.threshold:"),
        ({"allow": True}, "drift.allow: true needs drift.allowed_by (a person) and drift.reason"),
    ],
)
def test_bad_drift_settings_exit_65_with_one_line(
    tmp_path: Path, steady: pd.DataFrame, drift: dict[str, object], expected: str
) -> None:
    workspace = _workspace(tmp_path, steady, **drift)
    result = run_module(workspace, "tasks.drift_check")
    assert result.returncode == EXIT_BAD_INPUT
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert not (workspace / "metrics/drift_check.json").exists()
    assert not (workspace / "reports/drift.html").exists()


@pytest.mark.parametrize(
    ("cut", "expected"),
    [
        (
            lambda frame: frame.drop(columns="stock_code"),
            "data/reference/train.parquet: missing column 'stock_code' (drift_check reads drift.columns, invoice_date "
            "and the row key invoice_no, stock_code, which draws the sample)",
        ),
        (lambda frame: frame.iloc[:0], "data/reference/train.parquet: no rows to test for drift"),
    ],
)
def test_a_bad_reference_snapshot_exits_65_with_one_line(
    tmp_path: Path, steady: pd.DataFrame, cut: Callable[[pd.DataFrame], pd.DataFrame], expected: str
) -> None:
    workspace = _workspace(tmp_path, steady, reference="data/reference/train.parquet")
    cut(steady).to_parquet(workspace / "data/reference/train.parquet", index=False)
    result = run_module(workspace, "tasks.drift_check")
    assert (result.returncode, result.stderr) == (EXIT_BAD_INPUT, f"drift_check: error: {expected}\n")
    assert not (workspace / "metrics/drift_check.json").exists()


def test_preprocess_refuses_a_table_out_of_time_order_in_one_line(tmp_path: Path, steady: pd.DataFrame) -> None:
    workspace = _workspace(tmp_path, steady)
    assert run_module(workspace, "tasks.drift_check").returncode == 0
    steady.iloc[::-1].to_parquet(workspace / "data/processed.parquet", index=False)
    result = run_module(workspace, "tasks.preprocess")
    assert (result.returncode, result.stderr) == (
        EXIT_BAD_INPUT,
        "preprocess: error: data/processed.parquet: not in time order (etl writes it so; run etl again)\n",
    )
    assert not list(workspace.glob("data/*/*.parquet"))
    assert not (workspace / "metrics/preprocess.json").exists()


def test_preprocess_without_a_drift_verdict_is_an_error(tmp_path: Path, steady: pd.DataFrame) -> None:
    workspace = _workspace(tmp_path, steady)
    result = run_module(workspace, "tasks.preprocess")
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.startswith("preprocess: error: metrics/drift_check.json: cannot read the drift verdict")
