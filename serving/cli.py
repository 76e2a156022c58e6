"""`retail-serve`: the prediction endpoint (serving/app.py) on uvicorn, in one process."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

cli = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in a container).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    endpoint: Annotated[str, typer.Option(help="The endpoint's name in the ledger.")] = "retail-demand",
    poll_seconds: Annotated[
        float,
        typer.Option(min=0.1, envvar="RETAIL_SERVE_POLL_SECONDS", help="How often to read the production pointer."),
    ] = 10.0,
    max_rows: Annotated[int, typer.Option(min=1, help="Rows per /predict request, at most.")] = 10_000,
    max_body_bytes: Annotated[int, typer.Option(min=1024, help="Request body size, at most.")] = 2_000_000,
    max_price: Annotated[float, typer.Option(min=0.01, help="A unit price must be below this (and above 0).")] = (
        100_000.0
    ),
    first_year: Annotated[int, typer.Option(min=1, max=9999, help="Dates from the start of this year.")] = 2000,
    last_year: Annotated[int, typer.Option(min=1, max=9999, help="Dates to the end of this year.")] = 2100,
    repository: Annotated[Path, typer.Option(help="The checkout whose DVC cache and remote hold the models.")] = Path(
        "."
    ),
    remote: Annotated[str | None, typer.Option(help="DVC remote to read models from (default: the default).")] = None,
    db: Annotated[
        str | None, typer.Option("--db", help="SQLAlchemy URL of the ledger (default: LINEAGE_DB_URL).")
    ] = None,
) -> None:
    """Serve the production model version's predictions, following the ledger's production pointer."""
    import torch

    from common.redact import redact_text
    from lineage.listen import ListenError, listen, run, url
    from lineage.objects import Objects, configure_s3_remote
    from lineage.store import LedgerError, LedgerStore
    from serving.app import Settings, create_app

    if first_year > last_year:
        typer.echo(f"retail-serve: error: --first-year {first_year} is after --last-year {last_year}", err=True)
        raise typer.Exit(2)
    torch.set_num_threads(1)  # one request, one core; uvicorn's threads serve the others
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    settings = Settings(
        ledger_url=db,
        endpoint=endpoint,
        poll_seconds=poll_seconds,
        max_rows=max_rows,
        max_body_bytes=max_body_bytes,
        max_price=max_price,
        first_year=first_year,
        last_year=last_year,
        console_url=os.environ.get("LINEAGE_CONSOLE_URL"),
        serving={"host": socket.gethostname(), "image": os.environ.get("IMAGE_URI", "")},
    )
    try:  # a ledger that cannot be opened is one line now, not a log line at every poll
        LedgerStore(db).close()
    except LedgerError as error:
        typer.echo(f"retail-serve: error: {redact_text(str(error))}", err=True)
        raise typer.Exit(2) from None
    try:
        listening = listen(host, port)
    except ListenError as error:
        typer.echo(f"retail-serve: error: {redact_text(str(error))}", err=True)
        raise typer.Exit(2) from None
    configure_s3_remote(repository)  # DVC_REMOTE_S3_URL, as the worker image's flows take it
    app = create_app(settings, Objects(repository, remote))
    typer.echo(f"retail-serve: endpoint {endpoint} on {url(host, port)}, polling production every {poll_seconds} s")
    run(app, listening)


def main() -> None:
    cli(prog_name="retail-serve")


if __name__ == "__main__":
    main()
