"""The ledger store on the machine's PostgreSQL: the same records as SQLite, and concurrent appenders
that cannot fork the chain. Each test gets a fresh database, dropped afterwards."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from lineage import registry
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
)
from lineage.query import Direction, query_lineage
from lineage.recorder import RunInfo, StageRun, record_run
from lineage.signatures import Signer
from lineage.store import Kind, LedgerError, LedgerStore, Problem, Verification
from lineage.verification import check_decisions
from tests.conftest import POSTGRES_PSYCOPG, postgres_database, register_approvers
from tests.ledger_oracle import assert_reads_match_scan
from tests.lineage_workspace import STAGES, write_workspace

pytestmark = pytest.mark.integration

START = dt.datetime(2024, 3, 4, 6, 0, tzinfo=dt.UTC)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on 127.0.0.1:5432, dropped after the test; skipped where no server answers."""
    with postgres_database("lineage_test") as name:
        yield POSTGRES_PSYCOPG.format(database=name)


def _ledger(runs: int) -> list[list[Entity]]:
    """Deterministic batches (fixed ids and times), so two backends receive identical entities."""
    batches: list[list[Entity]] = []
    data = Artifact(artifact_type=ArtifactType.DATASET, source_uri="data/processed.parquet", md5="a" * 32)
    for index in range(runs):
        run = Context(context_type=ContextType.PIPELINE_RUN, name=f"run-{index}", properties={"dirty": False})
        model = Artifact(artifact_type=ArtifactType.MODEL, source_uri="models/model.pt", md5=f"{index:032x}", size=9)
        tune = Action(
            id=f"action-{index}",
            action_type=ActionType.STAGE,
            status=ActionStatus.COMPLETED,
            start=START + dt.timedelta(days=7 * index),
            end=START + dt.timedelta(days=7 * index, minutes=3),
            command="python -m tasks.tune",
            parameters={"seed": 42, "tune": {"n_trials": 12, "lr": [1e-4, 0.1]}, "note": "prix ≤ 5 €"},
        )
        batches.append(
            [
                run,
                data,  # reused after the first run
                model,
                tune,
                Association(source_id=data.id, destination_id=tune.id, association_type=AssociationType.CONTRIBUTED_TO),
                Association(source_id=tune.id, destination_id=model.id, association_type=AssociationType.PRODUCED),
            ]
        )
    return batches


def test_sqlite_and_postgres_hold_the_same_ledger(postgres_url: str, tmp_path: Path) -> None:
    with LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}") as lite, LedgerStore(postgres_url) as pg:
        for batch in _ledger(20):
            assert lite.append(batch) == pg.append(batch)
        assert list(lite.records()) == list(pg.records())
        assert lite.head() == pg.head()
        assert lite.verify() == pg.verify()
        assert lite.verify().ok
        assert lite.get("action-3") == pg.get("action-3")
        assert lite.edges(["action-3"], toward="source") == pg.edges(["action-3"], toward="source")
        assert lite.edges(["action-3"], toward="destination") == pg.edges(["action-3"], toward="destination")
        # The same tampering is reported the same way.
        for url in (f"sqlite:///{tmp_path / 'ledger.db'}", postgres_url):
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(text("UPDATE ledger_records SET body = body || ' ' WHERE seq = 10"))
            engine.dispose()
        assert lite.verify() == pg.verify()
        assert (pg.verify().seq, pg.verify().problem) == (10, Problem.EDITED)


def test_concurrent_appenders_make_one_valid_chain(postgres_url: str) -> None:
    LedgerStore(postgres_url).close()  # tables exist before the race; creation is tested below
    per_writer, batches = 15, _ledger(1)
    shared = batches[0][1]  # both writers record the same artifact: it must be stored once
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            with LedgerStore(postgres_url) as store:
                start.wait()
                for index in range(per_writer):
                    context = Context(context_type=ContextType.PIPELINE_RUN, name=f"{name}-{index}")
                    action = Action(action_type=ActionType.STAGE, status=ActionStatus.COMPLETED, start=START)
                    store.append([context, shared, action])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors

    with LedgerStore(postgres_url) as store:
        result = store.verify()
        assert result.ok, str(result)
        records = list(store.records())
        assert result.count == len(records) == 2 * per_writer * 2 + 1
        names = {entity.name for entity in (record.entity() for record in records) if isinstance(entity, Context)}
        assert names == {f"{writer}-{index}" for writer in ("a", "b") for index in range(per_writer)}
        assert [record.entity_id for record in records].count(shared.id) == 1


