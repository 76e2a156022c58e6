"""What every stage's `main()` shares: exit codes, one-line errors, atomic output writes, md5 checks.

Every stage depends on this module, so a change here reruns the whole pipeline: keep it small and stable.
Names only one stage uses live in that stage's module.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

import yaml

from common import files
from common.files import TargetError

# Distinct exit codes let the orchestrator tell deterministic failures (never retried) from
# transient ones (anything else). 65 is sysexits' EX_DATAERR.
EXIT_BAD_INPUT = 65
EXIT_GATE_REFUSED = 66
LOCK_FILE = Path("dvc.lock")


class InputError(Exception):
    """Bad data or params. The message is one line naming the file, column or key and the problem."""


class GateRefused(Exception):
    """A gate's verdict forbids this stage from running. The message says why and how to override."""


def run_stage(name: str, main: Callable[[], None]) -> NoReturn:
    """Run a stage's main(); report an InputError or a gate refusal as one line, without a traceback."""
    code = 0
    try:
        main()
    except InputError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except GateRefused as refusal:
        print(f"{name}: refused: {refusal}", file=sys.stderr)
        code = EXIT_GATE_REFUSED
    # Exit without the interpreter's teardown: there, a Parquet reader thread of pyarrow's can abort
    # the process now and then (SIGABRT, "terminate called without an active exception",
    # apache/arrow#34314), which made a finished or rejected stage look like a crash to retry. Every
    # output is closed and in place by now, and nothing else needs an exit handler.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
    """Yield a scratch path for the output `path` (its folder created); its bytes become `path`'s only if the
    block succeeds (common.files.atomic_path: renamed over a file, written into a device or FIFO, never
    renamed over one). A crash or kill mid-write never leaves a partial output behind; a target that can
    take no file (a folder, a socket) is an InputError before any work."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with files.atomic_path(target) as scratch:
            yield scratch
    except TargetError as error:
        raise InputError(str(error)) from None


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """Write JSON with sorted keys and a trailing newline, so equal content means equal bytes."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def file_md5(path: Path) -> str:
    """The md5 DVC 3 records for a file: of its raw bytes."""
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_against_lock(path: Path, lock: Path = LOCK_FILE) -> None:
    """Refuse a file whose md5 differs from the one dvc.lock recorded when DVC produced it.

    Called before unpickling or torch-loading anything: a tampered or stale file never loads.
    """
    try:
        stages = yaml.safe_load(lock.read_text(encoding="utf-8"))["stages"]
        recorded = {out["path"]: out["md5"] for stage in stages.values() for out in stage.get("outs", [])}
    except FileNotFoundError:
        raise InputError(f"{lock}: not found, so {path} has no recorded md5 (run `dvc repro`)") from None
    except (yaml.YAMLError, KeyError, TypeError, AttributeError):
        raise InputError(f"{lock}: corrupted, cannot read the recorded md5 of {path}") from None
    if str(path) not in recorded:
        raise InputError(f"{lock}: no recorded md5 for {path} (run `dvc repro`)")
    if not path.is_file():
        raise InputError(f"{path}: missing (run `dvc pull` or `dvc repro`)")
    actual = file_md5(path)
    if actual != recorded[str(path)]:
        raise InputError(
            f"{path}: md5 {actual} differs from {recorded[str(path)]} recorded in {lock}; refusing to load it"
        )
