"""What someone with write access to a SQLite ledger and no signing key can do, with plain SQL and the hash
chain's published rule (sha256 over the JSON array of a record's other columns): append records, rewrite
them, cut the ledger short, and put the chain, its head and the current-state table back in order after
each. Deliberately none of the project's code: the attacks must not depend on our API behaving."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

COLUMNS = ["seq", "kind", "entity_id", "entity_type", "name", "source_id", "destination_id", "body", "prev_hash"]
GENESIS = "0" * 64


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def digest(columns: list[Any]) -> str:
    return hashlib.sha256(canonical(columns).encode()).hexdigest()


def rows_hash(db: Path, seq: int) -> str:
    """The record_hash of record `seq` (record 1's is the ledger's id)."""
    with sqlite3.connect(db) as raw:
        (found,) = raw.execute("SELECT record_hash FROM ledger_records WHERE seq = ?", (seq,)).fetchone()
    return str(found)


def latest_body(db: Path, entity_id: str) -> dict[str, Any]:
    """The body of an entity's latest record, to copy and edit."""
    with sqlite3.connect(db) as raw:
        (body,) = raw.execute(
            "SELECT body FROM ledger_records WHERE entity_id = ? ORDER BY seq DESC LIMIT 1", (entity_id,)
        ).fetchone()
    return dict(json.loads(body))


Record = tuple[str, str, str, str | None, str | None, str | None, dict[str, Any]]


def append(db: Path, records: list[Record]) -> list[int]:
    """Append (kind, entity_id, entity_type, name, source_id, destination_id, body) records after the last one,
    chained, with the head and the current-state table updated; their seqs."""
    with sqlite3.connect(db) as raw:
        count, prev = raw.execute("SELECT record_count, head_hash FROM ledger_head").fetchone()
        seqs = []
        for kind, entity_id, entity_type, name, source, destination, body in records:
            count += 1
            columns = [count, kind, entity_id, entity_type, name, source, destination, canonical(body), prev]
            prev = digest(columns)
            raw.execute(f"INSERT INTO ledger_records VALUES ({', '.join('?' * 10)})", (*columns, prev))
            first = raw.execute("SELECT min(seq) FROM ledger_records WHERE entity_id = ?", (entity_id,)).fetchone()[0]
            raw.execute("DELETE FROM ledger_latest WHERE entity_id = ?", (entity_id,))
            raw.execute(
                "INSERT INTO ledger_latest VALUES (?, ?, ?, ?, ?, ?)",
                (entity_id, kind, entity_type, name, first, count),
            )
            seqs.append(count)
        raw.execute("UPDATE ledger_head SET record_count = ?, head_hash = ?", (count, prev))
    return seqs


def rehash_from(db: Path, seq: int) -> None:
    """Recompute every record's hash and link from `seq` on, and the head: an edit hidden from the chain check."""
    with sqlite3.connect(db) as raw:
        found = raw.execute("SELECT record_hash FROM ledger_records WHERE seq = ?", (seq - 1,)).fetchone()
        prev = found[0] if found else GENESIS
        for row in raw.execute(
            f"SELECT {', '.join(COLUMNS)} FROM ledger_records WHERE seq >= ? ORDER BY seq", (seq,)
        ).fetchall():
            columns = [*row[:-1], prev]
            prev = digest(columns)
            raw.execute(
                "UPDATE ledger_records SET prev_hash = ?, record_hash = ? WHERE seq = ?", (columns[-1], prev, row[0])
            )
        raw.execute("UPDATE ledger_head SET head_hash = ?", (prev,))


def truncate(db: Path, keep: int, clear_log: bool = False) -> None:
    """Delete every record after seq `keep`; the head and the current-state table made to agree (and, with
    `clear_log`, the verification log emptied)."""
    with sqlite3.connect(db) as raw:
        raw.execute("DELETE FROM ledger_records WHERE seq > ?", (keep,))
        (last,) = raw.execute("SELECT record_hash FROM ledger_records WHERE seq = ?", (keep,)).fetchone()
        raw.execute("UPDATE ledger_head SET record_count = ?, head_hash = ?", (keep, last))
        raw.execute("DELETE FROM ledger_latest")
        raw.execute(
            "INSERT INTO ledger_latest SELECT r.entity_id, r.kind, r.entity_type, r.name, s.first, s.last "
            "FROM (SELECT entity_id, min(seq) AS first, max(seq) AS last FROM ledger_records GROUP BY entity_id) s "
            "JOIN ledger_records r ON r.seq = s.last"
        )
        if clear_log:
            raw.execute("DELETE FROM ledger_verifications")
