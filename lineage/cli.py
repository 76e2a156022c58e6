"""`lineage`: verify, query, diff and export the ledger, manage the model registry and its approvers,
reproduce a model version, write its evidence pack, carry a version's lineage to another ledger (`export
bundle`, `import bundle`), and serve the read-only web console (`lineage ui`).

The ledger is LINEAGE_DB_URL (or --db), by default sqlite:///lineage.db in the current directory.
Every error is one line on stderr and exit status 1 (a mistyped command or option: click's usage
message, exit status 2); `verify` exits 1 when the chain is broken.
"""

import dataclasses
import datetime as dt
import io
import json
import os
import re
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

from common.files import write_atomic
from common.redact import redact_text, redact_url
from lineage.entities import Context, ModelStatus
from lineage.query import Direction, query_lineage
from lineage.store import Head, LedgerError, LedgerStore

# Each command imports what only it needs (the registry, signatures, archives), so that a query in a
# fresh process pays for the query, not for every other command's imports.

# Plain help, and a usage error as click's "Error: ..." line (exit 2) rather than a drawn box.
app = typer.Typer(
    help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None
)
models_app = typer.Typer(
    help="The model registry: candidate, pending, production, rejected, archived.", no_args_is_help=True
)
runs_app = typer.Typer(help="Pipeline runs: their stages, timings, gates and configuration.", no_args_is_help=True)
export_app = typer.Typer(help="Export the ledger in other formats.", no_args_is_help=True)
import_app = typer.Typer(help="Bring records from another ledger into this one.", no_args_is_help=True)
approvers_app = typer.Typer(help="Who may sign decisions, with which SSH public key.", no_args_is_help=True)
policy_app = typer.Typer(
    help="The signing policy: may decisions be unsigned, do changes need two approvers.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
app.add_typer(export_app, name="export")
app.add_typer(import_app, name="import")
app.add_typer(approvers_app, name="approvers")
app.add_typer(policy_app, name="policy")
app.add_typer(runs_app, name="runs")


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


class GraphFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    MERMAID = "mermaid"
    DOT = "dot"


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
def _ledger(db: str | None, read_only: bool = False, create: bool = True) -> Iterator[LedgerStore]:
    """The open ledger (with `create` false, only one that exists); every expected failure becomes one line
    on stderr and exit 1."""
    try:
        with LedgerStore(db, read_only, create) as store:
            yield store
    except UnicodeEncodeError as error:  # a name or id given in bytes that are not UTF-8: the ledger is text
        _fail(f"{error.object[:200]!r} is not UTF-8 text")
    except OSError as error:  # a path that cannot even be looked at, e.g. a name too long
        _fail(f"{error.filename}: {error.strerror}" if error.filename else str(error))
    except (LedgerError, ValueError) as error:  # every module's own errors are ValueErrors
        _fail(str(error))


def _version_line(version: Any) -> str:
    p = version.properties
    return (
        f"{version.name:<20} {p.get('status', ''):<11} drift {p.get('drift_gate', ''):<10} "
        f"fairness {p.get('fairness_gate', ''):<8} run {p.get('flow_run_id', '')}"
    )


def _print(output: Format, payload: Any, text: Callable[[], str]) -> None:
    typer.echo(json.dumps(payload, indent=2, sort_keys=True) if output == Format.JSON else text())


def _anchor(count: int | None, digest: str | None) -> Head | None:
    if (count is None) != (digest is None):
        _fail("--anchor-count and --anchor-hash go together")
    if count is None or digest is None:
        return None
    if count < 1:
        _fail(f"--anchor-count must be at least 1, got {count}")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        _fail(f"--anchor-hash must be 64 lowercase hex characters (a sha256), got {digest[:80]!r}")
    return Head(count, digest)


def _fail(message: str) -> NoReturn:
    # Every error line is redacted here too: a driver's or a remote's message may name a URL with credentials.
    typer.echo(f"lineage: error: {redact_text(message).translate(_LINE_BREAKS)}", err=True)
    raise typer.Exit(1)


@app.command()
def verify(
    db: Db = None,
    anchor_count: Annotated[int | None, typer.Option(help="A published head: its record count.")] = None,
    anchor_hash: Annotated[str | None, typer.Option(help="A published head: its hash.")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Rehash every record, not only those since the last verification.")
    ] = False,
    archive: Annotated[
        Path | None, typer.Option(help="Verify this archive file offline instead of the ledger.")
    ] = None,
    repository: Repository = Path("."),
    remote: Remote = None,
) -> None:
    """Recompute the hash chain, check the latest anchor published in the DVC remote, and check every approver,
    policy and decision record and every status change, from the last verification on (every record with
    --full, or of an archive); name the first bad record if there is one. Each verification of the ledger is
    logged (`lineage verifications`)."""
    anchor = _anchor(anchor_count, anchor_hash)
    if archive is not None:
        from lineage.archive import ArchiveError, verify_archive

        try:
            result, signatures, stated = verify_archive(archive, anchor)
        except ArchiveError as error:
            _fail(str(error))
        typer.echo(f"chain {result} (archive {archive}, anchor in its header {stated.count} {stated.head_hash})")
        if anchor is not None and result.ok:
            typer.echo(f"anchor ok: record {anchor.count} hashes to the published {anchor.head_hash}")
        typer.echo(str(signatures) if signatures is not None else "signatures not checked: the chain failed")
        typer.echo("checked: every record")
        if not result.ok or signatures is None or not signatures.ok:
            raise typer.Exit(1)
        return
    from lineage.objects import ObjectError, Objects
    from lineage.verification import verify as check

    with _ledger(db, create=False) as store:
        try:
            verified = check(store, full, anchor, Objects(repository, remote))
        except ObjectError as error:
            _fail(str(error))
        try:
            store.record_verification(verified.logged())
        except LedgerError as error:  # a read-only ledger can still be verified
            typer.echo(f"lineage: warning: {error}", err=True)
    lines = verified.lines()
    lines[0] += " (ledger head row)"
    if anchor is not None and verified.chain.ok:
        lines.insert(1, f"anchor ok: record {anchor.count} hashes to the given {anchor.head_hash}")
    for line in lines:
        typer.echo(line)
    typer.echo(f"checked: {verified.scope()}")
    if not verified.ok:
        raise typer.Exit(1)


@app.command()
def verifications(output: Output = Format.TABLE, db: Db = None) -> None:
    """Every verification of the ledger, oldest first: the records it checked, when, and how it ended."""
    with _ledger(db) as store:
        found = store.verifications()
    payload = [dataclasses.asdict(v) for v in found]
    lines = [
        f"{v.verified_at}  records {v.from_count + 1}-{v.record_count}  {'ok' if v.ok else 'FAILED'}  {v.head_hash}"
        for v in found
    ]
    _print(output, payload, lambda: "\n".join(lines) or "no verifications yet: run `lineage verify`")


@app.command()
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

    with _ledger(db) as store:
        result = compare(store, a, b)
    _print(output, result, lambda: table(result))


def _publish_anchor(store: LedgerStore, repository: Path, remote: str | None, what: str) -> None:
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


def _changed(
    store: LedgerStore, done: tuple[Any, Any], by: str, repository: Path, remote: str | None, what: str
) -> str:
    """What a change of authority did: recorded (an anchor published), or proposed and awaiting signatures."""
    record, proposed = done
    if record is not None:
        _publish_anchor(store, repository, remote, f"{what} by {by}")
        return f"{what}: recorded, signed by {by}"
    signed = ", ".join(entry["signed_by"] for entry in proposed.cosignatures)
    policy = proposed.record.context_type == "LedgerPolicy"
    command = "lineage policy confirm" if policy else f"lineage approvers confirm {proposed.record.name}"
    return f"{what}: proposed, signed so far by {signed}; another approver signs it: {command} --by NAME --key KEY"


@app.command()
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

    with _ledger(db) as store:
        policy_record(unsigned_decisions, four_eyes, "check")  # refuses a bad value before anything is written
        first, _ = initialise(store, Signer(approver, key), unsigned_decisions, four_eyes)
        _publish_anchor(store, repository, remote, f"lineage init by {approver}")
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

    with _ledger(db) as store:
        new = read_public_key(public_key)
        record = approver_record(name, new, by, _ledger_id(store))
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

    with _ledger(db) as store:
        new = read_public_key(public_key)
        done = propose(store, approver_record(name, new, name, _ledger_id(store)), Signer(name, key))
        typer.echo(_changed(store, done, name, repository, remote, f"new key for {name} ({new.sha256_str()})"))


@approvers_app.command("revoke")
def approvers_revoke(
    name: str, by: By, key: Key, repository: Repository = Path("."), remote: Remote = None, db: Db = None
) -> None:
    """Withdraw NAME's right to sign, signed by an approver other than NAME (two under four eyes); their earlier
    signatures stay valid."""
    from lineage.authority import REVOKED, approver_record, current, propose
    from lineage.signatures import Signer

    with _ledger(db) as store:
        old = current(store).keys.get(name)
        if old is None:
            _fail(f"{name!r} is not an active approver")
        done = propose(store, approver_record(name, old, by, _ledger_id(store), REVOKED), Signer(by, key))
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

    with _ledger(db) as store:
        found = [p for p in proposals(store) if p.record.context_type == kind and p.record.name == name]
        if not found:
            _fail(f"no open proposal for {kind} {name!r}: see `lineage approvers list`")
        done = confirm(store, found[-1], Signer(by, key))
        typer.echo(_changed(store, done, by, repository, remote, f"{found[-1].label}"))


@approvers_app.command("list")
def approvers_list(output: Output = Format.TABLE, db: Db = None) -> None:
    """Every approver whose registration holds: name, status, key fingerprint, who registered them; and the
    proposals awaiting signatures."""
    from lineage.authority import approvers, proposals

    with _ledger(db) as store:
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
    _print(output, payload, lambda: "\n".join(lines) or "no approvers: register the first with `lineage init`")


@policy_app.command("show")
def policy_show(db: Db = None) -> None:
    """The ledger's signing policy, as its signed records say."""
    from lineage.authority import current

    with _ledger(db, create=False) as store:
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

    with _ledger(db) as store:
        record = policy_record(unsigned_decisions, four_eyes, _ledger_id(store))
        done = propose(store, record, Signer(by, key))
        typer.echo(_changed(store, done, by, repository, remote, "signing policy"))


@policy_app.command("confirm")
def policy_confirm(by: By, key: Key, repository: Repository = Path("."), remote: Remote = None, db: Db = None) -> None:
    """Add your signature to the open proposal of a new signing policy."""
    from lineage.authority import POLICY_NAME

    _confirm(db, "LedgerPolicy", POLICY_NAME, by, key, repository, remote)


def _ledger_id(store: LedgerStore) -> str:
    ledger_id = store.ledger_id()
    if ledger_id is None:
        _fail("the ledger is empty: create it with `lineage init`")
    return ledger_id


@app.command()
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
    status: Annotated[ModelStatus | None, typer.Option(help="Only versions with this status.")] = None,
    output: Output = Format.TABLE,
    db: Db = None,
) -> None:
    """Every model version, oldest first."""
    from lineage import registry
    from lineage.views import version_rows

    with _ledger(db) as store:
        found = [v for v in registry.versions(store) if status is None or v.properties.get("status") == status]
        payload = version_rows(store, found) if output == Format.JSON else []
    _print(output, payload, lambda: "\n".join(_version_line(v) for v in found) or "no model versions")


