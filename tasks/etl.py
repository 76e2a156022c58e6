"""Stage etl: extract raw transactions, clean them, impute, and build leak-free features."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow
import pyarrow.parquet as pq

from tasks.columns import TARGET
from tasks.data import UCI_HEADERS, generate_transactions, load_transactions, map_distinct, validate_transactions
from tasks.engine import Layout, dask_client
from tasks.params import Params, load_params
from tasks.stage import InputError, atomic_path, require_under, run_stage, write_json

RAW_DIR = Path("data/raw")
TRANSACTIONS_OUT = Path("data/transactions.parquet")
PROCESSED_OUT = Path("data/processed.parquet")
METRICS_OUT = Path("metrics/etl.json")


def _from(field: str, subtype: str, description: str, kind: str = "DIRECT") -> dict[str, str]:
    return {"path": str(TRANSACTIONS_OUT), "field": field, "type": kind, "subtype": subtype, "description": description}


_BY_PRODUCT_OVER_TIME = [
    _from("StockCode", "GROUP_BY", "per product"),
    _from("InvoiceDate", "WINDOW", "over time, up to the row's invoice date"),
]
# Where each column of data/processed.parquet comes from in data/transactions.parquet (the raw table under
# its UCI headers), by OpenLineage's column lineage types: {output path: {column: [input field, ...]}}.
# The flow hands it to the lineage recorder (lineage/ cannot import tasks/); tests/unit/test_etl_features.py
# fails if it and add_features' columns disagree.
COLUMN_LINEAGE: dict[str, dict[str, list[dict[str, str]]]] = {
    str(PROCESSED_OUT): {
        "invoice_no": [_from("InvoiceNo", "IDENTITY", "as read")],
        "stock_code": [_from("StockCode", "IDENTITY", "as read")],
        "description": [
            _from("Description", "TRANSFORMATION", "a missing one imputed with the product's most common one"),
            _from("StockCode", "TRANSFORMATION", "picks the product whose most common description imputes"),
        ],
        "quantity": [_from("Quantity", "IDENTITY", "as read")],
        "invoice_date": [_from("InvoiceDate", "IDENTITY", "as read")],
        "unit_price": [_from("UnitPrice", "IDENTITY", "as read")],
        "customer_id": [_from("CustomerID", "IDENTITY", "as read")],
        "country": [_from("Country", "TRANSFORMATION", "a missing one set to 'Unspecified'")],
        "year": [_from("InvoiceDate", "TRANSFORMATION", "calendar year")],
        "month": [_from("InvoiceDate", "TRANSFORMATION", "calendar month")],
        "day_of_week": [_from("InvoiceDate", "TRANSFORMATION", "day of the week, Monday = 0")],
        "hour": [_from("InvoiceDate", "TRANSFORMATION", "hour of the day")],
        "log_unit_price": [_from("UnitPrice", "TRANSFORMATION", "log(UnitPrice)")],
        "unit_price_squared": [_from("UnitPrice", "TRANSFORMATION", "UnitPrice ** 2")],
        "price_to_max_so_far": [
            _from("UnitPrice", "AGGREGATION", "UnitPrice / the product's highest price up to its invoice date"),
            *_BY_PRODUCT_OVER_TIME,
        ],
        "prev_month_avg_quantity": [
            _from("Quantity", "AGGREGATION", "the product's mean Quantity per line in the previous calendar month"),
            *_BY_PRODUCT_OVER_TIME,
        ],
        "is_registered": [_from("CustomerID", "TRANSFORMATION", "1 if CustomerID is present, else 0")],
        TARGET: [_from("Quantity", "TRANSFORMATION", "log1p(Quantity)")],
    }
}

# Product codes are five digits with an optional letter suffix (85123A); anything else is
# postage, fees, manual adjustments or gift vouchers (POST, D, M, C2, DOT, BANK CHARGES...).
PRODUCT_CODE = re.compile(r"^\d{5}[A-Za-z]*$")


@dataclass
class CleaningReport:
    """Row counts through cleaning: each dropped row is counted once, under its first reason."""

    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    imputed: dict[str, int] = field(default_factory=dict)
    missing_customer_id: int = 0
    rows_clean: int = 0


def clean(raw: pd.DataFrame) -> tuple[pd.DataFrame, CleaningReport]:
    """Drop rows that are not sales of a product, impute missing text; count everything."""
    report = CleaningReport(rows_read=len(raw))
    # Each reason is a test of the row alone, so all are worked out on the whole table and the table
    # is filtered once (each filter copies every column); a row counts under its first reason.
    reasons = {
        "duplicate_rows": raw.duplicated().to_numpy(),
        "cancellations": holds(raw["invoice_no"], lambda invoice: invoice.str.upper().str.startswith("C")),
        "non_product_codes": ~holds(raw["stock_code"], lambda code: code.str.match(PRODUCT_CODE)),
        "returns_or_zero_quantity": (raw["quantity"] <= 0).to_numpy(),
        "non_positive_price": (raw["unit_price"] <= 0).to_numpy(),
    }
    dropped = np.zeros(len(raw), dtype=bool)
    for reason, mask in reasons.items():
        report.dropped[reason] = int((mask & ~dropped).sum())
        dropped |= mask
    frame = raw.take(np.flatnonzero(~dropped))
    frame.index = pd.RangeIndex(len(frame))  # renumbered without another copy

    missing_description = frame["description"].isna()
    usual = usual_descriptions(frame[frame["stock_code"].isin(frame.loc[missing_description, "stock_code"])])
    frame.loc[missing_description, "description"] = (
        frame.loc[missing_description, "stock_code"].map(usual).fillna("UNKNOWN")
    )
    report.imputed["description"] = int(missing_description.sum())
    missing_country = frame["country"].isna()
    frame.loc[missing_country, "country"] = "Unspecified"
    report.imputed["country"] = int(missing_country.sum())

    report.missing_customer_id = int(frame["customer_id"].isna().sum())
    report.rows_clean = len(frame)
    return frame, report


def usual_descriptions(frame: pd.DataFrame) -> pd.Series:
    """Each product's most common description (stock code -> text); a tie goes to the one seen first."""
    # groupby skips missing descriptions and, with sort=False, lists each (product, description)
    # pair in order of first appearance; a stable sort by count keeps that order among equal counts.
    counts = frame.groupby(["stock_code", "description"], sort=False).size().reset_index(name="lines")
    ranked = counts.sort_values("lines", ascending=False, kind="stable").drop_duplicates("stock_code")
    return ranked.set_index("stock_code")["description"]


