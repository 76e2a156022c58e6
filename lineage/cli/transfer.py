"""`lineage export` and `lineage import`: the ledger in other formats (OpenLineage, an archive), and a
version's lineage carried to another ledger (a bundle)."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from common.files import TargetError, write_atomic
from common.redact import redact_url
from lineage.cli.root import Db, Format, Output, Repository, fail, ledger, publish_anchor, show

export_app = typer.Typer(help="Export the ledger in other formats.", no_args_is_help=True)
import_app = typer.Typer(help="Bring records from another ledger into this one.", no_args_is_help=True)


@export_app.command("openlineage")
def export_openlineage(
    flow_run: Annotated[str | None, typer.Option(help="Only this flow run (default: every run).")] = None,
    output: Annotated[Path | None, typer.Option(help="Write JSON lines here (default: stdout).")] = None,
    url: Annotated[str | None, typer.Option(help="Also send the events to this Marquez-compatible URL.")] = None,
    db: Db = None,
) -> None:
    """RunEvents (START, then COMPLETE or FAIL) for each stage, validated, as JSON lines."""
    from lineage import openlineage  # imported here: the OpenLineage client is slow to import

    with ledger(db) as store:
        events = openlineage.run_events(store, flow_run)
        lines = openlineage.to_json_lines(events)
        for line in lines.splitlines():
            openlineage.validate(json.loads(line))  # OpenLineageError naming the field: nothing is written
        if output is None:
            sys.stdout.write(lines)
        else:
            try:
                write_atomic(output, lines.encode("utf-8"))  # never renamed over a device or FIFO
            except TargetError as error:  # common/ knows no LineageError: its refusal is a ValueError
                fail(str(error))
            except OSError as error:
                fail(f"{output}: cannot write the events ({error.strerror})")
        if url:
            openlineage.send(events, url)  # SendError, a LineageError: one line
    typer.echo(f"{len(events)} OpenLineage events" + (f" sent to {redact_url(url)}" if url else ""), err=True)


@export_app.command("archive")
def export_archive(
    output: Annotated[Path, typer.Option(help="The archive file (.jsonl, or .jsonl.gz compressed).")],
    db: Db = None,
) -> None:
    """The whole ledger and its verification anchor in one file, for `lineage verify --archive` offline."""
    from lineage.archive import export

    with ledger(db) as store:
        head = export(store, output)
    typer.echo(f"{head.count} records written to {output}; anchor {head.count} {head.head_hash}")


@export_app.command("bundle")
def export_bundle(
    version: Annotated[str, typer.Argument(help="A model version's name or id, or 'production'.")],
    output: Annotated[Path, typer.Option(help="The bundle file to write (its folder must exist).")],
    by: Annotated[
        str | None, typer.Option("--by", help="Sign as this approver of this ledger (import requires a signature).")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", envvar="LINEAGE_SIGNING_KEY", help="The approver's SSH private key (or its .pub)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    db: Db = None,
) -> None:
    """VERSION's lineage (its ascendants with their ledger records and hashes, the ledger's id and head),
    signed, in one JSON file for `lineage import bundle` in another ledger."""
    from lineage.bundle import export_bundle as export
    from lineage.signatures import Signer

    if by is not None and key is None:
        fail("--by needs --key (or LINEAGE_SIGNING_KEY): the approver's SSH key")
    with ledger(db, read_only=True) as store:
        bundle = export(store, version, output, Signer(by, key) if by and key else None, force)
    signed = f"signed by {by}" if bundle.signature else "UNSIGNED (import refuses it: sign with --by and --key)"
    source = bundle.source
    typer.echo(
        f"{bundle.version}: {len(bundle.records)} records of ledger {source.ledger_id} head "
        f"{source.head_count}/{source.head_hash} written to {output}, {signed}"
    )


@import_app.command("bundle")
def import_bundle(
    file: Annotated[Path, typer.Argument(help="A bundle written by `lineage export bundle`.")],
    repository: Repository = Path("."),
    remote: Annotated[
        str | None, typer.Option(help="DVC remote that must hold the bundle's files (default: the default).")
    ] = None,
    output: Output = Format.TABLE,
    db: Db = None,
) -> None:
    """Check FILE (record hashes, a signature by a key registered here as an approver's, its decisions'
    signatures, every output's bytes in this side's DVC storage) and append what this ledger lacks of it,
    linked by SameAs; the version becomes a candidate here. Refuses in one line, appending nothing."""
    from lineage.bundle import import_bundle as run_import
    from lineage.objects import Objects

    with ledger(db) as store:
        done = run_import(store, file, Objects(repository, remote))
        if done.appended:
            publish_anchor(store, repository, remote, f"lineage import bundle {file.name}")
    show(output, done.as_dict(), done.line)
