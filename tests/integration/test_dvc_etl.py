"""`dvc repro` of the etl stage in a fresh clone: runs once, then skips until a param or the source changes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest
import yaml

from tests.conftest import REPO, stage_env, uci_frame

pytestmark = pytest.mark.integration

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def run(cwd: Path, *args: str, **env: str) -> str:
    result = subprocess.run(args, cwd=cwd, env=stage_env(**GIT_ENV, **env), capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


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


@pytest.fixture
def clone(origin: Path, tmp_path: Path) -> Path:
    """A fresh clone with no DVC outputs, set to 5,000 synthetic rows."""
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(origin), str(clone))
    set_params(clone, rows=5000)
    return clone


def set_params(clone: Path, **data: object) -> None:
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["data"].update(data)
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def etl_metrics(clone: Path) -> dict[str, object]:
    metrics: dict[str, object] = json.loads((clone / "metrics/etl.json").read_text())
    return metrics


def test_fresh_clone_runs_etl_once_then_skips(clone: Path) -> None:
    first = run(clone, "dvc", "repro")
    assert "Running stage 'etl'" in first
    assert etl_metrics(clone)["rows"]["read"] == 5000  # type: ignore[index]
    lock = (clone / "dvc.lock").read_text()
    processed = clone / "data/processed.parquet"
    stamp = processed.stat().st_mtime_ns

    second = run(clone, "dvc", "repro")
    assert "Running stage" not in second
    assert "up to date" in second
    assert (clone / "dvc.lock").read_text() == lock
    assert processed.stat().st_mtime_ns == stamp
    assert "up to date" in run(clone, "dvc", "status")


def test_changing_an_etl_param_reruns_it(clone: Path) -> None:
    run(clone, "dvc", "repro")
    set_params(clone, rows=6000)
    assert "etl" in run(clone, "dvc", "status")
    assert "Running stage 'etl'" in run(clone, "dvc", "repro")
    assert etl_metrics(clone)["rows"]["read"] == 6000  # type: ignore[index]


def test_same_params_give_the_same_output_hashes_in_two_clones(clone: Path, origin: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    run(tmp_path, "git", "clone", "-q", str(origin), str(other))
    set_params(other, rows=5000)
    run(clone, "dvc", "repro")
    run(other, "dvc", "repro")
    assert (
        yaml.safe_load((clone / "dvc.lock").read_text())["stages"]["etl"]["outs"]
        == (yaml.safe_load((other / "dvc.lock").read_text())["stages"]["etl"]["outs"])
    )


def test_a_dvc_tracked_raw_file_is_a_dependency(clone: Path) -> None:
    sales = clone / "data/raw/sales.csv"
    uci_frame().to_csv(sales, index=False)
    run(clone, "dvc", "add", "data/raw/sales.csv")
    set_params(clone, source="data/raw/sales.csv")
    assert "Running stage 'etl'" in run(clone, "dvc", "repro")
    assert etl_metrics(clone)["rows"]["read"] == 6  # type: ignore[index]
    assert "Running stage" not in run(clone, "dvc", "repro")

    uci_frame().iloc[:5].to_csv(sales, index=False)  # new data arrives
    run(clone, "dvc", "add", "data/raw/sales.csv")
    assert "Running stage 'etl'" in run(clone, "dvc", "repro")
    assert etl_metrics(clone)["rows"]["read"] == 5  # type: ignore[index]


def test_an_s3_source_imported_with_dvc_import_url_is_a_dependency(clone: Path, s3_env: str, tmp_path: Path) -> None:
    s3 = boto3.client("s3", endpoint_url=s3_env)
    s3.create_bucket(Bucket="retail-raw")
    csv = tmp_path / "upload.csv"
    uci_frame().to_csv(csv, index=False)
    s3.upload_file(str(csv), "retail-raw", "online_retail.csv")

    run(clone, "dvc", "import-url", "s3://retail-raw/online_retail.csv", "data/raw/online_retail.csv")
    set_params(clone, source="data/raw/online_retail.csv")
    assert "Running stage 'etl'" in run(clone, "dvc", "repro")
    assert etl_metrics(clone)["rows"]["read"] == 6  # type: ignore[index]

    uci_frame().iloc[:4].to_csv(csv, index=False)
    s3.upload_file(str(csv), "retail-raw", "online_retail.csv")
    run(clone, "dvc", "update", "data/raw/online_retail.csv.dvc")
    assert "Running stage 'etl'" in run(clone, "dvc", "repro")
    assert etl_metrics(clone)["rows"]["read"] == 4  # type: ignore[index]
