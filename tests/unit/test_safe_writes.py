"""Output writes never rename over what is not a regular file (common.files): onto a character device or a
FIFO made here (never the machine's own), bundles, archives, stage outputs and `lineage export` write into
it and the node stays what it was; a folder, a socket or a link to nothing is refused in one line naming
it; a regular file is still replaced whole or not at all. And the check tests/conftest.py makes after
every run, that the machine's /dev/null is still a character device, fails the run when it is not."""

from __future__ import annotations

import gzip
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from common.files import TargetError, atomic_folder, atomic_path, output_target, write_atomic
from lineage.archive import ArchiveError, export
from lineage.bundle import BundleError, write_bundle
from lineage.evidence import EvidenceError, build
from lineage.store import LedgerStore
from tasks.stage import InputError, write_json
from tasks.stage import atomic_path as stage_atomic_path
from tests.conftest import REPO, VENV_BIN, record_two_weeks

NULL = os.makedev(1, 3)  # the numbers of /dev/null: a node of our own with them discards what it is given
FULL = os.makedev(1, 7)  # /dev/full's


def _node(path: Path, kind: int, device: int = NULL) -> Path:
    try:
        os.mknod(path, kind | 0o666, device)
    except PermissionError:
        pytest.skip("making a device node needs root (CAP_MKNOD)")
    return path


@pytest.fixture
def null(tmp_path: Path) -> Path:
    """A character device node like /dev/null, in a temporary folder."""
    return _node(tmp_path / "null", stat.S_IFCHR)


