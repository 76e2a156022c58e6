"""`lineage query` and `lineage diff`: what produced what, and what changed between two runs or versions."""

from enum import StrEnum
from typing import Annotated

import typer

from lineage.cli.root import Db, Format, Output, ledger, show
from lineage.query import Direction, query_lineage


class GraphFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    MERMAID = "mermaid"
    DOT = "dot"


def query(
    start: Annotated[
        str, typer.Argument(help="An entity id, a model version, 'production', an endpoint's name, or an artifact URI.")
    ],
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
    with ledger(db) as store:
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


def diff(
    a: Annotated[str, typer.Argument(help="A flow run id, a model version, 'production' or 'previous'.")],
    b: Annotated[str, typer.Argument(help="The same, for the other side.")],
    output: Output = Format.TABLE,
    db: Db = None,
) -> None:
    """What changed from A to B: commits, stage dependencies, params, artifacts, image, platform,
    configuration, metrics and gate verdicts."""
    from lineage.diff import diff as compare
    from lineage.diff import table

    with ledger(db) as store:
        result = compare(store, a, b)
    show(output, result, lambda: table(result))
