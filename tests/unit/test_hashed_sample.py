"""Samples drawn by a seeded hash of the row key: the same rows however the table is ordered or cut."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.hashed_sample import ROW_KEY, HashedSample

LINES = pd.DataFrame(
    {"invoice_no": [str(536365 + n // 4) for n in range(5000)], "stock_code": "", "value": range(5000)}
)
LINES["stock_code"] = [f"2{n % 4:04d}" for n in range(5000)]


def drawn(table: pd.DataFrame, size: int, seed: int, batch_rows: int) -> pd.DataFrame:
    sample = HashedSample(size, seed, ROW_KEY)
    for start in range(0, len(table), batch_rows):
        batch = table.iloc[start : start + batch_rows]
        sample.add(batch, np.arange(start, start + len(batch)), ["value"])
    return sample.rows()


@pytest.mark.parametrize("batch_rows", [5000, 333, 1])
def test_a_row_is_in_the_sample_by_its_key_and_the_seed_alone(batch_rows: int) -> None:
    chosen = drawn(LINES, 300, seed=1, batch_rows=5000)
    assert len(chosen) == 300
    shuffled = LINES.sample(frac=1, random_state=0)
    again = drawn(shuffled, 300, seed=1, batch_rows=batch_rows)
    assert sorted(again["value"]) == chosen["value"].tolist()  # the same lines...
    order = {value: place for place, value in enumerate(shuffled["value"])}
    assert [order[v] for v in again["value"]] == sorted(order[v] for v in again["value"])  # ...in the table's order
    assert set(drawn(LINES, 300, seed=2, batch_rows=5000)["value"]) != set(chosen["value"])


def test_a_larger_sample_holds_the_smaller_one_and_spreads_over_the_table() -> None:
    small, large = drawn(LINES, 300, 1, 5000), drawn(LINES, 1000, 1, 700)
    assert set(small["value"]) < set(large["value"])
    assert 1800 < large["value"].mean() < 3200  # drawn from the whole table, not its start


def test_a_table_no_larger_than_the_sample_comes_back_whole() -> None:
    pd.testing.assert_frame_equal(drawn(LINES, 5000, 1, 7), LINES[["value"]])


def test_rows_sharing_a_key_tie_and_the_earlier_wins() -> None:
    twice = pd.DataFrame({"invoice_no": ["1", "1", "2"], "stock_code": ["A", "A", "B"], "value": [0, 1, 2]})
    sizes = {size: drawn(twice, size, 1, 1)["value"].tolist() for size in (1, 2)}
    assert sizes[2] in ([0, 1], [0, 2])
    assert sizes[1] in ([0], [2])
