"""The ledger store: an append-only, hash-chained table of entity records behind SQLAlchemy.

Each record is (seq, kind, entity_id, entity_type, name, source_id, destination_id, body, prev_hash,
record_hash). `body` is the entity as canonical JSON; entity_type, name (an artifact's source URI, a
context's name) and source_id/destination_id (an association's ends) repeat what the body says in
indexed columns, so that graph queries need no scan. `record_hash` is sha256 over the JSON array of
every other column, in that order, and `prev_hash` is the previous record's `record_hash` (GENESIS for
seq 1). A one-row head table holds the
record count and the last hash, updated in the same transaction as every append, so that deleting the
last records is caught too. Publish the head hash elsewhere (the flow does, with each run) and pass it
back to `verify` as an anchor to catch a ledger rewritten wholesale.

Two derived tables sit beside the chain. `ledger_latest` holds each entity's first and latest seq,
written in the same transaction as the records, so the latest record of an entity or of every entity
of a type is an index lookup however long its history; `verify` checks it against the records.
`ledger_verifications` logs each verification, so the next one can start where the last passing one
ended (`verify(since=...)`) and an auditor can see what was checked and when.

SQLite (`sqlite:///lineage.db`) is the default; `LINEAGE_DB_URL` or the `url` argument selects any
other SQLAlchemy URL, e.g. `postgresql+psycopg://user@host:5432/lineage`.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import hashlib
import json
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    exists,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.sql import Select

from common.redact import error_line, redact_url
from lineage import ledger_format
from lineage.entities import (
    Action,
    Artifact,
    Association,
    AssociationType,
    Context,
    ContextType,
    Entity,
    artifact_id,
    association_id,
    context_id,
)
from lineage.errors import LineageError

GENESIS = "0" * 64
DEFAULT_URL = "sqlite:///lineage.db"
_HEAD_ID = 1
_CREATE_LOCK = 7_000_001  # PostgreSQL advisory lock key serialising concurrent table creation
_IN_CHUNK = 500  # ids per IN (...) lookup, well under every backend's parameter limit

metadata = MetaData()
records_table = Table(
    "ledger_records",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),
    Column("entity_id", String(200), nullable=False, index=True),
    Column("entity_type", String(32), nullable=False),
    Column("name", Text, nullable=True),
    Column("source_id", String(200), nullable=True, index=True),
    Column("destination_id", String(200), nullable=True, index=True),
    Column("body", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("record_hash", String(64), nullable=False),
    Index("ix_ledger_records_type", "kind", "entity_type"),
    Index("ix_ledger_records_type_entity", "kind", "entity_type", "entity_id", "seq"),  # the entities of a type
    Index("ix_ledger_records_name", "name", "seq"),  # an artifact by its path
    # An entity's latest record (and whether a later one exists) in one index probe, however long its history.
    Index("ix_ledger_records_entity_seq", "entity_id", "seq"),
)
# The current state: each entity's first and latest record, written in the same transaction as the
# records (so reading an entity's latest record, or every entity of a type, needs no scan of its
# history) and checked against the records by `verify`.
latest_table = Table(
    "ledger_latest",
    metadata,
    Column("entity_id", String(200), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("entity_type", String(32), nullable=False),
    Column("name", Text, nullable=True),
    Column("first_seq", Integer, nullable=False),
    Column("seq", Integer, nullable=False),
)
# Every `lineage verify`: what it checked (records from_count+1 .. record_count), how it ended, when.
# The last passing one is where the next incremental verification starts.
verifications_table = Table(
    "ledger_verifications",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("from_count", Integer, nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("head_hash", String(64), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("result", Text, nullable=False),
    Column("verified_at", String(40), nullable=False),
)
head_table = Table(
    "ledger_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("record_count", Integer, nullable=False),
    Column("head_hash", String(64), nullable=False),
)


class Kind(StrEnum):
    ARTIFACT = "artifact"
    ACTION = "action"
    CONTEXT = "context"
    ASSOCIATION = "association"


_MODELS: dict[Kind, type[Entity]] = {
    Kind.ARTIFACT: Artifact,
    Kind.ACTION: Action,
    Kind.CONTEXT: Context,
    Kind.ASSOCIATION: Association,
}
# Content-addressed kinds: recording one again is a no-op that returns the existing seq.
_REUSED = (Kind.ARTIFACT, Kind.ASSOCIATION)


class LedgerError(LineageError):
    """The ledger cannot be opened or written; the message is one line, without passwords."""


class LedgerConflict(LedgerError):
    """Another writer appended between a read and the append that depended on it."""


class NewerFormat(LedgerError):
    """A record written in a ledger format this code does not know (lineage/ledger_format.py): newer code wrote it."""


class Problem(StrEnum):
    EDITED = "edited"  # the record's columns no longer hash to its record_hash
    RELINKED = "relinked"  # seq or prev_hash out of line: a record was inserted, deleted or reordered
    HEAD_MISMATCH = "head_mismatch"  # the chain ends elsewhere than the head (or anchor) says: truncated
    ANCHOR_MISMATCH = "anchor_mismatch"  # the record at an anchor's count no longer has the anchor's hash
    STATE_MISMATCH = "state_mismatch"  # the current-state table does not point at an entity's records
    MISFILED = "misfiled"  # the record's indexed columns (its id, type, name, ends) are not what its body says


_EXPLAIN = {
    Problem.EDITED: "hash mismatch, the record was edited",
    Problem.RELINKED: "chain link mismatch, a record was inserted, deleted or reordered",
    Problem.HEAD_MISMATCH: "the chain end does not match the head, records were truncated or added outside the store",
    Problem.ANCHOR_MISMATCH: "record {seq}'s hash differs from the anchor's",
    Problem.STATE_MISMATCH: "the current-state table (ledger_latest) does not match the records",
    Problem.MISFILED: "the record is filed under columns its body does not say",
}


@dataclass(frozen=True)
class Head:
    """The number of records and the hash of the last one (GENESIS when empty)."""

    count: int
    head_hash: str


class _Columns(NamedTuple):
    """One stored row, its columns in table order."""

    seq: int
    kind: str
    entity_id: str
    entity_type: str
    name: str | None
    source_id: str | None
    destination_id: str | None
    body: str
    prev_hash: str
    record_hash: str


class LedgerRecord(_Columns):
    """One stored row, its columns in table order (all that is hashed and compared), and `format`: the ledger format
    its body is written in, which the chain's format declarations before it say (lineage/ledger_format.py). The store
    sets it on what it reads; `along_chain` on records read from elsewhere (an archive, a bundle)."""

    format: int | None = None  # not a column: unknown until the chain says

    def _replace(self, **columns: Any) -> LedgerRecord:
        """The record with other columns, in the same format."""
        replaced = super()._replace(**columns)
        replaced.format = self.format
        return replaced

    def entity(self) -> Entity:
        """The entity this record holds, its body upgraded in memory from its format to the code's."""
        return _parse(self.kind, self.body, _readable(self))