@models_app.command("show")
def models_show(name: str, output: Output = Format.TABLE, db: Db = None) -> None:
    """One version: status, gate verdicts, and every decision taken on it."""
    from lineage import registry

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
            trained = f" (trained in ledger {p['trained_in']})" if p.get("trained_in") else ""
            lines.append(f"  {d.start.isoformat()} {p.get('decision')} by {p.get('by')}: {p.get('reason')}{trained}")
        return "\n".join(lines)

    _print(output, shown.as_dict(), text)


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

    with _ledger(db) as store:
        version = registry.promote(store, name, Signer(by, key), reason, override)
        _publish_anchor(store, repository, remote, f"lineage models promote {name} by {by}")
    status = version.properties.get("status")
    message = (
        f"{version.name} is now production"
        if status == ModelStatus.PRODUCTION
        else f"{version.name} is pending: another approver promotes it with `lineage models approve {version.name}`"
    )
    _print(output, {"name": version.name, **version.properties}, lambda: message)


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

    with _ledger(db) as store:
        version = registry.approve(store, name, Signer(by, key), reason)
        _publish_anchor(store, repository, remote, f"lineage models approve {name} by {by}")
    _print(output, {"name": version.name, **version.properties}, lambda: f"{version.name} is now production")


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

    with _ledger(db) as store:
        version = registry.rollback(store, Signer(by, key), reason, to)
        _publish_anchor(store, repository, remote, f"lineage models rollback by {by}")
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
            try:
                write_atomic(output, lines.encode("utf-8"))  # never renamed over a device or FIFO
            except OSError as error:
                raise ValueError(f"{output}: cannot write the events ({error.strerror})") from None
        if url:
            try:
                openlineage.send(events, url)
            except openlineage.SendError as error:
                raise ValueError(str(error)) from error
    typer.echo(f"{len(events)} OpenLineage events" + (f" sent to {redact_url(url)}" if url else ""), err=True)


