"""A ledger of many recorded runs, built in minutes rather than hours: `build(url, runs, root)` fills an
empty ledger with `runs` weekly runs of the real shape without calling `record_run` once per run.

How: the first 2 x CYCLE + 1 weeks are recorded with `record_run` on the stand-in workspace
(tests/lineage_workspace.py), exactly as bench/bench_lineage.py records them, into a scratch ledger.
Weeks CYCLE+1 .. 2 x CYCLE are the templates (steady state: week 0 also records the shared code
artifacts and configuration; one week in ten fails the fairness gate, as in bench_lineage). Comparing
each template week with the week CYCLE before it, whose records have the same shape, tells which tokens
(uuids, md5s, a model version's 12-hex name, content-derived ids) belong to a run and which are shared
(code artifacts, the `local` and `production` deployments, params.yaml...). Run i > 2 x CYCLE copies
template week w = i - k x CYCLE with its tokens replaced by values derived from (token, i) (sha256, same
length and charset), the ids derived from content (`artifact_id`, `context_id`, `association_id`)
recomputed from the replaced parts, and a token of an earlier run (the production version a promotion
replaces, and the one that replaced) replaced by that run's; so every record still validates, version i
replaces version i-1, and the ledger's last promotion names the production version.

The rows (the real weeks' too) are hash-chained here and inserted in large executemany batches through
SQLAlchemy core, the secondary indexes dropped meanwhile and rebuilt after, then the head row is set and
`rebuild_latest` writes the current-state table. Same `runs` and `root` (the workspace's path is in the
records), same head hash. Timestamps other than uuids and hashes keep the template week's values.

`python -m tests.bulk_ledger --runs N --db URL` (default: a SQLite file in a temp dir, deleted after).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any
from unittest import mock

from sqlalchemy import Connection, Engine, create_engine, event, update

from lineage.entities import Action, artifact_id, association_id, context_id
from lineage.store import (
    GENESIS,
    HASHED_COLUMNS,
    Head,
    Kind,
    LedgerRecord,
    LedgerStore,
    along_chain,
    canonical_json,
    head_table,
    latest_table,
    rebuild_latest,
    record_hash,
    records_table,
)
from tests.lineage_workspace import record_week, run_info

CYCLE = 10  # template weeks; week % 10 == 3 fails the fairness gate (bench_lineage.record_week)
# Weeks 0 and 1 differ from the rest (week 0 records the shared artifacts, week 1 archives a version that
# replaced none): weeks 2 .. CYCLE+1 are compared with the templates, weeks CYCLE+2 .. 2 x CYCLE+1.
FIRST_TEMPLATE = CYCLE + 2
REAL_WEEKS = FIRST_TEMPLATE + CYCLE  # recorded with record_run
BATCH = 20_000  # rows per executemany
TRANSACTION = 200_000  # rows per transaction

# The columns that can hold a run's tokens; seq, kind and entity_type never do.
_TEXT = ("entity_id", "name", "source_id", "destination_id", "body")
_TOKEN = re.compile(
    r"(?:artifact|context|association)-[0-9a-f]{32}(?![0-9A-Za-z])"  # an id derived from content
    r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![0-9A-Za-z])"  # a uuid
    r"|(?<![0-9A-Za-z])[0-9a-f]{12,}(?![0-9A-Za-z])"  # an md5, a model version's name
)
_DERIVED = re.compile(r"(artifact|context|association)-[0-9a-f]{32}")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SEP = "\x00"  # between a run's rendered texts: canonical JSON escapes it, and ids never hold it


class BulkError(RuntimeError):
    """The template weeks do not have the shape replication relies on; the message says where."""


# -- recording the template weeks --------------------------------------------------------------------------


@contextmanager
def _seeded_uuids() -> Iterator[None]:
    """uuid4 made deterministic while the template weeks are recorded (run ids, task run ids, actions)."""
    counter = itertools.count()

    def uuid4() -> uuid.UUID:
        return uuid.UUID(bytes=hashlib.sha256(f"bulk-ledger:{next(counter)}".encode()).digest()[:16], version=4)

    with mock.patch("uuid.uuid4", uuid4):
        yield


def _pinned(record: LedgerRecord, start: dt.datetime, end: dt.datetime) -> LedgerRecord:
    """An action timed by the wall clock (a promotion decision) pinned to the run's end, so that the ledger
    does not depend on when it was built."""
    if record.kind != Kind.ACTION:
        return record
    action = record.entity()
    assert isinstance(action, Action)
    if start <= action.start <= end and (action.end is None or start <= action.end <= end):
        return record
    pinned = action.model_copy(update={"start": end, "end": end})
    return record._replace(body=canonical_json(pinned.model_dump(mode="json")))


def record_templates(root: Path, weeks: int) -> list[list[LedgerRecord]]:
    """Weeks 0 .. weeks-1 recorded with `record_run` in a scratch ledger: each week's records, in order."""
    runs: list[list[LedgerRecord]] = []
    root.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory() as scratch,
        LedgerStore(f"sqlite:///{Path(scratch) / 'templates.db'}") as store,
        _seeded_uuids(),
    ):
        for week in range(weeks):
            before = store.head().count
            record_week(store, root, week)
            info = run_info(week)
            records = store.records(after=before)
            runs.append([_pinned(record, info.start, info.end) for record in records])
    return runs