def _readable(record: LedgerRecord) -> int:
    """The record's format, if this code can read it."""
    if record.format is None:
        raise LedgerError(f"record {record.seq}: its ledger format is unknown (read it through a store or along_chain)")
    if not ledger_format.FIRST <= record.format <= ledger_format.CURRENT:
        raise NewerFormat(
            f"record {record.seq} is written in ledger format {record.format}, and this code reads formats "
            f"{ledger_format.FIRST} to {ledger_format.CURRENT}: read the ledger with a newer release"
        )
    return record.format


def along_chain(records: Iterable[LedgerRecord], version: int = ledger_format.FIRST) -> Iterator[LedgerRecord]:
    """`records` in seq order (every format declaration among them, as in an archive or a bundle), each with the
    format the declarations before it say; `version`: the format before the first of them."""
    for record in records:
        found = LedgerRecord(*record)
        found.format = version
        yield found
        declared = ledger_format.declared_version(found.kind, found.entity_type, found.body)
        version = version if declared is None else declared


@dataclass(frozen=True, kw_only=True)
class VerifyResult:
    """The outcome of `verify`. `count` and `head_hash` are the head row's (on success, the chain's).
    On failure, `seq` is the first position where the chain breaks and `entity_id` the entity of the
    record found there (None when it is missing)."""

    ok: bool
    count: int
    head_hash: str
    seq: int | None = None
    entity_id: str | None = None
    problem: Problem | None = None
    detail: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.count} records, head {self.head_hash}"
        where = ("" if self.seq is None else f"seq {self.seq} ") + (
            f"(entity {self.entity_id})" if self.entity_id else ""
        )
        explained = _EXPLAIN[self.problem].format(seq=self.seq) if self.problem else ""
        return f"FAILED at {where}: {explained} ({self.detail})"


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no whitespace, ASCII only, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


HASHED_COLUMNS = [column.name for column in records_table.columns if column.name != "record_hash"]


def record_hash(columns: Sequence[Any]) -> str:
    """sha256 over every other stored column (HASHED_COLUMNS, in order), seq and prev_hash included."""
    return hashlib.sha256(canonical_json(list(columns)).encode()).hexdigest()


def _indexed_columns(entity: Entity) -> dict[str, str | None]:
    """What the body says that queries look up: the type, the name or URI, an edge's two ends."""
    if isinstance(entity, Artifact):
        return {"entity_type": entity.artifact_type, "name": entity.source_uri}
    if isinstance(entity, Context):
        return {"entity_type": entity.context_type, "name": entity.name}
    if isinstance(entity, Action):
        return {"entity_type": entity.action_type}
    return {
        "entity_type": entity.association_type,
        "source_id": entity.source_id,
        "destination_id": entity.destination_id,
    }


def record_columns(entity: Entity) -> dict[str, str | None]:
    """The columns a record of `entity` has before its place in the chain (seq, prev_hash) is known."""
    columns: dict[str, str | None] = {"kind": _kind(entity).value, "entity_id": entity.id}
    columns |= {"name": None, "source_id": None, "destination_id": None}
    columns |= {key: None if value is None else str(value) for key, value in _indexed_columns(entity).items()}
    return columns | {"body": canonical_json(entity.model_dump(mode="json"))}


def _kind(entity: Entity) -> Kind:
    for kind, model in _MODELS.items():
        if isinstance(entity, model):
            return kind
    raise TypeError(f"not a lineage entity: {type(entity).__name__}")


# Parsing and validating a record is most of a read's cost. Entities are frozen and a record's text
# never changes, so a parse is kept by the text itself (and its format): an edited record is a different key.
@functools.lru_cache(maxsize=8192)
def _parse(kind: str, body: str, version: int) -> Entity:
    model = _MODELS[Kind(kind)]
    if version == ledger_format.CURRENT:
        return model.model_validate_json(body)
    # An older body in today's shape, in memory only: the stored text (what is hashed and signed) stays as it is.
    return model.model_validate_json(orjson.dumps(ledger_format.upgraded(kind, orjson.loads(body), version)))


@functools.lru_cache(maxsize=8192)
def _edge(source_id: str, destination_id: str, association_type: str) -> Association:
    return Association(
        source_id=source_id, destination_id=destination_id, association_type=AssociationType(association_type)
    )


