"""Pipeline stages as plain Python: one module per stage, run by DVC as `python -m tasks.<stage>`.

A stage started that way restarts itself once, before any heavy import, on one numeric platform, so
that the same inputs and params give the same output bytes on any x86-64 machine with AVX2, whatever
its vendor (Intel or AMD) and whatever it offers above AVX2:

- a fixed hash seed: Python salts str hashes per process, so set orders of strings vary between runs,
  and so do float sums taken in those orders (Evidently bins categories that way);
- every library that picks its kernels at run time is pinned to one choice: capped at one
  instruction-set level, NUMERIC_LEVEL (AVX-512 code gives other last bits than AVX2's, which
  training then amplifies), and, where it also asks the CPU's vendor, made to ask nothing;
- the library thread counts fixed, since a sum split over more threads is another sum.

What each library the stages compute with chooses by, and what pins it (audited for issue 36):

- numpy: its SIMD loops by CPU feature, never by vendor: NPY_DISABLE_CPU_FEATURES caps it.
- torch's own kernels (ATen, with SLEEF): by feature: ATEN_CPU_CAPABILITY.
- MKL, torch's BLAS (the float32 GEMM of every Linear layer, forward and backward, in training, in
  predictions and in SHAP's gradients): by vendor too. On a CPU it deems not Intel's it honours
  only the AUTO and COMPATIBLE branches of conditional numerical reproducibility (CNR) and runs
  AUTO for anything else: AVX2,STRICT ran AVX2 code on an Intel Xeon and AUTO on an AMD EPYC, and
  the two trained different models. COMPATIBLE is the branch MKL documents for the same results on
  Intel and non-Intel CPUs; STRICT makes them independent of memory alignment too. A process that
  computes through MKL asks MKL which branch it runs (`mkl_branch`) and refuses another.
- oneDNN: by feature (JIT), capped at AVX2 by ONEDNN_MAX_CPU_ISA; float32 Linear layers go to MKL,
  not oneDNN, so this is a guard, not a fix.
- OpenBLAS (numpy's and scipy's, one copy each): detects a core type (Haswell, SkylakeX, Zen...) that
  sets both its kernels and their blocking; OPENBLAS_CORETYPE names Haswell's instead, on any CPU.
- scikit-learn's OpenMP loops (HistGradientBoosting, the tune stage's baseline): compiled once, no
  dispatch; their reductions split by thread count: OMP_NUM_THREADS.
- SHAP's DeepExplainer: torch and numpy, pinned above. numba, which SHAP imports, would compile for
  the very CPU it runs on, but compiles nothing on the stages' path (no jitted function runs in an
  inference run: checked).
- Evidently, fairlearn, Optuna's TPE, pandas: Python over numpy and scipy, which has no kernel
  dispatch of its own besides its OpenBLAS. glibc's libm (behind Python's floats and numpy's scalar
  paths) picks its exp, log and pow by feature (FMA), the same on every CPU with AVX2.
- pyarrow: by feature; the stages only read and write Parquet with it, exact work whatever the
  kernels, so ARROW_USER_SIMD_LEVEL is a guard, like oneDNN's cap.

The level is versioned here: this file is a dependency of every stage, and changing it changes
results. A CPU below it is refused with one line naming what it lacks.
"""

import os
import platform
import re
import sys
import tempfile

NUMERIC_LEVEL = "avx2"  # x86-64-v3; "native" lets every library choose (benchmarks compare the two)
REQUIRED_FEATURES = ("AVX", "F16C", "FMA3", "AVX2")  # as numpy names them
MKL_BRANCH = "COMPATIBLE,STRICT"  # the CNR branch MKL must run, as MKL_CBWR asks for it and MKL reports it
_ABOVE_AVX2 = "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"
_PINNED_X86 = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own kernels
    # MKL: the branch that computes alike on every vendor's CPU. AVX2,STRICT would be honoured on Intel
    # CPUs only; MKL silently runs AUTO for it on others (MKL_VERBOSE: CNR:AUTO,STRICT on an AMD EPYC).
    "MKL_CBWR": MKL_BRANCH,
    "MKL_DYNAMIC": "FALSE",  # CNR holds for a fixed thread count: MKL must keep the one it is given
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # a guard: no float32 layer of ours reaches oneDNN today
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's and scipy's BLAS: Haswell's AVX2 kernels and blocking, on any CPU
    "ARROW_USER_SIMD_LEVEL": "AVX2",  # a guard: our Parquet reads and writes are exact at any level
}
_THREADS = {
    "OPENBLAS_NUM_THREADS": "1",  # else one per core: sums split differently on another machine
    # scikit-learn's OpenMP loops; torch's count is tune.threads. Two, not "all": a prange reduction adds
    # each thread's partial sum in the order the threads finish, and two partials sum alike either way.
    "OMP_NUM_THREADS": "2",
    # Idle OpenMP threads sleep instead of spinning: on a shared machine, or beside the tune stage's other
    # processes, spinning threads took the cores the working ones needed (the baseline's boosting ran 2 to 3
    # times slower under load). Only when threads wait changes, never how the work or the sums are split.
    "OMP_WAIT_POLICY": "PASSIVE",
}