# -- tokens ----------------------------------------------------------------------------------------------


def _pieces(value: str | None, column: str) -> list[str]:
    """`value` split into literal text and tokens: odd positions are tokens. In the body, only JSON strings
    hold tokens (a float's digits are no md5)."""
    if value is None:
        return []
    if column != "body":
        return _split(value)
    pieces = [""]
    last = 0
    for string in _JSON_STRING.finditer(value):
        pieces[-1] += value[last : string.start()]
        inner = _split(string.group())
        pieces[-1] += inner[0]
        pieces += inner[1:]
        last = string.end()
    pieces[-1] += value[last:]
    return pieces


def _split(text: str) -> list[str]:
    pieces: list[str] = []
    last = 0
    for match in _TOKEN.finditer(text):
        pieces += [text[last : match.start()], match.group()]
        last = match.end()
    return [*pieces, text[last:]]


def _tokens(run: Sequence[LedgerRecord]) -> list[str]:
    """Every token of the run, in order of position (record, column, place)."""
    return [token for record in run for column in _TEXT for token in _pieces(getattr(record, column), column)[1::2]]


def _shape(run: Sequence[LedgerRecord]) -> list[tuple[Any, ...]]:
    return [
        (r.kind, r.entity_type, *(None if getattr(r, c) is None else len(_pieces(getattr(r, c), c)) for c in _TEXT))
        for r in run
    ]


def _recipes(runs: Sequence[Sequence[LedgerRecord]]) -> dict[str, tuple[Callable[..., str], tuple[str, ...]]]:
    """For each entity id derived from content: the derivation and the strings it derives from."""
    recipes: dict[str, tuple[Callable[..., str], tuple[str, ...]]] = {}
    for record in itertools.chain.from_iterable(runs):
        recipe: tuple[Callable[..., str], tuple[str, ...]]
        if record.kind == Kind.ARTIFACT:
            recipe = (artifact_id, (str(record.name), str(json.loads(record.body)["md5"])))
        elif record.kind == Kind.CONTEXT:
            recipe = (context_id, (record.entity_type, str(record.name)))
        elif record.kind == Kind.ASSOCIATION:
            recipe = (association_id, (str(record.source_id), str(record.destination_id), record.entity_type))
        else:
            continue
        if recipe[0](*recipe[1]) != record.entity_id:
            raise BulkError(f"record {record.seq}: {record.entity_id} does not derive from {recipe[1]}")
        recipes[record.entity_id] = recipe
    return recipes


def _renamed(token: str, run: int) -> str:
    """The token of run `run` standing where `token` stands in its template: same length and charset."""
    digest = hashlib.sha256(f"{token}:{run}".encode()).digest()
    if len(token) == 36 and token[8] == "-":
        return str(uuid.UUID(bytes=digest[:16], version=4))
    hexdigest = digest.hex()
    while len(hexdigest) < len(token):
        hexdigest += hashlib.sha256(hexdigest.encode()).hexdigest()
    return hexdigest[: len(token)]


