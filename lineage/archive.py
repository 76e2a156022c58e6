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
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

from common.files import TargetError, atomic_path
from lineage.signatures import SIGNED_RECORDS, SignatureReport, check_signatures
from lineage.store import HASHED_COLUMNS, Head, LedgerRecord, LedgerStore, VerifyResult, verify_records

FORMAT = "lineage-ledger-archive"
VERSION = 1
COLUMNS = [*HASHED_COLUMNS, "record_hash"]


class ArchiveError(ValueError):
    """An archive that cannot be written or read; the message is one line naming the file."""


def _open(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return cast(IO[str], gzip.open(path, "rt", encoding="utf-8"))
    return path.open("r", encoding="utf-8")


def _text_into(raw: IO[bytes], path: Path) -> IO[str]:
    """Text written into `raw`, gzip-compressed when `path` (the archive's name, in the gzip header) ends in .gz."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.GzipFile(path.name, "wb", fileobj=raw), encoding="utf-8")
    return io.TextIOWrapper(raw, encoding="utf-8")


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
    except TargetError as error:
        raise ArchiveError(str(error)) from None
    except OSError as error:
        raise ArchiveError(f"{path}: cannot write the archive ({error.strerror})") from None
    return head


def _records(lines: Iterator[str], path: Path) -> Iterator[LedgerRecord]:
    for number, line in enumerate(lines, start=2):
        try:
            columns = json.loads(line)
            yield LedgerRecord(*columns)
        except (json.JSONDecodeError, TypeError) as error:
            raise ArchiveError(f"{path}: line {number} is not a ledger record ({error})") from None


def verify_archive(path: Path, anchor: Head | None = None) -> tuple[VerifyResult, SignatureReport | None, Head]:
    """The chain check and (if the chain holds) the signature check of the archive at `path`, and the
    anchor its header states."""
    try:
        with _open(path) as handle:
            stated = _header(handle, path)
            chain = verify_records(_records(handle, path), stated, anchor)
        if not chain.ok:
            return chain, None, stated
        with _open(path) as handle:
            next(handle)
            wanted = {(kind.value, type_) for kind, type_ in SIGNED_RECORDS}
            signed = (r for r in _records(handle, path) if (r.kind, r.entity_type) in wanted)
            return chain, check_signatures(signed), stated
    except (OSError, UnicodeDecodeError) as error:
        raise ArchiveError(f"{path}: cannot read the archive ({getattr(error, 'strerror', None) or error})") from None
    except (EOFError, zlib.error) as error:  # a .gz cut short or corrupted
        raise ArchiveError(f"{path}: cannot read the archive (not a whole gzip file: {error})") from None


def _header(handle: IO[str], path: Path) -> Head:
    """The anchor the archive's header states, once the header is known to be one this reads."""
    try:
        header = json.loads(handle.readline())
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
