"""Features on hand-built frames: each value by hand, and proof that no future data leaks in."""

from __future__ import annotations

import datetime as dt
import hashlib
import math

import numpy as np
import pandas as pd
import pytest

from tasks.columns import CALENDAR_COLUMNS, CATEGORICAL_FEATURES, ID_COLUMNS, NUMERIC_FEATURES, TARGET
from tasks.data import UCI_HEADERS, generate_transactions, validate_transactions
from tasks.etl import (
    COLUMN_LINEAGE,
    PROCESSED_OUT,
    TRANSACTIONS_OUT,
    add_features,
    clean,
    max_price_so_far,
    previous_month_average_quantity,
    scalar_math,
)
from tasks.params import DriftInjection


def _sales(lines: list[tuple[str, str, int, float]], customer: str | None = "17850") -> pd.DataFrame:
    """(timestamp, stock code, quantity, price) sale lines, each on its own invoice."""
    return pd.DataFrame(
        {
            "invoice_no": [str(1000 + i) for i in range(len(lines))],
            "stock_code": [line[1] for line in lines],
            "description": "ITEM",
            "quantity": np.array([line[2] for line in lines], dtype="int64"),
            "invoice_date": pd.to_datetime([line[0] for line in lines]),
            "unit_price": [line[3] for line in lines],
            "customer_id": customer,
            "country": "United Kingdom",
        }
    )


def _by_invoice(frame: pd.DataFrame, column: str) -> list[float]:
    return list(add_features(frame).sort_values("invoice_no")[column])


def test_calendar_parts() -> None:
    featured = add_features(_sales([("2011-12-09 12:50", "A", 1, 1.0)]))
    row = featured.iloc[0]
    assert (row["year"], row["month"], row["day_of_week"], row["hour"]) == (2011, 12, 4, 12)  # a Friday


def test_price_transforms_registration_and_target() -> None:
    frame = pd.concat([_sales([("2011-01-03", "A", 3, 2.0)]), _sales([("2011-01-04", "A", 9, 0.5)], customer=None)])
    frame["invoice_no"] = ["1", "2"]
    featured = add_features(frame.reset_index(drop=True))
    assert featured["log_unit_price"].tolist() == pytest.approx([np.log(2.0), np.log(0.5)])
    assert featured["unit_price_squared"].tolist() == pytest.approx([4.0, 0.25])
    assert featured["is_registered"].tolist() == [1, 0]
    assert featured[TARGET].tolist() == pytest.approx([np.log1p(3), np.log1p(9)])


def test_price_relative_to_the_highest_price_so_far_not_all_time() -> None:
    frame = _sales(
        [
            ("2011-01-03", "A", 1, 2.0),
            ("2011-01-04", "A", 1, 3.0),
            ("2011-01-05", "A", 1, 1.5),
            ("2011-01-06", "A", 1, 6.0),  # a later, higher price must not touch earlier rows
            ("2011-01-04", "B", 1, 4.0),  # another product has its own ceiling
        ]
    )
    assert _by_invoice(frame, "price_to_max_so_far") == pytest.approx([1.0, 1.0, 0.5, 1.0, 1.0])


def test_rows_at_the_same_timestamp_share_a_ceiling_whatever_their_order() -> None:
    lines = [("2011-01-03 10:00", "A", 1, 2.0), ("2011-01-03 10:00", "A", 1, 4.0)]
    forward = _by_invoice(_sales(lines), "price_to_max_so_far")
    backward = _by_invoice(_sales(lines[::-1]), "price_to_max_so_far")
    assert sorted(forward) == sorted(backward) == pytest.approx([0.5, 1.0])


def test_previous_calendar_month_average_quantity() -> None:
    frame = _sales(
        [
            ("2010-12-10", "A", 2, 1.0),
            ("2010-12-20", "A", 4, 1.0),  # December mean: 3
            ("2011-01-05", "A", 10, 1.0),  # January: sees December's 3
            ("2011-01-25", "A", 20, 1.0),  # still 3: not January's own rows
            ("2011-03-01", "A", 7, 1.0),  # no February sales: NaN, not January's 15
            ("2011-01-05", "B", 5, 1.0),  # no December sales of B
        ]
    )
    values = _by_invoice(frame, "prev_month_avg_quantity")
    assert values[:4] == pytest.approx([np.nan, np.nan, 3.0, 3.0], nan_ok=True)
    assert np.isnan(values[4])
    assert np.isnan(values[5])