def _fast_id(prefix: str, parts: Sequence[str]) -> str:
    """lineage.entities' derivation of an id from its parts, as the replicated runs compute it (used only
    where it gives the id lineage derived)."""
    return f"{prefix}-{sha256(json.dumps(list(parts)).encode()).hexdigest()[:32]}"


# -- templates -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Slot:
    """How run i gets one token of its template. `primary`: the token that run i - template week + `owner`
    has where week `rep_week` has `rep`; `prefix`: the first `length` characters of slot `source`;
    `derived`: `derive` over the argument formats; `fast`: `rep` + the sha256 of the one argument format."""

    kind: str
    rep: str = ""
    owner: int = 0
    rep_week: int = 0
    source: int = 0
    length: int = 0
    derive: Callable[..., str] | None = None
    arguments: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Row:
    kind: str
    entity_type: str
    present: tuple[bool, ...]  # per _TEXT column: not NULL


def _literal(text: str) -> str:
    if _SEP in text:
        raise BulkError(f"a template record holds the separator character: {text[:80]!r}")
    return text.replace("{", "{{").replace("}", "}}")


def _escaped(text: str) -> str:
    return _literal(json.dumps(text, ensure_ascii=True)[1:-1])


class _Template:
    """One template week, compiled into one format string over run i's slot values ({0[k]}) and seqs
    ({1[k]}): for each record, its hashed columns as canonical JSON up to prev_hash's opening quote, then
    each of its text columns that is not NULL, all joined by _SEP."""

    def __init__(self, week: int, run: Sequence[LedgerRecord], planner: _Planner) -> None:
        self.week = week
        self.slots: list[_Slot] = []
        self._index: dict[str, int] = {}
        self._planner = planner
        self.rows: list[_Row] = []
        segments: list[str] = []
        for position, record in enumerate(run):
            row, texts = self._row(position, record)
            self.rows.append(row)
            segments += texts
        self.text = _SEP.join(segments)

    def _format(self, value: str | None, column: str) -> tuple[str, str] | None:
        """(raw format, JSON-escaped format) of a column value, run-specific tokens as slots."""
        if value is None:
            return None
        raw, escaped = [], []
        for position, piece in enumerate(_pieces(value, column)):
            if position % 2 and piece in self._planner.specific:
                field = f"{{0[{self._slot(piece)}]}}"
                raw.append(field)
                escaped.append(field)
            else:
                raw.append(_literal(piece))
                escaped.append(_escaped(piece))
        return "".join(raw), "".join(escaped)

    def _row(self, position: int, record: LedgerRecord) -> tuple[_Row, list[str]]:
        if record.kind in (Kind.ARTIFACT, Kind.ASSOCIATION) and record.entity_id not in self._planner.specific:
            raise BulkError(f"week {self.week} records shared entity {record.entity_id} again: not a steady state")
        formats = {column: self._format(getattr(record, column), column) for column in _TEXT}
        hashed = [f"{{1[{position}]}}"]
        for column in HASHED_COLUMNS[1:-1]:
            if column in _TEXT:
                pair = formats[column]
                hashed.append("null" if pair is None else f'"{pair[1]}"')
            else:
                hashed.append(f'"{_escaped(getattr(record, column))}"')
        texts = ["[" + ",".join(hashed) + ',"'] + [pair[0] for pair in formats.values() if pair is not None]
        present = tuple(formats[column] is not None for column in _TEXT)
        return _Row(record.kind, record.entity_type, present), texts

    def render(self, run: int, first_seq: int) -> str:
        """Run `run`'s records (the first with seq `first_seq`), as _SEP-joined texts."""
        return self.text.format(self.values(run), [str(first_seq + k) for k in range(len(self.rows))])

    def _slot(self, token: str) -> int:
        if token in self._index:
            return self._index[token]
        planner = self._planner
        slot: _Slot
        if _DERIVED.fullmatch(token):
            if token not in planner.recipes:
                raise BulkError(f"week {self.week}: no record says what {token} derives from")
            derive, arguments = planner.recipes[token]
            pairs = [pair for argument in arguments if (pair := self._format(argument, "")) is not None]
            if _fast_id(token.split("-")[0], arguments) == token:
                # The derivation done here, over the JSON text of its parts: no json.dumps per id.
                text = '["' + '", "'.join(escaped for _, escaped in pairs) + '"]'
                slot = _Slot("fast", rep=token.split("-")[0] + "-", arguments=(text,))
            else:
                slot = _Slot("derived", derive=derive, arguments=tuple(raw for raw, _ in pairs))
        elif (longer := planner.prefixed.get(token)) is not None:
            slot = _Slot("prefix", source=self._slot(longer), length=len(token))
        else:
            rep, rep_week = planner.representative(token)
            slot = _Slot("primary", rep=rep, owner=planner.owner[token], rep_week=rep_week)
        self._index[token] = len(self.slots)
        self.slots.append(slot)
        return self._index[token]

    def values(self, run: int) -> list[str]:
        """Run `run`'s value for every slot (its own tokens, and those of the earlier runs it names)."""
        values: list[str] = []
        for slot in self.slots:
            if slot.kind == "primary":
                week = run - self.week + slot.owner  # the run whose token this is
                values.append(slot.rep if week == slot.rep_week else _renamed(slot.rep, week))
            elif slot.kind == "prefix":
                values.append(values[slot.source][: slot.length])
            elif slot.kind == "fast":
                values.append(slot.rep + sha256(slot.arguments[0].format(values).encode()).hexdigest()[:32])
            else:
                assert slot.derive is not None
                values.append(slot.derive(*(argument.format(values) for argument in slot.arguments)))
        return values


