"""`lineage reproduce` and `lineage evidence`: a model version rebuilt from its lineage, and its evidence pack."""

from pathlib import Path
from typing import Annotated

import typer

from lineage.cli.root import Db, Format, Output, Remote, Repository, fail, ledger, show


def reproduce_version(
    version: Annotated[str, typer.Argument(help="A model version's name or id, or 'production'.")],
    remote: Annotated[str | None, typer.Option(help="DVC remote holding the inputs (default: the default).")] = None,
    output: Output = Format.TABLE,
    db: Db = None,
) -> None:
    """Rebuild VERSION from its lineage in a temporary worktree, compare every hash; exit 1 on a mismatch."""
    from lineage.reproduce import reproduce

    with ledger(db) as store:
        report = reproduce(store, version, Path("."), remote)
    show(output, report.as_dict(), report.table)
    if not report.ok:
        raise typer.Exit(1)


def evidence(
    version: Annotated[str, typer.Argument(help="A model version's name, or 'production'.")],
    output: Annotated[Path, typer.Option(help="A new (or empty) folder to write the pack into.")],
    repository: Repository = Path("."),
    remote: Remote = None,
    full: Annotated[
        bool, typer.Option("--full", help="Rehash every record, not only those since the last verification.")
    ] = False,
    db: Db = None,
) -> None:
    """Write VERSION's evidence pack: an HTML document and its PDF (EU AI Act Annex IV sections, model card),
    record.json, the OpenLineage events, the ledger's verification, the stored reports and MANIFEST.sha256.
    Exit 1 when the ledger does not verify (the pack still says so)."""
    from lineage.evidence import build
    from lineage.objects import Objects

    with ledger(db, read_only=True) as store:
        pack = build(store, version, output, Objects(repository, remote), repository, full)
    typer.echo(f"{pack.name}: {len(pack.files)} files in {pack.folder} (check them: sha256sum -c MANIFEST.sha256)")
    if not pack.verified:
        fail(f"the ledger does not verify: see {pack.folder / 'verification.json'}")
