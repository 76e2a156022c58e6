"""`lineage`: verify, query, diff and export the ledger, manage the model registry and its approvers,
reproduce a model version, write its evidence pack, carry a version's lineage to another ledger (`export
bundle`, `import bundle`), and serve the read-only web console (`lineage ui`).

The ledger is LINEAGE_DB_URL (or --db), by default sqlite:///lineage.db in the current directory.
Every error is one line on stderr and exit status 1 (a mistyped command or option: click's usage
message, exit status 2); `verify` exits 1 when the chain is broken.
"""

import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

# The ledger uses no pydantic plugins; looking for them reads every installed package's metadata, a
# noticeable part of a fresh `lineage query`. Set before the first model is built.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from common.redact import redact_text, redact_url
from lineage.errors import LineageError
from lineage.store import LedgerStore

# Each command imports what only it needs (the registry, signatures, archives), so that a query in a
# fresh process pays for the query, not for every other command's imports.

# Plain help, and a usage error as click's "Error: ..." line (exit 2) rather than a drawn box.
app = typer.Typer(
    help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None
)


@app.callback()
def _output() -> None:
    # An argument that is not UTF-8 (a file name in another encoding) reaches Python surrogate-escaped:
    # echo it back as the bytes it was, not as a UnicodeEncodeError on a strict UTF-8 stdout.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")


Db = Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the ledger (default: LINEAGE_DB_URL).")]


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"


Output = Annotated[Format, typer.Option("--format", help="Print a table for people or JSON for programs.")]
Repository = Annotated[
    Path, typer.Option(help="The project checkout whose DVC cache and remote hold the stored files.")
]
Remote = Annotated[str | None, typer.Option(help="DVC remote to read stored files from (default: the default).")]
By = Annotated[str, typer.Option("--by", help="Who decides: a registered approver's name (signed).")]
Reason = Annotated[str, typer.Option("--reason", help="Why (signed).")]
Key = Annotated[
    Path,
    typer.Option(
        "--key",
        envvar="LINEAGE_SIGNING_KEY",
        help="Your SSH private key, or its .pub if ssh-agent holds it (ssh-keygen -Y sign).",
    ),
]


# A line break in an error (from a name or path as typed) would make it two lines: it is shown escaped.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


@contextmanager
def ledger(db: str | None, read_only: bool = False, create: bool = True) -> Iterator[LedgerStore]:
    """The open ledger (with `create` false, only one that exists); every refusal (a LineageError) becomes one
    line on stderr and exit 1. Anything else is a bug: it is not caught here (see `lineage.cli.main`)."""
    try:
        with LedgerStore(db, read_only, create) as store:
            yield store
    except UnicodeEncodeError as error:  # a name or id given in bytes that are not UTF-8: the ledger is text
        fail(f"{error.object[:200]!r} is not UTF-8 text")
    except OSError as error:  # a path that cannot even be looked at, e.g. a name too long
        fail(f"{error.filename}: {error.strerror}" if error.filename else str(error))
    except LineageError as error:
        fail(str(error))


def show(output: Format, payload: Any, text: Callable[[], str]) -> None:
    """`payload` as JSON, or `text()` for people."""
    typer.echo(json.dumps(payload, indent=2, sort_keys=True) if output == Format.JSON else text())


def fail(message: str) -> NoReturn:
    """`message` as one error line on stderr, and exit 1."""
    # Every error line is redacted here too: a driver's or a remote's message may name a URL with credentials.
    typer.echo(f"lineage: error: {redact_text(message).translate(_LINE_BREAKS)}", err=True)
    raise typer.Exit(1)


def require_ledger_id(store: LedgerStore) -> str:
    """The ledger's id; one that has none is empty, and refused."""
    ledger_id = store.ledger_id()
    if ledger_id is None:
        fail("the ledger is empty: create it with `lineage init`")
    return ledger_id


def publish_anchor(store: LedgerStore, repository: Path, remote: str | None, what: str) -> None:
    """Publish the ledger's new head as an anchor in the DVC remote, so that cutting this change off is caught."""
    from lineage.objects import ObjectError, Objects

    ledger_id = store.ledger_id()
    if ledger_id is None:
        return
    try:
        url = Objects(repository, remote).publish_anchor(ledger_id, store.head(), what)
    except ObjectError as error:
        typer.echo(f"lineage: warning: no anchor published: {redact_text(str(error))}", err=True)
        return
    if url is None:
        typer.echo(f"lineage: warning: no anchor published: {repository} has no DVC remote (--repository)", err=True)
    else:
        typer.echo(f"anchor published: {redact_url(url)}", err=True)
