"""The ledger store on SQLite: append and read back, reuse, all-or-nothing appends, and tamper detection."""

from __future__ import annotations

import datetime as dt
import itertools
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, event

from lineage.entities import (
    Action,
    ActionStatus,
    ActionType,
    Artifact,
    ArtifactType,
    Association,
    AssociationType,
    Context,
    ContextType,
    Entity,
    Metadata,
)
from lineage.store import (
    GENESIS,
    HASHED_COLUMNS,
    Head,
    Kind,
    LedgerConflict,
    LedgerError,
    LedgerRecord,
    LedgerStore,
    Problem,
    Verification,
    VerifyResult,
    misfiled,
    rebuild_latest,
    record_columns,
    record_hash,
)
from tests.ledger_oracle import assert_reads_match_scan

START = dt.datetime(2024, 3, 4, 6, 0, tzinfo=dt.UTC)
COLUMNS = [*HASHED_COLUMNS, "record_hash"]
BODY, PREV, HASH = COLUMNS.index("body"), COLUMNS.index("prev_hash"), COLUMNS.index("record_hash")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LedgerStore]:
    with LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}") as ledger:
        yield ledger


def _run(name: str, data_md5: str = "a" * 32) -> list[Entity]:
    """A small run: a dataset contributed to a stage that produced a model, all within one pipeline run."""
    run = Context(context_type=ContextType.PIPELINE_RUN, name=name)
    meta = Metadata(repository="retail-lineage", commit_id="c" * 40, generated_by=name)
    data = Artifact(
        artifact_type=ArtifactType.DATASET, source_uri="data/processed.parquet", md5=data_md5, metadata=meta
    )
    model = Artifact(artifact_type=ArtifactType.MODEL, source_uri="models/model.pt", md5="b" * 32, size=2048)
    tune = Action(
        action_type=ActionType.STAGE,
        status=ActionStatus.COMPLETED,
        start=START,
        end=START + dt.timedelta(minutes=2),
        command="python -m tasks.tune",
        parameters={"tune": {"n_trials": 12}, "seed": 42},
        prefect_task_run_id=str(uuid.uuid4()),
        metadata=meta,
    )
    return [
        run,
        data,
        model,
        tune,
        Association(source_id=data.id, destination_id=tune.id, association_type=AssociationType.CONTRIBUTED_TO),
        Association(source_id=tune.id, destination_id=model.id, association_type=AssociationType.PRODUCED),
        Association(source_id=tune.id, destination_id=run.id, association_type=AssociationType.ASSOCIATED_WITH),
    ]


def test_append_and_read_back(store: LedgerStore) -> None:
    entities = _run("run-1")
    assert store.append(entities) == [1, 2, 3, 4, 5, 6, 7]
    records = list(store.records())
    assert [record.seq for record in records] == [1, 2, 3, 4, 5, 6, 7]
    assert [record.entity() for record in records] == entities
    assert records[0].prev_hash == GENESIS
    assert all(later.prev_hash == earlier.record_hash for earlier, later in itertools.pairwise(records))
    assert store.get(entities[3].id) == entities[3]
    assert store.get("no-such-id") is None
    assert store.edges([entities[3].id], toward="source") == entities[5:]
    assert store.edges([entities[2].id, entities[3].id], toward="destination") == entities[4:6]
    assert store.latest([entities[1].id, entities[3].id, "no-such-id"]) == {e.id: e for e in entities[1:4:2]}
    assert store.find(Kind.ARTIFACT, name="models/model.pt") == [entities[2]]
    assert store.find(Kind.CONTEXT, entity_type="PipelineRun") == [entities[0]]
    assert store.head() == Head(7, records[-1].record_hash)


def test_artifacts_and_associations_are_reused_not_duplicated(store: LedgerStore) -> None:
    first = _run("run-1")
    store.append(first)
    second = _run("run-2")  # same data and model artifacts, a new run and a new action
    seqs = store.append([*second, second[1]])
    assert seqs == [8, 2, 3, 9, 10, 11, 12, 2]
    kinds = [record.kind for record in store.records()]
    assert kinds.count("artifact") == 2
    # A new content hash at the same URI is a new artifact.
    assert store.append(_run("run-3", data_md5="d" * 32)[1:2]) == [13]
    assert store.verify().ok


