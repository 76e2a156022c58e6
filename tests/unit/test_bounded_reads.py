"""Bundles and archives handed to the ledger are read within a size limit, and only from regular files:
a device such as /dev/zero, a FIFO or a huge file is refused in one line naming it, never read whole.

Devices are made with mknod in a temporary folder (char 1,5 is the kernel's zero device), never the real
/dev paths."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from lineage import archive, bundle
from lineage.archive import ArchiveError, verify_archive
from lineage.bundle import BundleError, read_bundle
from tests.conftest import VENV_BIN


def _zero_device(folder: Path, name: str) -> Path:
    path = folder / name
    os.mknod(path, 0o444 | 0o020000, os.makedev(1, 5))  # S_IFCHR: reads as endless zero bytes
    return path


def _fifo(folder: Path, name: str) -> Path:
    path = folder / name
    os.mkfifo(path)
    return path


def _sparse(folder: Path, name: str, size: int) -> Path:
    """A regular file of `size` zero bytes that takes no disk space."""
    path = folder / name
    with path.open("wb") as file:
        file.truncate(size)
    return path


def _finishes(call: Callable[[], object]) -> BaseException:
    """The exception `call` raises, asserting it returns within 30 s (a FIFO would block an open forever)."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as error:
            raised.append(error)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "still reading after 30 s"
    assert raised, "returned instead of refusing"
    return raised[0]


READERS: dict[str, tuple[Callable[[Path], object], type[Exception]]] = {
    "bundle": (read_bundle, BundleError),
    "archive": (verify_archive, ArchiveError),
}


@pytest.mark.parametrize(("kind", "make"), [("a character device", _zero_device), ("a FIFO", _fifo)])
@pytest.mark.parametrize(
    ("what", "name"), [("bundle", "zero.bundle"), ("bundle", "zero.json"), ("archive", "zero.jsonl"),
                       ("archive", "zero.jsonl.gz")],
)  # fmt: skip
def test_a_device_or_a_fifo_is_refused_unread(
    tmp_path: Path, kind: str, make: Callable[[Path, str], Path], what: str, name: str
) -> None:
    path = make(tmp_path, name)
    reader, refusal = READERS[what]
    error = _finishes(lambda: reader(path))
    assert isinstance(error, refusal)
    assert str(error) == f"{path}: cannot read the {what} ({kind}, not a regular file)"


def _refused_within(call: Callable[[], object], memory: float) -> str:
    """The message `call` refuses with, asserting it allocated less than `memory` bytes at its peak."""
    tracemalloc.start()
    try:
        with pytest.raises((BundleError, ArchiveError)) as refused:
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < memory
    return str(refused.value)


def test_a_bundle_larger_than_the_limit_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    huge = _sparse(tmp_path, "huge.bundle", 3 * bundle.MAX_BUNDLE_BYTES)
    said = _refused_within(lambda: read_bundle(huge), 1.5 * bundle.MAX_BUNDLE_BYTES)
    assert said == f"{huge}: cannot read the bundle (larger than the {bundle.MAX_BUNDLE_BYTES:,}-byte limit)"


def test_the_bundle_limit_is_a_parameter(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"format": "lineage-bundle", "padding": "x" * 2000}))
    with pytest.raises(BundleError, match=r"b.json: cannot read the bundle \(larger than the 1,000-byte limit\)$"):
        read_bundle(path, limit=1000)
    # At the limit it is read, and refused for what it holds instead.
    with pytest.raises(BundleError, match="bundle format version None"):
        read_bundle(path, limit=path.stat().st_size)


def test_an_archive_with_no_newline_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    huge = _sparse(tmp_path, "huge.jsonl", 3 * archive.MAX_LINE_CHARS)
    # A character is up to 4 bytes in str's buffer and the decoder holds the bytes too; not the whole file.
    said = _refused_within(lambda: verify_archive(huge), 2.5 * archive.MAX_LINE_CHARS)
    assert said == f"{huge}: line 1 is longer than the {archive.MAX_LINE_CHARS:,}-character limit"


def test_a_long_record_line_inside_a_gzip_archive_names_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "MAX_LINE_CHARS", 1000)
    header = {"format": archive.FORMAT, "version": archive.VERSION, "columns": archive.COLUMNS,
              "anchor": {"record_count": 2, "head_hash": "0" * 64}}  # fmt: skip
    path = tmp_path / "long.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as out:
        out.write(json.dumps(header) + "\n" + "[" + "1," * 2000 + "1]\n")
    with pytest.raises(ArchiveError) as refused:
        verify_archive(path)
    assert str(refused.value) == f"{path}: line 2 is longer than the 1,000-character limit"


@pytest.mark.parametrize(
    ("argv", "what"),
    [(["import", "bundle"], "cannot read the bundle"), (["verify", "--archive"], "cannot read the archive")],
)
def test_the_command_refuses_a_device_in_one_line(tmp_path: Path, argv: list[str], what: str) -> None:
    device = _zero_device(tmp_path, "zero")
    env = dict(os.environ, LINEAGE_DB_URL=f"sqlite:///{tmp_path / 'lineage.db'}")
    done = subprocess.run(
        [VENV_BIN / "lineage", *argv, str(device)],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [f"lineage: error: {device}: {what} (a character device, not a regular file)"]
