"""Loaders: CSV, XLSX and Parquet in the UCI layout give the same validated frame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks.data import COLUMNS, load_transactions
from tests.conftest import uci_frame


def _expected() -> pd.DataFrame:
    raw = uci_frame()
    return pd.DataFrame(
        {
            "invoice_no": raw["InvoiceNo"],
            "stock_code": raw["StockCode"],
            "description": raw["Description"],
            "quantity": raw["Quantity"].astype("int64"),
            "invoice_date": pd.to_datetime(raw["InvoiceDate"], format="%m/%d/%Y %H:%M"),
            "unit_price": raw["UnitPrice"].astype(float),
            "customer_id": [None if c == "" else c for c in raw["CustomerID"]],
            "country": raw["Country"],
        }
    )


def _check(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == COLUMNS
    pd.testing.assert_frame_equal(frame, _expected(), check_dtype=False)
    assert frame["quantity"].dtype == "int64"
    assert frame["unit_price"].dtype == "float64"
    assert str(frame["invoice_date"].dtype) == "datetime64[ns]"


def test_csv_with_uci_headers_and_us_dates(tmp_path: Path) -> None:
    path = tmp_path / "retail.csv"
    uci_frame().to_csv(path, index=False)
    frame = load_transactions(path)
    _check(frame)
    assert frame.loc[0, "invoice_date"] == pd.Timestamp("2010-12-01 08:26")
    assert frame.loc[5, "invoice_date"] == pd.Timestamp("2011-01-05 14:30")  # month first


def test_headers_in_any_case_and_iso_dates(tmp_path: Path) -> None:
    raw = uci_frame()
    raw.columns = [
        "invoiceno",
        "STOCKCODE",
        "description",
        "Quantity",
        "Invoice Date",
        "unit_price",
        "customer_id",
        "COUNTRY",
    ]
    raw["Invoice Date"] = pd.to_datetime(raw["Invoice Date"], format="%m/%d/%Y %H:%M").dt.strftime("%Y-%m-%dT%H:%M:%S")
    path = tmp_path / "retail.csv"
    raw.to_csv(path, index=False)
    _check(load_transactions(path))


def test_online_retail_ii_names_and_extra_columns(tmp_path: Path) -> None:
    raw = uci_frame().rename(columns={"InvoiceNo": "Invoice", "UnitPrice": "Price", "CustomerID": "Customer ID"})
    raw["Notes"] = "ignored"
    path = tmp_path / "retail.csv"
    raw.to_csv(path, index=False)
    _check(load_transactions(path))


def test_xlsx(tmp_path: Path) -> None:
    raw = uci_frame()
    # As in the real workbook: real date cells, numeric quantities, prices and customer ids.
    raw["InvoiceDate"] = pd.to_datetime(raw["InvoiceDate"], format="%m/%d/%Y %H:%M")
    raw["Quantity"] = raw["Quantity"].astype(int)
    raw["UnitPrice"] = raw["UnitPrice"].astype(float)
    raw["CustomerID"] = pd.to_numeric(raw["CustomerID"]).astype(float)
    path = tmp_path / "Online Retail.xlsx"
    raw.to_excel(path, index=False)
    _check(load_transactions(path))


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    raw = uci_frame()
    raw["InvoiceDate"] = pd.to_datetime(raw["InvoiceDate"], format="%m/%d/%Y %H:%M")
    raw["Quantity"] = raw["Quantity"].astype(int)
    raw["UnitPrice"] = raw["UnitPrice"].astype(float)
    raw["CustomerID"] = pd.to_numeric(raw["CustomerID"]).astype(float)  # 17850.0 -> "17850"
    path = tmp_path / "retail.parquet"
    raw.to_parquet(path, index=False)
    _check(load_transactions(path))


def test_parquet_written_as_text_is_coerced(tmp_path: Path) -> None:
    path = tmp_path / "retail.parquet"
    uci_frame().to_parquet(path, index=False)
    _check(load_transactions(path))


@pytest.mark.parametrize("value", ["12/1/2010 8:26:00", "2010-12-01 08:26:00", "2010-12-01T08:26"])
def test_date_styles(tmp_path: Path, value: str) -> None:
    raw = uci_frame()
    raw.loc[0, "InvoiceDate"] = value
    path = tmp_path / "retail.csv"
    raw.to_csv(path, index=False)
    assert load_transactions(path).loc[0, "invoice_date"] == pd.Timestamp("2010-12-01 08:26")