def test_a_later_record_of_the_same_context_supersedes_the_earlier(store: LedgerStore) -> None:
    candidate = Context(context_type=ContextType.MODEL_VERSION, name="demand/1", properties={"status": "candidate"})
    production = Context(context_type=ContextType.MODEL_VERSION, name="demand/1", properties={"status": "production"})
    store.append([candidate])
    store.append([production])
    assert store.get(candidate.id) == production
    assert store.verify().count == 2


def test_a_failing_append_leaves_nothing(store: LedgerStore, tmp_path: Path) -> None:
    store.append(_run("run-1"))
    before = store.head()
    # The records are inserted, then updating the head fails: the transaction must roll back whole.
    with sqlite3.connect(tmp_path / "ledger.db") as raw:
        raw.execute("CREATE TRIGGER refuse BEFORE UPDATE ON ledger_head BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    with pytest.raises(LedgerError, match="disk on fire"):
        store.append(_run("run-2", data_md5="e" * 32))
    with sqlite3.connect(tmp_path / "ledger.db") as raw:
        raw.execute("DROP TRIGGER refuse")
    # A value JSON cannot hold, after two encodable entities.
    bad = Action(action_type=ActionType.STAGE, status=ActionStatus.FAILED, start=START, parameters={"x": float("nan")})
    with pytest.raises(LedgerError, match="append to sqlite"):
        store.append([*_run("run-3", data_md5="f" * 32)[:2], bad])
    assert store.head() == before
    assert len(list(store.records())) == before.count
    assert store.verify().ok


def test_verify_a_clean_and_an_empty_ledger(store: LedgerStore, tmp_path: Path) -> None:
    assert store.verify() == VerifyResult(ok=True, count=0, head_hash=GENESIS)
    for index in range(5):
        store.append(_run(f"run-{index}"))
    result = store.verify()
    assert result.ok
    assert result.count == store.head().count == len(list(store.records()))
    assert result.head_hash == store.head().head_hash
    assert str(result).startswith("ok: ")


def test_an_anchor_catches_a_rewritten_ledger(store: LedgerStore, tmp_path: Path) -> None:
    for index in range(3):
        store.append(_run(f"run-{index}"))
    anchor = store.head()
    store.append(_run("run-9"))
    assert store.verify(anchor).ok
    # Someone rewrites record 2 and recomputes every hash after it, head row included.
    rows = _rows(tmp_path / "ledger.db")
    rows[1][BODY] = rows[1][BODY].replace("retail-lineage", "forged-lineage")  # its metadata: no column says it
    prev = rows[0][HASH]
    for row in rows[1:]:
        row[PREV] = prev
        row[HASH] = prev = record_hash(row[:HASH])
    with sqlite3.connect(tmp_path / "ledger.db") as raw:
        raw.execute("DELETE FROM ledger_records")
        raw.executemany(f"INSERT INTO ledger_records VALUES ({', '.join('?' * len(COLUMNS))})", rows)
        raw.execute("UPDATE ledger_head SET head_hash = ?", (prev,))
    assert store.verify().ok  # the chain alone cannot tell
    result = store.verify(anchor)
    assert not result.ok
    assert (result.seq, result.problem) == (anchor.count, Problem.ANCHOR_MISMATCH)
    found = rows[anchor.count - 1][HASH]
    assert f"record {anchor.count}'s hash differs from the anchor's (found {found}, the anchor says" in str(result)
    # Truncating below the anchor, head row and current state adjusted, is caught too.
    with sqlite3.connect(tmp_path / "ledger.db") as raw:
        raw.execute("DELETE FROM ledger_records WHERE seq > 5")
        raw.execute("UPDATE ledger_head SET record_count = 5, head_hash = ?", (rows[4][HASH],))
    with create_engine(f"sqlite:///{tmp_path / 'ledger.db'}").begin() as conn:
        rebuild_latest(conn)
    assert store.verify().ok
    assert (store.verify(anchor).seq, store.verify(anchor).problem) == (6, Problem.HEAD_MISMATCH)


def test_a_missing_head_row_is_reported_and_blocks_appends(store: LedgerStore, tmp_path: Path) -> None:
    store.append(_run("run-1"))
    with sqlite3.connect(tmp_path / "ledger.db") as raw:
        raw.execute("DELETE FROM ledger_head")
    reopened = LedgerStore(store.url)  # opening again must not paper over it
    assert (reopened.verify().seq, reopened.verify().problem) == (1, Problem.HEAD_MISMATCH)
    with pytest.raises(LedgerError, match="no head row"):
        reopened.append(_run("run-2"))
    reopened.close()


def test_concurrent_appenders_on_sqlite_make_one_chain(store: LedgerStore) -> None:
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            with LedgerStore(store.url) as own:  # its own engine and connections
                start.wait()
                for index in range(10):
                    own.append(_run(f"{name}-{index}"))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    result = store.verify()
    assert result.ok, str(result)
    assert result.count == 2 + 20 * 5  # two shared artifacts, then five new records per run


def test_url_defaults_env_and_idempotent_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LINEAGE_DB_URL", raising=False)
    with LedgerStore() as default:
        default.append(_run("run-1"))
        assert default.url == "sqlite:///lineage.db"
    assert (tmp_path / "lineage.db").exists()
    with LedgerStore() as again:  # tables exist already: opening is a no-op
        assert again.verify().count == 7
    monkeypatch.setenv("LINEAGE_DB_URL", f"sqlite:///{tmp_path / 'other.db'}")
    with LedgerStore() as from_env:
        assert from_env.verify().count == 0
    assert (tmp_path / "other.db").exists()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////no/such/directory/ledger.db",
        "postgresql+psycopg://auditor:s3cret@127.0.0.1:1/lineage",
        "nosuchdialect://auditor:s3cret@host/db",
        "not a url at all",
    ],
)
def test_an_unopenable_url_is_one_clear_line_without_the_password(url: str) -> None:
    with pytest.raises(LedgerError) as caught:
        LedgerStore(url)
    message = str(caught.value)
    assert message.startswith("cannot open the lineage ledger at ")
    assert "\n" not in message
    assert "s3cret" not in message
    assert url.replace("s3cret", "***") in message


