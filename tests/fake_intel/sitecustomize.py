"""For tests only: the MKL inside torch dispatches as on an Intel CPU, whatever this CPU's vendor (or, with
FAKE_MKL_VENDOR=other, as on another vendor's CPU, on an Intel one).

With this folder on PYTHONPATH, Python imports this module at start-up. In a process on the numeric platform
(MKL_CBWR set: a stage after its restart, or a process computing for one) and with FAKE_INTEL_MKL set, it loads
torch and overwrites MKL's two vendor checks, `mkl_serv_intel_cpu_true` and `mkl_serv_intel_cpu` (static
symbols of libtorch_cpu.so, not exported: FAKE_INTEL_MKL holds their offsets, as `nm` lists them, after the
exported `MKL_Get_Version_String`'s), with `return 1`, before MKL first computes. MKL then honours a branch
such as AVX2,STRICT, which it runs as AUTO on other vendors' CPUs (tests/integration/test_platform_fixture.py).
"""

import ctypes
import mmap
import os
from pathlib import Path

if os.environ.get("FAKE_INTEL_MKL") and os.environ.get("MKL_CBWR"):
    import torch

    anchor, *checks = (int(offset, 16) for offset in os.environ["FAKE_INTEL_MKL"].split(","))
    library = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
    base = ctypes.cast(library.MKL_Get_Version_String, ctypes.c_void_p).value - anchor  # type: ignore[operator]
    libc = ctypes.CDLL(None)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for offset in checks:
        address = base + offset
        page = address & ~(mmap.PAGESIZE - 1)
        if libc.mprotect(page, 2 * mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC) != 0:
            raise OSError(ctypes.get_errno(), "fake_intel: mprotect failed")
        intel = b"\x00" if os.environ.get("FAKE_MKL_VENDOR") == "other" else b"\x01"
        ctypes.memmove(address, b"\xb8" + intel + b"\x00\x00\x00\xc3", 6)  # mov eax, 1 (or 0); ret
