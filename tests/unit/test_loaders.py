"""Loaders: CSV, XLSX and Parquet in the UCI layout give the same validated frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.data import COLUMNS, _customer_ids, _text, load_transactions, map_distinct
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


def test_text_is_stripped_per_distinct_value_blank_and_missing_become_none() -> None:
    cells = pd.Series([" 85123A ", "85123A", "", "   ", None, np.nan, "POST\t", 22633, "85123A"], dtype=object)
    text = _text(cells)
    assert text.tolist() == ["85123A", "85123A", None, None, None, None, "POST", "22633", "85123A"]
    assert text.dtype == object
    assert text.iloc[1] is text.iloc[8]  # one object per distinct value, shared by its rows
    ids = _customer_ids(pd.Series([17850.0, np.nan, 12583.0, 17850.0]))
    assert ids.tolist() == ["17850", None, "12583", "17850"]
    assert _customer_ids(pd.Series([" 13047.0 ", "13047", "", "1.0.0"], dtype=object)).tolist() == [
        "13047",
        "13047",
        None,
        "1.0",
    ]


def test_text_matches_the_previous_per_cell_conversion() -> None:
    def previous_text(values: pd.Series) -> pd.Series:
        text = values.astype("string").str.strip()
        text = text.mask(text == "")
        return text.astype(object).mask(text.isna(), None)

    columns = [
        pd.Series([" a ", "a", "", " ", None, np.nan, "b\t", "17850.0", 1, 1.0, True, pd.NA], dtype=object),
        pd.Series([17850.0, np.nan, 12.5, 17850.0]),
        pd.Series([3, 1, 3]),
        pd.Series(["a", None, " b"], dtype="string"),
        pd.Series(["a", None, " b", "a"], dtype="category"),
        pd.Series([], dtype=object),
    ]
    for cells in columns:
        expected = previous_text(cells)
        assert _text(cells).tolist() == expected.tolist()
        assert [type(value) for value in _text(cells)] == [type(value) for value in expected]
        expected_ids = previous_text(previous_text(cells).str.replace(r"\.0$", "", regex=True))
        assert _customer_ids(cells).tolist() == expected_ids.tolist()


def test_map_distinct_calls_the_function_once_per_distinct_value() -> None:
    seen: list[list[str]] = []

    def upper(values: pd.Series) -> pd.Series:
        seen.append(values.tolist())
        return values.str.upper()

    result = map_distinct(pd.Series(["b", "a", None, "b", "a"], index=[5, 6, 7, 8, 9], dtype=object), upper)
    assert seen == [["b", "a"]]
    assert result.tolist() == ["B", "A", None, "B", "A"]
    assert result.index.tolist() == [5, 6, 7, 8, 9]
