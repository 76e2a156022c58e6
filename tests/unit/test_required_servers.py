"""A server every machine of this kind runs (PostgreSQL) is required in CI: a test that finds none fails there,
and skips with the reason elsewhere (a laptop without one)."""

from __future__ import annotations

import subprocess

import pytest

from tests import conftest


@pytest.fixture
def no_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = subprocess.CompletedProcess([], 2, "", "psql: error: connection to server refused\n")
    monkeypatch.setattr(conftest, "_psql", lambda _command: refused)


def test_in_ci_a_missing_postgresql_fails(no_postgresql: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI's machines run one"), conftest.postgres_database("x"):
        pass
    with pytest.raises(pytest.fail.Exception, match="CI's machines run one"):
        conftest.postgres_answers()


def test_elsewhere_a_missing_postgresql_skips_with_the_reason(
    no_postgresql: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="connection to server refused"), conftest.postgres_database("x"):
        pass
    assert conftest.postgres_answers() is False
