"""Reading a file someone hands the ledger (a bundle, an archive) without trusting its kind or size.

A FIFO or a device such as /dev/zero never ends, and a huge file would be loaded whole: both are
refused with a reason, never read to exhaustion. The caller's message names the file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from lineage.errors import LineageError

_KINDS = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFIFO: "a FIFO",
          stat.S_IFSOCK: "a socket"}  # fmt: skip


class Refused(LineageError):
    """Why a file is not read: a reason without the file's name (the caller's message has it)."""


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for binary reading if it is a regular file; Refused if it is a FIFO, device or socket,
    IsADirectoryError if it is a folder (as `open` says)."""
    # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever; fstat then checks what was
    # opened, not what the name pointed at a moment before.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    kind = stat.S_IFMT(os.fstat(descriptor).st_mode)
    if kind != stat.S_IFREG:
        os.close(descriptor)
        if kind == stat.S_IFDIR:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        raise Refused(f"{_KINDS.get(kind, 'a special file')}, not a regular file")
    return os.fdopen(descriptor, "rb")


def read_limited(path: Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, reading at most `limit` + 1; Refused beyond `limit`."""
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise Refused(f"larger than the {limit:,}-byte limit")
    return data
