"""The worker image, checked without a Docker daemon: the Dockerfile, its entrypoint and its build context."""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from docker.utils.build import PatternMatcher, exclude_paths

from tests.conftest import REPO, VENV_BIN

DOCKERFILE = REPO / "docker" / "worker.Dockerfile"
ENTRYPOINT = REPO / "docker" / "entrypoint.sh"


def instructions(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped, as Docker reads them."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        result.append((keyword.upper(), " ".join(arguments.split())))
        pending = ""
    return result


def _arguments(keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions() if name == keyword]


def dockerignore_patterns(root: Path = REPO) -> list[str]:
    """The patterns of `root/.dockerignore`, read as docker-py reads them."""
    lines = (line.strip() for line in (root / ".dockerignore").read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def is_ignored(path: str) -> bool:
    """Whether `docker build` leaves `path` (relative to the repository, with /) out of the build context."""
    return bool(PatternMatcher(dockerignore_patterns()).matches(path))


def build_context(root: Path = REPO) -> list[str]:
    """The files `docker build -f docker/worker.Dockerfile` sends from `root`, relative paths with /.

    Computed by docker-py, which is what prefect-docker's build step uses by default; BuildKit reads
    .dockerignore with the same rules (both port moby's pattern matcher).
    """
    paths = exclude_paths(str(root), dockerignore_patterns(root), dockerfile="docker/worker.Dockerfile")
    return sorted(path for path in paths if (root / path).is_file())


def test_base_image_is_slim_python_3_11_and_packages_come_from_a_build_stage() -> None:
    packages, base = _arguments("FROM")
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", base), base
    assert packages == f"{base} AS packages"  # the same Python: the virtualenv is copied over as it is
    keywords = instructions()
    final = keywords.index(("FROM", base))
    assert ("COPY", "--from=packages /opt/venv /opt/venv") in keywords[final:]
    assert not [arguments for _, arguments in keywords[final:] if "binutils" in arguments]  # stays in the stage


def test_runs_as_a_non_root_user_set_before_the_entrypoint() -> None:
    keywords = [name for name, _ in instructions()]
    users = _arguments("USER")
    assert users, "no USER: the flow would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    last_user = max(i for i, name in enumerate(keywords) if name == "USER")
    assert last_user < keywords.index("ENTRYPOINT")


def test_oci_labels_and_revision_env_come_from_build_args() -> None:
    args = {arguments.split("=")[0] for arguments in _arguments("ARG")}
    assert {"GIT_REPOSITORY", "GIT_COMMIT"} <= args
    labels = " ".join(_arguments("LABEL"))
    assert 'org.opencontainers.image.source="${GIT_REPOSITORY}"' in labels
    assert 'org.opencontainers.image.revision="${GIT_COMMIT}"' in labels
    env = " ".join(_arguments("ENV"))
    assert 'GIT_COMMIT="${GIT_COMMIT}"' in env
    assert 'IMAGE_REVISION="${GIT_COMMIT}"' in env


def test_installs_the_runtime_locks_with_hashes_then_the_project_without_deps() -> None:
    runs = _arguments("RUN")
    (lock_install,) = [run for run in runs if "-r requirements/" in run]
    steps = [step.strip() for step in lock_install.split("&&")]
    # torch's own lock first (it names PyTorch's CPU index, asked for torch alone), then PyPI's.
    assert steps[:2] == [
        "pip install --no-cache-dir --no-compile --require-hashes --no-deps -r requirements/torch-cpu.lock",
        "pip install --no-cache-dir --no-compile --require-hashes --no-deps -r requirements/runtime.lock",
    ]
    # What the run never reads goes in the same layer; bytecode is cached per container instead.
    trims = ("site=", "for package in ", "find ", "rm -rf ", "strip --strip-unneeded ", "python -B -c ")
    assert all(step.startswith(trims) for step in steps[2:]), steps
    assert not [step for step in steps if "torch/bin" in step and "rm -rf" in step], "import torch needs torch/bin"
    assert not [step for step in steps if "evidently" in step], "evidently imports its own tests package"
    assert [env for env in _arguments("ENV") if "PYTHONPYCACHEPREFIX=/tmp/pycache" in env]
    assert not [run for run in runs if "index-url" in run or "find-links" in run]
    assert ("COPY", "requirements/torch-cpu.lock requirements/runtime.lock ./requirements/") in instructions()
    project_install = [run for run in runs if run.startswith("pip install") and " ." in run]
    assert len(project_install) == 1
    assert project_install[0].split("&&")[0].strip() == (
        "pip install --no-cache-dir --no-compile --no-deps --no-build-isolation ."
    )
    assert "pip check" in project_install[0]
    assert "/tmp/pycache" in project_install[0]  # root's, left there, would keep the worker user's bytecode out
    # The locks are installed before the project is copied, so a code change reuses the dependency layer.
    keywords = instructions()
    copy_all = keywords.index(("COPY", "--chown=worker:worker . ."))
    assert keywords.index(("RUN", lock_install)) < copy_all


def test_dvc_works_without_git_metadata() -> None:
    runs = _arguments("RUN")
    assert any(
        "apt-get install" in run and " git" in run and " openssh-client" in run and "--no-install-recommends" in run
        for run in runs
    )
    assert any("rm -rf /var/lib/apt/lists/*" in run for run in runs)
    assert "dvc config --local core.no_scm true" in runs


def test_no_secret_is_baked_into_the_image() -> None:
    for keyword, arguments in instructions():
        if keyword in {"ARG", "ENV"}:
            assert not re.search(r"AWS_|PREFECT_API_KEY|TOKEN|PASSWORD|SECRET", arguments), arguments
        if keyword in {"COPY", "ADD"}:
            assert ".env" not in arguments, arguments
            assert ".aws" not in arguments, arguments


def test_entrypoint_is_the_executable_script_that_execs_its_arguments() -> None:
    (entrypoint,) = _arguments("ENTRYPOINT")
    assert json.loads(entrypoint) == ["/opt/pipeline/docker/entrypoint.sh"]
    assert _arguments("WORKDIR")[-1] == "/opt/pipeline"  # the project is copied there
    assert os.access(ENTRYPOINT, os.X_OK)
    lines = [line.strip() for line in ENTRYPOINT.read_text().splitlines() if line.strip()]
    assert lines[0] == "#!/bin/sh"
    assert "set -eu" in lines
    assert lines[-1] == 'exec "$@"'


def test_entrypoint_names_the_revision_and_never_prints_the_environment() -> None:
    env = {
        "PATH": os.environ["PATH"],
        "IMAGE_REVISION": "0123abc",
        "IMAGE_URI": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/retail-lineage-worker:0123abc",
        "AWS_SECRET_ACCESS_KEY": "supersecret",
        "PREFECT_API_KEY": "pnu_supersecret",
    }
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "/bin/echo", "ok"], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout == "ok\n"
    assert result.stderr.splitlines() == [
        "retail-lineage worker image: revision 0123abc, uri "
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/retail-lineage-worker:0123abc"
    ]
    assert "supersecret" not in result.stdout + result.stderr


def test_entrypoint_passes_the_command_exit_status_through() -> None:
    result = subprocess.run(["sh", str(ENTRYPOINT), "sh", "-c", "exit 3"], capture_output=True, text=True, check=False)
    assert result.returncode == 3
    assert "revision unknown" in result.stderr


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "deployments/prod.env",
        "docker/.env",
        ".git/config",
        ".venv/bin/python",
        "data/processed.parquet",
        "data/splits/train.parquet",
        "data/raw/online_retail.xlsx",
        "models/model.pt",
        "reports/drift.html",
        "metrics/etl.json",
        ".dvc/cache/files/md5/ab/cdef",
        ".dvc/tmp/lock",
        ".dvc/config.local",
        ".dvc-storage/files/md5/ab/cdef",
        "tasks/__pycache__/etl.cpython-311.pyc",
        ".pytest_cache/v/cache/nodeids",
        ".mypy_cache/3.11/tasks.json",
        ".ruff_cache/CACHEDIR.TAG",
        "retail_lineage.egg-info/PKG-INFO",
        "dvc_plots/index.html",
        "lineage.db",
        "openlineage.yml",
        "pipeline-key",
        "v.bundle",
        "evidence/evidence.pdf",
        "docs/index.md",
        "tests/conftest.py",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert is_ignored(path)


@pytest.mark.parametrize(
    "path",
    [
        "requirements/torch-cpu.lock",
        "requirements/runtime.lock",
        "pyproject.toml",
        "README.md",
        "dvc.yaml",
        "dvc.lock",
        "params.yaml",
        "prefect.yaml",
        ".dvc/config",
        "tasks/etl.py",
        "flows/summary.py",
        "lineage/__init__.py",
        "docker/entrypoint.sh",
        # dvc.lock hashes these directories with their README; without it etl and drift_check would rerun.
        "data/raw/README.md",
        "data/reference/README.md",
        "data/raw/online_retail.xlsx.dvc",
        "common/__init__.py",
        "lineage/console/templates/base.html",
        "lineage/console/static/console.css",
        "lineage/openlineage_spec/OpenLineage.json",
        "docker/worker.Dockerfile",
    ],
)
def test_dockerignore_keeps_in(path: str) -> None:
    assert not is_ignored(path)


def test_build_context_of_this_checkout_has_no_secrets_or_data() -> None:
    context = build_context()
    assert "docker/entrypoint.sh" in context
    assert {"requirements/torch-cpu.lock", "requirements/runtime.lock"} <= set(context)
    assert not [path for path in context if path.startswith((".git/", ".venv/", "models/", ".dvc/cache/"))]
    assert not [path for path in context if path.endswith(".parquet") or posixpath.basename(path) == ".env"]


# What a working checkout gathers beside the code: the ledger, keys, bundles, evidence packs and local
# settings, at the root where the docs' commands write them and inside the packages' folders.
LOCAL_STATE = [
    "lineage.db",
    "lineage.db-wal",
    "dev-lineage.db",
    "ledger.sqlite3",
    "openlineage.yml",
    "pipeline-key",
    "pipeline-key.pub",
    "v.bundle",
    "model-3f2a9c1b4d5e.bundle.json",
    "evidence/evidence.html",
    "evidence/evidence.pdf",
    "evidence/evidence.json",
    "evidence/MANIFEST.sha256",
    "evidence-prod/reports/drift.html",
    ".env",
    ".env.prod",
    "deployments/prod.env",
    ".dvc/config.local",
    ".dvc/cache/files/md5/ab/cdef",
    ".dvc-storage/files/md5/ab/cdef",
    ".git/config",
    ".venv/bin/python",
    ".aws/credentials",
    "data/processed.parquet",
    "data/raw/online_retail.xlsx",
    "models/model.pt",
    "reports/drift.html",
    "metrics/etl.json",
    "notes/scratch.txt",
    "lineage/lineage.db",
    "lineage/console/static/openlineage.yml",
    "serving/pipeline-key",
    "flows/v.bundle",
    "tasks/.env",
    "tasks/__pycache__/etl.cpython-311.pyc",
    "retail_lineage.egg-info/PKG-INFO",
    "build/lib/tasks/etl.py",
]

# What the image needs besides its packages (docker/worker.Dockerfile, its entrypoint, `pip install .` and
# the flow it runs): `common/` is planted, since the package may not be in this checkout yet.
NEEDED = [
    "pyproject.toml",
    "README.md",  # pyproject's readme: `pip install .` reads it
    "requirements/torch-cpu.lock",
    "requirements/runtime.lock",
    "dvc.yaml",
    "dvc.lock",
    "params.yaml",
    "prefect.yaml",
    "model_card.yaml",
    ".dvc/config",
    ".dvcignore",
    "docker/entrypoint.sh",
    "docker/worker.Dockerfile",
    "data/raw/README.md",
    "data/reference/README.md",
    "data/raw/online_retail.xlsx.dvc",
    "data/reference/snapshot.parquet.dvc",
    "common/__init__.py",
    "common/redact.py",
]


def _packages() -> list[str]:
    """The top-level packages `pip install .` installs (pyproject.toml), and `common`."""
    with (REPO / "pyproject.toml").open("rb") as file:
        packages = tomllib.load(file)["tool"]["setuptools"]["packages"]
    return sorted({name.split(".")[0] for name in packages} | {"common"})


def test_build_context_is_an_allow_list_without_local_state(tmp_path: Path) -> None:
    # A copy of the checkout (its tracked files) with local state planted, listed as the Docker client lists it.
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in [*tracked, *LOCAL_STATE, *NEEDED]:
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_file():
            shutil.copyfile(REPO / name, target)
        else:
            target.write_text("planted\n")
    context = set(build_context(tmp_path))

    assert not [name for name in LOCAL_STATE if name in context]
    assert not [name for name in NEEDED if name not in context]
    packaged = [name for name in tracked if name.split("/")[0] in _packages()]
    assert {"lineage/console/templates/base.html", "lineage/console/static/console.js"} <= set(packaged)
    assert "lineage/openlineage_spec/OpenLineage.json" in packaged
    assert not [name for name in packaged if name not in context]
    # Nothing else: docs, tests, benchmarks and deployment tools stay on the developer's machine.
    assert not [name for name in context if name.startswith(("docs/", "tests/", "bench/", "deployments/"))]


def test_hadolint_passes() -> None:
    hadolint = VENV_BIN / "hadolint"
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