class _Planner:
    """What the real weeks say: each token's first week (its owner), which tokens are a run's own
    (`specific`), the same token one cycle later, what each derived id derives from."""

    def __init__(self, runs: Sequence[Sequence[LedgerRecord]]) -> None:
        self.runs = runs
        tokens = [_tokens(run) for run in runs]
        self.owner: dict[str, int] = {}
        for week, found in enumerate(tokens):
            for token in found:
                self.owner.setdefault(token, week)
        self.specific: set[str] = set()
        shared: set[str] = set()
        self.ahead: dict[str, str] = {}  # a token of a compared week t -> the one in its place in week t+CYCLE
        for week in range(FIRST_TEMPLATE - CYCLE, FIRST_TEMPLATE):
            later = week + CYCLE
            if _shape(runs[week]) != _shape(runs[later]):
                raise BulkError(f"weeks {week} and {later} differ in shape: they cannot be compared")
            for token, twin in zip(tokens[week], tokens[later], strict=True):
                if token == twin:
                    shared.add(token)
                    continue
                self.specific |= {token, twin}
                if self.owner[token] == week and self.ahead.setdefault(token, twin) != twin:
                    raise BulkError(f"{token} of week {week} stands for two tokens of week {later}")
        if both := self.specific & shared:
            raise BulkError(f"tokens both shared and run-specific: {sorted(both)[:3]}")
        self.recipes = _recipes(runs)
        # A run-specific token that begins another of the same week (a version's name, its model's md5).
        longer = [t for t in self.specific if not _DERIVED.fullmatch(t) and "-" not in t]
        self.prefixed = {
            short: long_
            for short in longer
            for long_ in longer
            if len(long_) > len(short) and long_.startswith(short) and self.owner[long_] == self.owner[short]
        }

    def representative(self, token: str) -> tuple[str, int]:
        """The token in the template weeks standing for `token`, and its week."""
        week = self.owner[token]
        while week < FIRST_TEMPLATE:
            if week < FIRST_TEMPLATE - CYCLE or token not in self.ahead:
                raise BulkError(f"{token} (week {week}) has no counterpart in the template weeks")
            token, week = self.ahead[token], week + CYCLE
            if self.owner[token] != week:
                raise BulkError(f"{token}'s counterpart first appears in week {self.owner[token]}, not {week}")
        return token, week


