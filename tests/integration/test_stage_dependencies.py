"""Editing one module reruns exactly the stages that execute it, as `dvc status` reports, and an edit that
leaves a stage's outputs the same bytes reruns nothing downstream of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, STAGES, ran, run
from tests.test_config_agree import executed_modules

pytestmark = pytest.mark.integration

MODULES = sorted({module for stage in STAGES for module in executed_modules(stage)})


def _changed_stages(workspace: Path) -> set[str]:
    return set(json.loads(run(workspace, "dvc", "status", "--json")))


def test_a_comment_in_any_module_reruns_exactly_the_stages_that_execute_it(built_copy: Path) -> None:
    assert _changed_stages(built_copy) == set()
    for module in MODULES:
        path = built_copy / module
        original = path.read_bytes()
        path.write_bytes(original + b"\n# a comment changes no behaviour\n")
        try:
            expected = {stage for stage in STAGES if module in executed_modules(stage)}
            assert _changed_stages(built_copy) == expected, module
        finally:
            path.write_bytes(original)
    assert _changed_stages(built_copy) == set()


def test_an_edit_to_etl_reruns_etl_alone_since_its_outputs_are_the_same_bytes(built_copy: Path) -> None:
    before = yaml.safe_load((built_copy / "dvc.lock").read_text())["stages"]
    etl = built_copy / "tasks/etl.py"
    etl.write_text(etl.read_text() + "\n# a comment changes no behaviour\n")
    assert _changed_stages(built_copy) == {"etl"}

    output = run(built_copy, "dvc", "repro")
    assert ran(output) == ["etl"]
    after = yaml.safe_load((built_copy / "dvc.lock").read_text())["stages"]
    assert {stage for stage in STAGES if after[stage] != before[stage]} == {"etl"}
    assert after["etl"]["outs"] == before["etl"]["outs"]  # the same bytes, so nothing downstream changed
    assert _changed_stages(built_copy) == set()


def test_the_docs_name_the_stages_each_shared_module_reruns() -> None:
    """The table in docs/architecture.md ("What reruns when you edit a module") is the import graph's answer."""
    page = (REPO / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| `([\w/]+\.py)` \| ([^|]+) \|$", page, flags=re.MULTILINE)
    documented = {module: set(re.findall(r"\w+", stages)) for module, stages in rows}
    shared = {module for module in MODULES if sum(module in executed_modules(stage) for stage in STAGES) > 1}
    assert set(documented) == shared
    for module in shared:
        expected = {stage for stage in STAGES if module in executed_modules(stage)}
        assert documented[module] == expected, module
