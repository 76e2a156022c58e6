"""Safe loading and no code execution from data: checked on the source of every module we ship.

- No eval/exec, os.system, shell=True, pickle/marshal loads or yaml.load (params are parsed with
  yaml.safe_load into a strict pydantic model, so a value can never run).
- Every torch.load passes weights_only=True; every torch.load or joblib.load (an unpickle) sits in a
  function that first calls verify_against_lock or verify_bytes, so nothing loads before its md5 matches
  dvc.lock or the ledger.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ["tasks", "flows", "lineage", "serving", "deployments", "docker", "bench"]
FORBIDDEN_CALLS = {"eval", "exec", "os.system", "pickle.load", "pickle.loads", "marshal.loads", "yaml.load"}
UNPICKLERS = {"torch.load", "joblib.load"}
VERIFIERS = ("verify_against_lock", "verify_bytes")


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _problems(source: str, filename: str) -> list[str]:
    tree = ast.parse(source, filename)
    problems: list[str] = []
    for function in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))]:
        calls = [n for stmt in function.body for n in ast.walk(stmt) if isinstance(n, ast.Call)]
        calls.sort(key=lambda call: (call.lineno, call.col_offset))
        verified_at = min((c.lineno for c in calls if _name(c.func).endswith(VERIFIERS)), default=None)
        for call in calls:
            name, where = _name(call.func), f"{filename}:{call.lineno}"
            if name in FORBIDDEN_CALLS:
                problems.append(f"{where}: {name}()")
            if any(k.arg == "shell" and getattr(k.value, "value", False) is True for k in call.keywords):
                problems.append(f"{where}: shell=True")
            if name == "torch.load" and not any(
                k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in call.keywords
            ):
                problems.append(f"{where}: torch.load without weights_only=True")
            unverified = verified_at is None or verified_at > call.lineno
            if name in UNPICKLERS and not isinstance(function, ast.Module) and unverified:
                problems.append(f"{where}: {name} before verify_against_lock")
    return sorted(set(problems))


def test_the_checker_catches_each_unsafe_pattern() -> None:
    unsafe = (
        "import torch, joblib, yaml, subprocess\n"
        "def f(p):\n"
        "    joblib.load(p)\n"
        "    verify_against_lock(p)\n"
        "    torch.load(p)\n"
        "    yaml.load(p)\n"
        "    eval(p)\n"
        "    subprocess.run(p, shell=True)\n"
    )
    assert _problems(unsafe, "x.py") == [
        "x.py:3: joblib.load before verify_against_lock",
        "x.py:5: torch.load without weights_only=True",
        "x.py:6: yaml.load()",
        "x.py:7: eval()",
        "x.py:8: shell=True",
    ]
    safe = "def g(p):\n    verify_against_lock(p)\n    torch.load(p, weights_only=True)\n    model.eval()\n"
    assert _problems(safe, "y.py") == []


@pytest.mark.parametrize("package", PACKAGES)
def test_shipped_code_loads_nothing_unverified_and_runs_no_data(package: str) -> None:
    problems = []
    for module in sorted((REPO / package).rglob("*.py")):
        problems += _problems(module.read_text(encoding="utf-8"), str(module.relative_to(REPO)))
    assert problems == []


def test_the_loaders_are_where_this_test_looks() -> None:
    # If the unpickling moved, this test would pass vacuously: pin where the loads are.
    sources = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "tasks").glob("*.py")}
    assert "joblib.load(" in sources["inference.py"]
    assert "torch.load(" in sources["model.py"]
    assert Path(REPO / "params.yaml").is_file()
