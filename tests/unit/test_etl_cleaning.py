"""Cleaning: rows real data legitimately contains are dropped or kept, and every one is counted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.data import validate_transactions
from tasks.etl import clean, filter_stockcode, usual_descriptions
from tasks.stage import InputError


def _frame(rows: list[tuple[str, str, str | None, int, float, str | None]]) -> pd.DataFrame:
    """(invoice, stock code, description, quantity, price, customer) lines on one day."""
    raw = pd.DataFrame(
        {
            "InvoiceNo": [r[0] for r in rows],
            "StockCode": [r[1] for r in rows],
            "Description": [r[2] for r in rows],
            "Quantity": [r[3] for r in rows],
            "InvoiceDate": pd.Timestamp("2011-03-01 10:00"),
            "UnitPrice": [r[4] for r in rows],
            "CustomerID": [r[5] for r in rows],
            "Country": "United Kingdom",
        }
    )
    return validate_transactions(raw, "test")


def test_each_kind_of_row_is_dropped_and_counted_once() -> None:
    raw = _frame(
        [
            ("1001", "85123A", "HEART", 6, 2.55, "17850"),  # kept
            ("1001", "85123A", "HEART", 6, 2.55, "17850"),  # exact duplicate
            ("C1002", "85123A", "HEART", -6, 2.55, "17850"),  # cancellation
            ("1003", "POST", "POSTAGE", 1, 18.0, "12583"),  # non-product codes
            ("1003", "BANK CHARGES", "Bank Charges", 1, 15.0, "12583"),
            ("1003", "gift_0001_20", "Dotcomgiftshop Gift Voucher", 1, 17.0, None),
            ("1004", "71053", "LANTERN", -3, 0.0, None),  # return without a C
            ("1005", "71053", "LANTERN", 4, 0.0, None),  # zero price
            ("1006", "15056bl", "UMBRELLA", 2, 5.95, None),  # kept: lower-case suffix, no customer
        ]
    )
    cleaned, report = clean(raw)
    assert report.rows_read == 9
    assert report.dropped == {
        "duplicate_rows": 1,
        "cancellations": 1,
        "non_product_codes": 3,
        "returns_or_zero_quantity": 1,
        "non_positive_price": 1,
    }
    assert list(cleaned["stock_code"]) == ["85123A", "15056bl"]
    assert report.rows_clean == 2
    assert report.missing_customer_id == 1  # kept, and counted


def test_missing_description_takes_the_products_usual_one_else_unknown() -> None:
    raw = _frame(
        [
            ("1", "85123A", "WHITE HEART", 1, 2.5, None),
            ("2", "85123A", "WHITE HEART", 1, 2.5, None),
            ("3", "85123A", "HEART WHITE", 1, 2.5, None),
            ("4", "85123A", None, 1, 2.5, None),
            ("5", "22633", None, 1, 1.9, None),
        ]
    )
    cleaned, report = clean(raw)
    assert list(cleaned["description"]) == ["WHITE HEART", "WHITE HEART", "HEART WHITE", "WHITE HEART", "UNKNOWN"]
    assert report.imputed["description"] == 2


def test_missing_country_is_imputed_as_unspecified() -> None:
    raw = _frame([("1", "85123A", "HEART", 1, 2.5, None)])
    raw.loc[0, "country"] = None
    cleaned, report = clean(raw)
    assert cleaned.loc[0, "country"] == "Unspecified"
    assert report.imputed["country"] == 1


def test_stockcode_filter() -> None:
    raw = _frame([("1", "85123A", "HEART", 1, 2.5, None), ("2", "22633", "WARMER", 1, 1.9, None)])
    assert list(filter_stockcode(raw, "22633", "test")["stock_code"]) == ["22633"]
    assert len(filter_stockcode(raw, "", "test")) == 2
    with pytest.raises(InputError, match=r"data\.stockcode: 'NOPE' has no sales rows in test"):
        filter_stockcode(raw, "NOPE", "test")


def test_usual_description_is_the_most_common_and_a_tie_goes_to_the_first_seen() -> None:
    frame = pd.DataFrame(
        {
            "stock_code": ["A", "B", "A", "B", "A", "C", "B", "A"],
            "description": ["RED", "TIN", "BLUE", "POT", "BLUE", "MUG", "POT", "RED"],
        }
    )
    # A: RED and BLUE twice each, RED seen first; B: POT twice, TIN once; C: its only one
    assert usual_descriptions(frame).to_dict() == {"A": "RED", "B": "POT", "C": "MUG"}
    assert usual_descriptions(frame.iloc[:0]).empty


def test_usual_descriptions_match_the_previous_per_group_mode() -> None:
    def mode(values: pd.Series) -> str:  # what clean() used per group before
        return str(values.value_counts(sort=False).idxmax())

    for seed in range(40):  # small groups, so many ties
        rng = np.random.default_rng(seed)
        frame = pd.DataFrame(
            {
                "stock_code": rng.choice(["10001", "10002", "10003"], 24),
                "description": rng.choice(["RED", "BLUE", "GREEN", "GOLD"], 24),
            }
        )
        previous = frame.groupby("stock_code", sort=True)["description"].agg(mode)
        pd.testing.assert_series_equal(usual_descriptions(frame).sort_index(), previous, check_names=False)
