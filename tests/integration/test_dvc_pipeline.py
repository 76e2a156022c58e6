"""`dvc repro` in a fresh clone: runs each stage once, then only what a change of params or data affects."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
import yaml

from tasks.stage import EXIT_BAD_INPUT
from tests.conftest import REPO, run_module, stage_env, uci_frame

pytestmark = pytest.mark.integration

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def run(cwd: Path, *args: str, expect_failure: bool = False) -> str:
    result = subprocess.run(args, cwd=cwd, env=stage_env(**GIT_ENV), capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    assert (result.returncode != 0) == expect_failure, f"{' '.join(args)} exited {result.returncode}:\n{output}"
    return output


def ran(output: str) -> list[str]:
    """The stages a `dvc repro` ran, in order."""
    return re.findall(r"Running stage '(\w+)'", output)


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository holding the project's files as they are in this working tree."""
    origin = tmp_path_factory.mktemp("origin")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (origin / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, origin / name)
    (origin / "dvc.lock").unlink(missing_ok=True)  # recorded for the full-size default, not 5,000 rows
    run(origin, "git", "init", "-q", "-b", "main")
    run(origin, "git", "add", "-A")
    run(origin, "git", "commit", "-q", "-m", "snapshot")
    return origin


# Enough rows for a steady drift verdict; a small, quick search.
SMALL: dict[str, dict[str, object]] = {
    "data": {"rows": 20_000},
    "tune": {"n_trials": 3, "max_epochs": 3, "patience": 2, "trial_rows": 3000, "baseline_max_iter": 20},
    "inference": {"shap_background": 50, "shap_explained": 100},
}
STAGES = ["etl", "drift_check", "preprocess", "tune", "inference", "fairness"]


def fresh_clone(origin: Path, destination: Path) -> Path:
    run(destination.parent, "git", "clone", "-q", str(origin), str(destination))
    set_params(destination, **SMALL)
    return destination


@pytest.fixture
def clone(origin: Path, tmp_path: Path) -> Path:
    """A fresh clone with no DVC outputs."""
    return fresh_clone(origin, tmp_path / "clone")


@pytest.fixture(scope="module")
def built(origin: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A fresh clone after one `dvc repro`, and that run's output. Tests must not change it."""
    clone = fresh_clone(origin, tmp_path_factory.mktemp("built") / "clone")
    return clone, run(clone, "dvc", "repro")


@pytest.fixture
def built_copy(built: tuple[Path, str], tmp_path: Path) -> Path:
    """A private copy of the built clone, for tests that change it."""
    return Path(shutil.copytree(built[0], tmp_path / "copy", symlinks=True))


def set_params(clone: Path, **sections: dict[str, object]) -> None:
    params = yaml.safe_load((clone / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def metrics(clone: Path, stage: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((clone / f"metrics/{stage}.json").read_text())
    return loaded


def locked_outs(clone: Path) -> dict[str, str]:
    """Every output path in dvc.lock and its md5."""
    stages = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for stage in stages.values() for out in stage.get("outs", [])}


def test_fresh_clone_runs_all_six_stages_then_skips(built: tuple[Path, str]) -> None:
    clone, first = built
    assert ran(first) == STAGES
    assert metrics(clone, "etl")["rows"]["read"] == 20_000
    assert metrics(clone, "drift_check")["drift_detected"] is False
    assert set(metrics(clone, "fairness")) >= {"passed", "mean_outcome_difference", "groups"}
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
    set_params(built_copy, fairness={"mod_threshold": 0.0})
    assert "fairness.mod_threshold" in run(built_copy, "dvc", "params", "diff")
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