# -- writing -------------------------------------------------------------------------------------------------

_COLUMNS = [column.name for column in records_table.columns]
if ["seq", "kind", *_TEXT[:1], "entity_type", *_TEXT[1:], "prev_hash", "record_hash"] != _COLUMNS:
    raise BulkError(f"ledger_records has columns this builder does not know: {_COLUMNS}")
_CHUNK = 200  # runs rendered per task
_AHEAD = 4  # chunks rendered ahead of the writer

_templates: list[_Template] = []  # in a rendering worker: the templates it was started with


def _start_worker(templates: list[_Template]) -> None:
    global _templates
    _templates = templates


def _render(first_run: int, runs: int, first_seq: int) -> list[str]:
    """Runs first_run .. first_run+runs-1 rendered, the first record of the first with seq first_seq."""
    texts = []
    for run in range(first_run, first_run + runs):
        template = _templates[(run - REAL_WEEKS) % CYCLE]
        texts.append(template.render(run, first_seq))
        first_seq += len(template.rows)
    return texts


# A ledger being built is of no use until its head is set: no journal, no syncs, a large page cache.
_FAST_SQLITE = ("synchronous = OFF", "journal_mode = MEMORY", "cache_size = -1000000", "temp_store = MEMORY")


def _bulk_engine(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _fast(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            for pragma in _FAST_SQLITE:
                cursor.execute(f"PRAGMA {pragma}")
            cursor.close()

    return engine


def _real_rows(runs: Sequence[Sequence[LedgerRecord]]) -> list[tuple[Any, ...]]:
    rows, prev = [], GENESIS
    for record in itertools.chain.from_iterable(runs):
        columns = [*record[:-2], prev]
        prev = record_hash(columns)
        rows.append((*columns, prev))
    return rows


def _check(rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows of the first replicated runs, checked the slow way: the store's own hash, and every record
    parses into the entity its entity_id names."""
    for record in along_chain(LedgerRecord(*row) for row in rows):
        if record_hash(record[:-1]) != record.record_hash:
            raise BulkError(f"seq {record.seq}: the assembled hash differs from record_hash's")
        entity = record.entity()
        if entity.id != record.entity_id:
            raise BulkError(f"seq {record.seq}: entity_id {record.entity_id} but the body says {entity.id}")


class _Writer:
    """Rows into ledger_records in executemany batches, a transaction per TRANSACTION rows."""

    def __init__(self, conn: Connection) -> None:
        marker = {"qmark": "?", "format": "%s", "pyformat": "%s"}[conn.dialect.paramstyle]
        self.sql = (
            f"INSERT INTO {records_table.name} ({', '.join(_COLUMNS)}) VALUES ({', '.join([marker] * len(_COLUMNS))})"
        )
        self.conn = conn
        self.pending: list[tuple[Any, ...]] = []
        self.written = 0
        conn.begin()

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self.pending += rows
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self, commit: bool = False) -> None:
        if self.pending:
            self.conn.exec_driver_sql(self.sql, self.pending)
            self.written += len(self.pending)
            self.pending = []
        if commit or self.written >= TRANSACTION:
            self.conn.commit()
            self.written = 0
            if not commit:
                self.conn.begin()


def _replicated(templates: list[_Template], runs: int, seq: int, workers: int) -> Iterator[tuple[_Template, str]]:
    """Each replicated run's template and rendering, in order: rendered by `workers` processes, at most
    _AHEAD chunks ahead, or here if `workers` is 0."""
    chunks = []
    for first in range(REAL_WEEKS, runs, _CHUNK):
        count = min(_CHUNK, runs - first)
        chunks.append((first, count, seq + 1))
        seq += sum(len(templates[(run - REAL_WEEKS) % CYCLE].rows) for run in range(first, first + count))
    if not workers:
        _start_worker(templates)
        for first, count, first_seq in chunks:
            yield from zip(_cycle(templates, first, count), _render(first, count, first_seq), strict=True)
        return
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(templates,)) as pool:
        queued: deque[tuple[int, int, Future[list[str]]]] = deque()
        for first, count, first_seq in chunks:
            queued.append((first, count, pool.submit(_render, first, count, first_seq)))
            if len(queued) > _AHEAD:
                first_done, count_done, future = queued.popleft()
                yield from zip(_cycle(templates, first_done, count_done), future.result(), strict=True)
        while queued:
            first_done, count_done, future = queued.popleft()
            yield from zip(_cycle(templates, first_done, count_done), future.result(), strict=True)


def _cycle(templates: list[_Template], first: int, count: int) -> list[_Template]:
    return [templates[(run - REAL_WEEKS) % CYCLE] for run in range(first, first + count)]


def build(
    url: str, runs: int, root: Path, progress: Callable[[str], None] | None = None, workers: int | None = None
) -> Head:
    """Fill the empty ledger at `url` with `runs` weekly runs (the workspace under `root`); its head.
    `workers`: processes rendering runs beside the one writing them (default: one where there are two
    cores or more)."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1, got {runs}")
    if workers is None:
        workers = 1 if (os.cpu_count() or 1) > 1 and runs > REAL_WEEKS + 10 * _CHUNK else 0
    with LedgerStore(url) as store:  # creates the tables
        if store.head().count:
            raise BulkError(f"the ledger at {url} is not empty")
    real = record_templates(root, min(runs, REAL_WEEKS))
    templates: list[_Template] = []
    if runs > REAL_WEEKS:
        planner = _Planner(real)
        templates = [_Template(week, real[week], planner) for week in range(FIRST_TEMPLATE, REAL_WEEKS)]
    engine = _bulk_engine(url)
    try:
        with engine.begin() as conn:
            for index in [*records_table.indexes, *latest_table.indexes]:
                index.drop(conn, checkfirst=True)
        with engine.connect() as conn:
            writer = _Writer(conn)
            rows = _real_rows(real)
            writer.add(rows)
            seq, prev = rows[-1][0], rows[-1][-1]
            checked, reported = REAL_WEEKS + CYCLE, REAL_WEEKS
            for run, (template, text) in enumerate(_replicated(templates, runs, seq, workers), start=REAL_WEEKS):
                parts = text.split(_SEP)
                rows, at = [], 0
                for row in template.rows:
                    seq += 1
                    hashed = parts[at]
                    at += 1
                    columns: list[str | None] = []
                    for present in row.present:
                        columns.append(parts[at] if present else None)
                        at += present
                    digest = hashlib.sha256(f'{hashed}{prev}"]'.encode()).hexdigest()
                    entity_id, name, source_id, destination_id, body = columns
                    rows.append((seq, row.kind, entity_id, row.entity_type, name, source_id, destination_id, body,
                                 prev, digest))  # fmt: skip
                    prev = digest
                if run < checked:
                    _check(rows)
                writer.add(rows)
                if progress and run + 1 - reported >= 10_000:
                    reported = run + 1
                    progress(f"{run + 1:,} runs, {seq:,} records")
            writer.flush(commit=True)
        with engine.begin() as conn:
            if progress:
                progress(f"{seq:,} records written; indexing them")
            for index in records_table.indexes:
                index.create(conn)
            if progress:
                progress("rebuilding ledger_latest")
            rebuild_latest(conn)
            for index in latest_table.indexes:
                index.create(conn)
            conn.execute(update(head_table).where(head_table.c.id == 1).values(record_count=seq, head_hash=prev))
            if engine.dialect.name == "postgresql":  # the planner's statistics, as autovacuum would have them by now
                conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()
    with LedgerStore(url) as store:
        return store.head()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL of an empty ledger (default: a temp SQLite)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        url = arguments.db or f"sqlite:///{Path(scratch) / 'lineage.db'}"
        began = time.perf_counter()
        head = build(url, arguments.runs, Path(scratch), lambda line: print(f"  {line}", flush=True))
        seconds = time.perf_counter() - began
    print(f"ledger: {arguments.runs:,} runs, {head.count:,} records, head {head.head_hash}, built in {seconds:.1f} s")


if __name__ == "__main__":
    main()