def test_model_features_exclude_identifiers_and_the_target() -> None:
    features = set(NUMERIC_FEATURES + CATEGORICAL_FEATURES)
    assert not features & set(ID_COLUMNS)
    assert TARGET not in features
    assert "quantity" not in features  # the target in another form
    assert "year" not in features  # a trend that a chronological test split cannot extrapolate
    featured = add_features(_sales([("2011-01-03", "A", 1, 2.0)]))
    assert features | set(ID_COLUMNS) | set(CALENDAR_COLUMNS) | {TARGET} <= set(featured.columns)


def test_no_future_row_changes_any_earlier_rows_features() -> None:
    """Features computed on data up to a cut-off equal those computed with the future present."""
    raw = validate_transactions(generate_transactions(4000, seed=3), "synthetic")
    cleaned, _ = clean(raw)
    full = add_features(cleaned)
    for cutoff in ("2011-03-15", "2011-08-01 12:00"):
        past = add_features(cleaned[cleaned["invoice_date"] < pd.Timestamp(cutoff)])
        full_past = full[full["invoice_date"] < pd.Timestamp(cutoff)].reset_index(drop=True)
        assert len(past) == len(full_past) > 0
        pd.testing.assert_frame_equal(past, full_past)


def test_feature_rows_come_out_in_time_order() -> None:
    frame = _sales([("2011-02-01", "A", 1, 1.0), ("2011-01-01", "A", 1, 1.0)])
    assert add_features(frame)["invoice_date"].is_monotonic_increasing


# The implementations these functions replaced (group keys as text, a merge per feature), kept
# here to show the vectorised ones compute exactly the same values.
def _previous_max_price_so_far(frame: pd.DataFrame) -> pd.Series:
    per_time = frame.groupby(["stock_code", "invoice_date"], sort=True)["unit_price"].max()
    running = per_time.groupby(level="stock_code").cummax().rename("max_price_so_far")
    keys = frame[["stock_code", "invoice_date"]]
    return keys.join(running, on=["stock_code", "invoice_date"])["max_price_so_far"]


def _previous_month_average_quantity(frame: pd.DataFrame) -> pd.Series:
    month_index = frame["year"].astype("int32") * 12 + frame["month"].astype("int32") - 1
    monthly = frame.groupby([frame["stock_code"], month_index.rename("month_index")], sort=True)["quantity"].mean()
    shifted = monthly.rename("prev").reset_index()
    shifted["month_index"] += 1
    keys = pd.DataFrame({"stock_code": frame["stock_code"], "month_index": month_index})
    return keys.merge(shifted, on=["stock_code", "month_index"], how="left")["prev"].set_axis(frame.index)


def _ties_and_gaps() -> pd.DataFrame:
    """Two products over a year boundary: shared timestamps, a month without sales, equal prices."""
    frame = _sales(
        [
            ("2010-11-30 09:00", "B", 4, 3.0),
            ("2010-12-01 09:00", "A", 2, 2.0),
            ("2010-12-01 09:00", "A", 6, 5.0),  # same timestamp, higher price
            ("2010-12-01 09:00", "B", 1, 1.0),
            ("2010-12-31 17:00", "A", 3, 1.0),
            ("2011-01-02 10:00", "A", 9, 4.0),  # January: December's mean, (2 + 6 + 3) / 3
            ("2011-01-02 10:00", "B", 5, 9.0),
            ("2011-03-01 08:00", "A", 1, 5.0),  # no February sales: NaN
            ("2011-03-01 08:00", "A", 7, 6.0),
        ]
    )
    return add_features(frame)


def test_max_price_so_far_by_hand_and_as_before() -> None:
    frame = _ties_and_gaps()
    product = pd.factorize(frame["stock_code"])[0]
    computed = max_price_so_far(frame, product)
    assert frame["stock_code"].tolist() == ["B", "A", "A", "B", "A", "A", "B", "A", "A"]  # time order
    # both March lines of A share the 6.0 ceiling, though one is listed before it
    assert computed.tolist() == [3.0, 5.0, 5.0, 3.0, 5.0, 5.0, 9.0, 6.0, 6.0]
    pd.testing.assert_series_equal(computed, _previous_max_price_so_far(frame), check_names=False)


