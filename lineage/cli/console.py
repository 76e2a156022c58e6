"""`lineage ui`: the read-only web console (lineage/console/)."""

import os
from pathlib import Path
from typing import Annotated

import typer

from lineage.cli.root import Db, Remote, Repository, fail
from lineage.store import LedgerError, LedgerStore


def ui(
    host: Annotated[str, typer.Option(help="Address to serve on; other than loopback only with credentials.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to serve on.")] = 8765,
    repository: Repository = Path("."),
    remote: Remote = None,
    credentials_block: Annotated[
        str | None,
        typer.Option(
            help="Prefect Secret block holding a token, or USERNAME:PASSWORD (default: LINEAGE_UI_* variables)."
        ),
    ] = None,
    db: Db = None,
) -> None:
    """Serve the read-only web console: models, versions (lineage graph, gates, decisions, changes,
    evidence packs), runs, artifacts and the ledger's health; every page also as JSON (?format=json)."""
    from lineage.console.app import create_app
    from lineage.console.security import SecurityError, check_bind, configured
    from lineage.listen import ListenError, listen, run, url
    from lineage.objects import Objects

    try:
        credentials = configured(credentials_block)
        check_bind(host, credentials)
    except SecurityError as error:
        fail(str(error))
    try:
        store = LedgerStore(db, read_only=True)
    except LedgerError as error:
        fail(str(error))
    console = create_app(store, Objects(repository, remote), repository, credentials, os.environ.get("PREFECT_UI_URL"))
    try:
        listening = listen(host, port)
    except ListenError as error:
        store.close()
        fail(str(error))
    typer.echo(f"lineage console on {url(host, port)} (read-only{', credentials required' if credentials else ''})")
    try:
        run(console, listening)
    finally:
        store.close()
