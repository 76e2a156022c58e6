"""Output files written whole or not at all, and never by renaming over something that is not a regular file.

An atomic write builds the output in a scratch file and renames it over the target, so a reader sees the
old bytes or the new ones. Renamed over `/dev/null`, that replaces the machine's device with a regular file
(as root, every service that opens /dev/null then breaks). So the target decides, before any work:
- absent, or a regular file (also through a symbolic link, whose target is replaced and the link kept):
  the scratch file is made beside it and renamed into place;
- a character device or a FIFO (/dev/null, /dev/stdout, a named pipe): the finished bytes are written into
  it; the node stays what it was;
- anything else (a folder, a socket, a block device, a link to nothing): TargetError, one line naming it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFSOCK: "a socket",
    stat.S_IFBLK: "a block device",
}


class TargetError(ValueError):
    """An output path that cannot take a file; the message is one line naming it and why."""


def _scratch_file(folder: Path, name: str) -> Path:
    """A new empty file in `folder`, with the permissions a new file gets there (mkstemp's are 0600)."""
    while True:
        path = folder / f".{name[:100]}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return path
        except FileExistsError:
            continue


def output_target(path: str | Path) -> tuple[Path, bool]:
    """Where a new file for `path` goes (the link's target for a symbolic link to a regular file), and
    whether `path` is a stream (a character device or FIFO) to write into rather than rename over.
    TargetError for anything else; OSError where `path` cannot be looked at."""
    path = Path(path)
    try:
        found = os.stat(path)
    except FileNotFoundError:
        if path.is_symlink():
            raise TargetError(f"{path}: a symbolic link to {os.readlink(path)}, which does not exist") from None
        return path, False
    if stat.S_ISCHR(found.st_mode) or stat.S_ISFIFO(found.st_mode):
        return path, True
    if not stat.S_ISREG(found.st_mode):
        kind = _KINDS.get(stat.S_IFMT(found.st_mode), "not a regular file")
        raise TargetError(f"{path}: is {kind}; an output goes to a file, a character device or a FIFO")
    if not path.is_symlink():
        return path, False
    real = Path(os.path.realpath(path))
    try:
        same = os.path.samestat(os.stat(real), found)
    except OSError:
        same = False
    if not same:  # e.g. /proc/self/fd/1 to a deleted file: there is no name to rename onto
        raise TargetError(f"{path}: a symbolic link to a file that has no name to replace")
    return real, False


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a scratch path to write the output of `path` into; if the block succeeds, its bytes become
    `path`'s (see the module's docstring), else nothing changes. The target is checked before the block."""
    target, stream = output_target(path)
    if stream:  # scratch elsewhere: never a file beside a device in /dev
        handle, name = tempfile.mkstemp(prefix=".output.", suffix=".tmp")
        os.close(handle)
        scratch = Path(name)
    else:
        scratch = _scratch_file(target.parent, target.name)
    try:
        yield scratch
        if stream:
            # No O_CREAT: if the node vanished meanwhile, fail rather than make a file in its place.
            with scratch.open("rb") as source, open(os.open(target, os.O_WRONLY | os.O_NOCTTY), "wb") as sink:
                shutil.copyfileobj(source, sink)
        else:
            with scratch.open("rb+") as written:
                os.fsync(written.fileno())
            os.replace(scratch, target)
    finally:
        with suppress(FileNotFoundError):
            scratch.unlink()


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` as the whole of `path`, by `atomic_path`."""
    with atomic_path(path) as scratch:
        scratch.write_bytes(data)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a scratch folder beside `path` (absent, or an empty folder); renamed to `path` if the block
    succeeds, removed otherwise. Anything else at `path` is refused before the block (TargetError)."""
    target = Path(path)
    if target.is_symlink():
        raise TargetError(f"{target} is a symbolic link")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise TargetError(f"{target} exists and is not an empty folder")
    while True:
        scratch = target.parent / f".{target.name[:100]}-{secrets.token_hex(4)}"
        try:
            scratch.mkdir(0o777)  # the permissions a new folder gets (mkdtemp's are 0700)
            break
        except FileExistsError:
            continue
        except OSError as error:
            raise TargetError(f"{target}: cannot create the folder ({error.strerror})") from None
    try:
        yield scratch
        os.replace(scratch, target)  # onto an empty folder too; never onto anything else (ENOTDIR)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
