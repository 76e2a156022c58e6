"""Every `lineage` command, found by walking the command tree (a new one is covered without a change
here), run with generated arguments: entity ids, version names, paths (a file, a directory, a missing
folder, unicode names), numbers (negative, zero, huge, not numbers), empty strings, unicode, bytes that
are not UTF-8, invalid choices. Each run ends with exit status 0, 1 or 2 and never shows a traceback; a
failure is one line on stderr (exit 1: `lineage: error: ...`; exit 2: click's usage message, one
`Error:` line). In process through CliRunner, and a few cases through the installed entry point."""

from __future__ import annotations

import enum
import hashlib
import inspect
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import traceback
import types
import typing
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import typer.core
import typer.main
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lineage.archive import export
from lineage.cli import app
from lineage.store import LedgerStore
from tests.conftest import VENV_BIN, record_two_weeks, register_approvers

# Per command: about 840 runs in all, 30 s; LINEAGE_CLI_EXAMPLES=400 searches ten times longer.
EXAMPLES = int(os.environ.get("LINEAGE_CLI_EXAMPLES", "40"))
PASSWORD = "s3cret"  # in generated URLs: no output may show it


# -- the command tree --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str  # the callback's parameter
    opts: tuple[str, ...]  # () for an argument
    secondary: tuple[str, ...]  # --no-x
    kind: str  # flag, choice, int, float, path or str
    choices: tuple[str, ...]
    required: bool
    multiple: bool


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    params: tuple[Param, ...]
    group: bool

    def __repr__(self) -> str:
        return f"<lineage {' '.join(self.path)}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how hypothesis shows a failing example
        printer.text(repr(self))


def _kind(annotation: Any) -> tuple[str, tuple[str, ...]]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is list:
        (annotation,) = typing.get_args(annotation)
    if annotation is bool:
        return "flag", ()
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "choice", tuple(str(member.value) for member in annotation)
    for kind, type_ in (("int", int), ("float", float), ("path", Path), ("str", str)):
        if annotation is type_:
            return kind, ()
    raise AssertionError(f"no strategy for a parameter of type {annotation!r}: add one to this test")


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[Command]:
    if isinstance(command, typer.core.TyperGroup):
        yield Command(path, (), group=True)
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
        return
    hints = typing.get_type_hints(inspect.unwrap(command.callback))
    params = []
    for p in command.params:
        kind, choices = _kind(hints[p.name])
        is_option = p.param_type_name == "option"
        params.append(
            Param(p.name, tuple(p.opts) if is_option else (), tuple(p.secondary_opts) if is_option else (),
                  kind, choices, p.required, p.multiple)
        )  # fmt: skip
    yield Command(path, tuple(params), group=False)


COMMANDS = list(_commands(typer.main.get_command(app)))
# Commands that only read the ledger run on the shared one (which must stay as it is); the others, and
# any command added later, on a copy.
READ_ONLY = {
    ("diff",), ("verifications",), ("query",), ("reproduce",), ("models", "list"), ("models", "show"),
    ("approvers", "list"), ("export", "openlineage"), ("export", "archive"), ("runs", "list"), ("runs", "show"),
    ("evidence",), ("ui",), ("export", "bundle"),
}  # fmt: skip
# These report a failed check on stdout with exit status 1 and nothing on stderr.
REPORTS = {("verify",), ("reproduce",)}


def test_the_walk_finds_every_command() -> None:
    leaves = {" ".join(c.path) for c in COMMANDS if not c.group}
    assert leaves >= {
        "verify", "verifications", "diff", "init", "query", "reproduce", "models list", "models show",
        "models promote", "models approve", "models rollback", "export openlineage", "export archive",
        "approvers add", "approvers revoke", "approvers list", "runs list", "runs show", "evidence", "ui",
        "export bundle", "import bundle",
    }  # fmt: skip


# -- a small real ledger, and files of every sort ------------------------------------------------------