@export_app.command("archive")
def export_archive(
    output: Annotated[Path, typer.Option(help="The archive file (.jsonl, or .jsonl.gz compressed).")],
    db: Db = None,
) -> None:
    """The whole ledger and its verification anchor in one file, for `lineage verify --archive` offline."""
    from lineage.archive import export

    with _ledger(db) as store:
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
        _fail("--by needs --key (or LINEAGE_SIGNING_KEY): the approver's SSH key")
    with _ledger(db, read_only=True) as store:
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

    with _ledger(db) as store:
        done = run_import(store, file, Objects(repository, remote))
        if done.appended:
            _publish_anchor(store, repository, remote, f"lineage import bundle {file.name}")
    _print(output, done.as_dict(), done.line)


@runs_app.command("list")
def runs_list(
    last: Annotated[int | None, typer.Option(min=1, max=10**9, help="Only the last N runs.")] = None,
    output: Output = Format.TABLE,
    db: Db = None,
) -> None:
    """Every pipeline run, oldest first: when, outcome, commit and the model version it trained."""
    from lineage import views

    with _ledger(db) as store:
        found = views.runs_list(store, last)
    lines = [
        f"{r['name']}  {r.get('started', '')[:19]}  {r.get('model_version') or '-':<20} {r.get('outcome', '')}"
        for r in found
    ]
    _print(output, found, lambda: "\n".join(lines) or "no pipeline runs")