def test_nothing_the_store_sends_updates_or_deletes_a_chained_record(tmp_path: Path) -> None:
    """Every statement the store sends over a ledger's life (create, append, every read, verify, and a reopen that
    rebuilds the current-state table, which is only a hint derived from the chain) leaves `ledger_records`
    append-only: no UPDATE or DELETE of it, and every record read back as it was written."""
    sent: list[str] = []

    def spy(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(" ".join(statement.split()).upper())

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    event.listen(Engine, "before_cursor_execute", spy)
    try:
        with LedgerStore(url) as store:
            store.append(_run("run-1"))
            store.append(_run("run-2", data_md5="d" * 32))
            written = list(store.records())
            for record in store.records():
                store.get(record.entity_id)
                store.history(record.entity_id)
            assert store.verify().ok
        with closing(sqlite3.connect(tmp_path / "ledger.db")) as raw, raw:
            raw.execute("DELETE FROM ledger_latest")  # as a ledger from before that table: the store rebuilds it
        with LedgerStore(url) as store:
            assert list(store.records()) == written
            assert store.verify().ok
    finally:
        event.remove(Engine, "before_cursor_execute", spy)
    assert any(statement.startswith("DELETE FROM LEDGER_LATEST") for statement in sent)  # the spy saw the rebuild
    touching = [s for s in sent if s.startswith(("UPDATE LEDGER_RECORDS", "DELETE FROM LEDGER_RECORDS"))]
    assert touching == []


# -- tamper detection, property-based -------------------------------------------------------------------

_IDS = ["n1", "n2", "n3"]
_VALUES = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=4))
_PROPERTIES = st.dictionaries(st.text(max_size=4), _VALUES, max_size=2)
_ENTITIES: st.SearchStrategy[Entity] = st.one_of(
    st.builds(
        Artifact,
        artifact_type=st.sampled_from(ArtifactType),
        source_uri=st.sampled_from(["data/a.parquet", "models/m.pt", "s3://bucket/x"]),
        md5=st.sampled_from(["0" * 32, "1" * 32]),
        size=st.none() | st.integers(0, 10**12),
        properties=_PROPERTIES,
    ),
    st.builds(
        Action,
        action_type=st.sampled_from(ActionType),
        status=st.sampled_from(ActionStatus),
        start=st.datetimes(timezones=st.just(dt.UTC)),
        command=st.text(max_size=8),
        parameters=st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=4), max_size=2),
    ),
    st.builds(
        Context,
        context_type=st.sampled_from([t for t in ContextType if t != ContextType.LEDGER_FORMAT]),  # the store's own
        name=st.sampled_from(["run-1", "demand/1", "weekly"]),
        properties=_PROPERTIES,
    ),
    st.builds(
        Association,
        source_id=st.sampled_from(_IDS),
        destination_id=st.sampled_from(_IDS),
        association_type=st.sampled_from(AssociationType),
    ),
)


