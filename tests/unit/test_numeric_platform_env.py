"""The numeric platform's environment (tasks/__init__.py): what every stage process starts with."""

from __future__ import annotations

import pytest

import tasks


def test_a_stage_runs_capped_at_avx2_with_fixed_threads_and_hash_seed() -> None:
    env = tasks.platform_env({})
    assert env["PYTHONHASHSEED"] == "0"
    assert env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert env["MKL_CBWR"] == "AVX2,STRICT"
    assert env["OPENBLAS_CORETYPE"] == "Haswell"
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert {"AVX512F", "AVX512_SKX", "AVX512_SPR"} <= set(env["NPY_DISABLE_CPU_FEATURES"].split())
    assert "AVX2" not in env["NPY_DISABLE_CPU_FEATURES"].split()


def test_a_callers_own_caps_are_kept_so_a_lesser_cpu_can_be_simulated() -> None:
    env = tasks.platform_env({"NPY_DISABLE_CPU_FEATURES": "AVX2 FMA3"})
    assert {"AVX2", "FMA3", "AVX512F"} <= set(env["NPY_DISABLE_CPU_FEATURES"].split())
    assert tasks.platform_env(env) == env  # applying it twice changes nothing: a stage re-executes once


def test_native_leaves_the_dispatch_to_each_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "NUMERIC_LEVEL", "native")
    assert set(tasks.platform_env({})) == {"PYTHONHASHSEED", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"}
