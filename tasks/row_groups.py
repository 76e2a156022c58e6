"""Parquet files read a batch at a time, and written a piece at a time as the same bytes as the whole table at once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.stage import InputError

# pyarrow's default: what pandas' to_parquet writes, so a file written in pieces is the same bytes.
ROW_GROUP_ROWS = 1024 * 1024


def batches(path: Path, columns: list[str] | None, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """`columns` (None: all) of a Parquet file, `batch_rows` rows at a time; a broken file is one line naming it."""
    try:
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns)
    except (OSError, pa.ArrowException) as error:
        raise _unreadable(path, error) from None


def positioned(pieces: Iterable[pa.RecordBatch]) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Each batch with the position of its first row in the whole table."""
    first = 0
    for batch in pieces:
        yield first, batch
        first += batch.num_rows


def take_rows(
    path: Path, rows: np.ndarray, columns: list[str] | None = None, batch_rows: int = ROW_GROUP_ROWS
) -> pa.Table:
    """The rows at `rows` (sorted positions) of a Parquet file, read a batch at a time: memory holds them and
    one batch, not the file."""
    taken = []
    for first, batch in positioned(batches(path, columns, batch_rows)):
        start, stop = np.searchsorted(rows, [first, first + batch.num_rows])
        taken.append(pa.Table.from_batches([batch]).take(pa.array(rows[start:stop] - first)))
    if not taken:
        raise InputError(f"{path}: no rows")
    return pa.concat_tables(taken)


def row_count(path: Path) -> int:
    """A Parquet file's rows, from its footer; a broken file is one line naming it."""
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, pa.ArrowException) as error:
        raise _unreadable(path, error) from None


def _unreadable(path: Path, error: Exception) -> InputError:
    return InputError(f"{path}: not a readable Parquet file ({str(error).splitlines()[0]})")


class RowGroupWriter:
    """A Parquet file written piece by piece in row groups of ROW_GROUP_ROWS, whatever the pieces: the bytes
    pandas' `to_parquet(index=False)`, or pyarrow's `write_table`, writes for the whole table at once (with the
    given schema and its metadata)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.schema = schema
        self.pending: list[pa.Table] = []
        self.rows = 0  # pending
        self.written = 0
        self.writer = pq.ParquetWriter(path, schema, compression="snappy")

    @staticmethod
    def schema_of(frame: pd.DataFrame) -> pa.Schema:
        """The Arrow schema, pandas metadata included, pandas' to_parquet would write `frame` with."""
        return pa.Schema.from_pandas(frame, preserve_index=False)

    def write(self, frame: pd.DataFrame) -> None:
        self.write_table(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))

    def write_table(self, table: pa.Table) -> None:
        self.pending.append(table.replace_schema_metadata(self.schema.metadata))
        self.rows += len(table)
        self.written += len(table)
        while self.rows >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def close(self) -> None:
        if self.rows:
            self._flush(self.rows)
        self.writer.close()

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self.pending)
        self.writer.write_table(table.slice(0, rows), row_group_size=ROW_GROUP_ROWS)
        rest = table.slice(rows)
        self.pending, self.rows = ([rest] if len(rest) else []), len(rest)
