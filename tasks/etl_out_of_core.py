"""etl out of core: the same outputs as tasks.etl's in-memory path, byte for byte, from data that does not fit
in memory, on a Dask worker process of this machine's or on a Dask cluster (tasks/engine.py).

The raw table is read or made on the workers a part at a time and written in order; then a Dask graph over
it runs tasks.etl's own row-level functions per partition. Rows that must meet go to one partition by a
shuffle (identical rows share an invoice; a product's rows share its code), and every order that reaches an
output ends in the input position (`row_id`), so no result depends on the partitions or the workers: the
output is written in order, in row groups of a fixed size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tasks.columns import TARGET
from tasks.data import COLUMNS, PART_ROWS, UCI_HEADERS, load_transactions, synthetic_part, validate_transactions
from tasks.etl import PRODUCT_CODE, CleaningReport, holds, row_features, scalar_math, source_path
from tasks.params import Params
from tasks.row_groups import RowGroupWriter
from tasks.stage import InputError, atomic_path

if TYPE_CHECKING:
    from distributed import Client

REASONS = ("cancellations", "non_product_codes", "returns_or_zero_quantity", "non_positive_price")
KEPT = 0


def raw_pieces(params: Params) -> list[tuple[int, int]]:
    """The raw table's parts, as (part, first row): a synthetic part (tasks.data.PART_ROWS), a Parquet row
    group, or a whole CSV or XLSX file."""
    if params.data.source == "synthetic":
        return [(part, first) for part, first in enumerate(range(0, params.data.rows, PART_ROWS))]
    path = source_path(params.data.source)
    if path.suffix.lower() not in (".parquet", ".pq"):
        return [(0, 0)]
    metadata = pq.ParquetFile(path).metadata
    sizes = [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)]
    return list(enumerate(np.cumsum([0, *sizes[:-1]]).tolist()))


def read_piece(piece: tuple[int, int], params: Params) -> pd.DataFrame:
    """One validated part of the raw table, under canonical names, with each row's position in the table
    (`row_id`). It runs on a worker, so a part lost with its worker is made again; a worker must see the
    source file at the same path (data/raw/ on a shared volume), unless the source is synthetic. A bad value is
    reported at its row in the whole table; the count in the message is its part's."""
    part, first = piece
    if params.data.source == "synthetic":
        data = params.data
        frame = validate_transactions(synthetic_part(data.rows, params.seed, data.inject_drift, part), "synthetic")
    else:
        path = source_path(params.data.source)
        if path.suffix.lower() in (".parquet", ".pq"):
            raw = pq.ParquetFile(path).read_row_group(part).to_pandas()
            raw.index = pd.RangeIndex(first, first + len(raw))  # the row numbers errors name
            frame = validate_transactions(raw, str(path))
        else:
            frame = load_transactions(path)
    frame = frame.reset_index(drop=True)
    frame["row_id"] = np.arange(first, first + len(frame), dtype=np.int64)
    return frame


def process(
    client: Client, params: Params, transactions: Path, processed: Path, partitions_of: Callable[[int], int]
) -> tuple[CleaningReport, dict[str, Any]]:
    """etl's two tables, out of core: the raw table read on the cluster, part by part, and written to
    `transactions` in order; then cleaned, imputed and given features there into `processed`. Returns the
    cleaning report and the facts metrics/etl.json gives of the output. `partitions_of(rows)`: how many
    partitions to work in."""
    import dask.dataframe as dd

    # Kept on the workers (spilled to disk past their memory) for what follows; a part lost is read again.
    raw = client.persist(dd.from_map(read_piece, raw_pieces(params), params=params, enforce_metadata=False))
    read = _write_raw(client, raw, transactions)
    # Identical rows share their invoice: one partition holds them all, and keeps the first read.
    raw = raw.repartition(npartitions=partitions_of(read))
    flagged = client.persist(raw.shuffle("invoice_no").map_partitions(_flag))
    tally = flagged["reason"].value_counts().compute()
    report = CleaningReport(rows_read=read)
    distinct = int(tally.sum())
    report.dropped["duplicate_rows"] = read - distinct
    report.dropped |= {reason: int(tally.get(code + 1, 0)) for code, reason in enumerate(REASONS)}
    kept = flagged[flagged["reason"] == KEPT].drop(columns="reason")

    usual = _usual_descriptions(kept)
    missing = kept[["description", "country", "customer_id"]].isna().sum().compute()
    report.imputed = {"description": int(missing["description"]), "country": int(missing["country"])}
    report.missing_customer_id = int(missing["customer_id"])
    report.rows_clean = int(tally.get(KEPT, 0))
    filled = kept.map_partitions(_impute, usual)
    stockcode = params.data.stockcode
    if stockcode:
        filled = filled[filled["stock_code"] == stockcode]
    month_key = filled["invoice_date"].dt.year.astype("int64") * 12 + filled["invoice_date"].dt.month
    filled = client.persist(filled.assign(month_key=month_key))
    # Each product's mean quantity per month: a few thousand products by 13 months, small enough to hand
    # to every partition. One output partition: the means are complete there, once each.
    monthly = filled.groupby(["stock_code", "month_key"])["quantity"].mean(split_out=1).compute()
    if monthly.empty and stockcode:
        raise InputError(f"params.yaml: data.stockcode: '{stockcode}' has no sales rows in {params.data.source}")
    by_product = filled.shuffle("stock_code").map_partitions(_product_features, monthly)
    ordered = by_product.sort_values("invoice_date").map_partitions(_row_features)
    return report, _write_in_order(client, ordered, processed)