@dataclass(frozen=True)
class World:
    ledger: Path
    digest: str
    files: Path  # copied into each run's working directory
    runs: Path
    versions: list[str]
    flow_runs: list[str]
    ids: list[str]  # entity ids, and the head's hash (an anchor)
    keys: dict[str, Path]

    def __repr__(self) -> str:
        return f"<ledger {self.ledger}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_files(folder: Path, store: LedgerStore, keys: dict[str, Path]) -> None:
    folder.mkdir()
    (folder / "notes.txt").write_text("not a key, not an archive\n", encoding="utf-8")
    (folder / "ünïcødé.txt").write_text("ünï\n", encoding="utf-8")
    (folder / "garbage.bin").write_bytes(b"\xff\xfe\x00\x80 not utf-8 \xc3\x28\n")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "folder").mkdir()
    export(store, folder / "archive.jsonl.gz")
    export(store, folder / "archive.jsonl")
    whole = (folder / "archive.jsonl.gz").read_bytes()
    (folder / "truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    (folder / "fake.jsonl.gz").write_text("not gzip\n", encoding="utf-8")
    lines = (folder / "archive.jsonl").read_text(encoding="utf-8").splitlines()
    (folder / "list-header.jsonl").write_text("[]\n" + "\n".join(lines[1:]) + "\n", encoding="utf-8")
    wrong = json.loads(lines[2])
    wrong[0], wrong[7] = str(wrong[0]), 5  # seq as text, body as a number
    (folder / "wrong-types.jsonl").write_text("\n".join([lines[0], lines[1], json.dumps(wrong)]) + "\n")
    (folder / "not-json.jsonl").write_text(lines[0] + "\n{not json\n", encoding="utf-8")
    tampered = json.loads(lines[5])
    tampered[7] += " "  # an edited body: the chain breaks there
    (folder / "tampered.jsonl").write_text("\n".join([*lines[:5], json.dumps(tampered), *lines[6:]]) + "\n")
    corrupt = bytearray(whole)
    corrupt[len(whole) // 2 : len(whole) // 2 + 16] = bytes(16)
    (folder / "corrupt.jsonl.gz").write_bytes(bytes(corrupt))
    (folder / "garbage.pub").write_bytes(b"\xffssh-ed25519 \x80\n")
    shutil.copyfile(keys["alice"], folder / "loose-key")  # 0644: ssh-keygen refuses a key others can read
    (folder / "loose-key").chmod(0o644)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, ssh_keys: dict[str, Path]) -> World:
    """Two runs (week 1 promoted, week 2 rejected by fairness), approvers alice and bob."""
    root = tmp_path_factory.mktemp("cli-properties")
    ledger = root / "lineage.db"
    with LedgerStore(f"sqlite:///{ledger}") as store:
        register_approvers(store, ssh_keys, "alice", "bob")
        versions, flow_runs = record_two_weeks(store, root)
        records = list(store.records())
        # One id of each kind first (CASES names the association's), then a near miss and anchors.
        ids = [next(r.entity_id for r in records if r.kind == kind) for kind in ("association", "artifact", "action")]
        ids += [records[0].entity_id[:-1], store.head().head_hash, "a" * 64]
        _write_files(root / "files", store, ssh_keys)
    (root / "runs").mkdir()
    return World(ledger, _sha256(ledger), root / "files", root / "runs", versions, flow_runs, ids, ssh_keys)


@contextmanager
def workdir(world: World, private_ledger: bool) -> Iterator[Path]:
    """A fresh working directory holding the files (and a copy of the ledger), as the current one; with a
    device node `null` like /dev/null (never the machine's own: a command that renamed over it as root
    would break the machine), which must still be one afterwards."""
    folder = Path(tempfile.mkdtemp(dir=world.runs))
    shutil.copytree(world.files, folder, dirs_exist_ok=True)
    null: Path | None = folder / "null"
    try:
        os.mknod(folder / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:  # not root: `null` is one more missing path
        null = None
    ledger = world.ledger
    if private_ledger:
        ledger = folder / "lineage.db"
        shutil.copyfile(world.ledger, ledger)
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield ledger
        if null is not None:
            assert stat.S_ISCHR(os.lstat(null).st_mode), "a command replaced the device node `null`"
    finally:
        os.chdir(before)
        shutil.rmtree(folder)


# -- generated arguments -----------------------------------------------------------------------------

NOT_UTF8 = os.fsdecode(b"caf\xe9")  # an argv byte that is not UTF-8, as Python decodes it
WORDS = [
    "", " ", "-", "--", "-x", "--help", "0", "-1", "production", "previous", "data/raw", "models/model.pt",
    "x" * 3000, NOT_UTF8, "ünïcødé", "名前", "😀", "e\u0301", "\u202eevil", "a b", "a\nb", "a\rb", "\t", "\u2028",
    "'\"", "\x1b[31mred", "a\x85b", "../../etc/passwd", "%s%n{0}",
]  # fmt: skip
TEXT = st.one_of(
    st.sampled_from(WORDS),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20),
)
INTS = st.one_of(
    st.integers(-3, 400).map(str),
    st.sampled_from(["0", "-1", "-5", str(2**31), str(2**63 - 1), str(2**63), str(-(2**63) - 1), str(10**30)]),
    st.sampled_from(["9" * 5000, "", " ", "abc", "1.5", "1e3", "+3", " 7", "0x10", "1_000", "٣", "-0", NOT_UTF8]),
)
FLOATS = st.one_of(INTS, st.sampled_from(["nan", "inf", "-inf", "1e400", "0.0", "-0.5"]))
PATHS = [
    "notes.txt", "ünïcødé.txt", "garbage.bin", "empty.txt", "folder", "folder/", ".", "", "/", "null",
    "missing.jsonl", "missing/dir/events.jsonl", "/nonexistent/dir/events.jsonl", "ünï/ködé.jsonl",
    "notes.txt/child", "x" * 300, "a\nb.jsonl", f"{NOT_UTF8}.jsonl", "archive.jsonl.gz", "archive.jsonl",
    "truncated.jsonl.gz", "fake.jsonl.gz", "list-header.jsonl", "wrong-types.jsonl", "not-json.jsonl",
    "tampered.jsonl", "corrupt.jsonl.gz", "loose-key", "garbage.pub",
]  # fmt: skip
DBS = [
    "", "not a url", "://", "sqlite://", "sqlite:///fresh.db", "sqlite:///ünï.db", f"sqlite:///{NOT_UTF8}.db",
    "sqlite:///missing/dir/x.db", "sqlite:////nonexistent/x.db", "sqlite:///folder", "sqlite:///notes.txt",
    "sqlite:///garbage.bin", "sqlite:///archive.jsonl", f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/x",
    f"mysql://u:{PASSWORD}@127.0.0.1:1/x", "nosuchdialect://x",
]  # fmt: skip
URLS = [
    "", "not a url", "http://", "http://[::1", "ftp://127.0.0.1:1/", "ünï://x", f"http://u:{PASSWORD}@127.0.0.1:1",
]  # fmt: skip


def _values(param: Param, world: World) -> st.SearchStrategy[str]:
    keys = [str(world.keys[name]) for name in ("alice", "bob", "mallory")]
    if param.kind == "choice":
        near = [param.choices[0].upper(), f"{param.choices[0]} ", param.choices[0][:-1], "xml", NOT_UTF8]
        return st.one_of(st.sampled_from(param.choices), st.sampled_from(near), TEXT)
    if param.kind == "int":
        return INTS
    if param.kind == "float":
        return FLOATS
    if param.kind == "path" and param.name == "key":
        return st.sampled_from([*keys, f"{keys[0]}.pub", *PATHS])
    if param.kind == "path" and param.name == "public_key":
        return st.sampled_from([f"{keys[1]}.pub", f"{keys[2]}.pub", keys[0], *PATHS])
    if param.kind == "path":
        return st.sampled_from(PATHS)
    if param.name == "db":
        return st.sampled_from(DBS)
    if param.name == "url":
        return st.sampled_from(URLS)
    known = [*world.versions, *world.flow_runs, *world.ids, "alice", "bob", "mallory"]
    return st.one_of(st.sampled_from(known), TEXT)


# One run in four makes one usage mistake; the others are well formed, so their values reach the code.
SLIPS = ["omit a required parameter", "an option without its value", "an unknown option", "an extra word", "--help"]


@st.composite
def invocations(draw: st.DrawFn, command: Command, world: World) -> tuple[list[str], dict[str, str | None]]:
    """The argv after `lineage`, and the environment."""
    env: dict[str, str | None] = {
        "LINEAGE_SIGNING_KEY": None, "SSH_AUTH_SOCK": None, "OPENLINEAGE_API_KEY": None, "LINEAGE_UI_TOKEN": None,
        "LINEAGE_UI_USERNAME": None, "LINEAGE_UI_PASSWORD": None,
        "PREFECT_API_URL": "http://127.0.0.1:1/api",  # --credentials-block: no Prefect server answers there
    }  # fmt: skip
    if command.group:
        rest = draw(st.one_of(st.sampled_from([[], ["nope"], ["--bogus"], ["--help"]]), TEXT.map(lambda t: [t])))
        return [*command.path, *rest], env
    slip = draw(st.sampled_from([None] * 15 + SLIPS))
    required = [p for p in command.params if p.required]
    omitted = draw(st.sampled_from(required)) if slip == SLIPS[0] and required else None
    arguments = [
        draw(_values(p, world))
        for p in command.params
        if not p.opts and p is not omitted and (p.required or draw(st.booleans()))
    ]
    options: list[list[str]] = []
    for p in command.params:
        if not p.opts or p is omitted:
            continue
        if p.kind == "flag":
            options.append(draw(st.sampled_from([[], *([o] for o in p.opts + p.secondary)])))
        elif p.required or draw(st.integers(0, 3 if p.name == "db" else 1)) == 0:  # --db: mostly LINEAGE_DB_URL's
            for _ in range(draw(st.integers(1, 3)) if p.multiple else 1):
                name, value = draw(st.sampled_from(p.opts)), draw(_values(p, world))
                options.append(draw(st.sampled_from([[name, value], [f"{name}={value}"]])))
    words = arguments + [word for option in draw(st.permutations(options)) for word in option]
    valued = [p for p in command.params if p.opts and p.kind != "flag"]
    if slip == SLIPS[1] and valued:
        words.append(draw(st.sampled_from(valued)).opts[0])
    elif slip == SLIPS[2]:
        words.insert(draw(st.integers(0, len(words))), "--bogus")
    elif slip == SLIPS[3]:
        words.append(draw(TEXT))
    elif slip == SLIPS[4]:
        words.append("--help")
    if any(p.name == "key" for p in command.params):
        key = Param("key", (), (), "path", (), False, False)
        env["LINEAGE_SIGNING_KEY"] = draw(st.one_of(st.none(), _values(key, world)))
    return [*command.path, *words], env


# -- the property --------------------------------------------------------------------------------------


def check(command: Command, argv: Sequence[str], status: int, stdout: str, stderr: str) -> None:
    shown = f"lineage {argv!r} exited {status}\n--- stdout\n{stdout[-3000:]}\n--- stderr\n{stderr[-3000:]}"
    assert "Traceback" not in stdout + stderr, shown
    assert status in (0, 1, 2), shown
    if status != 2:  # (click's usage message repeats the words typed)
        assert PASSWORD not in stdout + stderr, shown
    lines = stderr.splitlines()
    if status == 0:
        assert len(lines) <= 1, shown
        assert not any(line.startswith("lineage: error:") for line in lines), shown
    elif status == 1:
        if command.path in REPORTS and stdout and all(line.startswith("lineage: warning: ") for line in lines):
            assert len(lines) <= 1, shown  # the failed check is on stdout
        else:
            assert len(lines) == 1, shown
            assert lines[0].startswith("lineage: error: "), shown
            assert not BARE.match(lines[0]), f"a bare Python message, naming neither input nor problem: {shown}"
    else:  # click's usage message: usage, a hint and one Error: line, or a bare group's help
        errors = [line for line in lines if line.startswith("Error:")]
        bare_group = command.group and lines and lines[0].startswith("Usage:") and "Commands:" in stderr
        assert len(errors) == 1 or (bare_group and not errors), shown


# An exception's own message passed on as is: it names neither the input nor what is wrong with it.
BARE = re.compile(
    r"lineage: error: ('[\w-]+' codec|\[Errno|[A-Z]\w+(Error|Exception)\b|\w*Path\(|invalid literal|"
    r"Python int too large|int too large|expected str|can't |embedded null|list index|'NoneType')"
)
RUNNER = CliRunner()


def run_in_process(argv: Sequence[str], env: dict[str, str | None]) -> tuple[int, str, str]:
    # `lineage ui` binds its port, then serves until stopped: here it stops as soon as it would serve.
    with mock.patch.object(uvicorn.Server, "run", return_value=None):
        result = RUNNER.invoke(app, list(argv), env=env, prog_name="lineage")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        crash = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"lineage {list(argv)!r} raised:\n{crash}\n--- stderr\n{result.stderr}")
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c.path) or "lineage")
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_every_command_ends_in_0_1_or_2_with_at_most_one_error_line(
    command: Command, world: World, data: st.DataObject
) -> None:
    argv, env = data.draw(invocations(command, world), label="argv, env")
    with workdir(world, private_ledger=command.path not in READ_ONLY) as ledger:
        status, stdout, stderr = run_in_process(argv, {**env, "LINEAGE_DB_URL": f"sqlite:///{ledger}"})
    check(command, argv, status, stdout, stderr)
    assert _sha256(world.ledger) == world.digest, f"lineage {argv!r} changed the shared ledger"


