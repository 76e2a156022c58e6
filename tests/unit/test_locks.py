"""The locks agree with pyproject.toml and with each other, name torch's source, and keep test tools out of
the runtime; the Makefile and the Dockerfile install them that way."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass, field

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

LOCKS = REPO / "requirements"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
INDEX_OPTIONS = ("--index-url", "--extra-index-url", "--find-links", "-i ", "-f ")


@dataclass
class Pin:
    version: str
    marker: str
    hashes: set[str] = field(default_factory=set)


@dataclass
class Lock:
    options: list[str]
    pins: dict[str, Pin]


def read_lock(name: str) -> Lock:
    """The pip options and the `name==version ; marker` entries of a uv-compiled lock, with their hashes."""
    options: list[str] = []
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for line in (LOCKS / name).read_text().splitlines():
        text = line.strip().removesuffix("\\").strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("--hash="):
            assert current is not None, f"{name}: a hash before any requirement: {line}"
            current.hashes.add(text.removeprefix("--hash="))
        elif text.startswith("-"):
            options.append(text)
        else:
            requirement, _, marker = text.partition(";")
            assert "==" in requirement, f"{name}: not pinned with ==: {line}"
            package, version = (part.strip() for part in requirement.split("=="))
            key = canonicalize_name(package) + ("" if not marker else f" ; {marker.strip()}")
            current = pins[key] = Pin(version, marker.strip())
    return Lock(options, pins)


def versions(lock: Lock) -> dict[str, set[str]]:
    """Package name -> every version the lock pins for it (a package may differ by Python version)."""
    found: dict[str, set[str]] = {}
    for key, pin in lock.pins.items():
        found.setdefault(key.split(" ;")[0], set()).add(pin.version)
    return found


RUNTIME, DEV = read_lock("runtime.lock"), read_lock("dev.lock")
TORCH_CPU, TORCH_PYPI = read_lock("torch-cpu.lock"), read_lock("torch-pypi.lock")
TORCH_PIN = next(
    Requirement(spec) for spec in PYPROJECT["project"]["dependencies"] if Requirement(spec).name == "torch"
)


@pytest.mark.parametrize("name", ["runtime.lock", "dev.lock", "torch-cpu.lock", "torch-pypi.lock"])
def test_every_entry_is_pinned_with_sha256_hashes(name: str) -> None:
    lock = read_lock(name)
    assert lock.pins
    for key, pin in lock.pins.items():
        assert pin.hashes, f"{name}: {key} has no hash, so --require-hashes would refuse the file"
        assert all(re.fullmatch(r"sha256:[0-9a-f]{64}", digest) for digest in pin.hashes), key


def test_only_torchs_own_lock_names_an_index_and_it_is_pytorchs_cpu_index() -> None:
    assert TORCH_CPU.options == [f"--index-url {TORCH_CPU_INDEX}"]
    for lock in (RUNTIME, DEV, TORCH_PYPI):
        assert lock.options == []  # PyPI, or whatever pip is configured with: never an extra index


def test_torch_is_the_cpu_build_of_the_pyproject_version_for_python_3_11_to_3_13() -> None:
    (pin,) = TORCH_CPU.pins.values()
    assert list(TORCH_CPU.pins) == ["torch"]
    assert pin.version == f"{TORCH_PIN.specifier}".removeprefix("==") + "+cpu"
    assert pin.version in TORCH_PIN.specifier  # == admits the local version
    assert len(pin.hashes) >= 3  # one wheel per supported CPython at least
    assert versions(TORCH_PYPI)["torch"] == {pin.version.removesuffix("+cpu")}


def test_runtime_and_dev_locks_hold_no_torch_and_no_cuda_libraries() -> None:
    for lock in (RUNTIME, DEV):
        names = set(versions(lock))
        assert "torch" not in names
        assert not {name for name in names if name.startswith(("nvidia-", "cuda-")) or name == "triton"}


def test_runtime_lock_has_no_test_or_build_tools() -> None:
    tools = {Requirement(spec).name for spec in PYPROJECT["dependency-groups"]["dev"]}
    assert tools >= {"pytest", "hypothesis", "mypy", "ruff", "moto", "mkdocs", "uv"}
    assert not {canonicalize_name(tool) for tool in tools} & set(versions(RUNTIME))
    assert "pytest" in versions(DEV)


def test_dev_lock_pins_every_runtime_package_to_the_same_version_and_hashes() -> None:
    for key, pin in RUNTIME.pins.items():
        assert key in DEV.pins, f"dev.lock lacks {key}"
        assert (DEV.pins[key].version, DEV.pins[key].hashes) == (pin.version, pin.hashes), key


def test_torch_pypi_lock_agrees_with_the_runtime_lock_on_torchs_own_requirements() -> None:
    runtime = versions(RUNTIME)
    shared = {name: found for name, found in versions(TORCH_PYPI).items() if name in runtime}
    assert {"filelock", "sympy", "networkx", "jinja2", "fsspec"} <= set(shared)
    assert all(found <= runtime[name] for name, found in shared.items()), shared


@pytest.mark.parametrize(("group", "lock"), [("project", RUNTIME), ("dev", DEV)])
def test_locked_versions_satisfy_pyproject(group: str, lock: Lock) -> None:
    specs = PYPROJECT["project"]["dependencies"] if group == "project" else PYPROJECT["dependency-groups"]["dev"]
    locked = versions(lock)
    for spec in specs:
        requirement = Requirement(spec)
        if requirement.name == "torch":
            continue  # its own locks, checked above
        found = locked.get(canonicalize_name(requirement.name))
        assert found, f"{requirement.name} (pyproject.toml) is not in the lock: run `make lock`"
        assert all(version in requirement.specifier for version in found), f"{requirement}: locked {found}"


def test_uv_reads_the_cpu_builds_requirements_for_torch() -> None:
    """[tool.uv.dependency-metadata] stands in for torch's metadata when the locks are compiled."""
    (declared,) = PYPROJECT["tool"]["uv"]["dependency-metadata"]
    assert declared["name"] == "torch"
    assert declared["version"] == f"{TORCH_PIN.specifier}".removeprefix("==")
    installed = importlib.metadata.version("torch")
    assert installed.split("+")[0] == declared["version"]
    # Requirements without a marker: the CPU build has no others; PyPI's adds CUDA libraries, all marked.
    requires = [Requirement(spec) for spec in importlib.metadata.requires("torch") or []]
    unmarked = {str(requirement) for requirement in requires if requirement.marker is None}
    assert unmarked == {str(Requirement(spec)) for spec in declared["requires-dist"]}


def _recipe(target: str) -> str:
    makefile = (REPO / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n|.*\\\n)+)", makefile, re.MULTILINE)
    assert match, f"no recipe for {target} in the Makefile"
    return match.group(1)


def test_make_installs_torchs_lock_alone_then_the_others_without_an_extra_index() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert f"TORCH_CPU_INDEX := {TORCH_CPU_INDEX}\n" in makefile
    assert "--extra-index-url" not in makefile
    assert "--find-links" not in makefile
    runtime = _recipe("$(VENV)/.runtime-$(PY_VERSION)")
    installs = re.findall(r"\$\(PIP\) install [^\n]*?-r (requirements/[\w$-]+\.lock)", runtime)
    assert installs == ["requirements/torch-$$torch.lock", "requirements/runtime.lock"]
    assert runtime.count("--require-hashes --no-deps") == 2
    dev = _recipe("$(VENV)/.dev-$(PY_VERSION)")
    assert "--require-hashes --no-deps -r requirements/dev.lock" in dev