# Each entity's latest record, found through the current-state table. The table is only an index into
# the chain: a row counts where the record it points at is its entity's and no later record of that
# entity exists; any other row is passed over and the entity read from the records themselves.
_later = records_table.alias("later")
_CURRENT = (
    select(records_table)
    .join(
        records_table,
        (records_table.c.seq == latest_table.c.seq) & (records_table.c.entity_id == latest_table.c.entity_id),
    )
    .where(~exists().where(_later.c.entity_id == latest_table.c.entity_id, _later.c.seq > latest_table.c.seq))
)
END = 2**31 - 1  # a seq past every record (`before=END`: all of them)
_TIP = select(records_table.c.seq, records_table.c.record_hash).order_by(records_table.c.seq.desc()).limit(1)
# An entity's first record before a seq (prebuilt: readers ask it for every decision they judge).
_FIRST_BEFORE = (
    select(records_table)
    .where(records_table.c.entity_id == bindparam("entity_id"), records_table.c.seq < bindparam("before"))
    .order_by(records_table.c.seq)
    .limit(1)
)
# The same from the records alone: each entity's record with the highest seq.
_LAST_SEQ = select(func.max(_later.c.seq)).where(_later.c.entity_id == records_table.c.entity_id).scalar_subquery()
_FROM_RECORDS = select(records_table).where(records_table.c.seq == _LAST_SEQ)


def _latest_from_records() -> Select[Any]:
    """The current-state rows as the records say they are: every entity's first and last seq, with
    the kind, type and name of its last record."""
    spans = (
        select(
            records_table.c.entity_id,
            func.min(records_table.c.seq).label("first_seq"),
            func.max(records_table.c.seq).label("seq"),
        )
        .group_by(records_table.c.entity_id)
        .subquery()
    )
    return select(
        spans.c.entity_id,
        records_table.c.kind,
        records_table.c.entity_type,
        records_table.c.name,
        spans.c.first_seq,
        spans.c.seq,
    ).join(records_table, records_table.c.seq == spans.c.seq)


def rebuild_latest(conn: Connection) -> None:
    """Write the current-state table afresh from the records (for a ledger that predates it, or one
    built by bulk insertion)."""
    conn.execute(latest_table.delete())
    conn.execute(insert(latest_table).from_select([c.name for c in latest_table.columns], _latest_from_records()))


def _add_missing_indexes(conn: Connection) -> None:
    """The records' indexes on a ledger created before one of them existed (create_all makes a new table's
    only). A role that may not create them (the endpoint's) reads without: they only make reads faster."""
    present = {index["name"] for index in inspect(conn).get_indexes(records_table.name)}
    for index in records_table.indexes:
        if index.name not in present:
            try:
                with conn.begin_nested():
                    index.create(conn)
            except SQLAlchemyError:
                pass


