"""Pipeline stages as plain Python: one module per stage, run by DVC as `python -m tasks.<stage>`.

A stage started that way restarts itself once, before any heavy import, on one numeric platform, so
that the same inputs and params give the same output bytes on any x86-64 machine with AVX2:

- a fixed hash seed: Python salts str hashes per process, so set orders of strings vary between runs,
  and so do float sums taken in those orders (Evidently bins categories that way);
- the kernels numpy, torch (with its MKL and oneDNN) and OpenBLAS choose are capped at one
  instruction-set level, NUMERIC_LEVEL: on an AVX-512 machine they would otherwise pick AVX-512 code,
  whose results differ from AVX2's in the last bits, which training then amplifies;
- MKL in its conditional-numerical-reproducibility mode, and the library thread pools fixed.

The level is versioned here: this file is a dependency of every stage, and changing it changes
results. A CPU below it is refused with one line naming what it lacks.
"""

import os
import platform
import sys

NUMERIC_LEVEL = "avx2"  # x86-64-v3; "native" lets every library choose (benchmarks compare the two)
REQUIRED_FEATURES = ("AVX", "F16C", "FMA3", "AVX2")  # as numpy names them
_ABOVE_AVX2 = "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"
_PINNED_X86 = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own kernels
    "MKL_CBWR": "AVX2,STRICT",  # torch's BLAS: the same results on every CPU with AVX2
    "MKL_DYNAMIC": "FALSE",  # ... which needs MKL to keep the thread count it is given
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's and scipy's BLAS: its AVX2 kernels
}
_THREADS = {
    "OPENBLAS_NUM_THREADS": "1",  # else one per core: sums split differently on another machine
    "OMP_NUM_THREADS": "2",  # scikit-learn's OpenMP loops; torch's count is tune.threads
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
