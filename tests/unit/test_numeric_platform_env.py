"""The numeric platform's environment (tasks/__init__.py): what every stage process starts with, and MKL's own
report of the branch it runs, which a stage checks before it computes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tasks
from tests.conftest import REPO, stage_env

REFUSAL = (
    "MKL runs the CNR branch AUTO,STRICT, not the numeric platform's COMPATIBLE,STRICT (tasks/__init__.py): "
    "its float32 products would differ from other CPUs'"
)


def test_a_stage_runs_capped_at_avx2_with_mkl_compatible_fixed_threads_and_hash_seed() -> None:
    env = tasks.platform_env({})
    assert env["PYTHONHASHSEED"] == "0"
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert env["MKL_CBWR"] == tasks.MKL_BRANCH == "COMPATIBLE,STRICT"  # the branch MKL runs alike on every vendor
    assert env["OPENBLAS_CORETYPE"] == "Haswell"
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert (env["OMP_NUM_THREADS"], env["OMP_WAIT_POLICY"]) == ("2", "PASSIVE")
    assert {"AVX512F", "AVX512_SKX", "AVX512_SPR"} <= set(env["NPY_DISABLE_CPU_FEATURES"].split())
    assert "AVX2" not in env["NPY_DISABLE_CPU_FEATURES"].split()


def test_a_callers_own_caps_are_kept_so_a_lesser_cpu_can_be_simulated() -> None:
    env = tasks.platform_env({"NPY_DISABLE_CPU_FEATURES": "AVX2 FMA3"})
    assert {"AVX2", "FMA3", "AVX512F"} <= set(env["NPY_DISABLE_CPU_FEATURES"].split())
    assert tasks.platform_env(env) == env  # applying it twice changes nothing: a stage re-executes once


def test_native_leaves_the_dispatch_to_each_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "NUMERIC_LEVEL", "native")
    assert set(tasks.platform_env({})) == {
        "PYTHONHASHSEED",
        "OPENBLAS_NUM_THREADS",
        "OMP_NUM_THREADS",
        "OMP_WAIT_POLICY",
    }
    monkeypatch.setenv("MKL_CBWR", "AUTO,STRICT")
    assert tasks.mkl_refusal() is None  # MKL chooses for itself there


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -c code` with the platform's environment, `env` on top (no restart: it is no `-m tasks.` run)."""
    return subprocess.run(
        [sys.executable, "-c", code], env=stage_env(**(tasks.platform_env({}) | env)), capture_output=True, text=True
    )  # fmt: skip


@pytest.mark.parametrize(
    ("asked", "reported"),
    [("COMPATIBLE,STRICT", "COMPATIBLE,STRICT"), ("AUTO,STRICT", "AUTO,STRICT"), ("", "OFF")],
)
def test_mkl_reports_the_branch_it_runs(asked: str, reported: str) -> None:
    """These three MKL runs as asked on any vendor's CPU (AVX2,STRICT it runs as AVX2 on Intel's only)."""
    done = _python("import tasks; print(tasks.mkl_branch())", MKL_CBWR=asked)
    assert done.stdout == f"{reported}\n", done.stderr  # MKL's own verbose line went nowhere else


def test_a_stage_process_runs_the_platforms_branch() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tasks.numeric_platform"], cwd=REPO, env=stage_env(), capture_output=True, text=True
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"mkl_cnr": "COMPATIBLE,STRICT"' in done.stdout  # what MKL reports, not what was asked


def test_a_stage_whose_mkl_runs_another_branch_refuses_in_one_line(tmp_path: Path) -> None:
    """As the tune and inference stages do, and before reading any input (there is none here)."""
    shutil.copyfile(REPO / "params.yaml", tmp_path / "params.yaml")
    env = stage_env(**(tasks.platform_env({}) | {"MKL_CBWR": "AUTO,STRICT"}))
    done = subprocess.run(
        [sys.executable, "-c", "import runpy; runpy.run_module('tasks.inference', run_name='__main__')"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (65, f"inference: error: {REFUSAL}\n")


def test_the_flows_platform_probe_refuses_it_too() -> None:
    done = _python(
        "import runpy; runpy.run_module('tasks.numeric_platform', run_name='__main__')", MKL_CBWR="AUTO,STRICT"
    )
    assert (done.returncode, done.stdout, done.stderr) == (65, "", f"numeric_platform: error: {REFUSAL}\n")


def test_a_process_off_the_platform_is_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MKL_CBWR", raising=False)
    assert tasks.mkl_refusal() is None  # a test or a notebook: MKL_CBWR unset, MKL as it comes