def _rows(path: Path) -> list[list[Any]]:
    with sqlite3.connect(path) as raw:
        return [list(row) for row in raw.execute(f"SELECT {', '.join(COLUMNS)} FROM ledger_records ORDER BY seq")]


def _ends_or_any(low: int, high: int) -> st.SearchStrategy[int]:
    """Any value in [low, high], with the ends (where off-by-one mistakes live) drawn often."""
    return st.sampled_from([low, high]) | st.integers(low, high)


def _tamper(data: st.DataObject, path: Path, rows: list[list[Any]]) -> tuple[int, Problem]:
    """Apply one random tampering with raw SQL, as someone with write access to the database would;
    return the seq where the chain must first break and the problem verify must name."""
    with closing(sqlite3.connect(path, isolation_level=None)) as raw:
        return _apply_tampering(data, raw, rows)


def _apply_tampering(data: st.DataObject, raw: sqlite3.Connection, rows: list[list[Any]]) -> tuple[int, Problem]:
    n = len(rows)
    how = data.draw(st.sampled_from(["edit", "delete", "insert", "swap"] if n >= 2 else ["edit", "delete", "insert"]))
    if how == "edit":
        k = data.draw(_ends_or_any(1, n), label="seq")
        column = data.draw(st.sampled_from(COLUMNS), label="column")
        old = rows[k - 1][COLUMNS.index(column)]
        if column == "seq":
            new: Any = data.draw(st.integers(-3, 0) | st.integers(n + 1, n + 5), label="new seq")
            raw.execute("UPDATE ledger_records SET seq = ? WHERE seq = ?", (new, k))
            return (1 if new <= 0 else k), Problem.RELINKED
        others = [row[COLUMNS.index(column)] for row in rows]
        new = data.draw((st.sampled_from(others) | st.text(max_size=70)).filter(lambda v: v != old), label="new")
        raw.execute(f"UPDATE ledger_records SET {column} = ? WHERE seq = ?", (new, k))
        if column == "record_hash" or not data.draw(st.booleans(), label="rehash the edited record"):
            return k, Problem.EDITED
        # A forger who knows the hash function makes the edited record consistent with itself:
        # the break then shows in the link to it (or, for the last record, at the head).
        edited = [*rows[k - 1]]
        edited[COLUMNS.index(column)] = new
        raw.execute("UPDATE ledger_records SET record_hash = ? WHERE seq = ?", (record_hash(edited[:HASH]), k))
        if column == "prev_hash":
            return k, Problem.RELINKED
        if misfiled(LedgerRecord(*edited)) is not None:
            return k, Problem.MISFILED  # its columns no longer say what its body says: caught at the record
        return (k, Problem.HEAD_MISMATCH) if k == n else (k + 1, Problem.RELINKED)
    if how == "delete":
        k = data.draw(_ends_or_any(1, n), label="seq")
        raw.execute("DELETE FROM ledger_records WHERE seq = ?", (k,))
        return k, (Problem.HEAD_MISMATCH if k == n else Problem.RELINKED)
    if how == "insert":
        seq = data.draw(_ends_or_any(-2, n + 3) | st.sampled_from([n, n + 1]), label="forged seq")
        well_forged = data.draw(st.booleans(), label="well forged")
        if 1 <= seq <= n:  # make room, as a forger would
            raw.execute("UPDATE ledger_records SET seq = -seq WHERE seq >= ?", (seq,))
            raw.execute("UPDATE ledger_records SET seq = 1 - seq WHERE seq < 0")
        prev = rows[seq - 2][HASH] if 2 <= seq <= n + 1 else GENESIS
        columns = record_columns(Context(context_type=ContextType.PIPELINE_RUN, name="forged"))
        forged = [seq, *(columns[c] for c in COLUMNS[1:-2]), prev]  # a record that says what it is filed as
        digest = record_hash(forged) if well_forged else "f" * 64
        raw.execute(f"INSERT INTO ledger_records VALUES ({', '.join('?' * len(COLUMNS))})", (*forged, digest))
        if seq <= 0:
            return 1, Problem.RELINKED
        if seq > n + 1:
            return n + 1, Problem.RELINKED
        if not well_forged:
            return seq, Problem.EDITED
        # A well-forged record verifies itself: the break shows at the record it displaced, or at the head.
        return (seq, Problem.HEAD_MISMATCH) if seq == n + 1 else (seq + 1, Problem.EDITED)
    # swap: exchange two records' places in the order (every column but seq).
    a, b = sorted(data.draw(st.lists(st.integers(1, n), min_size=2, max_size=2, unique=True), label="swap"))
    sets = ", ".join(f"{column} = ?" for column in COLUMNS[1:])
    raw.execute(f"UPDATE ledger_records SET {sets} WHERE seq = ?", (*rows[b - 1][1:], a))
    raw.execute(f"UPDATE ledger_records SET {sets} WHERE seq = ?", (*rows[a - 1][1:], b))
    return a, Problem.EDITED


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(_ENTITIES, min_size=1, max_size=5), min_size=1, max_size=4), data=st.data())
def test_any_tampering_is_detected_at_the_first_affected_record(
    tmp_path: Path, batches: list[list[Entity]], data: st.DataObject
) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    with LedgerStore(f"sqlite:///{path}") as store:
        for batch in batches:
            store.append(batch)
        assert store.verify().ok
        rows = _rows(path)
        seq, problem = _tamper(data, path, rows)
        result = store.verify()
    path.unlink()
    assert not result.ok
    assert result.seq == seq, str(result)
    assert result.problem == problem, str(result)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(st.lists(_ENTITIES, min_size=1, max_size=6), min_size=1, max_size=5))
