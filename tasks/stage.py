"""What every stage's `main()` shares: exit codes, one-line errors and atomic output writes."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

# Distinct exit codes let the orchestrator tell deterministic failures (never retried) from
# transient ones (anything else). 65 is sysexits' EX_DATAERR.
EXIT_BAD_INPUT = 65
EXIT_GATE_REFUSED = 66


class InputError(Exception):
    """Bad data or params. The message is one line naming the file, column or key and the problem."""


class GateRefused(Exception):
    """A gate's verdict forbids this stage from running. The message says why and how to override."""


def run_stage(name: str, main: Callable[[], None]) -> NoReturn:
    """Run a stage's main(); report an InputError or a gate refusal as one line, without a traceback."""
    try:
        main()
    except InputError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except GateRefused as refusal:
        print(f"{name}: refused: {refusal}", file=sys.stderr)
        sys.exit(EXIT_GATE_REFUSED)
    sys.exit(0)


def require_under(value: str, directory: Path, key: str, how: str) -> Path:
    """A params path must sit under a directory the stage declares as a DVC dependency.

    A file elsewhere could change without DVC noticing, so it is refused with `how` to fix it.
    """
    path = PurePosixPath(value)
    if (
        "://" in value
        or path.is_absolute()
        or ".." in path.parts
        or path.parts[: len(directory.parts)] != directory.parts
    ):
        raise InputError(
            f"params.yaml: {key}: '{value}' is not a file under {directory}/, so DVC would not see it change; {how}"
        )
    return Path(value)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds.

    A crash or kill mid-write therefore never leaves a partial output behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """Write JSON with sorted keys and a trailing newline, so equal content means equal bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