def test_concurrent_first_opens_create_the_tables_once(postgres_url: str) -> None:
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            start.wait()
            LedgerStore(postgres_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    with LedgerStore(postgres_url) as store:
        assert dataclasses.astuple(store.verify())[:2] == (True, 0)


def test_sqlite_and_postgres_give_the_same_query_and_registry_answers(
    postgres_url: str, tmp_path: Path, ssh_keys: dict[str, Path]
) -> None:
    now = dt.datetime(2026, 11, 23, 6, tzinfo=dt.UTC)
    with LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}") as lite, LedgerStore(postgres_url) as pg:
        for store in (lite, pg):
            register_approvers(store, ssh_keys, "alice")
        for week, fair in ((1, True), (2, True), (3, False)):
            write_workspace(tmp_path, week, fair=fair)
            stages = [StageRun(s, ActionStatus.COMPLETED, now, now, str(uuid.uuid4())) for s in STAGES]
            info = RunInfo(f"run-{week}", stages, now, now, None if fair else "fairness failed", "runs/x")
            assert record_run(lite, info, tmp_path).decision == record_run(pg, info, tmp_path).decision
        registry.rollback(lite, Signer("alice", ssh_keys["alice"]), reason="r")
        registry.rollback(pg, Signer("alice", ssh_keys["alice"]), reason="r")

        def answers(store: LedgerStore) -> tuple[object, ...]:
            graphs = [
                query_lineage(store, start, direction, depth, types)
                for start, direction, depth, types in [
                    ("production", Direction.ASCENDANTS, 10, None),
                    ("data/raw", Direction.DESCENDANTS, 10, ["ModelVersion"]),
                    ("tasks/tune.py", Direction.BOTH, 2, ["Stage", "Model"]),
                ]
            ]
            shapes = [sorted((v.type, v.label) for v in graph.vertices) for graph in graphs]
            return shapes, [len(graph.edges) for graph in graphs], store.head().count

        assert answers(lite) == answers(pg)
        statuses = [[v.properties["status"] for v in registry.versions(store)] for store in (lite, pg)]
        assert statuses == [["production", "rejected", "rejected"]] * 2
        checked = [str(check_decisions(store)) for store in (lite, pg)]
        said = (
            "signatures ok: 2 valid (by alice), 3 unsigned decisions (allowed by the policy then); policy: no "
            "signing policy recorded: unsigned pipeline decisions allowed (a demo ledger; see `lineage policy`)"
        )
        assert checked == [said] * 2
        # The indexed reads equal a scan of every record, on both backends, for every entity and type.
        assert assert_reads_match_scan(lite) == assert_reads_match_scan(pg) > 0
        from_record_20 = {str(check_decisions(store, since=20)) for store in (lite, pg)}
        assert len(from_record_20) == 1
        assert next(iter(from_record_20)).startswith("signatures ok: ")


def test_sqlite_and_postgres_verify_from_the_last_verification_alike(postgres_url: str, tmp_path: Path) -> None:
    lite_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    with LedgerStore(lite_url) as lite, LedgerStore(postgres_url) as pg:
        batches = _ledger(12)
        for batch in batches[:6]:
            assert lite.append(batch) == pg.append(batch)
        since = lite.head()
        for store in (lite, pg):
            store.record_verification(
                Verification(
                    from_count=0,
                    record_count=since.count,
                    head_hash=since.head_hash,
                    ok=True,
                    result="ok",
                    verified_at="2026-12-04T10:00:00+00:00",
                )
            )
        for batch in batches[6:]:
            lite.append(batch)
            pg.append(batch)
        assert lite.last_verification() == pg.last_verification()
        assert lite.verify(since=since) == pg.verify(since=since) == lite.verify()
        # An edit after the last verification is caught from it; one before it only by a full check.
        for url in (lite_url, postgres_url):
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(text("UPDATE ledger_records SET body = body || ' ' WHERE seq IN (5, 40)"))
            engine.dispose()
        incremental = [store.verify(since=since) for store in (lite, pg)]
        assert incremental[0] == incremental[1]
        assert (incremental[0].seq, incremental[0].problem) == (40, Problem.EDITED)
        full = [store.verify() for store in (lite, pg)]
        assert full[0] == full[1]
        assert (full[0].seq, full[0].problem) == (5, Problem.EDITED)
        # A current state that disagrees with the records, the same way on both.
        for url in (lite_url, postgres_url):
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(text("UPDATE ledger_records SET body = rtrim(body) WHERE seq IN (5, 40)"))
                conn.execute(text("UPDATE ledger_latest SET seq = 2 WHERE entity_id = 'action-9'"))
            engine.dispose()
        states = [(store.verify().problem, store.verify(since=since).problem) for store in (lite, pg)]
        assert states == [(Problem.STATE_MISMATCH, Problem.STATE_MISMATCH)] * 2


def test_a_read_only_store_reads_and_refuses_every_write(postgres_url: str, tmp_path: Path) -> None:
    """What the console opens: on PostgreSQL and SQLite, reads answer and the database itself refuses writes."""
    sqlite_url = f"sqlite:///{tmp_path / 'lineage.db'}"
    for url in (postgres_url, sqlite_url):
        with LedgerStore(url) as writer:
            for batch in _ledger(2):
                writer.append(batch)
            head = writer.head()
        with LedgerStore(url, read_only=True) as reader:
            assert reader.head() == head
            assert reader.verify().ok
            assert len(reader.find(Kind.CONTEXT, ContextType.PIPELINE_RUN)) == 2
            with pytest.raises(LedgerError, match=r"read-only|readonly"):
                reader.append(_ledger(3)[2])
            with pytest.raises(LedgerError, match=r"read-only|readonly"):
                reader.record_verification(
                    Verification(
                        from_count=0,
                        record_count=head.count,
                        head_hash=head.head_hash,
                        ok=True,
                        result="ok",
                        verified_at="now",
                    )
                )
            assert reader.head() == head
    with pytest.raises(LedgerError, match="no ledger file"):
        LedgerStore(f"sqlite:///{tmp_path / 'missing.db'}", read_only=True)
    assert not (tmp_path / "missing.db").exists()