def test_indexed_reads_equal_a_scan_of_every_record(tmp_path: Path, batches: list[list[Entity]]) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    with LedgerStore(f"sqlite:///{path}") as store:
        for batch in batches:
            store.append(batch)
        assert assert_reads_match_scan(store) > 0
        assert store.verify().ok
    path.unlink()


def test_an_append_expecting_an_older_head_is_refused_and_writes_nothing(store: LedgerStore) -> None:
    read = store.head()
    store.append(_run("run-1"))  # another writer appends in between
    with pytest.raises(LedgerConflict, match=r"the ledger changed since it was read \(0 -> 7 records\)"):
        store.append(_run("run-2"), expected_head=read)
    assert store.head().count == 7
    assert store.append(_run("run-2"), expected_head=store.head())[0] == 8


# -- incremental verification and the current-state table ------------------------------------------


def test_verifying_from_an_earlier_head_catches_an_edit_after_it_and_leaves_earlier_ones_to_full(
    store: LedgerStore, tmp_path: Path
) -> None:
    store.append(_run("run-1"))
    since = store.head()
    store.append(_run("run-2", data_md5="d" * 32))
    assert store.verify(since=since) == store.verify()
    # An edit after `since` is caught from `since` on, at the record edited.
    with sqlite3.connect(tmp_path / "ledger.db") as raw:
        raw.execute("UPDATE ledger_records SET body = body || ' ' WHERE seq = 9")
    result = store.verify(since=since)
    assert (result.ok, result.seq, result.problem) == (False, 9, Problem.EDITED)
    with sqlite3.connect(tmp_path / "ledger.db") as raw:
        raw.execute("UPDATE ledger_records SET body = rtrim(body) WHERE seq = 9")
    # An edit before `since`, rehashed and relinked up to it, is not looked for: `since` vouches for
    # what came before it. Verifying everything catches it.
    rows = _rows(tmp_path / "ledger.db")
    rows[2][BODY] = rows[2][BODY].replace('"size":2048', '"size":4096')
    rows[2][HASH] = record_hash(rows[2][:HASH])
    with sqlite3.connect(tmp_path / "ledger.db") as raw:
        raw.execute("UPDATE ledger_records SET body = ?, record_hash = ? WHERE seq = 3", (rows[2][BODY], rows[2][HASH]))
    assert store.verify(since=Head(2, rows[1][HASH])).ok is False  # the record after it no longer links
    assert store.verify(since=since).ok  # does not claim to check records 1-7
    full = store.verify()
    assert (full.ok, full.seq, full.problem) == (False, 4, Problem.RELINKED)


