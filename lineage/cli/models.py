"""`lineage models`: the model registry (list, show, promote, approve, rollback)."""

from pathlib import Path
from typing import Annotated, Any

import typer

from gates.table import GATES, recorded
from lineage.cli.root import By, Db, Format, Key, Output, Reason, Remote, Repository, ledger, publish_anchor, show
from lineage.entities import ModelStatus

models_app = typer.Typer(
    help="The model registry: candidate, pending, production, rejected, archived.", no_args_is_help=True
)


def _version_line(version: Any) -> str:
    p = version.properties
    gates = " ".join(f"{gate.name} {verdict:<10}" for gate, verdict in zip(GATES, recorded(p).values(), strict=True))
    return f"{version.name:<20} {p.get('status', ''):<11} {gates} run {p.get('flow_run_id', '')}"


@models_app.command("list")
def models_list(
    status: Annotated[ModelStatus | None, typer.Option(help="Only versions with this status.")] = None,
    output: Output = Format.TABLE,
    db: Db = None,
) -> None:
    """Every model version, oldest first."""
    from lineage import registry
    from lineage.views import version_rows

    with ledger(db) as store:
        found = [v for v in registry.versions(store) if status is None or v.properties.get("status") == status]
        payload = version_rows(store, found) if output == Format.JSON else []
    show(output, payload, lambda: "\n".join(_version_line(v) for v in found) or "no model versions")


@models_app.command("show")
def models_show(name: str, output: Output = Format.TABLE, db: Db = None) -> None:
    """One version: status, gate verdicts, and every decision taken on it."""
    from lineage import registry

    with ledger(db) as store:
        shown = registry.report(store, name)

    def text() -> str:
        lines = [_version_line(shown.version)]
        lines += [f"  {key}: {value}" for key, value in sorted(shown.version.properties.items())]
        lines += [
            f"  gate {g.action_type}: {g.parameters.get('verdict')} at {g.start.isoformat()}" for g in shown.gates
        ]
        for d in shown.decisions:
            p = d.parameters
            trained = f" (trained in ledger {p['trained_in']})" if p.get("trained_in") else ""
            lines.append(f"  {d.start.isoformat()} {p.get('decision')} by {p.get('by')}: {p.get('reason')}{trained}")
        return "\n".join(lines)

    show(output, shown.as_dict(), text)


@models_app.command("promote")
def models_promote(
    name: str,
    by: By,
    key: Key,
    reason: Reason,
    override: Annotated[
        bool, typer.Option(help="Ask to promote although a gate did not pass: a second approver must approve.")
    ] = False,
    output: Output = Format.TABLE,
    repository: Repository = Path("."),
    remote: Remote = None,
    db: Db = None,
) -> None:
    """Make NAME production (the current one is archived), signed with KEY; with --override, a version
    whose gates did not pass becomes pending until a second approver runs `models approve`. The ledger's
    new head is published as an anchor in the DVC remote."""
    from lineage import registry
    from lineage.signatures import Signer

    with ledger(db) as store:
        version = registry.promote(store, name, Signer(by, key), reason, override)
        publish_anchor(store, repository, remote, f"lineage models promote {name} by {by}")
    status = version.properties.get("status")
    message = (
        f"{version.name} is now production"
        if status == ModelStatus.PRODUCTION
        else f"{version.name} is pending: another approver promotes it with `lineage models approve {version.name}`"
    )
    show(output, {"name": version.name, **version.properties}, lambda: message)


@models_app.command("approve")
def models_approve(
    name: str,
    by: By,
    key: Key,
    reason: Reason,
    output: Output = Format.TABLE,
    repository: Repository = Path("."),
    remote: Remote = None,
    db: Db = None,
) -> None:
    """Second approval of NAME's pending override (four eyes): promotes it; refused from the requester."""
    from lineage import registry
    from lineage.signatures import Signer

    with ledger(db) as store:
        version = registry.approve(store, name, Signer(by, key), reason)
        publish_anchor(store, repository, remote, f"lineage models approve {name} by {by}")
    show(output, {"name": version.name, **version.properties}, lambda: f"{version.name} is now production")


@models_app.command("rollback")
def models_rollback(
    by: By,
    key: Key,
    reason: Reason,
    to: Annotated[str | None, typer.Option(help="The version to restore (default: the one replaced).")] = None,
    output: Output = Format.TABLE,
    repository: Repository = Path("."),
    remote: Remote = None,
    db: Db = None,
) -> None:
    """Restore the previous production version, signed with KEY; the current one is marked rejected."""
    from lineage import registry
    from lineage.signatures import Signer

    with ledger(db) as store:
        version = registry.rollback(store, Signer(by, key), reason, to)
        publish_anchor(store, repository, remote, f"lineage models rollback by {by}")
    show(output, {"name": version.name, **version.properties}, lambda: f"{version.name} is production again")
