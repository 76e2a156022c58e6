"""`lineage`: verify, query and export the ledger, manage the model registry, reproduce a model version.

The ledger is LINEAGE_DB_URL (or --db), by default sqlite:///lineage.db in the current directory.
Every error is one line on stderr and exit status 1 (a mistyped command or option: click's usage
message, exit status 2); `verify` exits 1 when the chain is broken.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from lineage import registry
from lineage.query import Direction, QueryError, query_lineage
from lineage.store import Head, LedgerError, LedgerStore

# Plain help, and a usage error as click's "Error: ..." line (exit 2) rather than a drawn box.
app = typer.Typer(
    help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None
)
models_app = typer.Typer(help="The model registry: candidate, production, rejected, archived.", no_args_is_help=True)
export_app = typer.Typer(help="Export the ledger in other formats.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(export_app, name="export")

Db = Annotated[str | None, typer.Option("--db", help="SQLAlchemy URL of the ledger (default: LINEAGE_DB_URL).")]


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"


class GraphFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    MERMAID = "mermaid"
    DOT = "dot"


Output = Annotated[Format, typer.Option("--format", help="Print a table for people or JSON for programs.")]
By = Annotated[str, typer.Option("--by", help="Who decides (recorded).")]
Reason = Annotated[str, typer.Option("--reason", help="Why (recorded).")]


@contextmanager
def _ledger(db: str | None) -> Iterator[LedgerStore]:
    """The open ledger; every expected failure becomes one line on stderr and exit 1."""
    try:
        with LedgerStore(db) as store:
            yield store
    except (LedgerError, QueryError, registry.RegistryError, ValueError) as error:
        typer.echo(f"lineage: error: {error}", err=True)
        raise typer.Exit(1) from None


def _version_line(version: Any) -> str:
    p = version.properties
    return (
        f"{version.name:<20} {p.get('status', ''):<11} drift {p.get('drift_gate', ''):<10} "
        f"fairness {p.get('fairness_gate', ''):<8} run {p.get('flow_run_id', '')}"
    )


def _print(output: Format, payload: Any, text: Callable[[], str]) -> None:
    typer.echo(json.dumps(payload, indent=2, sort_keys=True) if output == Format.JSON else text())


@app.command()
def verify(
    db: Db = None,
    anchor_count: Annotated[int | None, typer.Option(help="A published head: its record count.")] = None,
    anchor_hash: Annotated[str | None, typer.Option(help="A published head: its hash.")] = None,
) -> None:
    """Recompute the hash chain; name the first bad record if there is one."""
    if (anchor_count is None) != (anchor_hash is None):
        typer.echo("lineage: error: --anchor-count and --anchor-hash go together", err=True)
        raise typer.Exit(1)
    with _ledger(db) as store:
        anchor = Head(anchor_count, anchor_hash) if anchor_count is not None and anchor_hash else None
        result = store.verify(anchor)
    typer.echo(str(result))
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def query(
    start: Annotated[str, typer.Argument(help="An entity id, a model version, 'production', or an artifact URI.")],
    direction: Annotated[Direction, typer.Option(help="Walk up (ascendants), down, or both.")] = Direction.ASCENDANTS,
    depth: Annotated[int, typer.Option(min=1, help="Most hops from the start.")] = 10,
    type_: Annotated[
        list[str] | None, typer.Option("--type", help="Keep only vertices of this type (repeatable), e.g. DataSet.")
    ] = None,
    include_edges: Annotated[bool, typer.Option(help="Add the edges to the JSON output.")] = False,
    output: Annotated[
        GraphFormat, typer.Option("--format", help="A table, JSON, a mermaid flowchart or a Graphviz digraph.")
    ] = GraphFormat.TABLE,
    db: Db = None,
) -> None:
    """QueryLineage: what produced START (ascendants), or what START fed (descendants)."""
    with _ledger(db) as store:
        graph = query_lineage(store, start, direction, depth, type_)
    if output == GraphFormat.JSON:
        typer.echo(graph.to_json(include_edges))
    elif output == GraphFormat.MERMAID:
        typer.echo(graph.to_mermaid())
    elif output == GraphFormat.DOT:
        typer.echo(graph.to_dot())
    else:
        for vertex in graph.vertices:
            typer.echo(f"{vertex.kind:<9} {vertex.type:<13} {vertex.label}  {vertex.id}")


@models_app.command("list")
def models_list(
    status: Annotated[registry.ModelStatus | None, typer.Option(help="Only versions with this status.")] = None,
    output: Output = Format.TABLE,
    db: Db = None,
) -> None:
    """Every model version, oldest first."""
    with _ledger(db) as store:
        found = [v for v in registry.versions(store) if status is None or v.properties.get("status") == status]
    payload = [{"name": v.name, "id": v.id, **v.properties} for v in found]
    _print(output, payload, lambda: "\n".join(_version_line(v) for v in found) or "no model versions")


@models_app.command("show")
def models_show(name: str, output: Output = Format.TABLE, db: Db = None) -> None:
    """One version: status, gate verdicts, and every decision taken on it."""
    with _ledger(db) as store:
        shown = registry.report(store, name)

    def text() -> str:
        lines = [_version_line(shown.version)]
        lines += [f"  {key}: {value}" for key, value in sorted(shown.version.properties.items())]
        lines += [
            f"  gate {g.action_type}: {g.parameters.get('verdict')} at {g.start.isoformat()}" for g in shown.gates
        ]
        for d in shown.decisions:
            p = d.parameters
            lines.append(f"  {d.start.isoformat()} {p.get('decision')} by {p.get('by')}: {p.get('reason')}")
        return "\n".join(lines)

    _print(output, shown.as_dict(), text)


@models_app.command("promote")
def models_promote(
    name: str,
    by: By,
    reason: Reason,
    override: Annotated[bool, typer.Option(help="Promote although a gate did not pass (recorded).")] = False,
    output: Output = Format.TABLE,
    db: Db = None,
) -> None:
    """Make NAME production; the current production version is archived."""
    with _ledger(db) as store:
        version = registry.promote(store, name, by, reason, override)
    _print(output, {"name": version.name, **version.properties}, lambda: f"{version.name} is now production")


@models_app.command("rollback")
def models_rollback(
    by: By,
    reason: Reason,
    to: Annotated[str | None, typer.Option(help="The version to restore (default: the one replaced).")] = None,
    output: Output = Format.TABLE,
    db: Db = None,
) -> None:
    """Restore the previous production version; the current one is marked rejected."""
    with _ledger(db) as store:
        version = registry.rollback(store, by, reason, to)
    _print(output, {"name": version.name, **version.properties}, lambda: f"{version.name} is production again")


@app.command("reproduce")
def reproduce_version(
    version: Annotated[str, typer.Argument(help="A model version's name or id, or 'production'.")],
    remote: Annotated[str | None, typer.Option(help="DVC remote holding the inputs (default: the default).")] = None,
    output: Output = Format.TABLE,
    db: Db = None,
) -> None:
    """Rebuild VERSION from its lineage in a temporary worktree, compare every hash; exit 1 on a mismatch."""
    from lineage.reproduce import reproduce

    with _ledger(db) as store:
        report = reproduce(store, version, Path("."), remote)
    _print(output, report.as_dict(), report.table)
    if not report.ok:
        raise typer.Exit(1)


@export_app.command("openlineage")
def export_openlineage(
    flow_run: Annotated[str | None, typer.Option(help="Only this flow run (default: every run).")] = None,
    output: Annotated[Path | None, typer.Option(help="Write JSON lines here (default: stdout).")] = None,
    url: Annotated[str | None, typer.Option(help="Also send the events to this Marquez-compatible URL.")] = None,
    db: Db = None,
) -> None:
    """RunEvents (START, then COMPLETE or FAIL) for each stage, validated, as JSON lines."""
    from lineage import openlineage  # imported here: the OpenLineage client is slow to import

    with _ledger(db) as store:
        events = openlineage.run_events(store, flow_run)
        lines = openlineage.to_json_lines(events)
        for line in lines.splitlines():
            openlineage.validate(json.loads(line))  # ValueError naming the field: nothing is written
        if output is None:
            sys.stdout.write(lines)
        else:
            output.write_text(lines, encoding="utf-8")
        if url:
            try:
                openlineage.send(events, url)
            except openlineage.SendError as error:
                raise ValueError(str(error)) from error
    typer.echo(f"{len(events)} OpenLineage events" + (f" sent to {url}" if url else ""), err=True)


def main() -> None:
    app(prog_name="lineage")


if __name__ == "__main__":
    main()
