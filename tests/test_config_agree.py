"""Smoke test: dvc.yaml, params.yaml and prefect.yaml load and agree with the code."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.params import load_params
from tests.conftest import REPO

STAGE_NAMES = ["etl", "drift_check", "preprocess", "tune", "inference", "fairness"]


def _stages() -> dict[str, dict[str, Any]]:
    stages: dict[str, dict[str, Any]] = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return stages


def _local_imports(module: Path) -> set[Path]:
    """The tasks/*.py files a module imports, followed transitively."""
    found: set[Path] = set()
    todo = [module]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                path = REPO / (name.replace(".", "/") + ".py")
                if name.startswith("tasks.") and path.exists() and path not in found:
                    found.add(path)
                    todo.append(path)
    return found


def test_stage_names_are_the_fixed_ones_in_order() -> None:
    names = list(_stages())
    assert names == STAGE_NAMES[: len(names)]


@pytest.mark.parametrize("stage", list(_stages()))
def test_stage_runs_its_module_and_declares_every_module_it_imports(stage: str) -> None:
    spec = _stages()[stage]
    assert spec["cmd"] == f"python -m tasks.{stage}"
    module = REPO / "tasks" / f"{stage}.py"
    deps = {REPO / dep for dep in spec["deps"]}
    assert module in deps
    package = REPO / "tasks" / "__init__.py"  # runs before every stage: it fixes the hash seed
    missing = (_local_imports(module) | {package}) - deps
    assert not missing, f"{stage} imports undeclared modules: {sorted(str(p.relative_to(REPO)) for p in missing)}"


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
    from flows.tuning import tune_trial

    project = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployments = {deployment["name"]: deployment for deployment in project["deployments"]}
    assert set(deployments) == {"dev", "weekly", "on-demand", "workers"}
    pools = inspect.signature(ensure_work_pools).parameters
    for name in ("dev", "on-demand", "workers"):
        assert deployments[name]["work_pool"]["name"] == pools["process_pool"].default
    assert deployments["weekly"]["work_pool"]["name"] == pools["docker_pool"].default
    flows: dict[str, Any] = {
        "dev": lineage_pipeline,
        "weekly": lineage_pipeline,
        "on-demand": reproduce_model,
        "workers": tune_trial,
    }
    for name, deployment in deployments.items():
        path, function = deployment["entrypoint"].split(":")
        assert (REPO / path).is_file()
        assert function == flows[name].fn.__name__
        assert set(deployment.get("parameters") or {}) <= set(inspect.signature(flows[name].fn).parameters)
    assert lineage_pipeline.name == "lineage-pipeline"
    assert reproduce_model.name == "reproduce"
    assert tune_trial.name == "tune-trial"
    # Docker steps only in weekly; no project-wide build or push for dev to inherit
    assert project["build"] is None
    assert project["push"] is None
    for name in ("dev", "on-demand", "workers"):
        assert "build" not in deployments[name]
        assert "push" not in deployments[name]
    steps = [next(iter(step)) for step in deployments["weekly"]["build"] + deployments["weekly"]["push"]]
    assert "prefect_docker.deployments.steps.build_docker_image" in steps
    assert "prefect_docker.deployments.steps.push_docker_image" in steps
    weekly_params = deployments["weekly"]["parameters"]
    assert set(weekly_params) <= set(inspect.signature(lineage_pipeline.fn).parameters)
    assert weekly_params["remote"] == "s3"
    assert weekly_params["lineage_db_block"]  # the container's ledger must outlive it


def test_no_stage_module_imports_prefect() -> None:
    for module in (REPO / "tasks").glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                assert not any(n.split(".")[0] == "prefect" for n in names), module
