"""One verification of the ledger, the same for `lineage verify`, evidence packs and the console's health page.

It checks, in order, and names the first thing that does not hold:
1. the hash chain (store.verify): every record from the last passing verification on (every record when
   `full`), the head row, and an anchor given by hand;
2. the published anchor: the latest head stored in the DVC remote (lineage/objects.py) must still be in the
   ledger, record for record, so a ledger cut short after its last anchor, or rewritten, fails;
3. with `full`, the verification log: a ledger shorter than a head a verification once reached fails;
4. the decisions (lineage/decisions.py `RegistryCheck`): every approver and policy record, every decision,
   every status record and move of the production pointer holds at its point.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lineage.authority import GOVERNANCE
from lineage.decisions import CHECKED, DecisionReport, RegistryCheck, StoreFacts
from lineage.objects import ObjectError, Objects
from lineage.store import Head, LedgerRecord, LedgerStore, Verification, VerifyResult


@dataclass(kw_only=True)
class Verified:
    """What one verification found: its lines for people, and whether everything held."""

    chain: VerifyResult
    decisions: DecisionReport | None
    since: Verification | None  # the logged verification it started from (None: every record)
    anchor: dict[str, Any] | None  # the latest published anchor (`published_anchor`)
    anchor_line: str
    log_line: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.decisions is not None and self.decisions.ok and not self.problems

    def lines(self) -> list[str]:
        lines = [f"chain {self.chain}", self.anchor_line]
        lines += [self.log_line] if self.log_line else []
        lines += [str(self.decisions)] if self.decisions is not None else ["signatures not checked: the chain failed"]
        return lines + [f"FAILED: {problem}" for problem in self.problems]

    def scope(self) -> str:
        last = self.since
        if last is None or not last.record_count:
            return "every record"
        new = self.chain.count > last.record_count
        checked = f"records {last.record_count + 1} to {self.chain.count}" if new else "nothing"
        return (
            f"{checked} appended since the verification of {last.verified_at} (which ended at record "
            f"{last.record_count}); --full rehashes every record"
        )

    def logged(self) -> Verification:
        """The verification log's row for this verification."""
        start = self.since.record_count if self.since else 0
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        return Verification(
            from_count=start,
            record_count=self.chain.count,
            head_hash=self.chain.head_hash,
            ok=self.ok,
            result="; ".join(self.lines()),
            verified_at=now,
        )


def verify(
    store: LedgerStore, full: bool = False, anchor: Head | None = None, objects: Objects | None = None
) -> Verified:
    """Verify the ledger (from the last passing verification on, or every record with `full`) against
    `anchor` and the latest anchor published in `objects`' remote. Nothing is logged: see `Verified.logged`."""
    last = None if full else store.last_verification()
    since = last.head if last is not None and last.record_count else None
    problems: list[str] = []
    published = published_anchor(store, objects)
    anchor_line = _published(published, objects, problems)
    if since is not None and published and published.get("holds") and published["record_count"] < since.count:
        # The log is not chained: what it says was verified after the latest published anchor is checked again.
        since = Head(published["record_count"], published["head_hash"])
        last = Verification(
            from_count=since.count,
            record_count=since.count,
            head_hash=since.head_hash,
            ok=True,
            result="",
            verified_at=f"the anchor {published['where']}",
        )
    chain = store.verify(anchor, since)
    log_line = _log(store, problems) if full else None
    decisions = check_decisions(store, since.count if since else 0) if chain.ok else None
    return Verified(
        chain=chain,
        decisions=decisions,
        since=last if since else None,
        anchor=published,
        anchor_line=anchor_line,
        log_line=log_line,
        problems=problems,
    )


def check_decisions(store: LedgerStore, since: int = 0) -> DecisionReport:
    """The decisions' replay over the ledger: the governance records from the start, the decisions and state
    records after seq `since` (what was recorded up to it is read by index)."""
    check = RegistryCheck(store.ledger_id(), StoreFacts(store) if since else None, since)
    governance = list(store.records(GOVERNANCE, upto=since)) if since else []
    for record in _merged(governance, store.records(CHECKED, after=since)):
        if not check.feed(record):
            break
    return check.finish()


def check_records(records: Iterable[LedgerRecord], ledger_id: str | None) -> DecisionReport:
    """The decisions' replay over every record of a ledger given in seq order (an archive's)."""
    wanted = {(kind.value, entity_type) for kind, entity_type in CHECKED}
    check = RegistryCheck(ledger_id)
    for record in records:
        if (record.kind, record.entity_type) in wanted and not check.feed(record):
            break
    return check.finish()


def _merged(earlier: list[LedgerRecord], later: Iterator[LedgerRecord]) -> Iterator[LedgerRecord]:
    try:
        yield from heapq.merge(earlier, later, key=lambda record: record.seq)
    finally:
        later.close()  # type: ignore[attr-defined]


def published_anchor(store: LedgerStore, objects: Objects | None) -> dict[str, Any] | None:
    """Every anchor published for this ledger in `objects`' DVC remote, checked (one record read each: a higher
    anchor written later never masks an earlier one): the latest, or the first that does not hold (`holds`),
    with how many were checked; or why they cannot be read (`error`); None where there is no remote or anchor."""
    ledger_id = store.ledger_id()
    if objects is None or ledger_id is None:
        return None
    try:
        found = objects.anchors(ledger_id)
    except ObjectError as error:
        return {"error": str(error)}
    if not found:
        return None
    checked = [(head, url, store.check_anchor(head)) for head, url in found]
    head, url, failed = next((c for c in checked if c[2] is not None), checked[-1])
    return {
        "where": url,
        "record_count": head.count,
        "head_hash": head.head_hash,
        "holds": failed is None,
        "checked": len(checked),
        "detail": str(failed) if failed else f"record {head.count} still hashes to the published hash",
    }


def _published(anchor: dict[str, Any] | None, objects: Objects | None, problems: list[str]) -> str:
    """The line that says which published anchor was checked and how it held, or why none was."""
    if anchor is None:
        remote = objects.remote() if objects else None
        if remote is None:
            return "anchor: none checked: no DVC remote here (see --repository and --remote)"
        return f"anchor: none published yet for this ledger in {remote}"
    if "error" in anchor:
        problems.append(f"the published anchor cannot be read: {anchor['error']}")
        return "anchor: UNREADABLE"
    if not anchor["holds"]:
        problems.append(f"the published anchor {anchor['where']} does not hold: {anchor['detail']}")
        return f"anchor FAILED: {anchor['where']}"
    count, digest, where = anchor["record_count"], anchor["head_hash"], anchor["where"]
    earlier = f" (and the {anchor['checked'] - 1} anchors before it)" if anchor["checked"] > 1 else ""
    return f"anchor ok: record {count} hashes to {digest}, as published at {where}{earlier}"


def _log(store: LedgerStore, problems: list[str]) -> str:
    """With --full: the furthest head a passing verification reached must still be in the ledger (the log is not
    chained: it catches a ledger cut short by someone who left the log alone)."""
    passed = [v for v in store.verifications() if v.ok and v.record_count]
    reached = max(passed, key=lambda v: v.record_count, default=None)
    if reached is None:
        return "log: no earlier verification"
    failed = store.check_anchor(reached.head)
    if failed is not None:
        problems.append(f"the verification of {reached.verified_at} reached record {reached.record_count}: {failed}")
        return "log FAILED"
    return f"log ok: record {reached.record_count}, the furthest a verification reached ({reached.verified_at}), holds"
