"""What tests/integration/test_python_3_1*.py check on Python 3.12 and 3.13 (CI runs the full suite on 3.11):
`make` builds the runtime environment, every module imports from the runtime locks alone, and the unit
tests pass once the dev lock is added. One file per version, so the two test workers build both at once."""

from __future__ import annotations

import os
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("tasks", "flows", "lineage", "gates", "serving")
# Every module of the packages the project installs, and the operators' bootstrap script.
IMPORT_EVERY_MODULE = f"""
import importlib, pkgutil
names = ["deployments.bootstrap"]
for package in {PACKAGES}:
    names += [package] + [f"{{package}}.{{info.name}}" for info in pkgutil.iter_modules([package])]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def interpreter(version: str) -> str | None:
    """`python<version>` on PATH, else under pyenv's versions directory, if it runs and is that version."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [
        shutil.which(f"python{version}"),
        *sorted(map(str, root.glob(f"versions/{version}.*/bin/python{version}"))),
    ]
    check = f"import sys; sys.exit(sys.version_info[:2] != {tuple(map(int, version.split('.')))})"
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", check], capture_output=True).returncode == 0:
            return candidate
    return None


def _run(*command: str | Path) -> str:
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    result = subprocess.run([str(part) for part in command], cwd=REPO, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(map(str, command))} exited {result.returncode}:\n{output[-4000:]}"
    return output


def check_python(version: str, tmp_path: Path) -> None:
    """Build the environments with Python `version` under `tmp_path` and run the unit tests in them."""
    python = interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} here, on PATH or under pyenv's versions directory")
    venv = tmp_path / "venv"
    try:
        _run("make", "install-runtime", f"VENV={venv}", f"PYTHON={python}")
        assert f"Python {version}" in _run(venv / "bin" / "python", "--version")
        modules = 1 + sum(1 + len(list(pkgutil.iter_modules([str(REPO / package)]))) for package in PACKAGES)
        assert int(_run(venv / "bin" / "python", "-c", IMPORT_EVERY_MODULE).split()[-1]) == modules

        _run("make", "install", f"VENV={venv}", f"PYTHON={python}")
        tests = _run(venv / "bin" / "python", "-m", "pytest", "tests/unit", "-q", "-p", "no:cacheprovider")
        summary = re.findall(
            r"^=* ?((?:\d+ \w+, )*\d+ passed.*) in [\d.]+s", tests, re.MULTILINE
        )  # wherever stderr put it
        assert summary, tests[-2000:]
        assert "failed" not in summary[-1], tests[-2000:]
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # several GB where torch came with CUDA libraries