class LedgerStore:
    """The ledger at one SQLAlchemy URL. Append and read only: there is no update or delete."""

    def __init__(self, url: str | None = None, read_only: bool = False, create: bool = True) -> None:
        """Open (and, unless `read_only` or not `create`, create) the ledger at `url`. A read-only store
        creates nothing and its connections refuse every write in the database itself (SQLite's query_only,
        PostgreSQL's read-only transactions): what the console and evidence packs read through. With
        `create` false, a ledger that does not exist yet is an error (`lineage verify` of a mistyped path)."""
        self.url = url or os.environ.get("LINEAGE_DB_URL") or DEFAULT_URL
        # The ledger's format declarations, (seq, version) in seq order, known up to a seq: read once, then only
        # the newer ones (a declaration is never undone). The latest declared version, once it is the code's.
        self._declared: tuple[int, list[tuple[int, int]]] = (0, [])
        self._declared_current = False
        self._formats_lock = threading.Lock()
        try:
            self._engine = self._create_engine(self.url, read_only or not create)
            if read_only or not create:
                self._check_exists()
            if not read_only:
                if not create:
                    self._engine.dispose()
                    self._engine = self._create_engine(self.url)
                self._create_tables()
        except (SQLAlchemyError, ArgumentError, ImportError, ValueError) as exc:
            raise LedgerError(
                f"cannot open the lineage ledger at {_redact(self.url)}: {_one_line(exc, self.url)}"
            ) from exc

    @staticmethod
    def _create_engine(url: str, read_only: bool = False) -> Engine:
        parsed = make_url(url)
        if read_only and parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if not database or database == ":memory:" or not os.path.isfile(database):
                raise ValueError(f"no ledger file {database or '(in memory)'}")  # connecting would create one
        engine = create_engine(url)
        if read_only:

            @event.listens_for(engine, "connect")
            def _refuse_writes(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                if engine.dialect.name == "sqlite":
                    cursor.execute("PRAGMA query_only = ON")
                else:
                    cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                cursor.close()
                if engine.dialect.name != "sqlite":
                    dbapi_connection.commit()

        if engine.dialect.name == "sqlite":
            # pysqlite starts transactions lazily, after our first read: take over BEGIN so an append
            # holds the write lock (BEGIN IMMEDIATE) from its first statement, before reading the head.
            @event.listens_for(engine, "connect")
            def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.isolation_level = None

            @event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                mode = "IMMEDIATE" if conn.get_execution_options().get("ledger_write") else "DEFERRED"
                conn.exec_driver_sql(f"BEGIN {mode}")

        return engine

    def _create_tables(self) -> None:
        with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK})
            metadata.create_all(conn)
            _add_missing_indexes(conn)
            # A missing head beside existing records is tampering: leave it for verify to report.
            empty = conn.execute(select(records_table.c.seq).limit(1)).first() is None
            if empty and conn.execute(select(head_table.c.id)).first() is None:
                conn.execute(insert(head_table).values(id=_HEAD_ID, record_count=0, head_hash=GENESIS))
            if not empty and conn.execute(select(latest_table.c.seq).limit(1)).first() is None:
                rebuild_latest(conn)  # a ledger written before the current-state table existed

    @property
    def location(self) -> str:
        """The ledger's URL with any password masked: what messages and pages may show."""
        return _redact(self.url)

    def _check_exists(self) -> None:
        with self._engine.connect() as conn:
            if not self._engine.dialect.has_table(conn, head_table.name):
                raise ValueError("it holds no ledger tables")

    def close(self) -> None:
        """Release the connection pool."""
        self._engine.dispose()

    def __enter__(self) -> LedgerStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------------

    def append(self, entities: Sequence[Entity], expected_head: Head | None = None) -> list[int]:
        """Record `entities` in one transaction, all or nothing; return each one's seq, in order.

        An Artifact or Association already in the ledger (or earlier in `entities`) is not recorded
        again: its seq is that of its first record. Actions and Contexts always get a new record.
        `expected_head`: refuse (LedgerConflict) if anything was appended since the caller read this
        head, so a decision taken on what the ledger said is never recorded on top of a newer state.
        """
        if any(isinstance(e, Context) and e.context_type == ContextType.LEDGER_FORMAT for e in entities):
            raise LedgerError("a format declaration is the store's own record: it writes one when the format changes")
        try:
            with self._engine.connect().execution_options(ledger_write=True) as conn, conn.begin():
                seqs = self._append(conn, entities, expected_head)
        except (SQLAlchemyError, ValueError) as exc:  # ValueError: a value JSON cannot hold, e.g. NaN
            raise LedgerError(f"append to {_redact(self.url)} failed: {_one_line(exc, self.url)}") from exc
        self._declared_current = True  # committed: the ledger now declares (or already declared) the code's format
        return seqs

    def _append(self, conn: Connection, entities: Sequence[Entity], expected_head: Head | None) -> list[int]:
        # The head row lock (FOR UPDATE on PostgreSQL; BEGIN IMMEDIATE already holds SQLite's write
        # lock) serialises appenders, so two writers can never extend the chain from the same head.
        head = conn.execute(
            select(head_table.c.record_count, head_table.c.head_hash)
            .where(head_table.c.id == _HEAD_ID)
            .with_for_update()
        ).first()
        if head is None:
            raise LedgerError(f"the ledger at {_redact(self.url)} has no head row: run verify")
        count, prev = head.record_count, head.head_hash
        if expected_head is not None and expected_head != Head(count, prev):
            raise LedgerConflict(
                f"the ledger changed since it was read ({expected_head.count} -> {count} records): retry"
            )
        declare = not self._declared_current and self._declared_version(conn) < ledger_format.CURRENT
        if declare:  # the records after it are written in the code's format, those before it in older ones
            entities = [ledger_format.declaration(ledger_format.CURRENT), *entities]
        kinds = [_kind(entity) for entity in entities]
        known = self._first_seqs(conn, [entity.id for entity in entities])  # entity id -> its first seq
        first_new = count + 1
        rows: list[dict[str, Any]] = []
        latest: dict[str, dict[str, Any]] = {}  # the current-state rows this append writes
        seqs: list[int] = []
        for entity, kind in zip(entities, kinds, strict=True):
            if kind in _REUSED and entity.id in known:
                seqs.append(known[entity.id])
                continue
            count += 1
            row: dict[str, Any] = {
                "seq": count,
                "kind": kind.value,
                "entity_id": entity.id,
                "name": None,
                "source_id": None,
                "destination_id": None,
                **{key: None if value is None else str(value) for key, value in _indexed_columns(entity).items()},
                "body": canonical_json(entity.model_dump(mode="json")),
                "prev_hash": prev,
            }
            digest = record_hash([row[column] for column in HASHED_COLUMNS])
            rows.append({**row, "record_hash": digest})
            seqs.append(count)
            prev = digest
            latest[entity.id] = {
                "entity_id": entity.id,
                "kind": row["kind"],
                "entity_type": row["entity_type"],
                "name": row["name"],
                "first_seq": known.setdefault(entity.id, count),
                "seq": count,
            }
        if rows:
            conn.execute(insert(records_table), rows)
            self._write_latest(conn, latest, first_new)
            conn.execute(
                update(head_table).where(head_table.c.id == _HEAD_ID).values(record_count=count, head_hash=prev)
            )
        return seqs[1:] if declare else seqs

    def _declared_version(self, conn: Connection) -> int:
        """The ledger's latest declared format (FIRST without a declaration); refused if it is newer than the
        code's, whose records would follow it in an older format."""
        c = records_table.c
        query = select(c.seq, c.kind, c.entity_type, c.body).where(
            c.kind == Kind.CONTEXT.value, c.entity_type == ContextType.LEDGER_FORMAT.value
        )
        row = conn.execute(query.order_by(c.seq.desc()).limit(1)).first()
        version = ledger_format.FIRST if row is None else ledger_format.declared_version(*row[1:])
        if version is None or not ledger_format.FIRST <= version <= ledger_format.CURRENT:
            raise NewerFormat(
                f"record {row and row.seq} declares ledger format {version}, and this code writes format "
                f"{ledger_format.CURRENT}: append with a newer release"
            )
        return version

    def _format_of(self, seq: int) -> int:
        """The format of the record at `seq`: that of the latest declaration before it (FIRST without one)."""
        upto, declared = self._declared
        if seq - 1 > upto:  # records this store has not seen yet: read the declarations among them
            with self._formats_lock:
                upto, declared = self._declared
                if seq - 1 > upto:
                    c = records_table.c
                    with self._engine.connect() as conn:
                        tip = conn.execute(select(func.max(c.seq))).scalar() or 0
                        query = select(c.seq, c.kind, c.entity_type, c.body).where(
                            c.kind == Kind.CONTEXT.value, c.entity_type == ContextType.LEDGER_FORMAT.value,
                            c.seq > upto, c.seq <= tip,
                        )  # fmt: skip
                        found = [(row.seq, ledger_format.declared_version(*row[1:])) for row in conn.execute(query)]
                    declared = sorted([*declared, *((s, v) for s, v in found if v is not None)])
                    upto = max(upto, tip)
                    self._declared = (upto, declared)
        at = bisect.bisect_left(declared, (seq, 0))  # the declarations before seq
        return declared[at - 1][1] if at else ledger_format.FIRST

    def _record(self, row: Sequence[Any]) -> LedgerRecord:
        """A stored row as a record, with its format."""
        record = LedgerRecord(*row)
        record.format = self._format_of(record.seq)
        return record

    @staticmethod
    def _first_seqs(conn: Connection, ids: list[str]) -> dict[str, int]:
        """Each id's first seq, from the records (whether an artifact is already recorded is the chain's to say)."""
        found: dict[str, int] = {}
        unique = sorted(set(ids))
        c = records_table.c
        for start in range(0, len(unique), _IN_CHUNK):
            query = (
                select(c.entity_id, func.min(c.seq))
                .where(c.entity_id.in_(unique[start : start + _IN_CHUNK]))
                .group_by(c.entity_id)
            )
            found.update({entity_id: seq for entity_id, seq in conn.execute(query)})
        return found

    @staticmethod
    def _write_latest(conn: Connection, latest: dict[str, dict[str, Any]], first_new: int) -> None:
        """Insert the current-state rows of entities new in this append (first recorded at or after
        seq `first_new`) and move those of entities recorded before."""
        new = [row for row in latest.values() if row["first_seq"] >= first_new]
        moved = [row for row in latest.values() if row["first_seq"] < first_new]
        if new:
            conn.execute(insert(latest_table), new)
        if moved:
            conn.execute(
                update(latest_table)
                .where(latest_table.c.entity_id == bindparam("moved_id"))
                .values(seq=bindparam("moved_seq"), entity_type=bindparam("moved_type"), name=bindparam("moved_name")),
                [
                    {"moved_id": r["entity_id"], "moved_seq": r["seq"], "moved_type": r["entity_type"],
                     "moved_name": r["name"]}
                    for r in moved
                ],
            )  # fmt: skip

    # -- reading ------------------------------------------------------------------------------------

    def head(self) -> Head:
        """The head row (count 0 and GENESIS if it is missing)."""
        with self._engine.connect() as conn:
            return self._head(conn)

    @staticmethod
    def _head(conn: Connection) -> Head:
        row = conn.execute(
            select(head_table.c.record_count, head_table.c.head_hash).where(head_table.c.id == _HEAD_ID)
        ).first()
        return Head(0, GENESIS) if row is None else Head(row.record_count, row.head_hash)

    def records(
        self,
        of: Sequence[tuple[Kind, str]] | None = None,
        after: int = 0,
        upto: int | None = None,
        ids: Iterable[str] | None = None,
        newest_first: bool = False,
    ) -> Iterator[LedgerRecord]:
        """Every record in seq order (or the reverse), streamed; or only those of these (kind, entity type)
        pairs, with seq in (after, upto], or of these entity ids. The read stays open while it is consumed:
        finish it (or take a list) before writing to a SQLite ledger."""
        with self._engine.connect() as conn:
            for record in self._stream(conn, of, after, upto, None if ids is None else sorted(set(ids)), newest_first):
                record.format = self._format_of(record.seq)
                yield record

    def tip(self) -> Head:
        """The chain's last record (its seq and hash), whatever the head row says: what identifies the ledger's
        state for a reader (the head row is not chained, so it must not decide an answer)."""
        with self._engine.connect() as conn:
            row = conn.execute(_TIP).first()
        return Head(0, GENESIS) if row is None else Head(row.seq, row.record_hash)

    def first_record(self, entity_id: str, before: int = END) -> LedgerRecord | None:
        """The entity's first record with seq < `before`, or None: one index probe."""
        with self._engine.connect() as conn:
            row = conn.execute(_FIRST_BEFORE, {"entity_id": entity_id, "before": before}).first()
        return None if row is None else self._record(row)

    def record(self, seq: int) -> LedgerRecord | None:
        """The record at `seq`, or None."""
        with self._engine.connect() as conn:
            row = conn.execute(select(records_table).where(records_table.c.seq == seq)).first()
        return None if row is None else self._record(row)

    def ledger_id(self) -> str | None:
        """The ledger's id: the hash of its first record (fixed at genesis, the same wherever it is copied), or
        None while it is empty."""
        first = self.record(1)
        return None if first is None else first.record_hash

    @staticmethod
    def _stream(
        conn: Connection,
        of: Sequence[tuple[Kind, str]] | None = None,
        after: int = 0,
        upto: int | None = None,
        ids: list[str] | None = None,
        newest_first: bool = False,
    ) -> Iterator[LedgerRecord]:
        c = records_table.c
        query = select(records_table).order_by(c.seq.desc() if newest_first else c.seq)
        if of is not None:
            query = query.where(or_(*((c.kind == kind.value) & (c.entity_type == type_) for kind, type_ in of)))
        if after:
            query = query.where(c.seq > after)
        if upto is not None:
            query = query.where(c.seq <= upto)
        if ids is not None:  # a few ids (each IN list is one query), in seq order across them
            chunks = [query.where(c.entity_id.in_(ids[i : i + _IN_CHUNK])) for i in range(0, len(ids), _IN_CHUNK)]
            found = (LedgerRecord(*row) for chunk in chunks for row in conn.execute(chunk))
            rows = sorted(found, key=lambda r: r.seq, reverse=newest_first)
            yield from rows
            return
        for row in conn.execution_options(yield_per=2000).execute(query):
            yield LedgerRecord(*row)

    def get(self, entity_id: str) -> Entity | None:
        """The entity's latest record, or None if the ledger has none: a few indexed lookups."""
        return self.latest([entity_id]).get(entity_id)

    def latest(self, entity_ids: Iterable[str], upto: int | None = None) -> dict[str, Entity]:
        """Each id's latest record in the chain (ids the ledger lacks are left out): a few indexed lookups
        per id, however many records the entity has. The current-state table only says where to look, and a
        record filed under an id its body does not give is passed over (`misfiled`). With `upto`, each id's
        latest record with seq <= upto."""
        found: dict[str, Entity] = {}
        unique = sorted(set(entity_ids))
        with self._engine.connect() as conn:
            for start in range(0, len(unique), _IN_CHUNK):
                chunk = unique[start : start + _IN_CHUNK]
                if upto is not None:
                    last = select(func.max(_later.c.seq)).where(_later.c.entity_id == records_table.c.entity_id,
                                                                _later.c.seq <= upto).scalar_subquery()  # fmt: skip
                    rows = list(conn.execute(select(records_table).where(records_table.c.entity_id.in_(chunk),
                                                                         records_table.c.seq == last)))  # fmt: skip
                else:
                    rows = list(conn.execute(_CURRENT.where(latest_table.c.entity_id.in_(chunk))))
                    missed = sorted(set(chunk) - {row.entity_id for row in rows})
                    if missed:  # no row, or a row that does not point at the entity's last record
                        rows += list(conn.execute(_FROM_RECORDS.where(records_table.c.entity_id.in_(missed))))
                for row in rows:
                    entity = _well_filed(self._record(row))
                    if entity is None:  # tampered: the entity's latest record that says what it is filed as
                        entity = self._latest_well_filed(conn, row.entity_id, upto if upto is not None else row.seq)
                    if entity is not None:
                        found[row.entity_id] = entity
        return found

    def history(self, entity_id: str) -> list[Entity]:
        """The entity's records, newest first (those filed under it that say so)."""
        with self._engine.connect() as conn:
            query = select(records_table).where(records_table.c.entity_id == entity_id)
            rows = conn.execute(query.order_by(records_table.c.seq.desc()))
            return [entity for row in rows if (entity := _well_filed(self._record(row))) is not None]

    def _latest_well_filed(self, conn: Connection, entity_id: str, upto: int) -> Entity | None:
        query = select(records_table).where(records_table.c.entity_id == entity_id, records_table.c.seq <= upto)
        for row in conn.execute(query.order_by(records_table.c.seq.desc())):
            if (entity := _well_filed(self._record(row))) is not None:
                return entity
        return None

    def find(
        self,
        kind: Kind,
        entity_type: str | None = None,
        name: str | None = None,
        last: int | None = None,
        skip: int = 0,
    ) -> list[Entity]:
        """The latest record of every entity of this kind (and type, and name or source URI), in the
        order the entities first appeared; with `last`, only the `last` entities that appeared last
        (after skipping the `skip` that appeared after them: a page, newest first). Which entities exist is
        read from the records (an index scan of that type's), never from the current-state table."""
        c = records_table.c
        first = func.min(c.seq).label("first_seq")
        query = select(c.entity_id, first).where(c.kind == kind.value).group_by(c.entity_id)
        if entity_type is not None:
            query = query.where(c.entity_type == entity_type)
        if name is not None:
            query = query.where(c.name == name)
        if last is not None:
            query = query.order_by(first.desc()).limit(last).offset(skip)
        with self._engine.connect() as conn:
            firsts = {row.entity_id: row.first_seq for row in conn.execute(query)}
        found = self.latest(firsts)
        return [found[i] for i in sorted(firsts, key=firsts.__getitem__) if i in found]

    def count(self, kind: Kind, entity_type: str | None = None) -> int:
        """How many entities of this kind (and type) the ledger holds, counted in the records."""
        c = records_table.c
        query = select(func.count(func.distinct(c.entity_id))).where(c.kind == kind.value)
        if entity_type is not None:
            query = query.where(c.entity_type == entity_type)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def edges(self, entity_ids: Iterable[str], toward: str) -> list[Association]:
        """Associations ending at (`toward="destination"`) or starting from (`"source"`) any of the ids."""
        column = {"destination": records_table.c.destination_id, "source": records_table.c.source_id}[toward]
        unique = sorted(set(entity_ids))
        found: list[Association] = []
        with self._engine.connect() as conn:
            for start in range(0, len(unique), _IN_CHUNK):
                query = select(
                    records_table.c.source_id, records_table.c.destination_id, records_table.c.entity_type
                ).where(column.in_(unique[start : start + _IN_CHUNK]))  # only associations have either end
                found += [_edge(*row) for row in conn.execute(query.order_by(records_table.c.seq))]
        return found

    def linked(
        self, entity_ids: Iterable[str], toward: str, kinds: Iterable[AssociationType] | None = None
    ) -> dict[str, list[Entity]]:
        """For each id, the latest entities at the other end of its edges (of `kinds`, if given), each once:
        the sources of edges into it (`toward="destination"`) or the destinations of edges out of it."""
        ids = list(dict.fromkeys(entity_ids))
        wanted = None if kinds is None else set(kinds)
        edges = [e for e in self.edges(ids, toward=toward) if wanted is None or e.association_type in wanted]
        inbound = toward == "destination"
        latest = self.latest(e.source_id if inbound else e.destination_id for e in edges)
        found: dict[str, dict[str, Entity]] = {entity_id: {} for entity_id in ids}
        for edge in edges:
            here, there = (edge.destination_id, edge.source_id) if inbound else (edge.source_id, edge.destination_id)
            if there in latest:
                found[here].setdefault(there, latest[there])
        return {entity_id: list(ends.values()) for entity_id, ends in found.items()}

    # -- verifying ----------------------------------------------------------------------------------

    def verify(self, anchor: Head | None = None, since: Head | None = None) -> VerifyResult:
        """Recompute the chain and compare its end with the head row and, if given, with `anchor` (a
        head published earlier: the record at seq anchor.count must still hash to anchor.head_hash);
        check the current-state table against the records.

        `since`: a head verified earlier (`last_verification`). Only the records after it are rehashed,
        after checking that the record at since.count still has its hash: an edit before it is left to
        a verification without `since`."""
        with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # One snapshot for the head and every row, so a concurrent append is no false alarm.
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                head = self._head(conn)
                for point in (since, anchor if since and anchor and anchor.count <= since.count else None):
                    if point is not None and (failed := self._check_point(conn, point, head)) is not None:
                        return failed
                start = since or Head(0, GENESIS)
                rows = self._stream(conn, after=start.count)
                touched: dict[str, tuple[int, LedgerRecord]] = {}  # noted from `since` on: a full check needs none
                result = verify_records(_noting(rows, touched) if since else rows, head, anchor, start)
                return self._check_state(conn, result, touched, since) if result.ok else result

    def check_anchor(self, anchor: Head) -> VerifyResult | None:
        """None if the record at seq anchor.count still hashes to anchor.head_hash (one record read), else
        what failed: the cheap half of `verify(anchor)`, for a published head."""
        with self._engine.connect() as conn:
            return self._check_point(conn, anchor, self._head(conn))

    def _check_point(self, conn: Connection, point: Head, head: Head) -> VerifyResult | None:
        """None if the record at seq point.count still hashes to point.head_hash, else what failed."""
        row = conn.execute(select(records_table).where(records_table.c.seq == point.count)).first()
        record = None if row is None else LedgerRecord(*row)
        digest = None if record is None else record_hash(record[:-1])
        if digest != point.head_hash:
            found = "no record" if record is None else f"its columns hash to {digest}"
            return VerifyResult(
                ok=False,
                count=head.count,
                head_hash=head.head_hash,
                seq=point.count,
                entity_id=record and record.entity_id,
                problem=Problem.ANCHOR_MISMATCH,
                detail=f"{found}, the anchor says {point.head_hash}",
            )
        return None

    def _check_state(
        self, conn: Connection, result: VerifyResult, touched: dict[str, tuple[int, LedgerRecord]], since: Head | None
    ) -> VerifyResult:
        """The chain held: check that ledger_latest says what the records say, for every entity or, when
        verifying from `since`, for the entities recorded after it (`touched`)."""
        latest = latest_table.c
        if since is None:
            bad_id = _first_state_mismatch(conn)
        else:
            bad_id = None
            ids = sorted(touched)
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                query = select(latest_table).where(latest.entity_id.in_(chunk))
                found = {row.entity_id: row for row in conn.execute(query)}
                bad_id = next((i for i in chunk if not _state_holds(found.get(i), *touched[i], since)), None)
                if bad_id:
                    break
            if bad_id is None:  # a row pointing at a new record must be that record's entity's (an edited id)
                rows = conn.execute(select(latest.entity_id, latest.seq).where(latest.seq > since.count))
                bad_id = next((r.entity_id for r in rows if touched.get(r.entity_id, (0, None))[1] is None
                               or touched[r.entity_id][1].seq != r.seq), None)  # fmt: skip
        if bad_id is None:
            return result
        return VerifyResult(
            ok=False,
            count=result.count,
            head_hash=result.head_hash,
            entity_id=bad_id,
            problem=Problem.STATE_MISMATCH,
            detail="its row in ledger_latest is missing, or names another first or latest record",
        )

    def last_verification(self) -> Verification | None:
        """The last verification that passed: where the next incremental one starts."""
        v = verifications_table.c
        query = select(verifications_table).where(v.ok.is_(True)).order_by(v.id.desc()).limit(1)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else Verification(**row._mapping)

    def verifications(self) -> list[Verification]:
        """The verification log, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(verifications_table).order_by(verifications_table.c.id))
            return [Verification(**row._mapping) for row in rows]

    def record_verification(self, verification: Verification) -> None:
        """Keep what a verification checked and how it ended (the verification log is not chained)."""
        try:
            with self._engine.begin() as conn:
                fields = dataclasses.asdict(verification)
                fields.pop("id")
                conn.execute(insert(verifications_table).values(**fields))
        except SQLAlchemyError as exc:
            raise LedgerError(
                f"cannot record the verification in {_redact(self.url)}: {_one_line(exc, self.url)}"
            ) from exc


@dataclass(frozen=True, kw_only=True)
class Verification:
    """One row of the verification log: records from_count+1 .. record_count were checked."""

    from_count: int
    record_count: int
    head_hash: str
    ok: bool
    result: str
    verified_at: str
    id: int | None = None

    @property
    def head(self) -> Head:
        return Head(self.record_count, self.head_hash)


def _first_state_mismatch(conn: Connection) -> str | None:
    """An entity whose ledger_latest row is missing or names other first and last records than its
    records do, or a row that does not name a record of its own entity, kind, type and name; None if
    the table is exact. Two passes inside the database, one per direction."""
    c, latest = records_table.c, latest_table.c
    spans = (
        select(c.entity_id, func.min(c.seq).label("first_seq"), func.max(c.seq).label("seq"))
        .group_by(c.entity_id)
        .subquery()
    )
    unmatched = or_(latest.entity_id.is_(None), latest.first_seq != spans.c.first_seq, latest.seq != spans.c.seq)
    outer = spans.outerjoin(latest_table, latest.entity_id == spans.c.entity_id)
    found = conn.execute(select(spans.c.entity_id).select_from(outer).where(unmatched).limit(1)).first()
    if found is None:
        misnamed = or_(
            c.seq.is_(None),
            c.entity_id != latest.entity_id,
            c.kind != latest.kind,
            c.entity_type != latest.entity_type,
            c.name.is_distinct_from(latest.name),
        )
        outer = latest_table.outerjoin(records_table, c.seq == latest.seq)
        found = conn.execute(select(latest.entity_id).select_from(outer).where(misnamed).limit(1)).first()
    return None if found is None else str(found.entity_id)


def _noting(rows: Iterator[LedgerRecord], touched: dict[str, tuple[int, LedgerRecord]]) -> Iterator[LedgerRecord]:
    """`rows`, noting in `touched` each entity's first seq and last record among them."""
    for row in rows:
        touched[row.entity_id] = (touched[row.entity_id][0] if row.entity_id in touched else row.seq, row)
        yield row