def platform_env(environ: dict[str, str]) -> dict[str, str]:
    """The variables a stage runs with on the numeric platform (given the environment it started in)."""
    wanted = {"PYTHONHASHSEED": "0", **_THREADS}
    if NUMERIC_LEVEL != "native" and platform.machine() in ("x86_64", "AMD64"):
        wanted |= _PINNED_X86
        # Keep the caller's own caps (a simulated lesser CPU, say): disabled features only add up.
        disabled = set(environ.get("NPY_DISABLE_CPU_FEATURES", "").split()) | set(_ABOVE_AVX2.split())
        wanted["NPY_DISABLE_CPU_FEATURES"] = " ".join(sorted(disabled))
    return wanted


def missing_features() -> list[str]:
    """Required features this CPU lacks, as numpy sees it (after NPY_DISABLE_CPU_FEATURES)."""
    from numpy._core._multiarray_umath import __cpu_features__

    return [feature for feature in REQUIRED_FEATURES if not __cpu_features__.get(feature)]


def mkl_branch() -> str | None:
    """The CNR branch MKL runs in this process, in MKL's own words (e.g. "COMPATIBLE,STRICT", "AUTO,STRICT",
    "OFF"): the verbose line MKL prints for one float32 product like a Linear layer's. None without MKL."""
    import ctypes

    import torch

    if not torch.backends.mkl.is_available():
        return None
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 1)  # MKL prints to the C stdout, whatever Python's sys.stdout is
        try:
            with torch.backends.mkl.verbose(torch.backends.mkl.VERBOSE_ON):
                torch.nn.functional.linear(torch.ones(2, 2), torch.ones(2, 2))
            ctypes.CDLL(None).fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        captured.seek(0)
        said = captured.read().decode(errors="replace")
    found = re.search(r"\bCNR:(\S+)", said)
    return found.group(1) if found else None


def mkl_refusal() -> str | None:
    """One line when MKL runs another branch than the platform's, in a process on the platform (every stage's,
    and the processes that compute for one), which checks before it computes through MKL; else None."""
    if platform_env(dict(os.environ)).get("MKL_CBWR") is None or "MKL_CBWR" not in os.environ:
        return None  # NUMERIC_LEVEL native or no x86-64 (MKL chooses for itself), or not on the platform (a test)
    ran = mkl_branch()
    if ran == MKL_BRANCH:
        return None
    return (
        f"MKL runs the CNR branch {ran or 'none (this torch has no MKL)'}, not the numeric platform's {MKL_BRANCH} "
        "(tasks/__init__.py): its float32 products would differ from other CPUs'"
    )


_argv = sys.orig_argv
if "-m" in _argv[:-1] and _argv[_argv.index("-m") + 1].startswith("tasks."):
    _wanted = platform_env(dict(os.environ))
    if any(os.environ.get(name) != value for name, value in _wanted.items()):
        os.environ.update(_wanted)
        os.execv(sys.executable, [sys.executable, *_argv[1:]])
    if "NPY_DISABLE_CPU_FEATURES" in _wanted and (_missing := missing_features()):
        _stage = _argv[_argv.index("-m") + 1].removeprefix("tasks.")
        print(
            f"{_stage}: error: this CPU lacks {', '.join(_missing)}; the numeric platform "
            f"(tasks/__init__.py, NUMERIC_LEVEL {NUMERIC_LEVEL}) needs an x86-64 CPU with AVX2",
            file=sys.stderr,
        )
        sys.stdout.flush()
        os._exit(65)  # tasks.stage.EXIT_BAD_INPUT: a deterministic refusal, never retried
