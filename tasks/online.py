"""The scorer's features and preprocessor in plain numpy, for requests of a few rows.

On one row, pandas and scikit-learn cost milliseconds per call (building frames, checking inputs), which
is what an endpoint's latency is made of; this costs tens of microseconds. It is built from the fitted
preprocessor: its imputer's medians, its scaler's means and scales, and the column each category
one-hot encodes to, as the encoder itself maps it. `Scorer.load` uses it only after it gives the batch
path's bytes (tasks/score.py: etl's features, the preprocessor's transform) on a sample of the training
rows. Where it does not, or the preprocessor has another shape, requests take the batch path.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer

from tasks.columns import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from tasks.data import UCI_HEADERS
from tasks.stage import InputError

_NOWHERE = "\0unknown"  # a category no training row has: where the encoder puts unseen values


class Online:
    """Model inputs for rows given as dicts (stock_code, unit_price, invoice_date, country, customer_id)."""

    def __init__(self, preprocessor: ColumnTransformer, history: Any) -> None:
        shape = [(name, list(columns)) for name, _, columns in preprocessor.transformers_ if name != "remainder"]
        if shape != [("numeric", NUMERIC_FEATURES), ("categorical", CATEGORICAL_FEATURES)]:
            raise ValueError(f"a preprocessor of another shape: {shape}")
        numeric = preprocessor.named_transformers_["numeric"]
        self.medians = np.asarray(numeric.named_steps["impute"].statistics_, dtype=np.float64)
        self.means = np.asarray(numeric.named_steps["scale"].mean_, dtype=np.float64)
        self.scales = np.asarray(numeric.named_steps["scale"].scale_, dtype=np.float64)
        if not len(self.medians) == len(self.means) == len(NUMERIC_FEATURES):
            raise ValueError("the imputer dropped a column")
        self.width = len(preprocessor.get_feature_names_out())
        self.columns = _one_hot_columns(preprocessor, len(NUMERIC_FEATURES))
        self.history = history
        self.numbers = {str(code): number for number, code in enumerate(history.products)}
        self.monthly = {int(key): float(value) for key, value in history.monthly.items()}

    def matrix(self, rows: list[dict[str, Any]], source: str) -> np.ndarray:
        """The float32 model inputs of `rows`, as the batch path computes them."""
        product = np.array([self.numbers.get(str(row["stock_code"]), -1) for row in rows])
        if (product < 0).any():
            first = int(np.flatnonzero(product < 0)[0])
            raise InputError(
                f"{source}: column '{UCI_HEADERS['stock_code']}': {int((product < 0).sum())} stock code(s) the model "
                f"has no sales history of, first at data row {first + 1}: {rows[first]['stock_code']!r}"
            )
        price = np.array([float(row["unit_price"]) for row in rows], dtype=np.float64)
        when = np.array([_naive(row["invoice_date"]) for row in rows], dtype="datetime64[ns]")
        days = when.astype("datetime64[D]")
        year = when.astype("datetime64[Y]").astype(np.int64) + 1970
        month = when.astype("datetime64[M]").astype(np.int64) % 12 + 1
        ceiling = np.fmax(self.history.ceiling(product, when.astype(np.int64)), price)
        key = product.astype(np.int64) * 2**16 + year * 12 + month - 1
        numeric = np.empty((len(rows), len(NUMERIC_FEATURES)), dtype=np.float64)
        numeric[:, 0] = price  # in NUMERIC_FEATURES' order, as etl's row_features and featurise compute them
        numeric[:, 1] = [math.log(value) for value in price]
        numeric[:, 2] = price**2
        numeric[:, 3] = price / ceiling
        numeric[:, 4] = [self.monthly.get(int(k), math.nan) for k in key]
        numeric[:, 5] = [row.get("customer_id") is not None for row in rows]
        numeric[:, 6] = month
        numeric[:, 7] = (when - days).astype("timedelta64[h]").astype(np.int64)
        missing = np.isnan(numeric)
        numeric[missing] = np.broadcast_to(self.medians, numeric.shape)[missing]
        numeric -= self.means
        numeric /= self.scales
        values = np.zeros((len(rows), self.width), dtype=np.float64)
        values[:, : len(NUMERIC_FEATURES)] = numeric
        day_of_week = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday is 0
        for i, (country, day) in enumerate(zip((row["country"] for row in rows), day_of_week, strict=True)):
            for feature, value in (("country", country), ("day_of_week", int(day))):
                lookup = self.columns[feature]
                column = lookup.get(value, lookup[_NOWHERE])
                if column >= 0:
                    values[i, column] = 1.0
        return values.astype(np.float32)


def _naive(value: dt.datetime | pd.Timestamp) -> dt.datetime:
    """A naive time as the data's: an aware one in UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _one_hot_columns(preprocessor: ColumnTransformer, first: int) -> dict[str, dict[Any, int]]:
    """For each categorical feature, the output column each known category sets, and where an unseen one
    goes (-1: nowhere), found by transforming every category through the fitted encoder itself."""
    encoder = preprocessor.named_transformers_["categorical"]
    categories = {
        feature: list(known) for feature, known in zip(CATEGORICAL_FEATURES, encoder.categories_, strict=True)
    }
    length = max(len(known) for known in categories.values()) + 1  # an unseen value in every column

    def padded(known: list[Any], unseen: Any) -> list[Any]:
        return [*known, *[unseen] * (length - len(known))]

    probe = pd.DataFrame(
        {
            "country": padded(categories["country"], _NOWHERE),
            "day_of_week": np.array(padded(categories["day_of_week"], -1), dtype=np.int8),
        }
    )
    encoded = encoder.transform(probe)
    sizes = [
        sum(1 for name in encoder.get_feature_names_out() if name.startswith(f"{f}_")) for f in CATEGORICAL_FEATURES
    ]
    result: dict[str, dict[Any, int]] = {}
    start = 0
    for feature, size in zip(CATEGORICAL_FEATURES, sizes, strict=True):
        block = encoded[:, start : start + size]
        lookup: dict[Any, int] = {}
        for value, row in zip(probe[feature], block, strict=True):
            key = _NOWHERE if value in (_NOWHERE, -1) else (int(value) if feature == "day_of_week" else str(value))
            lookup[key] = first + start + int(np.argmax(row)) if row.any() else -1
        result[feature] = lookup
        start += size
    return result
