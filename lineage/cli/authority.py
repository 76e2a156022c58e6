"""`lineage init`, `lineage approvers` and `lineage policy`: who may sign decisions, with which key, under
which signing policy."""

from pathlib import Path
from typing import Annotated, Any

import typer

from lineage.cli.root import (
    By,
    Db,
    Format,
    Key,
    Output,
    Remote,
    Repository,
    fail,
    ledger,
    publish_anchor,
    require_ledger_id,
    show,
)
from lineage.entities import Context, ContextType
from lineage.store import LedgerStore

approvers_app = typer.Typer(help="Who may sign decisions, with which SSH public key.", no_args_is_help=True)
policy_app = typer.Typer(
    help="The signing policy: may decisions be unsigned, do changes need two approvers.", no_args_is_help=True
)


def _changed(
    store: LedgerStore, done: tuple[Any, Any], by: str, repository: Path, remote: str | None, what: str
) -> str:
    """What a change of authority did: recorded (an anchor published), or proposed and awaiting signatures."""
    record, proposed = done
    if record is not None:
        publish_anchor(store, repository, remote, f"{what} by {by}")
        return f"{what}: recorded, signed by {by}"
    signed = ", ".join(entry["signed_by"] for entry in proposed.cosignatures)
    policy = proposed.record.context_type == ContextType.POLICY
    command = "lineage policy confirm" if policy else f"lineage approvers confirm {proposed.record.name}"
    return f"{what}: proposed, signed so far by {signed}; another approver signs it: {command} --by NAME --key KEY"


def init(
    approver: Annotated[str, typer.Option(help="The first approver's name (e.g. an email address).")],
    key: Key,
    unsigned_decisions: Annotated[
        str, typer.Option(help="'refused' (every deployed ledger) or 'allowed' (a local demo ledger).")
    ] = "refused",
    four_eyes: Annotated[
        bool, typer.Option(help="Approver and policy changes need two approvers, once two others are registered.")
    ] = True,
    repository: Repository = Path("."),
    remote: Remote = None,
    db: Db = None,
) -> None:
    """Create the ledger (if needed), register its first approver (self-signed with KEY) and record its signing
    policy, signed by them."""
    from lineage.authority import initialise, policy_record
    from lineage.signatures import Signer

    with ledger(db) as store:
        policy_record(unsigned_decisions, four_eyes, "check")  # refuses a bad value before anything is written
        first, _ = initialise(store, Signer(approver, key), unsigned_decisions, four_eyes)
        publish_anchor(store, repository, remote, f"lineage init by {approver}")
    assert isinstance(first, Context)
    typer.echo(f"{first.name} is the ledger's first approver ({first.properties['fingerprint']}); "
               f"unsigned decisions {unsigned_decisions}, four eyes {'on' if four_eyes else 'off'}")  # fmt: skip


@approvers_app.command("add")
def approvers_add(
    name: str,
    public_key: Annotated[Path, typer.Option(help="The new approver's SSH public key (.pub).")],
    by: By,
    key: Key,
    repository: Repository = Path("."),
    remote: Remote = None,
    db: Db = None,
) -> None:
    """Register NAME with PUBLIC_KEY, signed by an approver other than NAME; under four eyes a second one
    confirms it (`lineage approvers confirm NAME`)."""
    from lineage.authority import approver_record, propose
    from lineage.signatures import Signer, read_public_key

    with ledger(db) as store:
        new = read_public_key(public_key)
        record = approver_record(name, new, by, require_ledger_id(store))
        done = propose(store, record, Signer(by, key))
        typer.echo(_changed(store, done, by, repository, remote, f"registration of {name} ({new.sha256_str()})"))


@approvers_app.command("rotate")
def approvers_rotate(
    name: str,
    public_key: Annotated[Path, typer.Option(help="NAME's new SSH public key (.pub).")],
    key: Annotated[Path, typer.Option("--key", envvar="LINEAGE_SIGNING_KEY", help="NAME's current (old) key.")],
    repository: Repository = Path("."),
    remote: Remote = None,
    db: Db = None,
) -> None:
    """Give NAME a new key, signed by NAME's old key; other approvers confirm it (`lineage approvers confirm NAME`)."""
    from lineage.authority import approver_record, propose
    from lineage.signatures import Signer, read_public_key

    with ledger(db) as store:
        new = read_public_key(public_key)
        done = propose(store, approver_record(name, new, name, require_ledger_id(store)), Signer(name, key))
        typer.echo(_changed(store, done, name, repository, remote, f"new key for {name} ({new.sha256_str()})"))


