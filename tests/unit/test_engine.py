"""The engine layout's settings, and the Parquet writer that makes a file written in pieces the bytes pandas
writes at once."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.engine import IN_MEMORY_ROWS_ENV, PARTITION_ROWS_ENV, SCHEDULER_ENV, Layout
from tasks.row_groups import ROW_GROUP_ROWS, RowGroupWriter
from tasks.stage import InputError


@pytest.mark.parametrize("pieces", [[1], [3, 1, 1], [700_000] * 3 + [1]])
def test_pieces_write_the_bytes_of_one_write(pieces: list[int], tmp_path: Path) -> None:
    """Row groups of ROW_GROUP_ROWS wherever the pieces end: 2.1 million rows are three row groups either way."""
    rows = ROW_GROUP_ROWS * 2 + 1 if len(pieces) == 4 else sum(pieces) * 1000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "when": pd.Timestamp("2011-01-01") + pd.to_timedelta(rng.integers(0, 10**6, rows), unit="s"),
            "text": np.array(["a", "bb", None], dtype=object)[rng.integers(0, 3, rows)],
            "value": rng.normal(size=rows),
        }
    )
    frame.to_parquet(tmp_path / "once.parquet", index=False)
    cuts = np.cumsum([0, *pieces]) * len(frame) // sum(pieces)
    writer = RowGroupWriter(tmp_path / "pieces.parquet", RowGroupWriter.schema_of(frame.iloc[: cuts[1]]))
    for start, end in itertools.pairwise(cuts):
        writer.write(frame.iloc[start:end])
    writer.close()
    assert writer.written == len(frame)
    assert (tmp_path / "pieces.parquet").read_bytes() == (tmp_path / "once.parquet").read_bytes()


def test_layout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SCHEDULER_ENV, raising=False)
    monkeypatch.setenv(IN_MEMORY_ROWS_ENV, "1000")
    monkeypatch.setenv(PARTITION_ROWS_ENV, "300")
    layout = Layout.from_env()
    assert not layout.out_of_core(1000)
    assert layout.out_of_core(1001)
    assert layout.partitions(1000) == 4
    assert layout.partitions(1) == 1
    monkeypatch.setenv(SCHEDULER_ENV, "tcp://scheduler:8786")
    assert Layout.from_env().out_of_core(1)  # a cluster takes the work whatever its size


@pytest.mark.parametrize("value", ["", "0", "-5", "1e6", "lots"])
def test_a_bad_setting_is_one_line_naming_it(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PARTITION_ROWS_ENV, value)
    if not value:  # unset or empty: the default
        assert Layout.from_env().partition_rows > 0
        return
    with pytest.raises(InputError, match=f"^environment: {PARTITION_ROWS_ENV}: '{value}' is not a positive whole"):
        Layout.from_env()
