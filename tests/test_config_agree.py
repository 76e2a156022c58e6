"""Smoke test: dvc.yaml, params.yaml and prefect.yaml load and agree with the code."""

from __future__ import annotations

import functools
import re
import tomllib
from typing import Any

import grimp
import pytest
import yaml

from tasks.params import load_params
from tasks.tune_settings import TRIAL_RUNNERS
from tests.conftest import REPO

STAGE_NAMES = ["etl", "drift_check", "preprocess", "tune", "inference", "fairness"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# Stages that load code through an entry-point group, not an import (tasks/tune.py, `_installed_runner`).
LOADS_ENTRY_POINTS = {"tune": TRIAL_RUNNERS}


def _stages() -> dict[str, dict[str, Any]]:
    stages: dict[str, dict[str, Any]] = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return stages


@functools.cache
def executed_modules(stage: str) -> frozenset[str]:
    """The project's .py files `python -m tasks.<stage>` executes: the stage module, everything it imports,
    directly or through anything else (function-level imports included), the modules of the entry points
    it loads, and the `__init__.py` of each of their packages."""
    graph = grimp.build_graph("common", "tasks", "flows", "lineage", "gates", cache_dir=None)
    roots = {f"tasks.{stage}"}
    group = LOADS_ENTRY_POINTS.get(stage)
    if group:
        roots |= {value.split(":")[0] for value in PYPROJECT["project"]["entry-points"][group].values()}
    modules = roots | {upstream for root in roots for upstream in graph.find_upstream_modules(root)}
    packages = {module.split(".")[0] for module in modules}
    paths = {module.replace(".", "/") for module in modules}
    files = {f"{path}/__init__.py" if (REPO / path).is_dir() else f"{path}.py" for path in paths}  # a package: its init
    return frozenset(files | {f"{package}/__init__.py" for package in packages})


def test_stage_names_are_the_fixed_ones_in_dvc_s_order() -> None:
    from flows.dvc_lock import stage_order

    assert list(_stages()) == STAGE_NAMES
    assert stage_order(REPO) == STAGE_NAMES  # DVC's own dependency order is the order they are written in


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_stage_declares_exactly_the_modules_it_executes(stage: str) -> None:
    spec = _stages()[stage]
    assert spec["cmd"] == f"python -m tasks.{stage}"
    declared = {dep for dep in spec["deps"] if dep.endswith(".py")}
    executed = executed_modules(stage)
    assert executed - declared == set(), f"{stage} executes undeclared modules"  # DVC would miss their changes
    assert declared - executed == set(), f"{stage} declares modules it never executes"  # needless reruns


def test_only_the_tune_stage_loads_entry_points() -> None:
    """The dependency check above follows imports; an entry point it follows only where it is told to."""
    loaders = {path.stem for path in (REPO / "tasks").glob("*.py") if "entry_points(" in path.read_text()}
    assert loaders == set(LOADS_ENTRY_POINTS)
    assert PYPROJECT["project"]["entry-points"][TRIAL_RUNNERS] == {"prefect": "flows.trial_runner:prefect_runner"}


def test_import_contracts_forbid_what_the_design_forbids() -> None:
    """`lint-imports` (make lint) enforces these; here, that nobody weakens them."""
    every = PYPROJECT["tool"]["importlinter"]["contracts"]
    contracts = {c["source_modules"][0]: c for c in every if c["type"] == "forbidden"}
    layered = {c["layers"][0].split(".")[0]: c["layers"] for c in every if c["type"] == "layers"}
    assert set(layered) == {"flows", "lineage"}
    assert layered["flows"][0] == "flows.score"
    assert layered["flows"][-1] == "flows.dvc_lock | flows.retry"
    assert layered["lineage"][0] == "lineage.cli"
    assert layered["lineage"][-1] == "lineage.entities | lineage.errors"
    for package, layers in layered.items():
        assert _unlayered(package, layers) == set(), f"a module of {package}/ in none of its layers"
    assert contracts["lineage.evidence"]["forbidden_modules"] == ["lineage.console.app"]
    assert set(contracts["tasks"]["forbidden_modules"]) == {"flows", "lineage", "serving", "prefect"}
    assert set(contracts["lineage"]["forbidden_modules"]) == {"flows", "tasks", "serving", "prefect"}
    assert set(contracts["gates"]["forbidden_modules"]) == {"flows", "tasks", "lineage", "serving", "prefect"}
    assert set(contracts["serving"]["forbidden_modules"]) == {"flows", "prefect"}
    assert set(contracts["common"]["forbidden_modules"]) == {"flows", "tasks", "lineage", "gates", "serving", "prefect"}
    assert not [c for c in every if c.get("allow_indirect_imports") or c.get("ignore_imports")]
    assert PYPROJECT["tool"]["importlinter"]["include_external_packages"] is True


def _unlayered(package: str, layers: list[str]) -> set[str]:
    """The modules of `package` that no layer names, by itself or by a package holding it: each module has its place,
    so a new one is placed on purpose (a module no layer names is free to import anything)."""
    named = {module.strip() for layer in layers for module in layer.split("|")}
    found = {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for path in (REPO / package).rglob("*.py")
    }
    return {
        module
        for module in found - {package}
        if not any(module == layer or module.startswith(f"{layer}.") for layer in named)
        and not any(layer.startswith(f"{module}.") for layer in named)  # a package some of whose modules are named
    }


def test_no_param_value_reaches_a_command() -> None:
    """Params are data: no DVC templating (`${...}`) anywhere in dvc.yaml, so no value becomes a command."""
    assert "${" not in (REPO / "dvc.yaml").read_text()


@pytest.mark.parametrize("stage", list(_stages()))
def test_stage_params_exist_in_params_yaml(stage: str) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for key in _stages()[stage].get("params", []):
        node = params
        for part in key.split("."):
            assert part in node, f"{stage}: params key {key} is not in params.yaml"
            node = node[part]


def test_params_yaml_validates() -> None:
    load_params(REPO / "params.yaml")


def test_prefect_yaml_deployments_point_at_the_flow_and_the_bootstrap_pools() -> None:
    import inspect

    from deployments.bootstrap import ensure_work_pools
    from flows.pipeline import lineage_pipeline
    from flows.reproduce import reproduce_model
    from flows.score import score
    from flows.tuning import tune_trial

    project = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {deployment["name"]: deployment for deployment in project["deployments"]}
    assert set(deployments) == {"dev", "weekly", "on-demand", "workers", "score", "score-docker"}
    pools = inspect.signature(ensure_work_pools).parameters
    for name in ("dev", "on-demand", "workers", "score"):
        assert deployments[name]["work_pool"]["name"] == pools["process_pool"].default
    for name in ("weekly", "score-docker"):
        assert deployments[name]["work_pool"]["name"] == pools["docker_pool"].default
    flows: dict[str, Any] = {
        "dev": lineage_pipeline,
        "weekly": lineage_pipeline,
        "on-demand": reproduce_model,
        "workers": tune_trial,
        "score": score,
        "score-docker": score,
    }
    for name, deployment in deployments.items():
        path, function = deployment["entrypoint"].split(":")
        assert (REPO / path).is_file()
        assert function == flows[name].fn.__name__
        assert set(deployment.get("parameters") or {}) <= set(inspect.signature(flows[name].fn).parameters)
    assert lineage_pipeline.name == "lineage-pipeline"
    assert reproduce_model.name == "reproduce"
    assert tune_trial.name == "tune-trial"
    assert score.name == "score"
    # Docker steps only in weekly; no project-wide build or push for dev to inherit
    assert project["build"] is None
    assert project["push"] is None
    for name in ("dev", "on-demand", "workers", "score", "score-docker"):
        assert "build" not in deployments[name]
        assert "push" not in deployments[name]
    steps = [next(iter(step)) for step in deployments["weekly"]["build"] + deployments["weekly"]["push"]]
    assert "prefect_docker.deployments.steps.build_docker_image" in steps
    assert "prefect_docker.deployments.steps.push_docker_image" in steps
    weekly_params = deployments["weekly"]["parameters"]
    assert set(weekly_params) <= set(inspect.signature(lineage_pipeline.fn).parameters)
    assert weekly_params["remote"] == "s3"
    assert weekly_params["lineage_db_block"]  # the container's ledger must outlive it


def test_tests_import_nothing_from_bench() -> None:
    """Fixtures live under tests/; the benchmarks import them from there, never the other way round."""
    importing = re.compile(r"^\s*(from|import) bench\b", re.MULTILINE)
    found = [
        str(path.relative_to(REPO)) for path in (REPO / "tests").rglob("*.py") if importing.search(path.read_text())
    ]
    assert found == []