def holds(values: pd.Series, test: Callable[[pd.Series], pd.Series]) -> np.ndarray:
    """A text test per row, worked out once per distinct value (False for a missing cell)."""
    return map_distinct(values, test).to_numpy(dtype=bool)


def filter_stockcode(frame: pd.DataFrame, stockcode: str, source: str) -> pd.DataFrame:
    """Keep one product's rows ("" keeps all); a code with no rows is an input error."""
    if not stockcode:
        return frame
    kept = frame[frame["stock_code"] == stockcode].reset_index(drop=True)
    if kept.empty:
        raise InputError(f"params.yaml: data.stockcode: '{stockcode}' has no sales rows in {source}")
    return kept


def add_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Calendar parts, price features, the previous month's demand and the target.

    Every feature of a row uses only rows at or before its own timestamp: the price ceiling is
    the highest price seen so far, and demand history is the previous calendar month's.
    """
    frame = frame.sort_values(["invoice_date", "invoice_no", "stock_code"], kind="stable", ignore_index=True)
    row_features(frame)
    product = pd.factorize(frame["stock_code"])[0]  # integer group keys: much faster than text
    frame["price_to_max_so_far"] = frame["unit_price"] / max_price_so_far(frame, product)
    frame["prev_month_avg_quantity"] = previous_month_average_quantity(frame, product)
    frame["is_registered"] = frame.pop("is_registered")  # its place in the columns, so the same Parquet bytes
    frame[TARGET] = scalar_math(math.log1p, frame["quantity"])
    return frame


def row_features(frame: pd.DataFrame) -> None:
    """The features a row gives by itself (calendar parts, price transforms, registration), added in place.
    Scoring (tasks/score.py) builds new rows' features with this too."""
    when = frame["invoice_date"].dt
    frame["year"] = when.year.astype("int16")
    frame["month"] = when.month.astype("int8")
    frame["day_of_week"] = when.dayofweek.astype("int8")
    frame["hour"] = when.hour.astype("int8")
    frame["log_unit_price"] = scalar_math(math.log, frame["unit_price"])
    frame["unit_price_squared"] = frame["unit_price"] ** 2
    frame["is_registered"] = frame["customer_id"].notna().astype("int8")


def scalar_math(function: Callable[[float], float], values: pd.Series) -> np.ndarray:
    """`function` (from `math`) of each distinct value, spread back to every row, as float64.

    numpy's vectorised log gives other last bits on an AVX-512 machine than on an AVX2 one (its
    AVX-512 code is not the C library's), so etl's output would hash differently there; the C
    library's scalar functions do not switch code with AVX-512. Prices and quantities repeat, so
    this is one Python call per distinct value.
    """
    codes, distinct = pd.factorize(values)
    return np.array([function(float(value)) for value in distinct], dtype=np.float64)[codes]


def max_price_so_far(frame: pd.DataFrame, product: np.ndarray) -> pd.Series:
    """Each product's highest price over all rows up to and including this row's timestamp.

    `frame` is in time order; `product` holds one integer per row for its stock code. Each
    (product, timestamp) takes its highest price first, so rows sharing a timestamp get the same
    value whatever their order; a running maximum per product over those then covers every
    earlier timestamp too.
    """
    # sort=False: a transform's values do not depend on the group order, and sorting the groups
    # of millions of rows costs seconds
    per_time = frame["unit_price"].groupby([product, frame["invoice_date"].to_numpy()], sort=False).transform("max")
    return per_time.groupby(product, sort=False).cummax()