# -- known cases, and the installed entry point ----------------------------------------------------------

# What the property found (and the two issues known before it), each with a line the output must hold.
CASES = [
    (1, ["verify", "--anchor-count", "-5", "--anchor-hash", "abc"],
     "lineage: error: --anchor-count must be at least 1, got -5"),
    (1, ["export", "openlineage", "--output", "/nonexistent/dir/events.jsonl"],
     "lineage: error: /nonexistent/dir/events.jsonl: cannot write the events (No such file or directory)"),
    (1, ["query", NOT_UTF8], "lineage: error: 'caf\\udce9' is not UTF-8 text"),
    (1, ["models", "show", "a\nb"], "lineage: error: no model version 'a\\nb' in the ledger"),
    (1, ["verify", "--archive", "truncated.jsonl.gz"],
     "lineage: error: truncated.jsonl.gz: cannot read the archive (not a whole gzip file: "),
    (1, ["approvers", "add", "carol", "--public-key", "garbage.bin", "--by", "alice", "--key", "notes.txt"],
     "lineage: error: garbage.bin: not an OpenSSH key file (byte 0 is not UTF-8 text)"),
    (0, ["export", "archive", "--output", f"{NOT_UTF8}.jsonl"], "records written to caf\ufffd.jsonl; anchor "),
    (0, ["export", "openlineage", "--db", "sqlite://", "--url", f"http://u:{PASSWORD}@127.0.0.1:1"],
     "0 OpenLineage events sent to http://u:***@127.0.0.1:1"),
    (0, ["export", "archive", "--output", "null"], "records written to null; anchor "),
    (1, ["export", "archive", "--output", "folder"], "lineage: error: folder: is a folder; an output goes to a file"),
    (1, ["query", "{association}"], "is an association (an edge), not an entity: query its source or destination"),
    (1, ["init", "--db", "sqlite:///fresh.db", "--approver", "carol", "--key", "."],
     "lineage: error: .: no such key file"),
    (1, ["init", "--db", "sqlite:///fresh.db", "--approver", "carol", "--key", "x" * 300],
     f"lineage: error: {'x' * 300}: File name too long"),
    (1, ["import", "bundle", "notes.txt"], "lineage: error: notes.txt: not a lineage bundle: truncated or not JSON ("),
    (1, ["import", "bundle", "."], "lineage: error: .: cannot read the bundle (Is a directory)"),
    (2, ["query", "production", "--format", "xml"], "Error: Invalid value for '--format'"),
    (2, ["models", "list", "--status", NOT_UTF8], "Error: Invalid value for '--status'"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "argv", "shown"), CASES, ids=[" ".join(c[1])[:50] for c in CASES])
