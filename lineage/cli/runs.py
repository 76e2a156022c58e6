"""`lineage runs` and `lineage served`: pipeline runs, and which model version an endpoint served when."""

import datetime as dt
from typing import Annotated

import typer

from lineage.cli.root import Db, Format, Output, fail, ledger, show

runs_app = typer.Typer(help="Pipeline runs: their stages, timings, gates and configuration.", no_args_is_help=True)


@runs_app.command("list")
def runs_list(
    last: Annotated[int | None, typer.Option(min=1, max=10**9, help="Only the last N runs.")] = None,
    output: Output = Format.TABLE,
    db: Db = None,
) -> None:
    """Every pipeline run, oldest first: when, outcome, commit and the model version it trained."""
    from lineage import views

    with ledger(db) as store:
        found = views.runs_list(store, last)
    lines = [
        f"{r['name']}  {r.get('started', '')[:19]}  {r.get('model_version') or '-':<20} {r.get('outcome', '')}"
        for r in found
    ]
    show(output, found, lambda: "\n".join(lines) or "no pipeline runs")


@runs_app.command("show")
def runs_show(flow_run_id: str, output: Output = Format.TABLE, db: Db = None) -> None:
    """One run: its stages with their timings, its gates, and what changed in its configuration."""
    from lineage import views

    with ledger(db) as store:
        shown = views.run_view(store, flow_run_id)

    def text() -> str:
        run = shown["run"]
        lines = [f"run {run['name']}: {run.get('outcome')}, {run.get('started')} to {run.get('ended')}"]
        for stage in shown["stages"]:
            took = f"{stage['seconds']:.1f} s" if stage["seconds"] is not None else ""
            lines.append(
                f"  {stage['stage']:<12} {stage['status']:<10} {took:>10}  task run {stage['prefect_task_run_id']}"
            )
        lines += [f"  gate {g['gate']}: {g['verdict']}" for g in shown["gates"]]
        for change in shown["configuration_changes"]:
            lines += [f"  changed {c['key']}: {c['before']} -> {c['after']}" for c in change["changes"] or []]
        return "\n".join(lines)

    show(output, shown, text)


def served(
    endpoint: Annotated[str, typer.Argument(help="An endpoint's name (retail-serve --endpoint).")],
    at: Annotated[
        str | None, typer.Option(help="A time (ISO 8601; UTC when it has no zone): only the version served then.")
    ] = None,
    output: Output = Format.TABLE,
    db: Db = None,
) -> None:
    """Which model version an endpoint served from when: its updates, oldest first, or the one in force at --at."""
    from lineage.predictions import served as updates

    when = None
    if at is not None:
        try:
            when = dt.datetime.fromisoformat(at)
        except ValueError:
            fail(f"--at: {at[:80]!r} is not an ISO 8601 time, e.g. 2026-12-05T10:00:00Z")
        when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    with ledger(db, read_only=True) as store:
        found = updates(store, endpoint)
    rows = [
        {
            "since": f.update.start.isoformat(),
            "model_version": f.update.parameters.get("model_version"),
            "previous_version": f.update.parameters.get("previous_version"),
            "host": f.update.parameters.get("host"),
            "image": f.update.parameters.get("image"),
            "in_production": f.in_production,  # by the decisions that hold, when the update was recorded
            "verified": f.verified,
        }
        for f in found
        if when is None or f.update.start <= when
    ]
    if when is not None:
        if not rows:
            first = found[0].update.start.isoformat()
            fail(f"endpoint '{endpoint}' served nothing at {when.isoformat()}: its first update is at {first}")
        rows = rows[-1:]
    lines = [
        f"{r['since']}  {r['model_version']:<20} on {r['host'] or '-'} (before: {r['previous_version'] or '-'})"
        + ("" if r["verified"] else f"  UNVERIFIED: the decisions that hold had {r['in_production']} in production")
        for r in rows
    ]
    show(output, rows, lambda: "\n".join(lines))