@runs_app.command("show")
def runs_show(flow_run_id: str, output: Output = Format.TABLE, db: Db = None) -> None:
    """One run: its stages with their timings, its gates, and what changed in its configuration."""
    from lineage import views

    with _ledger(db) as store:
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

    _print(output, shown, text)


@app.command()
def evidence(
    version: Annotated[str, typer.Argument(help="A model version's name, or 'production'.")],
    output: Annotated[Path, typer.Option(help="A new (or empty) folder to write the pack into.")],
    repository: Repository = Path("."),
    remote: Remote = None,
    full: Annotated[
        bool, typer.Option("--full", help="Rehash every record, not only those since the last verification.")
    ] = False,
    db: Db = None,
) -> None:
    """Write VERSION's evidence pack: an HTML document and its PDF (EU AI Act Annex IV sections, model card),
    record.json, the OpenLineage events, the ledger's verification, the stored reports and MANIFEST.sha256.
    Exit 1 when the ledger does not verify (the pack still says so)."""
    from lineage.evidence import build
    from lineage.objects import Objects

    with _ledger(db, read_only=True) as store:
        pack = build(store, version, output, Objects(repository, remote), repository, full)
    typer.echo(f"{pack.name}: {len(pack.files)} files in {pack.folder} (check them: sha256sum -c MANIFEST.sha256)")
    if not pack.verified:
        _fail(f"the ledger does not verify: see {pack.folder / 'verification.json'}")


@app.command()
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
            _fail(f"--at: {at[:80]!r} is not an ISO 8601 time, e.g. 2026-12-05T10:00:00Z")
        when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    with _ledger(db, read_only=True) as store:
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
            _fail(f"endpoint '{endpoint}' served nothing at {when.isoformat()}: its first update is at {first}")
        rows = rows[-1:]
    lines = [
        f"{r['since']}  {r['model_version']:<20} on {r['host'] or '-'} (before: {r['previous_version'] or '-'})"
        + ("" if r["verified"] else f"  UNVERIFIED: the decisions that hold had {r['in_production']} in production")
        for r in rows
    ]
    _print(output, rows, lambda: "\n".join(lines))


@app.command()
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
        _fail(str(error))
    try:
        store = LedgerStore(db, read_only=True)
    except LedgerError as error:
        _fail(str(error))
    console = create_app(store, Objects(repository, remote), repository, credentials, os.environ.get("PREFECT_UI_URL"))
    try:
        listening = listen(host, port)
    except ListenError as error:
        store.close()
        _fail(str(error))
    typer.echo(f"lineage console on {url(host, port)} (read-only{', credentials required' if credentials else ''})")
    try:
        run(console, listening)
    finally:
        store.close()


def main() -> None:
    app(prog_name="lineage")


if __name__ == "__main__":
    main()