def test_known_cases_in_process_and_through_the_entry_point(
    status: int, argv: list[str], shown: str, world: World
) -> None:
    command = next(c for c in COMMANDS if tuple(argv[: len(c.path)]) == c.path and not c.group)
    argv = [word.replace("{association}", world.ids[0]) for word in argv]
    env: dict[str, str | None] = {"LINEAGE_SIGNING_KEY": None, "SSH_AUTH_SOCK": None, "OPENLINEAGE_API_KEY": None}
    with workdir(world, private_ledger=True) as ledger:
        db = {"LINEAGE_DB_URL": f"sqlite:///{ledger}"}
        inside = run_in_process(argv, {**env, **db})
        # A strict UTF-8 stdout, as under a UTF-8 locale other than C.UTF-8 (and as in CliRunner).
        outside_env = {k: v for k, v in os.environ.items() if k not in env} | db | {"PYTHONIOENCODING": "utf-8"}
        done = subprocess.run(
            [os.fsencode(VENV_BIN / "lineage"), *map(os.fsencode, argv)],
            env=outside_env, capture_output=True, check=False, timeout=120,
        )  # fmt: skip
    outside = (done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
    for where, (got, stdout, stderr) in (("in process", inside), ("entry point", outside)):
        check(command, argv, got, stdout, stderr)
        assert got == status, f"{where}: lineage {argv!r} exited {got}\n{stdout}\n{stderr}"
        assert shown in stdout + stderr, f"{where}: lineage {argv!r}\n{stdout}\n{stderr}"
    assert inside == outside