def test_verifying_from_a_head_whose_record_changed_names_that_record(store: LedgerStore, tmp_path: Path) -> None:
    store.append(_run("run-1"))
    since = store.head()
    store.append(_run("run-2"))
    with sqlite3.connect(tmp_path / "ledger.db") as raw:
        raw.execute("UPDATE ledger_records SET body = body || ' ' WHERE seq = ?", (since.count,))
    result = store.verify(since=since)
    assert (result.ok, result.seq, result.problem) == (False, since.count, Problem.ANCHOR_MISMATCH)
    assert f"record {since.count}'s hash differs from the anchor's (its columns hash to " in str(result)
    with sqlite3.connect(tmp_path / "ledger.db") as raw:
        raw.execute("UPDATE ledger_records SET body = rtrim(body) WHERE seq = ?", (since.count,))
    assert store.verify(since=since).ok
    # A published anchor before `since` is checked too, never skipped.
    checked = store.verify(anchor=Head(3, "e" * 64), since=since)
    assert (checked.seq, checked.problem) == (3, Problem.ANCHOR_MISMATCH)


@pytest.mark.parametrize(
    "tampering",
    [
        "DELETE FROM ledger_latest WHERE seq = 9",  # an entity's current record hidden
        "UPDATE ledger_latest SET seq = 2 WHERE seq = 9",  # pointed at another entity's record
        "UPDATE ledger_latest SET name = 'weekly' WHERE seq = 8",  # renamed, so find(name=...) misses it
        "INSERT INTO ledger_latest VALUES ('ghost', 'context', 'PipelineRun', 'ghost', 1, 1)",
    ],
)
def test_a_current_state_that_disagrees_with_the_records_is_caught(
    store: LedgerStore, tmp_path: Path, tampering: str
) -> None:
    store.append(_run("run-1"))
    since = store.head()
    store.append(_run("run-2"))  # records 8-12: run-2's context, a new action, its edges
    with sqlite3.connect(tmp_path / "ledger.db") as raw:
        raw.execute(tampering)
    full = store.verify()
    assert (full.ok, full.problem) == (False, Problem.STATE_MISMATCH)
    assert "the current-state table (ledger_latest) does not match the records" in str(full)
    if "ghost" not in tampering:  # the entities recorded since `since` are checked incrementally too
        assert store.verify(since=since).problem == Problem.STATE_MISMATCH


def test_a_ledger_from_before_the_current_state_table_gets_it_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with LedgerStore(f"sqlite:///{path}") as old:
        old.append(_run("run-1"))
        old.append(_run("run-2", data_md5="d" * 32))
        expected = [record.entity() for record in old.records()]
    with sqlite3.connect(path) as raw:
        raw.execute("DROP TABLE ledger_latest")
    with LedgerStore(f"sqlite:///{path}") as reopened:
        assert reopened.verify().ok
        assert assert_reads_match_scan(reopened) > 0
        assert [record.entity() for record in reopened.records()] == expected


def test_the_verification_log_keeps_what_was_checked_and_where_to_start(store: LedgerStore) -> None:
    assert store.last_verification() is None
    store.append(_run("run-1"))
    stamp = "2026-12-04T10:00:00+00:00"
    head_hash = store.head().head_hash
    store.record_verification(
        Verification(from_count=0, record_count=7, head_hash=head_hash, ok=True, result="ok", verified_at=stamp)
    )
    store.record_verification(
        Verification(from_count=7, record_count=7, head_hash=head_hash, ok=False, result="FAILED", verified_at=stamp)
    )
    last = store.last_verification()
    assert last is not None
    assert (last.head, last.ok, last.id) == (store.head(), True, 1)
    assert [v.result for v in store.verifications()] == ["ok", "FAILED"]
