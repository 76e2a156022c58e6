"""Stage etl: extract raw transactions, clean them, impute, and build leak-free features."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.data import TARGET, UCI_HEADERS, generate_transactions, load_transactions, validate_transactions
from tasks.params import Params, load_params
from tasks.stage import InputError, atomic_path, require_under, run_stage, write_json

RAW_DIR = Path("data/raw")
TRANSACTIONS_OUT = Path("data/transactions.parquet")
PROCESSED_OUT = Path("data/processed.parquet")
METRICS_OUT = Path("metrics/etl.json")

# Product codes are five digits with an optional letter suffix (85123A); anything else is
# postage, fees, manual adjustments or gift vouchers (POST, D, M, C2, DOT, BANK CHARGES...).
_PRODUCT_CODE = re.compile(r"^\d{5}[A-Za-z]*$")


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
    frame = raw

    def drop(reason: str, mask: pd.Series) -> None:
        nonlocal frame
        report.dropped[reason] = int(mask.sum())
        frame = frame[~mask]

    drop("duplicate_rows", frame.duplicated())
    drop("cancellations", frame["invoice_no"].str.upper().str.startswith("C"))
    drop("non_product_codes", ~frame["stock_code"].str.match(_PRODUCT_CODE))
    drop("returns_or_zero_quantity", frame["quantity"] <= 0)
    drop("non_positive_price", frame["unit_price"] <= 0)

    frame = frame.copy()
    missing_description = frame["description"].isna()
    needed = frame["stock_code"].isin(frame.loc[missing_description, "stock_code"])
    known = frame[needed & ~missing_description].groupby("stock_code", sort=True)["description"].agg(_mode)
    frame.loc[missing_description, "description"] = (
        frame.loc[missing_description, "stock_code"].map(known).fillna("UNKNOWN")
    )
    report.imputed["description"] = int(missing_description.sum())
    missing_country = frame["country"].isna()
    frame.loc[missing_country, "country"] = "Unspecified"
    report.imputed["country"] = int(missing_country.sum())

    report.missing_customer_id = int(frame["customer_id"].isna().sum())
    report.rows_clean = len(frame)
    return frame.reset_index(drop=True), report


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
    frame = frame.sort_values(["invoice_date", "invoice_no", "stock_code"], kind="stable").reset_index(drop=True)
    when = frame["invoice_date"].dt
    frame["year"] = when.year.astype("int16")
    frame["month"] = when.month.astype("int8")
    frame["day_of_week"] = when.dayofweek.astype("int8")
    frame["hour"] = when.hour.astype("int8")
    frame["log_unit_price"] = np.log(frame["unit_price"])
    frame["unit_price_squared"] = frame["unit_price"] ** 2
    frame["price_to_max_so_far"] = frame["unit_price"] / _max_price_so_far(frame)
    frame["prev_month_avg_quantity"] = _previous_month_average_quantity(frame)
    frame["is_registered"] = frame["customer_id"].notna().astype("int8")
    frame[TARGET] = np.log1p(frame["quantity"])
    return frame


def _max_price_so_far(frame: pd.DataFrame) -> pd.Series:
    """Each product's highest price over all rows up to and including this row's timestamp.

    Computed per (product, timestamp) first so rows sharing a timestamp get the same value
    whatever their order in the file.
    """
    per_time = frame.groupby(["stock_code", "invoice_date"], sort=True)["unit_price"].max()
    running = per_time.groupby(level="stock_code").cummax().rename("max_price_so_far")
    keys = frame[["stock_code", "invoice_date"]]
    return keys.join(running, on=["stock_code", "invoice_date"])["max_price_so_far"]


def _previous_month_average_quantity(frame: pd.DataFrame) -> pd.Series:
    """Mean quantity per sale line of the product in the previous calendar month (NaN if none)."""
    month_index = frame["year"].astype("int32") * 12 + frame["month"].astype("int32") - 1
    monthly = frame.groupby([frame["stock_code"], month_index.rename("month_index")], sort=True)["quantity"].mean()
    shifted = monthly.rename("prev").reset_index()
    shifted["month_index"] += 1  # last month's average becomes this month's feature
    keys = pd.DataFrame({"stock_code": frame["stock_code"], "month_index": month_index})
    return keys.merge(shifted, on=["stock_code", "month_index"], how="left")["prev"].set_axis(frame.index)


def _mode(values: pd.Series) -> str:
    # value_counts(sort=False) keeps first-seen order, so a tie goes to the earliest description.
    return str(values.value_counts(sort=False).idxmax())


def extract(params: Params) -> tuple[pd.DataFrame, str]:
    """The validated raw table and a label for its source."""
    source = params.data.source
    if source == "synthetic":
        synthetic = generate_transactions(params.data.rows, params.seed, params.data.inject_drift)
        return validate_transactions(synthetic, "synthetic"), "synthetic"
    how = f"bring it in with `dvc import-url <uri> {RAW_DIR}/<name>` or copy it there and `dvc add` it"
    return load_transactions(require_under(source, RAW_DIR, "data.source", how)), source


def metrics(report: CleaningReport, processed: pd.DataFrame, source: str, stockcode: str) -> dict[str, object]:
    """metrics/etl.json: where the data came from and what happened to every row."""
    return {
        "source": source,
        "stockcode": stockcode,
        "rows": {
            "read": report.rows_read,
            "clean": report.rows_clean,
            "written": len(processed),
        },
        "dropped": report.dropped,
        "imputed": report.imputed,
        "kept_missing_customer_id": report.missing_customer_id,
        "products": int(processed["stock_code"].nunique()),
        "first_invoice_date": str(processed["invoice_date"].min()),
        "last_invoice_date": str(processed["invoice_date"].max()),
    }


def main() -> None:
    params = load_params()
    raw, source = extract(params)
    cleaned, report = clean(raw)
    processed = add_features(filter_stockcode(cleaned, params.data.stockcode, source))
    # Write only once everything has succeeded: a bad input leaves no output behind.
    with atomic_path(TRANSACTIONS_OUT) as tmp:
        raw.rename(columns=UCI_HEADERS).to_parquet(tmp, index=False)
    with atomic_path(PROCESSED_OUT) as tmp:
        processed.to_parquet(tmp, index=False)
    write_json(METRICS_OUT, metrics(report, processed, source, params.data.stockcode))
    print(f"etl: {report.rows_read} rows read, {len(processed)} written to {PROCESSED_OUT}")


if __name__ == "__main__":
    run_stage("etl", main)
