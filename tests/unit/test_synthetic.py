"""The synthetic generator: same seed, same bytes; realistic statistics; injected drift."""

from __future__ import annotations

import datetime as dt
import io

import numpy as np
import pandas as pd
import pytest

from tasks.data import PART_ROWS, generate_transactions, synthetic_part, validate_transactions
from tasks.params import DriftInjection

DEFAULT_ROWS = 541_909


@pytest.fixture(scope="module")
def default() -> pd.DataFrame:
    return generate_transactions(DEFAULT_ROWS, seed=42)


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first = _parquet_bytes(generate_transactions(20_000, seed=7))
    assert first == _parquet_bytes(generate_transactions(20_000, seed=7))
    assert first != _parquet_bytes(generate_transactions(20_000, seed=8))


def test_layout_passes_the_schema(default: pd.DataFrame) -> None:
    assert list(default.columns) == [
        "InvoiceNo",
        "StockCode",
        "Description",
        "Quantity",
        "InvoiceDate",
        "UnitPrice",
        "CustomerID",
        "Country",
    ]
    assert len(validate_transactions(default, "synthetic")) == DEFAULT_ROWS


def test_statistics_resemble_online_retail(default: pd.DataFrame) -> None:
    assert len(default) == DEFAULT_ROWS
    assert default["InvoiceDate"].min() >= pd.Timestamp("2010-12-01")
    assert default["InvoiceDate"].max() < pd.Timestamp("2011-12-10")
    assert 3_500 <= default["StockCode"].nunique() <= 4_500
    assert 33 <= default["Country"].nunique() <= 38
    assert 0.85 <= (default["Country"] == "United Kingdom").mean() <= 0.95
    assert 0.20 <= default["CustomerID"].isna().mean() <= 0.30
    assert 0.015 <= default["InvoiceNo"].str.startswith("C").mean() <= 0.025
    assert default["StockCode"].isin(["POST", "M", "DOT", "C2", "D"]).sum() > 0
    assert default.duplicated().sum() > 0
    assert ((default["Quantity"] < 0) & ~default["InvoiceNo"].str.startswith("C")).sum() > 0


def test_quantity_falls_with_price(default: pd.DataFrame) -> None:
    sales = default[(default["Quantity"] > 0) & (default["UnitPrice"] > 0)]
    assert np.corrcoef(np.log(sales["Quantity"]), np.log(sales["UnitPrice"]))[0, 1] < -0.3


def test_registered_customers_buy_about_three_times_what_guests_buy(default: pd.DataFrame) -> None:
    """A real base-rate gap between groups (UCI file: 11.9 against 3.9 units per line), which the fairness
    gate must tell apart from a biased model."""
    sales = default[default["Quantity"] > 0]
    registered = sales["CustomerID"].notna()
    ratio = sales.loc[registered, "Quantity"].mean() / sales.loc[~registered, "Quantity"].mean()
    assert 2.5 <= ratio <= 3.5


def test_weekly_and_seasonal_patterns(default: pd.DataFrame) -> None:
    weekday = default["InvoiceDate"].dt.dayofweek.value_counts()
    assert 5 not in weekday.index  # no Saturday trading
    assert weekday[3] == weekday.max()  # Thursday busiest
    month = default["InvoiceDate"].dt.to_period("M").value_counts()
    assert month[pd.Period("2011-11")] > 1.4 * month[pd.Period("2011-02")]
    christmas = default["InvoiceDate"].between("2010-12-24", "2011-01-03 23:59")
    assert not christmas.any()


def test_injected_drift_raises_prices_and_the_non_uk_share() -> None:
    start = dt.date(2011, 9, 1)
    frame = generate_transactions(60_000, seed=5, drift=DriftInjection(start=start, price_factor=1.5, non_uk_share=0.4))
    after = frame["InvoiceDate"] >= pd.Timestamp(start)
    assert frame.loc[after, "UnitPrice"].median() > 1.3 * frame.loc[~after, "UnitPrice"].median()
    non_uk = frame["Country"] != "United Kingdom"
    assert non_uk[after].mean() == pytest.approx(0.4, abs=0.05)
    assert non_uk[~after].mean() < 0.25
    undrifted = generate_transactions(60_000, seed=5)
    before_start = undrifted["InvoiceDate"] < pd.Timestamp(start)
    assert frame.loc[~after, "UnitPrice"].median() == undrifted.loc[before_start, "UnitPrice"].median()


def test_a_bigger_dataset_is_parts_made_alone(default: pd.DataFrame) -> None:
    """More than PART_ROWS rows: part 0 is the default-size table itself, later parts are new invoices of the
    same shop (its products and customers, the same months), each made from its own seed sequence alone."""
    rows = 2 * PART_ROWS + 1000
    first, second, last = (synthetic_part(rows, 42, None, part) for part in range(3))
    assert _parquet_bytes(first) == _parquet_bytes(default)
    assert (len(second), len(last)) == (PART_ROWS, 1000)
    assert _parquet_bytes(last) == _parquet_bytes(synthetic_part(rows, 42, None, 2))  # made again, alone
    assert _parquet_bytes(second) != _parquet_bytes(synthetic_part(rows, 43, None, 1))
    invoices = [set(part["InvoiceNo"].str.lstrip("C")) for part in (first, second, last)]
    assert not (invoices[0] & invoices[1])
    assert not (invoices[1] & invoices[2])
    products = set().union(*(part["StockCode"][part["StockCode"].str.match(r"^\d{5}")] for part in (first, second)))
    assert len(products) <= 4000  # one catalog of 4,000 products: two would list about 8,000
    customers = set(first["CustomerID"].dropna()) | set(second["CustomerID"].dropna())
    assert len(customers) <= 4372  # one set of customers
    assert second["InvoiceDate"].min().year == 2010
    assert second["InvoiceDate"].max().year == 2011
    whole = generate_transactions(rows, seed=42)
    assert _parquet_bytes(whole) == _parquet_bytes(pd.concat([first, second, last], ignore_index=True))