def test_previous_month_average_by_hand_and_as_before() -> None:
    frame = _ties_and_gaps()
    product = pd.factorize(frame["stock_code"])[0]
    computed = previous_month_average_quantity(frame, product)
    # B in December sees November's one line; A and B in January see December (A: (2 + 6 + 3) / 3);
    # A in March sees no February sales
    expected = [np.nan, np.nan, np.nan, 4.0, np.nan, 11 / 3, 1.0, np.nan, np.nan]
    np.testing.assert_array_equal(computed.to_numpy(), expected)
    pd.testing.assert_series_equal(computed, _previous_month_average_quantity(frame), check_names=False)


def test_vectorised_features_match_the_previous_implementation_on_synthetic_data() -> None:
    frame = add_features(clean(validate_transactions(generate_transactions(6000, seed=5), "synthetic"))[0])
    product = pd.factorize(frame["stock_code"])[0]
    assert frame["prev_month_avg_quantity"].notna().sum() > 1000
    np.testing.assert_array_equal(max_price_so_far(frame, product), _previous_max_price_so_far(frame))
    np.testing.assert_array_equal(
        previous_month_average_quantity(frame, product), _previous_month_average_quantity(frame)
    )


def _fingerprint(frame: pd.DataFrame) -> str:
    digest = hashlib.md5(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    digest.update(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    return digest.hexdigest()


def test_generator_cleaning_and_features_give_what_the_previous_implementation_gave() -> None:
    """Fingerprints of each step's frame, recorded with the per-row and per-group implementations (and
    again when the generator's registered customers came to buy three times what guests buy)."""
    raw = generate_transactions(5000, seed=3)
    assert _fingerprint(raw) == "35b36690868f2bdfaf06e99d5168f115"
    drifted = generate_transactions(5000, seed=3, drift=DriftInjection(start=dt.date(2011, 9, 1)))
    assert _fingerprint(drifted) == "3f45338a169202eedf964bfd72b193f6"
    validated = validate_transactions(raw, "synthetic")
    assert _fingerprint(validated) == "2635f9cf5030b49f80b7a89d02509f3f"
    cleaned, report = clean(validated)
    assert _fingerprint(cleaned) == "cf7a0cdb972744841acb7a7e702cc09f"
    assert report.dropped == {
        "duplicate_rows": 662,
        "cancellations": 99,
        "non_product_codes": 21,
        "returns_or_zero_quantity": 11,
        "non_positive_price": 9,
    }
    # The logs are the C library's on every CPU (an AVX-512 machine's numpy gave other last bits)
    assert _fingerprint(add_features(cleaned)) == "496799c25145b742f80b4c31c107098e"


def test_scalar_math_gives_the_c_library_s_bits_for_every_row() -> None:
    prices = pd.Series([2.55, 0.85, 2.55, 1234.5, 0.85, 0.001])
    quantities = pd.Series([1, 12, 1, 80995, 3], dtype="int64")
    assert scalar_math(math.log, prices).tobytes() == np.array([math.log(p) for p in prices]).tobytes()
    assert scalar_math(math.log1p, quantities).tobytes() == np.array([math.log1p(q) for q in quantities]).tobytes()
    assert scalar_math(math.log, prices).dtype == np.float64


def test_column_lineage_names_every_output_column_and_only_raw_fields() -> None:
    """COLUMN_LINEAGE (the columnLineage facet of data/processed.parquet) covers exactly the columns etl
    writes, each from fields data/transactions.parquet has under its UCI headers."""
    raw = validate_transactions(generate_transactions(300, seed=7), "synthetic")
    processed = add_features(clean(raw)[0])
    lineage = COLUMN_LINEAGE[str(PROCESSED_OUT)]
    assert set(COLUMN_LINEAGE) == {str(PROCESSED_OUT)}
    assert list(lineage) == list(processed.columns)  # same columns, in the written order
    for column, sources in lineage.items():
        assert sources, column
        for source in sources:
            assert source["path"] == str(TRANSACTIONS_OUT)
            assert source["field"] in UCI_HEADERS.values(), (column, source)
            assert source["type"] in {"DIRECT", "INDIRECT"}
            assert source["description"]
