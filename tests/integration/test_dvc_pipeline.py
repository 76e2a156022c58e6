"""`dvc repro` in a fresh clone: runs each stage once, then only what a change of params or data affects."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
import yaml

from tasks.stage import EXIT_BAD_INPUT
from tests.conftest import STAGES, locked_outs, ran, run, run_module, set_params, uci_frame

pytestmark = pytest.mark.integration


def metrics(clone: Path, stage: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((clone / f"metrics/{stage}.json").read_text())
    return loaded


def test_fresh_clone_runs_all_six_stages_then_skips(built: tuple[Path, str]) -> None:
    clone, first = built
    assert ran(first) == STAGES
    assert metrics(clone, "etl")["rows"]["read"] == 20_000
    assert metrics(clone, "drift_check")["drift_detected"] is False
    assert set(metrics(clone, "fairness")) >= {"passed", "reason", "policy", "attributes"}
    lock = (clone / "dvc.lock").read_text()
    model = clone / "models/model.pt"
    stamp = model.stat().st_mtime_ns

    second = run(clone, "dvc", "repro")
    assert ran(second) == []
    assert "up to date" in second
    assert (clone / "dvc.lock").read_text() == lock
    assert model.stat().st_mtime_ns == stamp
    assert "up to date" in run(clone, "dvc", "status")


def test_metrics_plots_and_params_are_readable_with_dvc(built: tuple[Path, str], tmp_path: Path) -> None:
    clone, _ = built
    (workspace,) = json.loads(run(clone, "dvc", "metrics", "show", "--json")).values()  # one revision
    assert {"metrics/fairness.json", "metrics/tune.json", "metrics/drift_check.json"} <= set(workspace["data"])
    plots = json.loads(run(clone, "dvc", "plots", "show", "--json"))["data"]
    kinds = {name: {entry["type"] for entry in entries} for name, entries in plots.items()}
    assert kinds == {
        "reports/drift_scores.json": {"vega"},
        "reports/tune_trials.csv": {"vega"},
        "reports/shap_importance.json": {"vega"},
        "reports/shap_bar.png": {"image"},
        "reports/shap_beeswarm.png": {"image"},
    }
    run(clone, "dvc", "plots", "show", "-o", str(tmp_path / "plots"))
    assert "Mean |SHAP| per feature" in (tmp_path / "plots/index.html").read_text()
    diff = run(clone, "dvc", "params", "diff")  # the clone's small settings against the committed defaults
    assert re.search(r"data\.rows\s+541909\s+20000", diff)


def test_one_prediction_per_test_row_in_order(built: tuple[Path, str]) -> None:
    clone, _ = built
    test = pd.read_parquet(clone / "data/splits/test.parquet")
    predictions = pd.read_parquet(clone / "data/predictions.parquet")
    assert len(predictions) == len(test) == metrics(clone, "inference")["rows"]
    assert list(predictions["invoice_no"]) == list(test["invoice_no"])
    assert set(predictions["is_registered"].unique()) <= {0, 1}


def test_changing_the_fairness_threshold_reruns_only_fairness(built_copy: Path) -> None:
    set_params(built_copy, fairness={"max_error_ratio": 1.0})
    assert "fairness.max_error_ratio" in run(built_copy, "dvc", "params", "diff")
    assert ran(run(built_copy, "dvc", "repro")) == ["fairness"]
    assert metrics(built_copy, "fairness")["passed"] is False


def test_changing_a_split_param_reruns_preprocess_and_what_follows(built_copy: Path) -> None:
    set_params(built_copy, preprocess={"val_fraction": 0.2})
    assert ran(run(built_copy, "dvc", "repro")) == ["preprocess", "tune", "inference", "fairness"]


def test_forced_retraining_gives_the_same_model_bytes(built_copy: Path) -> None:
    before = locked_outs(built_copy)
    run(built_copy, "dvc", "repro", "--force", "--single-item", "tune")
    assert locked_outs(built_copy) == before


def test_inference_refuses_a_tampered_model(built_copy: Path) -> None:
    model = built_copy / "models/model.pt"
    model.write_bytes(model.read_bytes() + b"\0")
    result = run_module(built_copy, "tasks.inference")
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.startswith("inference: error: models/model.pt: md5 ")
    assert "recorded in dvc.lock; refusing to load it" in result.stderr
    assert "Traceback" not in result.stderr


def test_changing_an_etl_param_reruns_it(clone: Path) -> None:
    run(clone, "dvc", "repro", "etl")
    set_params(clone, data={"rows": 21_000})
    assert "etl" in run(clone, "dvc", "status", "etl")
    assert ran(run(clone, "dvc", "repro", "etl")) == ["etl"]
    assert metrics(clone, "etl")["rows"]["read"] == 21_000


def test_drift_stops_the_pipeline_at_preprocess_until_overridden(clone: Path) -> None:
    set_params(clone, data={"inject_drift": {"start": "2011-11-01", "price_factor": 1.5, "non_uk_share": 0.35}})
    output = run(clone, "dvc", "repro", "preprocess", expect_failure=True)
    assert ran(output) == ["etl", "drift_check", "preprocess"]
    assert "preprocess: refused: drift detected in " in output
    assert "see reports/drift.html" in output
    assert metrics(clone, "drift_check")["drift_detected"] is True
    locked = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    assert {"etl", "drift_check"} <= set(locked)  # the verdict and its report are versioned...
    assert "preprocess" not in locked  # ...and nothing downstream of the refusal is

    set_params(clone, drift={"allow": True, "allowed_by": "Jane Doe", "reason": "planned price rise"})
    assert ran(run(clone, "dvc", "repro", "preprocess")) == ["preprocess"]
    assert metrics(clone, "preprocess")["drift_gate"]["allowed_by"] == "Jane Doe"


def test_same_params_give_the_same_output_hashes_in_two_clones(built: tuple[Path, str], clone: Path) -> None:
    run(clone, "dvc", "repro")
    assert locked_outs(clone) == locked_outs(built[0])
    assert {"models/model.pt", "models/preprocessor.joblib", "reports/drift.html"} <= set(locked_outs(clone))


def test_a_dvc_tracked_raw_file_is_a_dependency(clone: Path) -> None:
    sales = clone / "data/raw/sales.csv"
    uci_frame().to_csv(sales, index=False)
    run(clone, "dvc", "add", "data/raw/sales.csv")
    set_params(clone, data={"source": "data/raw/sales.csv"})
    assert ran(run(clone, "dvc", "repro", "etl")) == ["etl"]
    assert metrics(clone, "etl")["rows"]["read"] == 6
    assert ran(run(clone, "dvc", "repro", "etl")) == []

    uci_frame().iloc[:5].to_csv(sales, index=False)  # new data arrives
    run(clone, "dvc", "add", "data/raw/sales.csv")
    assert ran(run(clone, "dvc", "repro", "etl")) == ["etl"]
    assert metrics(clone, "etl")["rows"]["read"] == 5


def test_an_s3_source_imported_with_dvc_import_url_is_a_dependency(clone: Path, s3_env: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_env)
    s3.create_bucket(Bucket="retail-raw")
    csv = tmp_path / "upload.csv"
    uci_frame().to_csv(csv, index=False)
    s3.upload_file(str(csv), "retail-raw", "online_retail.csv")

    run(clone, "dvc", "import-url", "s3://retail-raw/online_retail.csv", "data/raw/online_retail.csv")
    set_params(clone, data={"source": "data/raw/online_retail.csv"})
    assert ran(run(clone, "dvc", "repro", "etl")) == ["etl"]
    assert metrics(clone, "etl")["rows"]["read"] == 6

    uci_frame().iloc[:4].to_csv(csv, index=False)
    s3.upload_file(str(csv), "retail-raw", "online_retail.csv")
    run(clone, "dvc", "update", "data/raw/online_retail.csv.dvc")
    assert ran(run(clone, "dvc", "repro", "etl")) == ["etl"]
    assert metrics(clone, "etl")["rows"]["read"] == 4