class Fifo:
    """A named pipe in a temporary folder and a thread reading everything written into it."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self.received = b""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self.path.open("rb") as pipe:  # blocks until a writer opens it
            self.received = pipe.read()

    def bytes(self) -> bytes:
        self._thread.join(30)
        assert not self._thread.is_alive(), "nothing opened the FIFO for writing and closed it"
        return self.received


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Fifo]:
    pipe = Fifo(tmp_path / "pipe")
    yield pipe
    if pipe._thread.is_alive():  # unblock the reader of a test that failed before writing
        with pipe.path.open("wb"):
            pass


@pytest.fixture
def full(tmp_path: Path) -> Path:
    """A character device like /dev/full: every write into it fails with ENOSPC, which shows that the bytes
    went into the device (a null device cannot show it)."""
    return _node(tmp_path / "full", stat.S_IFCHR, FULL)


def _still(path: Path, kind: int, device: int = NULL) -> None:
    found = os.lstat(path)
    assert stat.S_IFMT(found.st_mode) == kind, f"{path} is no longer what it was: mode {oct(found.st_mode)}"
    if kind == stat.S_IFCHR:
        assert found.st_rdev == device


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerStore]:
    root = tmp_path_factory.mktemp("safe-writes")
    store = LedgerStore(f"sqlite:///{root / 'lineage.db'}")
    record_two_weeks(store, root)
    yield store
    store.close()


# -- common.files ----------------------------------------------------------------------------------------


def test_a_device_is_written_into_and_stays_a_device(null: Path, full: Path, tmp_path: Path) -> None:
    write_atomic(null, b"discarded" * 1000)
    _still(null, stat.S_IFCHR)
    with pytest.raises(OSError, match="No space left on device"):  # the bytes went into the device itself
        write_atomic(full, b"refused")
    _still(full, stat.S_IFCHR, FULL)
    assert _leftovers(tmp_path) == []


def test_a_fifo_is_written_into_and_stays_a_fifo(fifo: Fifo, tmp_path: Path) -> None:
    with atomic_path(fifo.path) as scratch:
        assert scratch.parent != tmp_path  # no scratch file beside a device
        scratch.write_bytes(b"whole\n" * 10_000)
        assert fifo.received == b""  # nothing reaches it before the output is whole
    assert fifo.bytes() == b"whole\n" * 10_000
    _still(fifo.path, stat.S_IFIFO)
    assert not scratch.exists()


def _fail_halfway(writing: AbstractContextManager[Path], scratches: list[Path]) -> None:
    """Write half an output into the scratch file or folder `writing` yields, then fail."""
    with writing as scratch:
        scratches.append(scratch)
        (scratch / "half" if scratch.is_dir() else scratch).write_bytes(b"half")
        raise RuntimeError("half an output")


def _enter(writing: AbstractContextManager[Path]) -> None:
    with writing:
        pytest.fail("the block ran: the target should have been refused before any work")


def test_a_failed_write_sends_nothing_to_a_device_and_leaves_no_scratch(null: Path) -> None:
    scratches: list[Path] = []
    with pytest.raises(RuntimeError, match="half"):
        _fail_halfway(atomic_path(null), scratches)
    assert not scratches[0].exists()
    _still(null, stat.S_IFCHR)


def test_a_link_to_a_device_writes_into_the_device(null: Path, full: Path, tmp_path: Path) -> None:
    (tmp_path / "to-null").symlink_to(null)
    (tmp_path / "to-full").symlink_to(full)
    write_atomic(tmp_path / "to-null", b"through the link")
    with pytest.raises(OSError, match="No space left on device"):  # through the link into the device
        write_atomic(tmp_path / "to-full", b"through the link")
    for link, node, device in ((tmp_path / "to-null", null, NULL), (tmp_path / "to-full", full, FULL)):
        assert os.readlink(link) == str(node)
        _still(node, stat.S_IFCHR, device)


def test_a_regular_file_is_replaced_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="half"):
        _fail_halfway(atomic_path(target), [])
    assert target.read_text() == "old"
    with atomic_path(target) as scratch:
        scratch.write_text("new")
        assert target.read_text() == "old"  # a reader sees the old bytes until the new ones are whole
        assert scratch.parent == tmp_path  # beside it: the rename cannot cross file systems
    assert target.read_text() == "new"
    assert _leftovers(tmp_path) == []
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # a new file's mode, not mkstemp's 0600


def test_a_link_to_a_file_replaces_the_file_and_keeps_the_link(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert output_target(link) == (real, False)
    write_atomic(link, b"new")
    assert link.is_symlink()
    assert real.read_text() == "new"


@pytest.mark.parametrize("kind", ["folder", "socket", "dangling link", "link to a folder"])
def test_what_can_take_no_file_is_refused_in_one_line_before_any_work(kind: str, tmp_path: Path) -> None:
    target = tmp_path / "target"
    if kind == "folder":
        target.mkdir()
    elif kind == "socket":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(target))
        listener.close()  # the socket file stays
    elif kind == "dangling link":
        target.symlink_to(tmp_path / "nowhere")
    else:
        (tmp_path / "folder").mkdir()
        target.symlink_to(tmp_path / "folder")
    before = os.lstat(target)
    with pytest.raises(TargetError) as refused:
        _enter(atomic_path(target))
    message = str(refused.value)
    assert message.startswith(f"{target}")
    assert "\n" not in message
    assert {"folder": "is a folder", "socket": "is a socket", "dangling link": "which does not exist",
            "link to a folder": "is a folder"}[kind] in message  # fmt: skip
    assert os.lstat(target) == before
    assert _leftovers(tmp_path) == []


def test_a_folder_is_placed_whole_and_only_where_nothing_or_an_empty_folder_is(null: Path, tmp_path: Path) -> None:
    for target in (tmp_path / "new", tmp_path / "empty"):
        if target.name == "empty":
            target.mkdir()
        with atomic_folder(target) as scratch:
            (scratch / "a.txt").write_text("a")
            assert not (target / "a.txt").exists()
        assert (target / "a.txt").read_text() == "a"
    scratches: list[Path] = []
    with pytest.raises(RuntimeError, match="half"):
        _fail_halfway(atomic_folder(tmp_path / "failed"), scratches)
    assert not (tmp_path / "failed").exists()
    assert not scratches[0].exists()
    (tmp_path / "link").symlink_to(tmp_path / "empty-too")
    (tmp_path / "empty-too").mkdir()
    for target, said in ((null, "exists and is not an empty folder"), (tmp_path / "new", "exists and is not"),
                         (tmp_path / "link", "is a symbolic link")):  # fmt: skip
        with pytest.raises(TargetError, match=said):
            _enter(atomic_folder(target))
    _still(null, stat.S_IFCHR)
    assert _leftovers(tmp_path) == []


# -- the writers that use it ---------------------------------------------------------------------------


def test_a_bundle_goes_into_a_device_or_fifo_without_force(null: Path, full: Path, fifo: Fifo, tmp_path: Path) -> None:
    write_bundle(b'{"bundle": 1}\n', null)
    _still(null, stat.S_IFCHR)
    with pytest.raises(BundleError, match=r"full: cannot write the bundle \(No space left on device\)"):
        write_bundle(b'{"bundle": 1}\n', full)
    _still(full, stat.S_IFCHR, FULL)
    write_bundle(b'{"bundle": 2}\n', fifo.path)
    assert fifo.bytes() == b'{"bundle": 2}\n'
    _still(fifo.path, stat.S_IFIFO)
    (tmp_path / "folder").mkdir()
    with pytest.raises(BundleError, match=r"folder: is a folder; an output goes to a file"):
        write_bundle(b"{}", tmp_path / "folder")
    existing = tmp_path / "b.json"
    existing.write_text("kept")
    with pytest.raises(BundleError, match="exists: pass --force to replace it"):
        write_bundle(b"{}", existing)
    write_bundle(b"{}", existing, force=True)
    assert existing.read_bytes() == b"{}"


def test_an_archive_goes_into_a_device_or_fifo(ledger: LedgerStore, null: Path, tmp_path: Path) -> None:
    assert export(ledger, null) == ledger.head()
    _still(null, stat.S_IFCHR)
    pipe = Fifo(tmp_path / "archive.jsonl.gz")  # compressed by its name, as a file would be
    export(ledger, pipe.path)
    lines = gzip.decompress(pipe.bytes()).decode().splitlines()
    assert json.loads(lines[0])["anchor"]["record_count"] == ledger.head().count == len(lines) - 1
    _still(pipe.path, stat.S_IFIFO)


def test_an_archive_that_fails_halfway_leaves_the_old_file(ledger: LedgerStore, tmp_path: Path) -> None:
    class Failing:
        def head(self) -> object:
            return ledger.head()

        def records(self) -> Iterator[object]:
            yield from list(ledger.records())[:3]
            raise OSError(5, "Input/output error")

    target = tmp_path / "ledger.jsonl"
    target.write_text("the archive of last week\n")
    with pytest.raises(ArchiveError, match=r"ledger.jsonl: cannot write the archive \(Input/output error\)"):
        export(Failing(), target)  # type: ignore[arg-type]
    assert target.read_text() == "the archive of last week\n"
    assert _leftovers(tmp_path) == []
    with pytest.raises(ArchiveError, match=r"is a folder"):
        export(ledger, tmp_path)


def test_stage_outputs_go_into_a_device_or_fifo_and_refuse_a_folder(null: Path, fifo: Fifo, tmp_path: Path) -> None:
    write_json(null, {"rows": 1})
    _still(null, stat.S_IFCHR)
    write_json(fifo.path, {"rows": 2})
    assert json.loads(fifo.bytes()) == {"rows": 2}
    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(InputError, match=r"metrics.json: is a folder"):
        _enter(stage_atomic_path(tmp_path / "metrics.json"))


def test_an_evidence_pack_refuses_a_device_or_a_link(ledger: LedgerStore, null: Path, tmp_path: Path) -> None:
    (tmp_path / "pack").symlink_to(tmp_path / "elsewhere")
    for target, said in ((null, "exists and is not an empty folder"), (tmp_path / "pack", "is a symbolic link")):
        with pytest.raises(EvidenceError) as refused:
            build(ledger, "production", target, None)
        assert str(refused.value) == f"{target} {said}: a pack is written into a new one"
    _still(null, stat.S_IFCHR)


def test_lineage_exports_into_a_device_and_a_fifo_through_the_entry_point(ledger: LedgerStore, tmp_path: Path) -> None:
    """The installed command, as a user runs it with `--output /dev/stdout` (here: nodes of our own)."""
    null = _node(tmp_path / "null", stat.S_IFCHR)
    env = {**os.environ, "LINEAGE_DB_URL": ledger.url}
    for argv in (
        ["export", "archive", "--output", str(null)],
        ["export", "bundle", "production", "--output", str(null)],
        ["export", "openlineage", "--output", str(null)],
    ):
        done = subprocess.run([str(VENV_BIN / "lineage"), *argv], env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        _still(null, stat.S_IFCHR)
    pipe = Fifo(tmp_path / "bundle")
    argv = ["export", "bundle", "production", "--output", str(pipe.path)]
    done = subprocess.run([str(VENV_BIN / "lineage"), *argv], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(pipe.bytes())["version"]
    _still(pipe.path, stat.S_IFIFO)


# -- the check after every run ----------------------------------------------------------------------------


def test_the_run_fails_when_the_device_it_checks_is_no_longer_one(tmp_path: Path) -> None:
    """tests/conftest.py checks /dev/null once every worker has finished; pointed at a regular file (standing
    in for a /dev/null an atomic write replaced), a passing run under two xdist workers exits 1 and says so."""
    replaced = tmp_path / "null"
    replaced.write_bytes(b"")
    test = "tests/unit/test_safe_writes.py::test_a_link_to_a_file_replaces_the_file_and_keeps_the_link"
    env = {**os.environ, "RETAIL_LINEAGE_CHECK_DEVICE": str(replaced)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:randomly", "-p", "no:cacheprovider", test],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert "1 passed" in done.stdout, done.stdout
    assert done.returncode == 1, done.stdout
    assert f"{replaced} is no longer a character device (a regular file)" in done.stdout + done.stderr
    env["RETAIL_LINEAGE_CHECK_DEVICE"] = str(_node(tmp_path / "real-null", stat.S_IFCHR))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:randomly", "-p", "no:cacheprovider", test],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
