"""Scoring: predicted quantities for new rows, from one model version's files, with the features etl builds.

A row's own features come from etl's `row_features`. Its history features come from the version's
training data (data/processed.parquet), as etl computes them: the product's highest price up to the
row's time (its own price included) and the product's mean quantity in the previous calendar month.
So the rows of the test split score to the inference stage's predictions, byte for byte.

`python -m tasks.score` is what the `score` flow runs, on the numeric platform like every stage. It
checks each file against the md5 it was given before loading it, and reads the rows to score as etl
reads a source, with the same one-line errors. The online endpoint (serving/) calls the same functions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer

from tasks import mkl_refusal
from tasks.data import UCI_HEADERS, load_transactions
from tasks.etl import max_price_so_far, row_features
from tasks.metrics import to_quantity
from tasks.model import DemandNet, model_from_bytes, predict, verify_bytes
from tasks.online import Online
from tasks.stage import InputError, atomic_path, run_stage

REQUIRED = ["stock_code", "invoice_date", "unit_price", "country"]  # customer_id and invoice_no may be absent
KEPT = ["invoice_no", "stock_code", "invoice_date", "unit_price", "customer_id", "country"]
HISTORY_COLUMNS = ["stock_code", "invoice_date", "unit_price", "quantity", "year", "month"]
PREDICTION = "predicted_quantity"
ONLINE_ROWS = 256  # requests of up to this many rows take the numpy path (tasks/online.py)
# A version's files a scorer loads, by role: where its run wrote them.
FILES = {"model": "models/model.pt", "preprocessor": "models/preprocessor.joblib", "history": "data/processed.parquet"}


@dataclass(frozen=True, repr=False)
class History:
    """What the history features need of the training data, per product (numbered as in `products`)."""

    products: pd.Index  # stock codes; a product's number is its position here
    instants: np.ndarray  # every distinct sale time, ascending (datetime64[ns] as int64)
    keys: np.ndarray  # ascending: product * (len(instants) + 1) + 1 + the index of a sale time in `instants`
    key_products: np.ndarray  # the product of each key
    ceilings: np.ndarray  # each key's highest price: the product's, up to and including that time
    monthly: pd.Series  # mean quantity per sale line, by product number * 2**16 + months since year 0

    @classmethod
    def of(cls, processed: pd.DataFrame) -> History:
        """From etl's output (time-ordered, as etl writes it)."""
        product, products = pd.factorize(processed["stock_code"])
        ceiling = max_price_so_far(processed, product).to_numpy()
        times = processed["invoice_date"].to_numpy().astype(np.int64)
        # etl's running maximum is equal for all of a product's rows at one time: keep one per time
        keep = np.flatnonzero(~pd.DataFrame({"p": product, "t": times}).duplicated(keep="last").to_numpy())
        keep = keep[np.lexsort((times[keep], product[keep]))]
        instants = np.unique(times[keep])
        month = processed["year"].to_numpy(dtype=np.int64) * 12 + processed["month"].to_numpy(dtype=np.int64)
        return cls(
            products=pd.Index(products),
            instants=instants,
            keys=product[keep].astype(np.int64) * (len(instants) + 1) + 1 + np.searchsorted(instants, times[keep]),
            key_products=product[keep],
            ceilings=ceiling[keep],
            # etl's previous_month_average_quantity, by the same keys
            monthly=processed["quantity"].groupby(product.astype(np.int64) * 2**16 + month).mean(),
        )

    def ceiling(self, product: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Each product's highest price at or before each time (NaN before its first sale): one search for all
        rows, since a product's sales at or before a time are the keys up to product's base + sale times <= it."""
        seen = np.searchsorted(self.instants, times, side="right")  # how many sale times are at or before
        at = np.searchsorted(self.keys, product.astype(np.int64) * (len(self.instants) + 1) + seen, side="right") - 1
        found = np.maximum(at, 0)
        return np.where((at >= 0) & (self.key_products[found] == product), self.ceilings[found], np.nan)


def featurise(rows: pd.DataFrame, history: History, source: str) -> pd.DataFrame:
    """The model's input columns for `rows` (validated transactions); InputError names the first bad row."""
    if rows.empty:
        raise InputError(f"{source}: no rows to score")
    product = history.products.get_indexer(pd.Index(rows["stock_code"]))
    _refuse(source, "stock_code", product < 0, rows["stock_code"], "stock code(s) the model has no sales history of")
    price = rows["unit_price"].to_numpy(dtype=np.float64)
    _refuse(source, "unit_price", ~(price > 0) | ~np.isfinite(price), rows["unit_price"], "price(s) not above zero")
    frame = rows.reset_index(drop=True)
    row_features(frame)
    times = frame["invoice_date"].to_numpy().astype(np.int64)
    frame["price_to_max_so_far"] = frame["unit_price"] / np.fmax(history.ceiling(product, times), price)
    month = frame["year"].to_numpy(dtype=np.int64) * 12 + frame["month"].to_numpy(dtype=np.int64)
    key = product.astype(np.int64) * 2**16 + month
    frame["prev_month_avg_quantity"] = history.monthly.reindex(key - 1).to_numpy()
    return frame


def _refuse(source: str, column: str, bad: np.ndarray, values: pd.Series, problem: str) -> None:
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        value = values.iloc[first]
        value = value.item() if isinstance(value, np.generic) else value  # -1.0, not np.float64(-1.0)
        where = f"first at data row {first + 1}: {value!r}"
        raise InputError(f"{source}: column '{UCI_HEADERS[column]}': {int(bad.sum())} {problem}, {where}")


@dataclass(frozen=True, repr=False)
class Scorer:
    """One model version's network, preprocessor and history, loaded from bytes checked by md5."""

    version: str
    model: DemandNet
    feature_names: list[str]
    preprocessor: ColumnTransformer
    history: History
    online: Online | None = None  # the numpy path for a few rows, where it gives the batch path's bytes

    @classmethod
    def load(cls, version: str, files: dict[str, bytes], md5s: dict[str, str]) -> Scorer:
        """From the bytes of `model`, `preprocessor` and `history` (see FILES), each checked against its md5."""
        network, names = model_from_bytes(files["model"], md5s["model"], f"{version}'s {FILES['model']}")
        verify_bytes(files["preprocessor"], md5s["preprocessor"], f"{version}'s {FILES['preprocessor']}")
        transformer = joblib.load(io.BytesIO(files["preprocessor"]))
        verify_bytes(files["history"], md5s["history"], f"{version}'s {FILES['history']}")
        processed = pd.read_parquet(io.BytesIO(files["history"]), columns=[*HISTORY_COLUMNS, "country", "customer_id"])
        scorer = cls(version, network, names, transformer, History.of(processed))
        return replace(scorer, online=scorer._checked_online(processed))

    def _checked_online(self, processed: pd.DataFrame) -> Online | None:
        try:
            online = Online(self.preprocessor, self.history)
        except (ValueError, KeyError, AttributeError):
            return None
        rows = _sample(processed)
        batch = self._inputs(featurise(frame_of(rows), self.history, "sample"))
        return online if online.matrix(rows, "sample").tobytes() == batch.tobytes() else None

    def _inputs(self, features: pd.DataFrame) -> np.ndarray:
        values = self.preprocessor.transform(features).astype(np.float32)
        if values.shape[1] != len(self.feature_names):
            expected = len(self.feature_names)
            raise InputError(f"{self.version}: the model expects {expected} features, got {values.shape[1]}")
        return values

    def _predict(self, values: np.ndarray) -> np.ndarray:
        return to_quantity(predict(self.model, torch.from_numpy(values)).numpy())

    def quantities(self, features: pd.DataFrame) -> np.ndarray:
        """Predicted units sold per row of `featurise`'s output, as the inference stage predicts them."""
        return self._predict(self._inputs(features))

    def predict_rows(self, rows: list[dict[str, Any]], source: str) -> np.ndarray:
        """Predicted units sold per row given as a dict (stock_code, unit_price, invoice_date, country,
        customer_id): the numpy path for up to ONLINE_ROWS rows where it was checked, else the batch path."""
        if self.online is not None and len(rows) <= ONLINE_ROWS:
            return self._predict(self.online.matrix(rows, source))
        return self.quantities(featurise(frame_of(rows), self.history, source))

    def score(self, rows: pd.DataFrame, source: str) -> pd.DataFrame:
        """The kept input columns of every row, its predicted quantity and the version that predicted it."""
        features = featurise(rows, self.history, source)
        table = rows.reset_index(drop=True)[[c for c in KEPT if c in rows.columns]].copy()
        table[PREDICTION] = self.quantities(features)
        table["model_version"] = self.version
        return table


def frame_of(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows given as dicts as a validated transactions frame (times naive, in UTC where they had a zone)."""
    frame = pd.DataFrame(rows, columns=KEPT)
    frame["invoice_date"] = (
        pd.to_datetime(frame["invoice_date"], utc=True).dt.tz_localize(None).astype("datetime64[ns]")
    )
    frame["unit_price"] = frame["unit_price"].astype("float64")
    return frame


def _sample(processed: pd.DataFrame, size: int = 2_000) -> list[dict[str, Any]]:
    """Training rows spread over time, as requests, and three a request may differ by: long after the data
    (no previous month), an unseen country, a guest."""
    picked = processed.iloc[np.linspace(0, len(processed) - 1, min(size, len(processed))).astype(int)]
    columns = ["stock_code", "unit_price", "invoice_date", "country", "customer_id"]
    rows = [
        {
            "stock_code": code,
            "unit_price": float(price),
            "invoice_date": when.to_pydatetime(),
            "country": country,
            "customer_id": None if pd.isna(customer) else customer,
        }
        for code, price, when, country, customer in picked[columns].itertuples(index=False)
    ]
    last = rows[-1]
    later = last["invoice_date"] + dt.timedelta(days=400, hours=3)
    return [*rows, {**last, "invoice_date": later}, {**last, "country": "Nowhere"}, {**last, "customer_id": None}]


def main() -> None:
    parser = argparse.ArgumentParser(description="Score rows with one model version's files.")
    parser.add_argument("--input", required=True, help="rows to score: CSV, XLSX or Parquet, a path or s3:// URI")
    parser.add_argument("--output", required=True, type=Path, help="where to write the predictions (Parquet)")
    parser.add_argument("--version", required=True, help="the model version's name, written beside each prediction")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the version's tune.threads)")
    for role, path in FILES.items():
        parser.add_argument(f"--{role}", required=True, type=Path, help=f"the version's {path}")
        parser.add_argument(f"--{role}-md5", required=True, help="its md5 in the ledger: checked before loading")
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    if (refusal := mkl_refusal()) is not None:  # predictions are versioned: computed as the stages do
        raise InputError(refusal)
    files, md5s = {}, {}
    for role in FILES:
        path = getattr(arguments, role)
        if not path.is_file():
            raise InputError(f"{path}: missing")
        files[role], md5s[role] = path.read_bytes(), getattr(arguments, f"{role}_md5")
    scorer = Scorer.load(arguments.version, files, md5s)
    rows = load_transactions(arguments.input, REQUIRED)
    began = time.perf_counter()
    predictions = scorer.score(rows, arguments.input)
    seconds = time.perf_counter() - began  # for the log only: the output holds no time
    with atomic_path(arguments.output) as tmp:
        predictions.to_parquet(tmp, index=False)
    what = f"{len(predictions)} rows scored by {arguments.version} in {seconds:.3f} s"
    print(f"score: {what}, written to {arguments.output}")


if __name__ == "__main__":
    run_stage("score", main)
