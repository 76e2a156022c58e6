"""The `lineage` command tells a refusal from a bug: a LineageError is one line and exit status 1; anything
else (a plain ValueError, say) is a bug, shown with its traceback and exit status 70, never as a polite line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import lineage.cli.query
from lineage.cli import BUG, main
from lineage.errors import LineageError
from lineage.query import QueryError


def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """`lineage ARGS` in this process, through the console script's own entry: its exit status and stderr."""
    monkeypatch.setattr(sys, "argv", ["lineage", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return int(exited.value.code or 0), capsys.readouterr().err


def raising(error: Exception) -> Any:
    def query_lineage(*args: Any, **kwargs: Any) -> None:
        raise error

    return query_lineage


def test_a_bug_is_a_traceback_not_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(lineage.cli.query, "query_lineage", raising(ValueError("a bug in the walk")))
    code, err = run(monkeypatch, capsys, "query", "production", "--db", f"sqlite:///{tmp_path / 'l.db'}")
    assert code == BUG != 1
    assert "Traceback (most recent call last)" in err
    assert "ValueError: a bug in the walk" in err
    assert "lineage: error:" not in err


def test_a_refusal_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert issubclass(QueryError, LineageError)
    monkeypatch.setattr(lineage.cli.query, "query_lineage", raising(QueryError("no entity 'x' in the ledger")))
    code, err = run(monkeypatch, capsys, "query", "x", "--db", f"sqlite:///{tmp_path / 'l.db'}")
    assert code == 1
    assert err == "lineage: error: no entity 'x' in the ledger\n"
