"""Typed params.yaml: one pydantic model; an unknown key, a wrong type or a bad value is an error."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.stage import InputError

PARAMS_FILE = Path("params.yaml")


class _Strict(BaseModel):
    # strict: YAML already gives typed values, so "5" for an int or "false" for a bool is a
    # mistake to report, not to coerce (argparse's type=bool turned "false" into True).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DriftInjection(_Strict):
    """Distribution drift the synthetic generator injects, for exercising the drift gate."""

    # first day with drift; null injects none. Lax so a quoted "2011-09-01" also reads as a date.
    start: Annotated[dt.date | None, Field(strict=False)] = None
    price_factor: Annotated[float, Field(gt=0)] = 1.5
    non_uk_share: Annotated[float, Field(ge=0, le=1)] = 0.35


class DataParams(_Strict):
    source: Annotated[str, Field(min_length=1)] = "synthetic"  # "synthetic" or a file under data/raw/
    rows: Annotated[int, Field(gt=0)] = 541_909  # synthetic size
    stockcode: str = ""  # "" keeps every product
    drift: DriftInjection = DriftInjection()


class Params(_Strict):
    seed: Annotated[int, Field(ge=0)]
    data: DataParams


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; raise InputError with one line naming the bad key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{path}: not valid YAML ({first_line})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping of keys at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise InputError(f"{path}: {_describe(error)}") from None


def _describe(error: ValidationError) -> str:
    """The first problem as `key.path: problem (got value)`; the count of others, if any."""
    problems = error.errors()
    first = problems[0]
    key = ".".join(str(part) for part in first["loc"]) or "<top level>"
    if first["type"] == "extra_forbidden":
        text = f"{key}: unknown key"
    elif first["type"] == "missing":
        text = f"{key}: missing key"
    else:
        text = f"{key}: {first['msg']} (got {first['input']!r})"
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more problem(s))"
    return text
