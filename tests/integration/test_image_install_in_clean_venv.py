"""The worker image's install steps, replayed in a clean venv: there is no Docker daemon here to build it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.unit.test_docker_image import build_context


def _run(*command: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=1200
    )
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.integration
def test_image_install_steps_without_docker_daemon(tmp_path: Path) -> None:
    # What `COPY . .` would send: this checkout filtered by .dockerignore (no .git, data, caches, .env).
    context = tmp_path / "pipeline"
    for name in build_context(REPO):
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, context / name)  # keeps the entrypoint's executable bit

    venv = tmp_path / "venv"
    subprocess.run([shutil.which("python3.11") or sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"

    # The Dockerfile's RUN steps. No PyTorch index here: this machine's pip config finds the CPU torch wheel.
    pip = (python, "-m", "pip", "install", "--no-cache-dir")
    _run(*pip, "-r", "requirements.lock", cwd=context, env=env)
    _run(*pip, "--no-deps", "--no-build-isolation", ".", cwd=context, env=env)
    _run(venv / "bin" / "dvc", "config", "--local", "core.no_scm", "true", cwd=context, env=env)

    # The entrypoint runs a command with the installed packages, away from the source tree.
    entrypoint = context / "docker" / "entrypoint.sh"
    probe = "import tasks.etl, flows.summary, dvc, prefect; print('ready')"
    ready = _run(entrypoint, python, "-c", probe, cwd=tmp_path, env={**env, "IMAGE_REVISION": "0123abc"})
    assert ready.stdout.strip().splitlines()[-1] == "ready"
    assert "revision 0123abc" in ready.stderr

    # DVC runs without git, and the context holds the files dvc.lock hashes for the raw and reference dirs,
    # so a run in the image would pull and skip stages rather than rerun everything from etl.
    status = json.loads(_run(entrypoint, "dvc", "status", "--json", cwd=context, env=env).stdout)
    changed_deps = {path for entries in status.values() for entry in entries for path in entry.get("changed deps", {})}
    assert not changed_deps & {"data/raw", "data/reference"}, status