def _state_holds(state: Any, first_seen: int, last: LedgerRecord, since: Head) -> bool:
    """An entity's ledger_latest row names its last record as seen from `since` on, and its first one
    (when that came after `since`)."""
    if state is None:
        return False
    first_ok = state.first_seq == first_seen or state.first_seq <= since.count
    same = (state.seq, state.kind, state.entity_type, state.name) == (last.seq, last.kind, last.entity_type, last.name)
    return first_ok and same


# Where a body says its entity's type, by kind.
_TYPE_FIELD = {
    Kind.ARTIFACT.value: "artifact_type",
    Kind.ACTION.value: "action_type",
    Kind.CONTEXT.value: "context_type",
    Kind.ASSOCIATION.value: "association_type",
}


def _well_filed(record: LedgerRecord) -> Entity | None:
    """The record's entity, or None where it is misfiled or does not validate (one of a newer format is refused)."""
    return _well_filed_at(record, _readable(record))


@functools.lru_cache(maxsize=8192)
def _well_filed_at(record: LedgerRecord, version: int) -> Entity | None:
    if misfiled(record) is not None:
        return None
    try:
        return _parse(record.kind, record.body, version)
    except ValueError:  # pydantic's ValidationError
        return None


def misfiled(record: LedgerRecord) -> str | None:
    """Why a record's indexed columns are not what its body says (None if they are): its id (derived from an
    artifact's source and md5, a context's type and name, an edge's ends), kind, type, name and ends. Readers find
    records by these columns, so a body filed under another entity's id, or a decision copied under a fresh id,
    must never pass for that entity."""
    try:
        body = orjson.loads(record.body)
        said: dict[str, Any] = {"entity_type": body[_TYPE_FIELD[record.kind]], "name": None, "source_id": None,
                                "destination_id": None}  # fmt: skip
        if record.kind == Kind.ASSOCIATION.value:
            said |= {"entity_id": association_id(body["source_id"], body["destination_id"], said["entity_type"]),
                     "source_id": body["source_id"], "destination_id": body["destination_id"]}  # fmt: skip
        elif record.kind == Kind.CONTEXT.value:
            said |= {"entity_id": context_id(said["entity_type"], body["name"]), "name": body["name"]}
            if body.get("id") != said["entity_id"]:
                return f"its body's id {str(body.get('id'))[:80]!r} is not the id its type and name give"
        elif record.kind == Kind.ARTIFACT.value:
            said |= {"entity_id": artifact_id(body["source_uri"], body["md5"]), "name": body["source_uri"]}
            if body.get("id") != said["entity_id"]:
                return f"its body's id {str(body.get('id'))[:80]!r} is not the id its source and md5 give"
        else:
            said["entity_id"] = body["id"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return "its body is not a lineage entity of its kind"
    if ledger_format.declared_version(record.kind, record.entity_type, record.body) == 0:
        return "a format declaration that names no version"
    for column, value in said.items():
        if getattr(record, column) != value:
            return f"its {column} column says {str(getattr(record, column))[:80]!r}, its body {str(value)[:80]!r}"
    return None


def verify_records(
    rows: Iterator[LedgerRecord], head: Head, anchor: Head | None, start: Head = Head(0, GENESIS)
) -> VerifyResult:
    """Check that `rows` extend the chain from `start` (GENESIS: from the first record) to `head`, and
    through `anchor` if it lies beyond `start`."""
    count, prev = start.count, start.head_hash
    beyond_head: str | None = None  # the entity of the first record past the head's count, if any

    def bad(seq: int, problem: Problem, detail: str, entity_id: str | None = None) -> VerifyResult:
        return VerifyResult(
            ok=False,
            count=head.count,
            head_hash=head.head_hash,
            seq=seq,
            entity_id=entity_id,
            problem=problem,
            detail=detail,
        )

    for row in rows:
        expected = count + 1
        if row.seq != expected:
            return bad(expected, Problem.RELINKED, f"expected seq {expected}, found seq {row.seq}", row.entity_id)
        digest = record_hash(row[:-1])
        if digest != row.record_hash:
            return bad(expected, Problem.EDITED, "its columns no longer hash to its record_hash", row.entity_id)
        if row.prev_hash != prev:
            return bad(expected, Problem.RELINKED, f"its prev_hash is not seq {count}'s hash", row.entity_id)
        if (problem := misfiled(row)) is not None:
            return bad(expected, Problem.MISFILED, problem, row.entity_id)
        if anchor is not None and expected == anchor.count and digest != anchor.head_hash:
            detail = f"found {digest}, the anchor says {anchor.head_hash}"
            return bad(expected, Problem.ANCHOR_MISMATCH, detail, row.entity_id)
        if expected == head.count + 1:
            beyond_head = row.entity_id
        count, prev = expected, row.record_hash

    if anchor is not None and count < anchor.count:
        return bad(count + 1, Problem.HEAD_MISMATCH, f"the anchor counts {anchor.count} records, the chain {count}")
    if count != head.count:
        detail = f"the head row counts {head.count} records, the chain {count}"
        return bad(min(count, head.count) + 1, Problem.HEAD_MISMATCH, detail, beyond_head)
    if prev != head.head_hash:
        return bad(max(count, 1), Problem.HEAD_MISMATCH, "the last record's hash is not the head row's")
    return VerifyResult(ok=True, count=count, head_hash=prev)


def _redact(url: str) -> str:
    """A database URL with its credentials masked, for messages and logs."""
    return redact_url(url)


def _one_line(error: BaseException, url: str) -> str:
    """The first line of an error from the database at `url` (the driver's own, if wrapped), with the URL's
    credentials masked wherever they appear in it."""
    return error_line(error, url)
