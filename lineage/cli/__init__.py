"""The `lineage` command (`lineage --help`), one module per command group, as Prefect's CLI is laid out:
root.py holds the root app, the shared options and the error handling; verify.py, query.py, authority.py
(init, approvers, policy), models.py, runs.py (runs, served), transfer.py (export, import), evidence.py
(reproduce, evidence) and console.py (ui) hold the commands.

A refusal (a LineageError) is one line on stderr and exit status 1; anything else is a bug: its traceback,
and exit status 70 (EX_SOFTWARE), which no refusal uses.
"""

import sys
import traceback

from lineage.cli import authority, console, evidence, models, query, runs, transfer, verify
from lineage.cli.root import app

BUG = 70  # EX_SOFTWARE (sysexits.h): an internal error, not something the user can fix

# Registered here, in the order `lineage --help` lists them.
app.command()(verify.verify)
app.command()(verify.verifications)
app.command()(query.diff)
app.command()(authority.init)
app.command()(query.query)
app.command("reproduce")(evidence.reproduce_version)
app.command()(evidence.evidence)
app.command()(runs.served)
app.command()(console.ui)
app.add_typer(models.models_app, name="models")
app.add_typer(transfer.export_app, name="export")
app.add_typer(transfer.import_app, name="import")
app.add_typer(authority.approvers_app, name="approvers")
app.add_typer(authority.policy_app, name="policy")
app.add_typer(runs.runs_app, name="runs")


def main() -> None:
    """The `lineage` console script."""
    try:
        app(prog_name="lineage")
    except Exception:  # a bug (refusals exit through typer.Exit): shown whole, with a status of its own
        traceback.print_exc()
        sys.exit(BUG)


__all__ = ["app", "main"]
