"""What every stage's `main()` shares: exit codes, one-line errors and atomic output writes."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

# Distinct exit codes let the orchestrator tell a deterministic failure (never retried)
# from a transient one. 65 is sysexits' EX_DATAERR.
EXIT_BAD_INPUT = 65


class InputError(Exception):
    """Bad data or params. The message is one line naming the file, column or key and the problem."""


def run_stage(name: str, main: Callable[[], None]) -> NoReturn:
    """Run a stage's main(); report an InputError as one line on stderr, without a traceback."""
    try:
        main()
    except InputError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(0)


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
