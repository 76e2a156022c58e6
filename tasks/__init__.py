"""Pipeline stages as plain Python: one module per stage, run by DVC as `python -m tasks.<stage>`."""

import os
import sys

# Same inputs must give the same output bytes. Python salts str hashes per process, so set orders
# of strings vary between runs, and so do float sums taken in those orders (Evidently bins
# categories that way: a drift score changed in its 15th digit between identical runs). A stage
# started as `python -m tasks.<stage>` therefore restarts itself once, before any heavy import,
# with a fixed hash seed.
_argv = sys.orig_argv
if "-m" in _argv[:-1] and _argv[_argv.index("-m") + 1].startswith("tasks.") and os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *_argv[1:]])
