"""The README stays short and its links resolve; the parameters page lists every field of the params model."""

from __future__ import annotations

import importlib.util
import re
import sys
from types import ModuleType

from pydantic import BaseModel

from tasks.params import Params
from tests.conftest import REPO

README = REPO / "README.md"
# [text](target): a relative link is neither a URL (scheme:) nor an anchor on the same page.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("docs_hooks", module)
    spec.loader.exec_module(module)
    return module


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _leaf_keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_readme_is_at_most_200_lines() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


def test_every_relative_link_in_the_readme_points_at_a_file() -> None:
    targets = [t for t in LINK.findall(README.read_text(encoding="utf-8")) if not re.match(r"^[a-z]+:|^#", t)]
    assert targets, "the README links into docs/"
    missing = [t for t in targets if not (REPO / t.split("#")[0]).is_file()]
    assert missing == []


def test_the_parameters_table_has_every_field_of_the_params_model() -> None:
    hooks = _hooks()
    table = hooks.parameters_table()
    keys = _leaf_keys(Params)
    assert {row.key for row in hooks.parameter_rows()} == keys
    for key in keys:
        assert f"| `{key}` |" in table, key
    assert "`tune.n_trials` | `int` | `20` | > 0 |" in table  # type, default and constraint from the model
    assert hooks.MARKER in (REPO / "docs" / "parameters.md").read_text(encoding="utf-8")
