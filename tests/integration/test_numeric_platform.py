"""The numeric platform (tasks/__init__.py): the same bytes whatever dispatch the CPU offers above it, and
a CPU below it refused in one line, by a stage and by the flow before any stage runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from lineage.store import Kind, LedgerStore
from tests.conftest import STAGES, fresh_clone, locked_outs, run, run_flow, run_module, set_params
from tests.platform_fixture import load_table

pytestmark = pytest.mark.integration

# What a machine with AVX2 and nothing above it offers each library: numpy's dispatch, torch's own
# kernels, MKL's and oneDNN's instruction sets, OpenBLAS's kernels. (MKL_ENABLE_INSTRUCTIONS is how
# MKL is told it runs on a lesser CPU; the platform's own MKL setting is MKL_CBWR.)
AVX2_MACHINE = {
    "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL "
    "AVX512_ICL AVX512_SPR",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
}
BELOW_AVX2 = {"NPY_DISABLE_CPU_FEATURES": "AVX2 FMA3"}  # a CPU with AVX but not AVX2, as numpy sees it


def _cpu_flags() -> set[str]:
    line = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    return set(line.split(":", 1)[1].split())


@pytest.mark.skipif(
    not {"avx512f", "avx512bw", "avx512vl"} <= _cpu_flags(),
    reason="needs an AVX-512 CPU: the only lower level an AVX2-only CPU can simulate is below the platform, "
    "which is refused (test_a_cpu_below_the_platform_is_refused_in_one_line)",
)
def test_all_six_stages_give_the_same_bytes_on_avx512_and_on_a_simulated_avx2_machine(
    built: tuple[Path, str], origin: Path, tmp_path: Path
) -> None:
    """`built` ran at this machine's native level (AVX-512); this clone runs as an AVX2-only machine would.
    Without the platform's caps the two runs differ (numpy's AVX-512 loops, torch's AVX-512 kernels, MKL)."""
    avx2 = fresh_clone(origin, tmp_path / "avx2")
    output = run(avx2, "env", *(f"{name}={value}" for name, value in AVX2_MACHINE.items()), "dvc", "repro")
    assert "Running stage 'fairness'" in output
    assert locked_outs(avx2) == locked_outs(built[0])  # every output, the model and SHAP values included
    assert set(locked_outs(avx2)) == set(load_table()["outputs"])  # every output dvc.yaml declares


def test_a_cpu_below_the_platform_is_refused_in_one_line(built_copy: Path) -> None:
    before = (built_copy / "metrics/fairness.json").read_bytes()
    done = run_module(built_copy, "tasks.fairness", **BELOW_AVX2)
    assert done.returncode == 65  # bad input: never retried
    assert done.stderr.strip() == (
        "fairness: error: this CPU lacks FMA3, AVX2; the numeric platform (tasks/__init__.py, NUMERIC_LEVEL avx2) "
        "needs an x86-64 CPU with AVX2"
    )
    assert (built_copy / "metrics/fairness.json").read_bytes() == before


def test_the_flow_refuses_such_a_cpu_before_any_stage_and_records_the_platform_otherwise(
    harness: None, built_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_params(built_copy, fairness={"max_error_ratio": 2.5})  # fairness has work to do
    for name, value in BELOW_AVX2.items():
        monkeypatch.setenv(name, value)
    refused, attempts = run_flow(built_copy, monkeypatch)
    assert refused.is_failed()
    assert refused.message == (
        "numeric_platform: error: this CPU lacks FMA3, AVX2; the numeric platform (tasks/__init__.py, "
        "NUMERIC_LEVEL avx2) needs an x86-64 CPU with AVX2"
    )
    assert not set(STAGES) & set(attempts)  # no stage started
    for name in BELOW_AVX2:
        monkeypatch.delenv(name)

    ran, _ = run_flow(built_copy, monkeypatch)
    assert ran.is_completed(), ran.message
    with LedgerStore(f"sqlite:///{built_copy / 'lineage.db'}") as store:
        (platform,) = store.find(Kind.ARTIFACT, "Platform")
    assert platform.properties["numeric_level"] == "avx2"  # type: ignore[union-attr]
    assert platform.properties["architecture"] == "x86_64"  # type: ignore[union-attr]
    assert platform.properties["mkl_cnr"] == "COMPATIBLE,STRICT"  # type: ignore[union-attr]  # MKL's word, not ours
