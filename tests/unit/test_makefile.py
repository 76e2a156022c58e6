"""Which interpreter `make` builds .venv/ with, and its one line when none is supported (nothing is built)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _make(tmp_path: Path, *args: str, names: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`make <args>` for a venv in tmp_path, with a PATH holding only sed and this interpreter under `names`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("sed", "sh"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    for name in names:
        (bin_dir / name).symlink_to(sys.executable)
    env = {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/root")}
    make = shutil.which("make") or "make"
    command = [make, "--no-print-directory", "-C", str(REPO), f"VENV={tmp_path / 'venv'}", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    ("names", "chosen"),
    [
        (("python3", "python3.13", "python3.12", "python3.11"), "python3.11"),
        (("python3", "python3.13", "python3.12"), "python3.12"),
        (("python3",), "python3"),
    ],
)
def test_make_takes_the_first_supported_python_on_path(tmp_path: Path, names: tuple[str, ...], chosen: str) -> None:
    # -n prints the recipe, so the command that would create the venv names the interpreter chosen.
    result = _make(tmp_path, "-n", "install-runtime", names=names)
    assert result.returncode == 0, result.stderr
    assert f"&& {chosen} -m venv {tmp_path / 'venv'}" in result.stdout


def test_make_takes_the_python_it_is_given(tmp_path: Path) -> None:
    result = _make(tmp_path, "-n", "install-runtime", f"PYTHON={sys.executable}", names=("python3.11",))
    assert f"&& {sys.executable} -m venv" in result.stdout


@pytest.mark.parametrize("python", ["/bin/false", "python3.9"])
def test_an_unsupported_or_missing_python_stops_make_in_one_line(tmp_path: Path, python: str) -> None:
    result = _make(tmp_path, "install-runtime", f"PYTHON={python}")
    assert result.returncode != 0
    message = [line for line in result.stderr.splitlines() if not line.startswith("make: ***")]
    assert message == [
        f"make: '{python}' is not Python 3.11, 3.12 or 3.13; set PYTHON, e.g. PYTHON=/usr/bin/python3.12"
    ]
    assert not (tmp_path / "venv").exists()


def test_with_no_supported_python_on_path_make_says_so(tmp_path: Path) -> None:
    result = _make(tmp_path, "install-runtime")
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == (
        "make: none of python3.11, python3.12, python3.13 and python3 on PATH is Python 3.11 to 3.13; "
        "set PYTHON, e.g. PYTHON=/usr/bin/python3.12"
    )
    assert not (tmp_path / "venv").exists()
