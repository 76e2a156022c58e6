"""`python -m tasks.etl` as DVC runs it: outputs on success; on bad input one line, exit 65, nothing written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tasks.stage import EXIT_BAD_INPUT
from tests.conftest import run_module, uci_frame, write_params

OUTPUTS = ("data/transactions.parquet", "data/processed.parquet", "metrics/etl.json")

pytestmark = pytest.mark.integration


def _workspace(tmp_path: Path, **data: object) -> Path:
    write_params(tmp_path, data={"rows": 3000, **data})
    (tmp_path / "data" / "raw").mkdir(parents=True)
    return tmp_path


def _run_etl(workspace: Path) -> subprocess.CompletedProcess[str]:
    return run_module(workspace, "tasks.etl")


def test_synthetic_run_writes_tables_and_metrics(tmp_path: Path) -> None:
    result = _run_etl(_workspace(tmp_path))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics/etl.json").read_text())
    assert metrics["source"] == "synthetic"
    assert metrics["rows"]["read"] == 3000
    dropped = sum(metrics["dropped"].values())
    assert metrics["rows"]["clean"] == 3000 - dropped == metrics["rows"]["written"]
    assert len(pd.read_parquet(tmp_path / "data/processed.parquet")) == metrics["rows"]["written"]
    assert len(pd.read_parquet(tmp_path / "data/transactions.parquet")) == 3000


def test_file_source_under_data_raw(tmp_path: Path) -> None:
    workspace = _workspace(tmp_path, source="data/raw/sales.csv")
    uci_frame().to_csv(workspace / "data/raw/sales.csv", index=False)
    result = _run_etl(workspace)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((workspace / "metrics/etl.json").read_text())
    assert metrics["source"] == "data/raw/sales.csv"
    assert metrics["rows"] == {"read": 6, "clean": 4, "written": 4}
    assert metrics["dropped"]["cancellations"] == 1
    assert metrics["dropped"]["non_product_codes"] == 1
    assert metrics["kept_missing_customer_id"] == 2


def _bad_csv(workspace: Path) -> None:
    frame = uci_frame()
    frame.loc[1, "Quantity"] = "lots"
    frame.to_csv(workspace / "data/raw/sales.csv", index=False)


@pytest.mark.parametrize(
    ("data", "prepare", "expected"),
    [
        ({"source": "data/raw/sales.csv"}, _bad_csv, "data/raw/sales.csv: column 'Quantity': 1 non-numeric"),
        ({"source": "/etc/sales.csv"}, None, "data.source: '/etc/sales.csv' is not a file under data/raw/"),
        ({"source": "s3://bucket/sales.csv"}, None, "dvc import-url"),
        ({"source": "data/raw/../sales.csv"}, None, "is not a file under data/raw/"),
        ({"stockcode": "NO-SUCH-CODE"}, None, "data.stockcode: 'NO-SUCH-CODE' has no sales rows in synthetic"),
        ({"rows": -5}, None, "params.yaml: data.rows:"),
        ({"surprise": 1}, None, "params.yaml: data.surprise: unknown key"),
    ],
)
def test_bad_input_exits_65_with_one_line_and_leaves_outputs_untouched(
    tmp_path: Path, data: dict[str, object], prepare: object, expected: str
) -> None:
    workspace = _workspace(tmp_path, **data)
    if callable(prepare):
        prepare(workspace)
    for name in OUTPUTS:  # outputs of an earlier good run must survive a failed one
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_bytes(b"previous " + name.encode())
    result = _run_etl(workspace)
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("etl: error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    for name in OUTPUTS:
        assert (workspace / name).read_bytes() == b"previous " + name.encode()
    assert not list(workspace.rglob("*.tmp"))