def previous_month_average_quantity(frame: pd.DataFrame, product: np.ndarray) -> pd.Series:
    """Mean quantity per sale line of the product in the previous calendar month (NaN if none).

    `product` holds one integer per row for its stock code. Each (product, month) becomes one
    integer key, so "the month before" is key - 1: months count from year 0 and stay within
    1..2**16 - 1 for any datetime64[ns] (years 1677 to 2262), so key - 1 never reaches into
    another product's months.
    """
    month = frame["year"].to_numpy(dtype=np.int64) * 12 + frame["month"].to_numpy(dtype=np.int64)
    key = product.astype(np.int64) * 2**16 + month
    monthly = frame["quantity"].groupby(key).mean()
    return pd.Series(monthly.reindex(key - 1).to_numpy(), index=frame.index)


def extract(params: Params) -> tuple[pd.DataFrame, str]:
    """The validated raw table and a label for its source."""
    source = params.data.source
    if source == "synthetic":
        synthetic = generate_transactions(params.data.rows, params.seed, params.data.inject_drift)
        return validate_transactions(synthetic, "synthetic"), "synthetic"
    return load_transactions(source_path(source)), source


def source_path(source: str) -> Path:
    """The data.source file, which must sit under data/raw/, where DVC sees it change."""
    how = f"bring it in with `dvc import-url <uri> {RAW_DIR}/<name>` or copy it there and `dvc add` it"
    return require_under(source, RAW_DIR, "data.source", how)


def output_facts(processed: pd.DataFrame) -> dict[str, object]:
    """What metrics/etl.json says of data/processed.parquet."""
    return {
        "written": len(processed),
        "products": int(processed["stock_code"].nunique()),
        "first": str(processed["invoice_date"].min()),
        "last": str(processed["invoice_date"].max()),
    }


def metrics(report: CleaningReport, facts: dict[str, object], source: str, stockcode: str) -> dict[str, object]:
    """metrics/etl.json: where the data came from and what happened to every row."""
    return {
        "source": source,
        "stockcode": stockcode,
        "rows": {
            "read": report.rows_read,
            "clean": report.rows_clean,
            "written": facts["written"],
        },
        "dropped": report.dropped,
        "imputed": report.imputed,
        "kept_missing_customer_id": report.missing_customer_id,
        "products": facts["products"],
        "first_invoice_date": facts["first"],
        "last_invoice_date": facts["last"],
    }


def main() -> None:
    params = load_params()
    layout = Layout.from_env()
    if layout.out_of_core(source_rows(params) or 0):
        main_out_of_core(params, layout)
        return
    raw, source = extract(params)
    cleaned, report = clean(raw)
    processed = add_features(filter_stockcode(cleaned, params.data.stockcode, source))
    # Write only once everything has succeeded: a bad input leaves no output behind.
    with atomic_path(TRANSACTIONS_OUT) as tmp:
        raw.rename(columns=UCI_HEADERS).to_parquet(tmp, index=False)
    with atomic_path(PROCESSED_OUT) as tmp:
        processed.to_parquet(tmp, index=False)
    write_json(METRICS_OUT, metrics(report, output_facts(processed), source, params.data.stockcode))
    print(f"etl: {report.rows_read} rows read, {len(processed)} written to {PROCESSED_OUT}")


def source_rows(params: Params) -> int | None:
    """How many rows the source holds, where that is known before reading it (synthetic, Parquet): a CSV or
    XLSX file is read into memory anyway, and so is an unreadable file, to be reported."""
    if params.data.source == "synthetic":
        return params.data.rows
    path = source_path(params.data.source)
    if path.suffix.lower() not in (".parquet", ".pq") or not path.is_file():
        return None
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except pyarrow.ArrowException:
        return None  # truncated or corrupt: the in-memory loader says so, in one line


def main_out_of_core(params: Params, layout: Layout) -> None:
    """main(), partition by partition on Dask (tasks/etl_out_of_core.py): the same output bytes."""
    from tasks.etl_out_of_core import process

    # The raw table takes its place only once the processed one has: a bad input leaves no output behind.
    with dask_client(layout) as (client, where), atomic_path(TRANSACTIONS_OUT) as transactions:
        report, facts = process(client, params, transactions, PROCESSED_OUT, layout.partitions)
    write_json(METRICS_OUT, metrics(report, facts, params.data.source, params.data.stockcode))
    print(f"etl: {report.rows_read} rows read, {facts['written']} written to {PROCESSED_OUT}, on {where}")


if __name__ == "__main__":
    run_stage("etl", main)
