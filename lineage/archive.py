"""The ledger as one archival file, checkable offline, for record-keeping beyond the database's life.

`lineage export archive` writes JSON Lines (gzip-compressed when the name ends in .gz): a header with
the format, the export time and the verification anchor (the head's record count and hash), then
every record as the JSON array of its stored columns, in seq order. `lineage verify --archive` recomputes
the chain from those columns alone, compares its end with the header's anchor (and with a published
anchor, if given), and checks every signature: no database and no network needed.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import itertools
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from common.files import TargetError, atomic_path
from lineage.bounded import Refused, open_regular
from lineage.decisions import DecisionReport
from lineage.errors import LineageError
from lineage.store import HASHED_COLUMNS, Head, LedgerRecord, LedgerStore, VerifyResult, along_chain, verify_records

FORMAT = "lineage-ledger-archive"
VERSION = 1
COLUMNS = [*HASHED_COLUMNS, "record_hash"]
# A record's line is kilobytes; the limit bounds what one line may take in memory (a file with no
# newline, such as a disk image handed over by mistake, is refused, not read whole).
MAX_LINE_CHARS = 16 * 2**20


class ArchiveError(LineageError):
    """An archive that cannot be written or read; the message is one line naming the file."""


def _text_into(raw: IO[bytes], path: Path) -> IO[str]:
    """Text written into `raw`, gzip-compressed when `path` (the archive's name, in the gzip header) ends in .gz."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.GzipFile(path.name, "wb", fileobj=raw), encoding="utf-8")
    return io.TextIOWrapper(raw, encoding="utf-8")


@contextmanager
def _reading(path: Path) -> Iterator[Iterator[str]]:
    """The archive's lines, each at most MAX_LINE_CHARS long, from a regular file only (a FIFO or a
    device would never end); Refused or ArchiveError otherwise."""
    with open_regular(path) as raw:
        binary = gzip.GzipFile(fileobj=raw, mode="rb") if path.suffix == ".gz" else raw
        with io.TextIOWrapper(binary, encoding="utf-8") as text:
            yield _lines(text, path)


def _lines(text: IO[str], path: Path) -> Iterator[str]:
    for number in itertools.count(1):
        line = text.readline(MAX_LINE_CHARS + 1)  # bounded: a file with no newline is not read whole
        if len(line) > MAX_LINE_CHARS:
            raise ArchiveError(f"{path}: line {number} is longer than the {MAX_LINE_CHARS:,}-character limit")
        if not line:
            return
        yield line


def export(store: LedgerStore, path: Path) -> Head:
    """Write the whole ledger to `path` whole or not at all (common.files); return the anchor in its header."""
    head = store.head()
    header = {
        "format": FORMAT,
        "version": VERSION,
        "exported": dt.datetime.now(dt.UTC).isoformat(),
        "columns": COLUMNS,
        "anchor": {"record_count": head.count, "head_hash": head.head_hash},
    }
    try:
        with atomic_path(path) as scratch, scratch.open("wb") as raw, _text_into(raw, path) as out:
            out.write(json.dumps(header, sort_keys=True) + "\n")
            for record in store.records():
                if record.seq > head.count:  # appended after the head was read: the next export has it
                    break
                out.write(json.dumps(list(record), separators=(",", ":")) + "\n")
            if store.record(head.count + 1) is not None and store.head() == head:
                # records past the head row that no append since explains: the head row was set back
                raise ArchiveError(f"the ledger holds records past its head row's {head.count}: run `lineage verify`")
    except TargetError as error:
        raise ArchiveError(str(error)) from None
    except OSError as error:
        raise ArchiveError(f"{path}: cannot write the archive ({error.strerror})") from None
    return head


def _records(lines: Iterator[str], path: Path) -> Iterator[LedgerRecord]:
    """The archive's records, each with its format (every record is there, the format declarations too)."""
    yield from along_chain(_rows(lines, path))


def _rows(lines: Iterator[str], path: Path) -> Iterator[LedgerRecord]:
    for number, line in enumerate(lines, start=2):
        try:
            columns = json.loads(line)
            yield LedgerRecord(*columns)
        except (json.JSONDecodeError, TypeError) as error:
            raise ArchiveError(f"{path}: line {number} is not a ledger record ({error})") from None


def verify_archive(path: Path, anchor: Head | None = None) -> tuple[VerifyResult, DecisionReport | None, Head]:
    """The chain check and (if the chain holds) the check of every approver, policy and decision record and
    status change (lineage/verification.py) of the archive at `path`, and the anchor its header states."""
    from lineage.verification import check_records

    try:
        with _reading(path) as lines:
            stated = _header(next(lines, ""), path)
            chain = verify_records(_records(lines, path), stated, anchor)
        if not chain.ok:
            return chain, None, stated
        with _reading(path) as lines:
            next(lines)
            records = _records(lines, path)
            first = next(records, None)
            ledger_id = first.record_hash if first is not None else None
            return chain, check_records(itertools.chain([first] if first else [], records), ledger_id), stated
    except Refused as refused:
        raise ArchiveError(f"{path}: cannot read the archive ({refused})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ArchiveError(f"{path}: cannot read the archive ({getattr(error, 'strerror', None) or error})") from None
    except (EOFError, zlib.error) as error:  # a .gz cut short or corrupted
        raise ArchiveError(f"{path}: cannot read the archive (not a whole gzip file: {error})") from None


def _header(line: str, path: Path) -> Head:
    """The anchor the archive's header (its first line) states, once the header is known to be one this reads."""
    try:
        header = json.loads(line)
    except json.JSONDecodeError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ArchiveError(f"{path}: not a lineage archive (its first line is no {FORMAT} header)")
    if header.get("version") != VERSION:
        raise ArchiveError(f"{path}: archive version {header.get('version')}; this reads version {VERSION}")
    if header.get("columns") != COLUMNS:
        raise ArchiveError(f"{path}: the header's columns are not [{', '.join(COLUMNS)}]")
    anchor = header.get("anchor")
    count, digest = (anchor.get("record_count"), anchor.get("head_hash")) if isinstance(anchor, dict) else (None, None)
    if not isinstance(count, int) or not isinstance(digest, str):
        raise ArchiveError(f"{path}: the header has no anchor (record_count and head_hash)")
    return Head(count, digest)
