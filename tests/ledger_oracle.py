"""The ledger's reads as they were before the current-state table: a scan and parse of every record,
keeping each entity's last. Tests hold the indexed reads (`get`, `latest`, `find`) equal to these."""

from __future__ import annotations

from lineage.entities import Entity
from lineage.store import Kind, LedgerRecord, LedgerStore


def _latest_by_scan(records: list[LedgerRecord]) -> dict[str, LedgerRecord]:
    """Each entity's last record, in the order the entities first appeared (dicts keep insertion order)."""
    latest: dict[str, LedgerRecord] = {}
    for record in records:
        latest[record.entity_id] = record
    return latest


def find_by_scan(records: list[LedgerRecord], kind: Kind, entity_type: str | None, name: str | None) -> list[Entity]:
    """What `find` returned before: records filtered by kind, type and name, each entity's last kept."""
    wanted = [
        r
        for r in records
        if r.kind == kind.value and entity_type in (None, r.entity_type) and (name is None or r.name == name)
    ]
    return [record.entity() for record in _latest_by_scan(wanted).values()]


def assert_reads_match_scan(store: LedgerStore) -> int:
    """Every indexed read the store offers equals the scan, for every entity, kind, type and name in the
    ledger; returns how many reads were compared."""
    records = list(store.records())
    latest = _latest_by_scan(records)
    compared = 0
    for entity_id, record in latest.items():
        assert store.get(entity_id) == record.entity(), entity_id
        compared += 1
    assert store.latest([*latest, "no-such-id"]) == {i: r.entity() for i, r in latest.items()}
    queries: set[tuple[Kind, str | None, str | None]] = {(Kind(r.kind), None, None) for r in records}
    queries |= {(Kind(r.kind), r.entity_type, None) for r in records}
    queries |= {(Kind(r.kind), None, r.name) for r in records if r.name is not None}
    queries |= {(Kind(r.kind), r.entity_type, r.name) for r in records if r.name is not None}
    for kind, entity_type, name in sorted(queries, key=str):
        expected = find_by_scan(records, kind, entity_type, name)
        assert store.find(kind, entity_type, name) == expected, (kind, entity_type, name)
        assert store.find(kind, entity_type, name, last=1) == expected[-1:], (kind, entity_type, name)
        compared += 2
    return compared
