"""mkdocs hook: the parameters page's table, generated from the typed params model (tasks/params.py).

Every field of `tasks.params.Params`, recursively, becomes a row: dotted key, type, default (from the
model), constraint (from the field's annotations) and description (the field's `description`, else the
comments written beside or just above it in tasks/params.py). So the page cannot disagree with the code.
"""

from __future__ import annotations

import ast
import io
import json
import re
import sys
import tokenize
import types
import typing
from pathlib import Path
from typing import Any, NamedTuple

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pydantic import BaseModel  # noqa: E402
from pydantic.fields import FieldInfo  # noqa: E402
from pydantic_core import PydanticUndefined  # noqa: E402

from tasks.params import Params  # noqa: E402

MARKER = "<!-- parameters-table -->"
PARAMS_SOURCE = REPO / "tasks" / "params.py"
PARAMS_YAML = REPO / "params.yaml"
_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}


class Row(NamedTuple):
    key: str
    type: str
    default: str
    constraint: str
    description: str


def field_comments(source: Path = PARAMS_SOURCE) -> dict[tuple[str, str], str]:
    """(class name, field name) -> the comment block just above the field and its trailing comment."""
    text = source.read_text(encoding="utf-8")
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    lines = text.splitlines()
    found: dict[tuple[str, str], str] = {}
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
                continue
            above: list[str] = []
            line = statement.lineno - 1
            while line >= 1 and line in comments and lines[line - 1].lstrip().startswith("#"):
                above.insert(0, comments[line])
                line -= 1
            trailing = [comments[n] for n in range(statement.lineno, (statement.end_lineno or statement.lineno) + 1)
                        if n in comments and not lines[n - 1].lstrip().startswith("#")]  # fmt: skip
            found[(node.name, statement.target.id)] = " ".join(above + trailing)
    return found


def yaml_comments(source: Path = PARAMS_YAML) -> dict[str, str]:
    """Dotted key -> the comment beside it in params.yaml (with comment-only lines that continue it)."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the mapping keys enclosing the current line
    last = ""
    for line in source.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("#"):
            if last and indent > 0:  # a continuation of the comment above
                found[last] = f"{found.get(last, '')} {stripped.lstrip('#').strip()}".strip()
            continue
        match = re.match(r"([A-Za-z_]\w*):(.*)$", stripped)
        if not match:
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(1)))
        last = ".".join(key for _, key in stack)
        comment = match.group(2).partition(" #")[2].strip()
        if comment:
            found[last] = comment
    return found


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin is typing.Literal:
        return " or ".join(json.dumps(arg) for arg in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(arg) for arg in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _bounds(metadata: list[Any], text: bool = False) -> list[str]:
    found = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            found += _bounds(item.metadata, text)
            continue
        for name, symbol in _BOUNDS.items():
            if getattr(item, name, None) is not None:
                found.append(f"{symbol} {getattr(item, name)}")
        unit = "character(s)" if text else "item(s)"
        if getattr(item, "min_length", None) is not None:
            found.append(f"at least {item.min_length} {unit}")
        if getattr(item, "max_length", None) is not None:
            found.append(f"at most {item.max_length} {unit}")
    return found


def _item_bounds(annotation: Any) -> list[str]:
    """Constraints on the items of a list (e.g. `list[Annotated[int, Field(gt=0)]]`)."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if typing.get_origin(item) is typing.Annotated:
            return [f"each {bound}" for bound in _bounds(list(item.__metadata__))]
    return []


def _default(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    return json.dumps(value, ensure_ascii=False, default=str)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def parameter_rows(model: type[BaseModel] = Params, prefix: str = "") -> list[Row]:
    """One row per leaf field of `model`, recursively, with its dotted key."""
    comments, yaml_notes = field_comments(), yaml_comments()
    rows: list[Row] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        nested = _submodel(field.annotation)
        if nested is not None:
            rows += parameter_rows(nested, f"{key}.")
            continue
        text = field.annotation is str
        constraint = ", ".join(_bounds(field.metadata, text) + _item_bounds(field.annotation))
        description = field.description or comments.get((model.__name__, name)) or yaml_notes.get(key, "")
        rows.append(Row(key, _type_name(field.annotation), _default(field.default), constraint, description))
    return rows


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def parameters_table(model: type[BaseModel] = Params) -> str:
    """The markdown table of every parameter."""
    lines = ["| key | type | default | constraint | description |", "| --- | --- | --- | --- | --- |"]
    for row in parameter_rows(model):
        cells = [f"`{row.key}`", f"`{row.type}`", f"`{row.default}`", row.constraint, row.description]
        lines.append("| " + " | ".join(_escape(cell) for cell in cells) + " |")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs event: put the generated table where the parameters page holds the marker."""
    if MARKER in markdown:
        return markdown.replace(MARKER, parameters_table())
    return markdown
