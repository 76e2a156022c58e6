"""`lineage verify` and `lineage verifications`: one verification of the ledger (lineage/verification.py), and
the log of them."""

import dataclasses
import re
from pathlib import Path
from typing import Annotated

import typer

from lineage.cli.root import Db, Format, Output, Remote, Repository, fail, ledger, show
from lineage.store import Head, LedgerError


def _anchor(count: int | None, digest: str | None) -> Head | None:
    if (count is None) != (digest is None):
        fail("--anchor-count and --anchor-hash go together")
    if count is None or digest is None:
        return None
    if count < 1:
        fail(f"--anchor-count must be at least 1, got {count}")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        fail(f"--anchor-hash must be 64 lowercase hex characters (a sha256), got {digest[:80]!r}")
    return Head(count, digest)


def verify(
    db: Db = None,
    anchor_count: Annotated[int | None, typer.Option(help="A published head: its record count.")] = None,
    anchor_hash: Annotated[str | None, typer.Option(help="A published head: its hash.")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Rehash every record, not only those since the last verification.")
    ] = False,
    archive: Annotated[
        Path | None, typer.Option(help="Verify this archive file offline instead of the ledger.")
    ] = None,
    repository: Repository = Path("."),
    remote: Remote = None,
) -> None:
    """Recompute the hash chain, check the latest anchor published in the DVC remote, and check every approver,
    policy and decision record and every status change, from the last verification on (every record with
    --full, or of an archive); name the first bad record if there is one. Each verification of the ledger is
    logged (`lineage verifications`)."""
    anchor = _anchor(anchor_count, anchor_hash)
    if archive is not None:
        from lineage.archive import ArchiveError, verify_archive

        try:
            result, signatures, stated = verify_archive(archive, anchor)
        except ArchiveError as error:
            fail(str(error))
        typer.echo(f"chain {result} (archive {archive}, anchor in its header {stated.count} {stated.head_hash})")
        if anchor is not None and result.ok:
            typer.echo(f"anchor ok: record {anchor.count} hashes to the published {anchor.head_hash}")
        typer.echo(str(signatures) if signatures is not None else "signatures not checked: the chain failed")
        typer.echo("checked: every record")
        if not result.ok or signatures is None or not signatures.ok:
            raise typer.Exit(1)
        return
    from lineage.objects import ObjectError, Objects
    from lineage.verification import verify as check

    with ledger(db, create=False) as store:
        try:
            verified = check(store, full, anchor, Objects(repository, remote))
        except ObjectError as error:
            fail(str(error))
        try:
            store.record_verification(verified.logged())
        except LedgerError as error:  # a read-only ledger can still be verified
            typer.echo(f"lineage: warning: {error}", err=True)
    lines = verified.lines()
    lines[0] += " (ledger head row)"
    if anchor is not None and verified.chain.ok:
        lines.insert(1, f"anchor ok: record {anchor.count} hashes to the given {anchor.head_hash}")
    for line in lines:
        typer.echo(line)
    typer.echo(f"checked: {verified.scope()}")
    if not verified.ok:
        raise typer.Exit(1)


def verifications(output: Output = Format.TABLE, db: Db = None) -> None:
    """Every verification of the ledger, oldest first: the records it checked, when, and how it ended."""
    with ledger(db) as store:
        found = store.verifications()
    payload = [dataclasses.asdict(v) for v in found]
    lines = [
        f"{v.verified_at}  records {v.from_count + 1}-{v.record_count}  {'ok' if v.ok else 'FAILED'}  {v.head_hash}"
        for v in found
    ]
    show(output, payload, lambda: "\n".join(lines) or "no verifications yet: run `lineage verify`")
