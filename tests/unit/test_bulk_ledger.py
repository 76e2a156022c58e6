"""tests/bulk_ledger.py: a ledger built by replicating template runs is one `record_run` could have
written: the chain and the current-state table verify, every record validates, one model version per
run, the production model's lineage has a recorded run's shape, and the same runs give the same head."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lineage.query import Direction, query_lineage
from lineage.registry import production, versions
from lineage.store import LedgerStore
from tests.bulk_ledger import CYCLE, FIRST_TEMPLATE, REAL_WEEKS, build
from tests.conftest import POSTGRES_PSYCOPG, postgres_database

RUNS = REAL_WEEKS + CYCLE + 3  # every template replicated at least once, the first few twice


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    scratch = tmp_path_factory.mktemp("bulk")
    url = f"sqlite:///{scratch / 'ledger.db'}"
    build(url, RUNS, scratch / "workspace")
    return scratch, url


def _runs(store: LedgerStore) -> list[int]:
    """Records per run: each run's records start with its first stage (the first run's, with the shared
    artifacts recorded before it)."""
    sizes: list[int] = []
    count, staged = 0, False
    for record in store.records():
        if record.kind == "action" and record.entity_type == "Stage" and '"stage":"etl"' in record.body:
            if staged:
                sizes.append(count)
                count = 0
            staged = True
        count += 1
    return [*sizes, count]


def test_the_built_ledger_verifies_and_every_record_validates(built: tuple[Path, str]) -> None:
    _, url = built
    with LedgerStore(url) as store:
        result = store.verify()
        assert result.ok, str(result)
        records = list(store.records())
        assert result.count == len(records)
        for record in records:
            assert record.entity().id == record.entity_id


def test_each_replicated_run_has_its_templates_records(built: tuple[Path, str]) -> None:
    _, url = built
    with LedgerStore(url) as store:
        sizes = _runs(store)
    assert len(sizes) == RUNS
    for run in range(REAL_WEEKS, RUNS):
        template = FIRST_TEMPLATE + (run - REAL_WEEKS) % CYCLE
        assert sizes[run] == sizes[template], run
    assert Counter(sizes[REAL_WEEKS:]) == Counter(sizes[template] for template in _templates_of(RUNS))


def _templates_of(runs: int) -> list[int]:
    return [FIRST_TEMPLATE + (run - REAL_WEEKS) % CYCLE for run in range(REAL_WEEKS, runs)]


def test_one_version_per_run_and_production_has_a_recorded_runs_lineage(built: tuple[Path, str]) -> None:
    _, url = built
    with LedgerStore(url) as store:
        found = versions(store)
        assert len(found) == RUNS
        assert len({version.name for version in found}) == RUNS
        # One run in ten fails the fairness gate; the others' versions were promoted, then archived.
        statuses = Counter(str(version.properties["status"]) for version in found)
        assert statuses["rejected"] == sum(1 for week in range(RUNS) if week % 10 == 3)
        assert statuses["production"] == 1
        current = production(store)
        assert current is not None
        assert current.name == found[-1 if (RUNS - 1) % 10 != 3 else -2].name
        graph = query_lineage(store, "production", Direction.ASCENDANTS, depth=10)
        template = found[FIRST_TEMPLATE + (RUNS - 1 - REAL_WEEKS) % CYCLE]  # the week the last run copies
        recorded = query_lineage(store, template.name, Direction.ASCENDANTS, depth=10)
        assert (len(graph.vertices), len(graph.edges)) == (len(recorded.vertices), len(recorded.edges))
        # Its own data and model, and the code artifacts every run shares, as recorded runs do.
        mine, theirs = ({v.id: v.type for v in g.vertices} for g in (graph, recorded))
        assert not {i for i, kind in mine.items() if kind == "DataSet"} & set(theirs)
        code = {i for i, kind in mine.items() if kind == "Code"}
        assert code
        assert code == {i for i, kind in theirs.items() if kind == "Code"}


def test_the_same_runs_give_the_same_head(built: tuple[Path, str], tmp_path: Path) -> None:
    scratch, url = built
    with LedgerStore(url) as store:
        head = store.head()
    again = build(f"sqlite:///{tmp_path / 'again.db'}", RUNS, scratch / "workspace")
    assert again == head


def test_it_refuses_a_ledger_that_is_not_empty(built: tuple[Path, str]) -> None:
    scratch, url = built
    with pytest.raises(RuntimeError, match="not empty"):
        build(url, 1, scratch / "workspace")


def test_postgresql(built: tuple[Path, str]) -> None:
    scratch, url = built
    with postgres_database("bulk_ledger") as database:
        postgres = POSTGRES_PSYCOPG.format(database=database)
        head = build(postgres, RUNS, scratch / "workspace")
        with LedgerStore(url) as sqlite, LedgerStore(postgres) as store:
            assert head == sqlite.head()
            assert store.verify().ok
            current = production(store)
            assert current is not None
            assert current == production(sqlite)