def _write_raw(client: Client, raw: Any, transactions: Path) -> int:
    """Write the raw table under its UCI headers, a part at a time in order; its row count."""
    writer: RowGroupWriter | None = None
    for future in client.compute(raw.to_delayed()):
        named = future.result().drop(columns="row_id").rename(columns=UCI_HEADERS)
        future.release()
        writer = writer or RowGroupWriter(transactions, RowGroupWriter.schema_of(named))
        writer.write(named)
    assert writer is not None  # every source has a part; an empty one is refused by its reader
    writer.close()
    return writer.written


def _flag(frame: pd.DataFrame) -> pd.DataFrame:
    """Duplicates out (the first read stays), each other row flagged with its first drop reason (0: kept)."""
    frame = frame.sort_values("row_id", kind="stable")
    frame = frame[~frame.duplicated(COLUMNS)]
    reasons = [
        holds(frame["invoice_no"], lambda invoice: invoice.str.upper().str.startswith("C")),
        ~holds(frame["stock_code"], lambda code: code.str.match(PRODUCT_CODE)),
        (frame["quantity"] <= 0).to_numpy(),
        (frame["unit_price"] <= 0).to_numpy(),
    ]
    codes = np.select(reasons, [1, 2, 3, 4], KEPT)
    return frame.assign(reason=codes.astype(np.int8))


def _usual_descriptions(kept: Any) -> pd.Series:
    """tasks.etl.usual_descriptions for the products missing a description: most lines, then first seen."""
    missing = kept.loc[kept["description"].isna(), "stock_code"].unique().compute()
    if not len(missing):
        return pd.Series(dtype=object)
    lines = kept[kept["stock_code"].isin(list(missing)) & kept["description"].notna()]
    pairs = lines.groupby(["stock_code", "description"]).agg(lines=("row_id", "size"), first=("row_id", "min"))
    ranked = pairs.compute().reset_index().sort_values(["stock_code", "lines", "first"], ascending=[True, False, True])
    return ranked.drop_duplicates("stock_code").set_index("stock_code")["description"]


def _impute(frame: pd.DataFrame, usual: pd.Series) -> pd.DataFrame:
    frame = frame.copy()
    gap = frame["description"].isna()
    frame.loc[gap, "description"] = frame.loc[gap, "stock_code"].map(usual).fillna("UNKNOWN")
    frame["country"] = frame["country"].fillna("Unspecified")
    return frame


def _product_features(frame: pd.DataFrame, monthly: pd.Series) -> pd.DataFrame:
    """tasks.etl's price ceiling and previous month's demand, for whole products (all of a product's rows)."""
    frame = frame.sort_values(["stock_code", "invoice_date", "row_id"], kind="stable")
    peak = frame.groupby(["stock_code", "invoice_date"], sort=False)["unit_price"].transform("max")
    frame["price_to_max_so_far"] = frame["unit_price"] / peak.groupby(frame["stock_code"], sort=False).cummax()
    previous = pd.MultiIndex.from_arrays([frame["stock_code"], frame.pop("month_key") - 1])
    frame["prev_month_avg_quantity"] = monthly.reindex(previous).to_numpy()
    return frame


def _row_features(frame: pd.DataFrame) -> pd.DataFrame:
    """tasks.etl.add_features' row order and columns, for one partition of whole timestamps."""
    frame = frame.sort_values(["invoice_date", "invoice_no", "stock_code", "row_id"], kind="stable")
    frame = frame.drop(columns="row_id").reset_index(drop=True)
    ceiling, previous = frame.pop("price_to_max_so_far"), frame.pop("prev_month_avg_quantity")
    row_features(frame)
    registered = frame.pop("is_registered")
    frame["price_to_max_so_far"], frame["prev_month_avg_quantity"] = ceiling, previous
    frame["is_registered"] = registered
    frame[TARGET] = scalar_math(math.log1p, frame["quantity"])
    return frame


def _write_in_order(client: Client, ordered: Any, out: Path) -> dict[str, Any]:
    """The partitions, computed on the workers, gathered one at a time in order into one Parquet file; the
    facts metrics/etl.json needs."""
    writer: RowGroupWriter | None = None
    products: set[str] = set()
    first = last = None
    futures = client.compute(ordered.to_delayed())
    with atomic_path(out) as tmp:
        for future in futures:
            frame = future.result()
            future.release()
            if frame.empty:
                continue
            writer = writer or RowGroupWriter(tmp, RowGroupWriter.schema_of(frame))
            writer.write(frame)
            products.update(frame["stock_code"].unique())
            first = first if first is not None else frame["invoice_date"].iloc[0]
            last = frame["invoice_date"].iloc[-1]
        if writer is None:
            raise InputError("no sales rows left after cleaning")
        writer.close()
    return {"written": writer.written, "products": len(products), "first": str(first), "last": str(last)}