@approvers_app.command("revoke")
def approvers_revoke(
    name: str, by: By, key: Key, repository: Repository = Path("."), remote: Remote = None, db: Db = None
) -> None:
    """Withdraw NAME's right to sign, signed by an approver other than NAME (two under four eyes); their earlier
    signatures stay valid."""
    from lineage.authority import REVOKED, approver_record, current, propose
    from lineage.signatures import Signer

    with ledger(db) as store:
        old = current(store).keys.get(name)
        if old is None:
            fail(f"{name!r} is not an active approver")
        done = propose(store, approver_record(name, old, by, require_ledger_id(store), REVOKED), Signer(by, key))
        typer.echo(_changed(store, done, by, repository, remote, f"revocation of {name}"))


@approvers_app.command("confirm")
def approvers_confirm(
    name: str, by: By, key: Key, repository: Repository = Path("."), remote: Remote = None, db: Db = None
) -> None:
    """Add your signature to the open proposal to register, re-key or revoke NAME."""
    _confirm(db, "Approver", name, by, key, repository, remote)


def _confirm(db: str | None, kind: str, name: str, by: str, key: Path, repository: Path, remote: str | None) -> None:
    from lineage.authority import confirm, proposals
    from lineage.signatures import Signer

    with ledger(db) as store:
        found = [p for p in proposals(store) if p.record.context_type == kind and p.record.name == name]
        if not found:
            fail(f"no open proposal for {kind} {name!r}: see `lineage approvers list`")
        done = confirm(store, found[-1], Signer(by, key))
        typer.echo(_changed(store, done, by, repository, remote, f"{found[-1].label}"))


@approvers_app.command("list")
def approvers_list(output: Output = Format.TABLE, db: Db = None) -> None:
    """Every approver whose registration holds: name, status, key fingerprint, who registered them; and the
    proposals awaiting signatures."""
    from lineage.authority import approvers, proposals

    with ledger(db) as store:
        found = approvers(store)
        waiting = proposals(store)
    hidden = ("signature", "cosignatures")
    payload = [{"name": a.name, **{k: v for k, v in a.properties.items() if k not in hidden}} for a in found]
    lines = [
        f"{a['name']:<30} {a['status']:<8} {a['fingerprint']}  registered by {a['registered_by']}" for a in payload
    ]
    lines += [
        f"proposed: {p.label}, signed by {', '.join(e['signed_by'] for e in p.cosignatures)}; awaiting confirmation"
        for p in waiting
    ]
    show(output, payload, lambda: "\n".join(lines) or "no approvers: register the first with `lineage init`")


@policy_app.command("show")
def policy_show(db: Db = None) -> None:
    """The ledger's signing policy, as its signed records say."""
    from lineage.authority import current

    with ledger(db, create=False) as store:
        typer.echo(current(store).policy.line())


@policy_app.command("set")
def policy_set(
    unsigned_decisions: Annotated[str, typer.Option(help="'refused' (a deployed ledger) or 'allowed' (a demo).")],
    four_eyes: Annotated[bool, typer.Option(help="Approver and policy changes need two approvers.")],
    by: By,
    key: Key,
    repository: Repository = Path("."),
    remote: Remote = None,
    db: Db = None,
) -> None:
    """Record a new signing policy, signed by an approver (two under four eyes: `lineage policy confirm`)."""
    from lineage.authority import policy_record, propose
    from lineage.signatures import Signer

    with ledger(db) as store:
        record = policy_record(unsigned_decisions, four_eyes, require_ledger_id(store))
        done = propose(store, record, Signer(by, key))
        typer.echo(_changed(store, done, by, repository, remote, "signing policy"))


@policy_app.command("confirm")
def policy_confirm(by: By, key: Key, repository: Repository = Path("."), remote: Remote = None, db: Db = None) -> None:
    """Add your signature to the open proposal of a new signing policy."""
    from lineage.authority import POLICY_NAME

    _confirm(db, "LedgerPolicy", POLICY_NAME, by, key, repository, remote)
