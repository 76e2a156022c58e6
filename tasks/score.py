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
import io
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer

from tasks.data import UCI_HEADERS, load_transactions
from tasks.etl import max_price_so_far, row_features
from tasks.metrics import to_quantity
from tasks.model import DemandNet, model_from_bytes, predict, verify_bytes
from tasks.stage import InputError, atomic_path, run_stage

REQUIRED = ["stock_code", "invoice_date", "unit_price", "country"]  # customer_id and invoice_no may be absent
KEPT = ["invoice_no", "stock_code", "invoice_date", "unit_price", "customer_id", "country"]
HISTORY_COLUMNS = ["stock_code", "invoice_date", "unit_price", "quantity", "year", "month"]
PREDICTION = "predicted_quantity"
# A version's files a scorer loads, by role: where its run wrote them.
FILES = {"model": "models/model.pt", "preprocessor": "models/preprocessor.joblib", "history": "data/processed.parquet"}


@dataclass(frozen=True, repr=False)
class History:
    """What the history features need of the training data, per product (numbered as in `products`)."""

    products: pd.Index  # stock codes; a product's number is its position here
    times: dict[int, np.ndarray]  # each product's distinct sale times, ascending (datetime64[ns] as int64)
    ceilings: dict[int, np.ndarray]  # the highest price up to and including each of those times
    monthly: pd.Series  # mean quantity per sale line, by product number * 2**16 + months since year 0

    @classmethod
    def of(cls, processed: pd.DataFrame) -> History:
        """From etl's output (time-ordered, as etl writes it)."""
        product, products = pd.factorize(processed["stock_code"])
        ceiling = max_price_so_far(processed, product).to_numpy()
        times = processed["invoice_date"].to_numpy().astype(np.int64)
        # etl's running maximum is equal for all of a product's rows at one time: keep one per time
        last = pd.DataFrame({"p": product, "t": times}).duplicated(keep="last").to_numpy()
        keep = np.flatnonzero(~last)
        by_product = pd.Series(keep).groupby(product[keep], sort=False)
        rows = {int(p): group.to_numpy() for p, group in by_product}  # type: ignore[call-overload]
        month = processed["year"].to_numpy(dtype=np.int64) * 12 + processed["month"].to_numpy(dtype=np.int64)
        key = product.astype(np.int64) * 2**16 + month
        return cls(
            products=pd.Index(products),
            times={p: times[r] for p, r in rows.items()},
            ceilings={p: ceiling[r] for p, r in rows.items()},
            monthly=processed["quantity"].groupby(key).mean(),  # etl's previous_month_average_quantity
        )

    @classmethod
    def read(cls, data: bytes) -> History:
        return cls.of(pd.read_parquet(io.BytesIO(data), columns=HISTORY_COLUMNS))

    def ceiling(self, product: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Each product's highest price at or before each time (NaN before its first sale)."""
        result = np.full(len(product), np.nan)
        for p in np.unique(product):
            at = np.flatnonzero(product == p)
            index = np.searchsorted(self.times[int(p)], times[at], side="right") - 1
            result[at] = np.where(index >= 0, self.ceilings[int(p)][np.maximum(index, 0)], np.nan)
        return result


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
    """One model version's network, preprocessor and history, loaded from bytes already checked by md5."""

    version: str
    model: DemandNet
    feature_names: list[str]
    preprocessor: ColumnTransformer
    history: History

    @classmethod
    def load(cls, version: str, files: dict[str, bytes], md5s: dict[str, str]) -> Scorer:
        """From the bytes of `model`, `preprocessor` and `history` (see FILES), each checked against its md5."""
        network, names = model_from_bytes(files["model"], md5s["model"], f"{version}'s {FILES['model']}")
        verify_bytes(files["preprocessor"], md5s["preprocessor"], f"{version}'s {FILES['preprocessor']}")
        transformer = joblib.load(io.BytesIO(files["preprocessor"]))
        verify_bytes(files["history"], md5s["history"], f"{version}'s {FILES['history']}")
        return cls(version, network, names, transformer, History.read(files["history"]))

    def quantities(self, features: pd.DataFrame) -> np.ndarray:
        """Predicted units sold per row, as the inference stage predicts them."""
        values = self.preprocessor.transform(features).astype(np.float32)
        if values.shape[1] != len(self.feature_names):
            raise InputError(
                f"{self.version}: the model expects {len(self.feature_names)} features, got {values.shape[1]}"
            )
        return to_quantity(predict(self.model, torch.from_numpy(values)).numpy())

    def score(self, rows: pd.DataFrame, source: str) -> pd.DataFrame:
        """The kept input columns of every row, its predicted quantity and the version that predicted it."""
        features = featurise(rows, self.history, source)
        table = rows.reset_index(drop=True)[[c for c in KEPT if c in rows.columns]].copy()
        table[PREDICTION] = self.quantities(features)
        table["model_version"] = self.version
        return table


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
    files, md5s = {}, {}
    for role in FILES:
        path = getattr(arguments, role)
        if not path.is_file():
            raise InputError(f"{path}: missing")
        files[role], md5s[role] = path.read_bytes(), getattr(arguments, f"{role}_md5")
    scorer = Scorer.load(arguments.version, files, md5s)
    predictions = scorer.score(load_transactions(arguments.input, REQUIRED), arguments.input)
    with atomic_path(arguments.output) as tmp:
        predictions.to_parquet(tmp, index=False)
    print(f"score: {len(predictions)} rows scored by {arguments.version}, written to {arguments.output}")


if __name__ == "__main__":
    run_stage("score", main)
