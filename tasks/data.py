"""Retail transactions: the UCI Online Retail layout, its loaders, schema and a synthetic generator.

Every loader returns the same validated frame, with canonical snake_case columns (`COLUMNS`),
or raises `InputError` with one line naming the file, the column and the problem.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
from python_calamine import CalamineError

from tasks.params import DriftInjection
from tasks.stage import InputError

# Canonical column -> the header the UCI file uses (used in error messages and the synthetic layout).
UCI_HEADERS = {
    "invoice_no": "InvoiceNo",
    "stock_code": "StockCode",
    "description": "Description",
    "quantity": "Quantity",
    "invoice_date": "InvoiceDate",
    "unit_price": "UnitPrice",
    "customer_id": "CustomerID",
    "country": "Country",
}
COLUMNS = list(UCI_HEADERS)

# Headers are matched case-, space- and underscore-insensitively; "Online Retail II" names too.
_HEADER_ALIASES = {
    "invoiceno": "invoice_no",
    "invoice": "invoice_no",
    "stockcode": "stock_code",
    "description": "description",
    "quantity": "quantity",
    "invoicedate": "invoice_date",
    "unitprice": "unit_price",
    "price": "unit_price",
    "customerid": "customer_id",
    "country": "country",
}

# The UCI file writes dates as "12/1/2010 8:26"; exports and Parquet often use ISO 8601.
_DATE_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "ISO8601")

# Text columns are declared `object`, not `str`: `_text` already makes every cell a str or None,
# and pandera's `str` check calls Python once per cell (27 million calls at 5.4 million rows).
SCHEMA = pa.DataFrameSchema(
    {
        "invoice_no": pa.Column(object),
        "stock_code": pa.Column(object),
        "description": pa.Column(object, nullable=True),
        "quantity": pa.Column("int64"),
        "invoice_date": pa.Column("datetime64[ns]"),
        "unit_price": pa.Column("float64"),
        "customer_id": pa.Column(object, nullable=True),
        "country": pa.Column(object, nullable=True),
    },
    strict=True,
    ordered=True,
    coerce=True,
)


def s3_storage_options() -> dict[str, Any]:
    """fsspec options for s3:// URIs: credentials come from the usual AWS chain; the endpoint
    from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, for S3-compatible stores."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}


def load_transactions(source: str | Path, required: list[str] = COLUMNS) -> pd.DataFrame:
    """Read a CSV, XLSX or Parquet file (local path or s3:// URI) and return the validated frame."""
    source = str(source)
    frame = _read_file(source)
    return validate_transactions(frame, source, required)


def validate_transactions(frame: pd.DataFrame, source: str, required: list[str] = COLUMNS) -> pd.DataFrame:
    """Map headers to canonical names, parse dates and enforce SCHEMA; InputError on any problem.
    Columns not `required` may be absent (scoring needs no quantity): they are filled as empty."""
    if frame.shape[1] == 0:
        raise InputError(f"{source}: empty file, no header row")
    headers = _canonical_headers(frame.columns, source, required)
    if len(frame) == 0:
        raise InputError(f"{source}: no data rows, only a header")
    label = {column: original for original, column in headers.items()}

    # One new frame built from the converted columns, validated in place: each copy of millions
    # of rows costs seconds and gigabytes.
    column = {name: frame[original] for name, original in label.items()}
    column |= {name: pd.Series(None, index=frame.index, dtype=object) for name in COLUMNS if name not in column}
    if "quantity" not in label:
        column["quantity"] = pd.Series(0, index=frame.index, dtype="int64")
    frame = pd.DataFrame(
        {
            "invoice_no": _text(column["invoice_no"]),
            "stock_code": _text(column["stock_code"]),
            "description": _text(column["description"]),
            "quantity": column["quantity"],
            "invoice_date": _parse_dates(column["invoice_date"], source, label["invoice_date"]),
            "unit_price": column["unit_price"],
            "customer_id": _customer_ids(column["customer_id"]),
            "country": _text(column["country"]),
        }
    )
    try:
        return SCHEMA.validate(frame, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as errors:
        problem = _describe_schema_errors(errors, source, label)
    raise InputError(problem)  # raised outside the handler, so no pandera error rides along to a Dask client


def _read_file(source: str) -> pd.DataFrame:
    suffix = Path(source.split("?")[0]).suffix.lower()
    options = s3_storage_options() if source.startswith("s3://") else None
    try:
        if suffix in (".csv", ".txt"):
            return _read_csv(source, options)
        if suffix in (".xlsx", ".xls"):
            return pd.read_excel(source, dtype=str, engine="calamine", storage_options=options)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(source, storage_options=options)
    except FileNotFoundError:
        raise InputError(f"{source}: file not found") from None
    except pyarrow.ArrowException as error:
        detail = str(error).splitlines()[0]
        raise InputError(f"{source}: not a readable Parquet file, truncated or corrupt ({detail})") from None
    except (ValueError, OSError, CalamineError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{source}: cannot read file ({detail})") from None
    raise InputError(f"{source}: unsupported file type '{suffix}' (use .csv, .xlsx or .parquet)")


def _read_csv(source: str, options: dict[str, Any] | None) -> pd.DataFrame:
    try:
        return pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""], storage_options=options)
    except pd.errors.EmptyDataError:
        raise InputError(f"{source}: empty file, no header row") from None
    except UnicodeDecodeError:
        raise InputError(f"{source}: not UTF-8: {_locate_bad_utf8(source, options)}") from None


def _locate_bad_utf8(source: str, options: dict[str, Any] | None) -> str:
    """Name the line and column of the first byte that is not UTF-8 (only read on that error)."""
    import fsspec

    with fsspec.open(source, "rb", **(options or {})) as handle:
        data: bytes = handle.read()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line_no = data.count(b"\n", 0, error.start) + 1
        lines = data.decode("utf-8", errors="replace").splitlines()
        header = next(csv.reader([lines[0]]))
        fields = next(csv.reader([lines[line_no - 1]]))
        column = next((header[i] for i, f in enumerate(fields) if "\ufffd" in f and i < len(header)), "?")
        return f"byte 0x{data[error.start]:02x} at line {line_no}, column '{column}' (re-save the file as UTF-8)"
    return "undecodable bytes"


def _canonical_headers(headers: pd.Index, source: str, required: list[str]) -> dict[str, str]:
    """Map each recognised header to its canonical name; error on a missing or repeated column."""
    found: dict[str, str] = {}
    for header in headers:
        canonical = _HEADER_ALIASES.get(re.sub(r"[^a-z]", "", str(header).lower()))
        if canonical is None:
            continue
        if canonical in found.values():
            raise InputError(f"{source}: column '{header}' appears twice (as {UCI_HEADERS[canonical]})")
        found[str(header)] = canonical
    missing = [UCI_HEADERS[c] for c in required if c not in found.values()]
    if missing:
        raise InputError(
            f"{source}: missing column '{missing[0]}'"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
            + f" (found: {', '.join(map(str, headers))})"
        )
    return found


def _parse_dates(values: pd.Series, source: str, label: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.astype("datetime64[ns]")
    text = values.astype("string").str.strip()
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    for fmt in _DATE_FORMATS:
        todo = parsed.isna() & text.notna()
        if not todo.any():
            break
        parsed[todo] = pd.to_datetime(text[todo], format=fmt, errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        raise InputError(
            f"{source}: column '{label}': {len(bad)} unparsable date(s), first at data row "
            f"{bad[0] + 1}: {values.iloc[bad[0]]!r} (expected e.g. '12/1/2010 8:26' or ISO 8601)"
        )
    return parsed


def map_distinct(values: pd.Series, function: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """`function` applied to each distinct value once, then spread back to every row.

    Retail columns repeat their values (about 22 lines per invoice, 4,000 products, 38 countries),
    so string work per distinct value replaces a Python call per cell, and every row holding one
    value shares one result object instead of a copy. `function` takes and returns a Series of the
    distinct values (as text, for an object column). Returns an object Series on `values`' index,
    None for missing cells and missing results.
    """
    if values.dtype == object:
        values = values.astype("string")  # str() of any non-text cell, as a per-cell conversion would give
    codes, distinct = pd.factorize(values)
    results = np.empty(len(distinct) + 1, dtype=object)  # the last slot, None, is for code -1: a missing cell
    results[:-1] = function(pd.Series(distinct)).astype(object).to_numpy()
    results[pd.isna(results)] = None
    return pd.Series(results[codes], index=values.index, dtype=object)


def _strip(text: pd.Series) -> pd.Series:
    """Stripped text, with NA for blank values."""
    text = text.astype("string").str.strip()
    return text.mask(text == "")


def _text(values: pd.Series) -> pd.Series:
    """Stripped text with None for missing or blank cells."""
    return map_distinct(values, _strip)


def _customer_ids(values: pd.Series) -> pd.Series:
    """Customer ids as text without a float's trailing '.0' (the UCI file stores 17850.0)."""
    return map_distinct(values, lambda ids: _strip(_strip(ids).str.replace(r"\.0$", "", regex=True)))


def _describe_schema_errors(errors: pa.errors.SchemaErrors, source: str, label: dict[str, str]) -> str:
    """One line for the first failing column: count, first data row and value, what was expected."""
    cases = errors.failure_cases
    first = cases.iloc[0]
    column = str(first["column"])
    check = str(first["check"])
    failing = cases[(cases["column"] == column) & (cases["check"] == first["check"])]
    name = label.get(column, UCI_HEADERS.get(column, column))
    where = "" if pd.isna(first["index"]) else f", first at data row {int(first['index']) + 1}"
    if "coerce_dtype" in check and column in ("quantity", "unit_price"):
        problem = f"{len(failing)} non-numeric value(s){where}: {first['failure_case']!r}"
        if column == "quantity":
            problem += " (expected whole numbers)"
    elif "not_nullable" in check:
        problem = f"{len(failing)} empty value(s){where}"
    else:
        problem = f"{check} failed for {len(failing)} value(s){where}: {first['failure_case']!r}"
    return f"{source}: column '{name}': {problem}"


# ---------------------------------------------------------------------------------------------
# Synthetic generator: the UCI layout with realistic statistics, a pure function of its params.
# ---------------------------------------------------------------------------------------------

START, END = pd.Timestamp("2010-12-01"), pd.Timestamp("2011-12-09")

# Rows per country in the real file (38 countries, about 91% United Kingdom).
_COUNTRY_ROWS = {
    "United Kingdom": 495478,
    "Germany": 9495,
    "France": 8557,
    "EIRE": 8196,
    "Spain": 2533,
    "Netherlands": 2371,
    "Belgium": 2069,
    "Switzerland": 2002,
    "Portugal": 1519,
    "Australia": 1259,
    "Norway": 1086,
    "Italy": 803,
    "Channel Islands": 758,
    "Finland": 695,
    "Cyprus": 622,
    "Sweden": 462,
    "Unspecified": 446,
    "Austria": 401,
    "Denmark": 389,
    "Japan": 358,
    "Poland": 341,
    "Israel": 297,
    "USA": 291,
    "Hong Kong": 288,
    "Singapore": 229,
    "Iceland": 182,
    "Canada": 151,
    "Greece": 146,
    "Malta": 127,
    "United Arab Emirates": 68,
    "European Community": 61,
    "RSA": 58,
    "Lebanon": 45,
    "Lithuania": 35,
    "Brazil": 32,
    "Czech Republic": 30,
    "Bahrain": 19,
    "Saudi Arabia": 10,
}
# Codes for postage, fees and adjustments, with their usual description and share of such rows.
_NON_PRODUCT = {
    "POST": ("POSTAGE", 0.55),
    "M": ("Manual", 0.18),
    "DOT": ("DOTCOM POSTAGE", 0.1),
    "C2": ("CARRIAGE", 0.05),
    "D": ("Discount", 0.04),
    "BANK CHARGES": ("Bank Charges", 0.02),
    "CRUK": ("CRUK Commission", 0.02),
    "AMAZONFEE": ("AMAZON FEE", 0.01),
    "PADS": ("PADS TO MATCH ALL CUSHIONS", 0.01),
    "S": ("SAMPLES", 0.01),
    "B": ("Adjust bad debt", 0.01),
}
_COLOURS = ("RED BLUE PINK GREEN WHITE IVORY BLACK CREAM GOLD SILVER PURPLE ORANGE").split()
_PATTERNS = ("RETROSPOT SPOTTY HEART VINTAGE FLORAL REGENCY PAISLEY DOILY STRIPE POLKADOT BIRD STAR").split()
_ITEMS = (
    "MUG|CAKE STAND|LUNCH BAG|TEA TOWEL|CANDLE HOLDER|BUNTING|JAM JAR|CUSHION COVER|PHOTO FRAME|DOORMAT|NAPKINS|"
    "PAPER CUPS|CHALKBOARD|PURSE|NOTEBOOK|TINS|PLATE|BOWL|LANTERN|CLOCK|JUG|APRON|PEG BAG|PARTY BAGS|GIFT WRAP|"
    "BAKING SET|TRINKET BOX|HOT WATER BOTTLE|SIGN|WATERING CAN|BASKET|BUCKET|TEAPOT|STORAGE JAR|CHOPSTICKS|PARASOL|"
    "ORNAMENT|GARLAND|WALL ART|DOOR STOP"
).split("|")


# The synthetic generator's unit of work: a dataset of more rows is written part by part, each part at most
# this many rows (the UCI file's size), so memory stays bounded whatever the size.
PART_ROWS = 541_909
# Part p's invoice numbers start p times this above part 0's, so no two parts share an invoice.
_PART_INVOICE_STRIDE = 1_000_000


def generate_transactions(rows: int, seed: int, drift: DriftInjection | None = None) -> pd.DataFrame:
    """Synthetic transactions in the UCI layout (UCI headers and dtypes); same args, same frame.

    About 4,000 products and 4,372 customers at the default 541,909 rows (fewer for small samples),
    25% of rows without CustomerID, registered customers buying about three times the units guests buy
    per line (11.9 against 3.9 in the UCI file), 2% cancellations, quantity falling with price, no Saturday
    trading, a Christmas close and an autumn peak. `drift` raises prices and the non-UK share of
    invoices from its start date. More than PART_ROWS rows: the parts of `synthetic_part`, concatenated.
    """
    if rows > PART_ROWS:
        parts = range(-(-rows // PART_ROWS))
        return pd.concat([synthetic_part(rows, seed, drift, part) for part in parts], ignore_index=True)
    rng = np.random.default_rng(seed)
    return _lines(rng, rows, _Catalog.draw(rng, rows), drift or DriftInjection(), 0)


def synthetic_part(rows: int, seed: int, drift: DriftInjection | None, part: int) -> pd.DataFrame:
    """Part `part` of `rows` synthetic transactions: at most PART_ROWS rows, made alone (bounded memory).

    Part 0 is `generate_transactions(min(rows, PART_ROWS), seed, drift)`: the default size is one part, so
    its bytes do not depend on this. Every part shares part 0's products and customers over the same
    13 months (a bigger shop, not a longer year); part p draws its invoices and lines from its own seed
    sequence (seed, p), so a part's rows do not depend on how many parts there are, nor on who makes them.
    """
    catalog_rng = np.random.default_rng(seed)
    catalog = _Catalog.draw(catalog_rng, min(rows, PART_ROWS))
    rng = catalog_rng if part == 0 else np.random.default_rng([seed, part])
    size = min(PART_ROWS, rows - part * PART_ROWS)
    return _lines(rng, size, catalog, drift or DriftInjection(), part * _PART_INVOICE_STRIDE)


@dataclass(frozen=True)
class _Catalog:
    """The shop's products (code, description, base price, popularity, baseline demand) and customers
    (id, home country, how often they order)."""

    codes: np.ndarray
    descriptions: np.ndarray
    base_price: np.ndarray
    popularity: np.ndarray
    baseline: np.ndarray
    countries: np.ndarray
    country_p: np.ndarray
    customer_ids: np.ndarray
    customer_country: np.ndarray
    customer_p: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, rows: int) -> _Catalog:
        """About one product per 135 rows (20 to 4,000) and one customer per 124 (10 to 4,372)."""
        n_products = int(np.clip(rows // 135, 20, 4000))
        numbers = rng.choice(np.arange(10002, 90000), size=n_products, replace=False)
        suffixes = np.where(rng.random(n_products) < 0.15, rng.choice(list("ABCDEFGHJKL"), n_products), "")
        codes = np.char.add(numbers.astype(str), suffixes)
        names = np.array([f"{c} {p} {i}" for c in _COLOURS for p in _PATTERNS for i in _ITEMS], dtype=object)
        descriptions = names[rng.choice(len(names), size=n_products, replace=False)]
        base_price = np.round(np.clip(rng.lognormal(np.log(2.1), 0.85, n_products), 0.1, 50.0), 2)
        popularity = rng.lognormal(0.0, 1.2, n_products)
        popularity /= popularity.sum()
        baseline = rng.normal(0.0, 0.5, n_products)

        countries = np.array(list(_COUNTRY_ROWS), dtype=object)
        country_p = np.array(list(_COUNTRY_ROWS.values()), dtype=float)
        country_p /= country_p.sum()
        n_customers = int(np.clip(rows // 124, 10, 4372))
        customer_ids = 12346 + rng.permutation(n_customers * 2)[:n_customers]
        customer_country = rng.choice(len(countries), size=n_customers, p=country_p)
        customer_country[: len(countries)] = np.arange(len(countries))[:n_customers]  # every country trades
        customer_p = rng.lognormal(0.0, 1.0, n_customers)
        customer_p /= customer_p.sum()
        return cls(
            codes, descriptions, base_price, popularity, baseline,
            countries, country_p, customer_ids, customer_country, customer_p,
        )  # fmt: skip


def _lines(
    rng: np.random.Generator, rows: int, catalog: _Catalog, drift: DriftInjection, invoice_offset: int
) -> pd.DataFrame:
    """`rows` sale lines on invoices of the catalog's customers, in time order, with real-world noise."""
    c = catalog
    countries, country_p = c.countries, c.country_p
    n_products, n_customers = len(c.codes), len(c.customer_ids)
    # Invoices: about 2% of rows sit on small cancellation invoices, the rest ~22 lines each.
    cancel_rows = round(rows * 0.02)
    n_orders = max(1, round((rows - cancel_rows) / 22))
    n_cancels = max(1, round(cancel_rows / 2.4)) if cancel_rows else 0
    sizes = np.concatenate(
        [
            rng.multinomial(rows - cancel_rows, _normalise(rng.lognormal(0.0, 0.9, n_orders))),
            rng.multinomial(cancel_rows, np.full(n_cancels, 1.0 / n_cancels)) if n_cancels else [],
        ]
    ).astype(np.int64)
    is_cancel_invoice = np.arange(len(sizes)) >= n_orders

    days = pd.date_range(START, END, freq="D")
    invoice_time = (
        days[rng.choice(len(days), size=len(sizes), p=_trading_day_weights(days))].values
        + rng.choice(
            np.arange(7, 21), size=len(sizes), p=_normalise(np.exp(-0.5 * ((np.arange(7, 21) - 12.5) / 2.5) ** 2))
        )
        * np.timedelta64(1, "h")
        + rng.integers(0, 60, size=len(sizes)) * np.timedelta64(1, "m")
    )
    registered = rng.random(len(sizes)) < 0.75
    registered[is_cancel_invoice] = True
    customer = rng.choice(n_customers, size=len(sizes), p=c.customer_p)
    invoice_country = np.where(
        registered,
        c.customer_country[customer],
        np.where(rng.random(len(sizes)) < 0.98, 0, rng.choice(len(countries), size=len(sizes), p=country_p)),
    )
    drifted_invoice = np.zeros(len(sizes), dtype=bool)
    if drift.start is not None:
        drifted_invoice = np.asarray(invoice_time >= np.datetime64(pd.Timestamp(drift.start)))
        non_uk_p = _normalise(country_p[1:])
        moved = drifted_invoice & (rng.random(len(sizes)) < drift.non_uk_share)
        invoice_country = np.where(
            moved, 1 + rng.choice(len(countries) - 1, size=len(sizes), p=non_uk_p), invoice_country
        )
        invoice_country = np.where(drifted_invoice & ~moved, 0, invoice_country)

    # Invoice numbers rise with time, as in the real file.
    order = np.lexsort((np.arange(len(sizes)), invoice_time))
    invoice_number = np.empty(len(sizes), dtype=np.int64)
    invoice_number[order] = 536365 + invoice_offset + np.arange(len(sizes))

    # Lines, in time order.
    line_invoice = np.repeat(order, sizes[order])
    product = rng.choice(n_products, size=rows, p=c.popularity)
    when = invoice_time[line_invoice]
    elapsed_years = (when - np.datetime64(START)) / np.timedelta64(365, "D")
    price = c.base_price[product] * np.where(rng.random(rows) < 0.25, 0.85, 1.0) * (1 + 0.03 * elapsed_years)
    price = np.where(drifted_invoice[line_invoice], price * drift.price_factor, price)
    price = np.round(price, 2)
    weekday = pd.DatetimeIndex(when).dayofweek.to_numpy()
    log_mean = (
        1.0
        + c.baseline[product]
        - 1.0 * np.log(price)
        + 1.33 * registered[line_invoice]  # about 3x the units per line of guests, as in the UCI file
        + 0.1 * (weekday == 3)
        + rng.normal(0.0, 0.6, rows)
    )
    quantity = 1 + rng.poisson(np.exp(log_mean))
    packs = (rng.random(rows) < 0.3) & (quantity >= 4)
    quantity = np.where(packs, np.ceil(quantity / 6) * 6, quantity).astype(np.int64)

    # Text is made once per invoice and per product and shared by their lines: millions of
    # per-line copies of the same strings cost time and gigabytes at ten times the default size.
    invoice_text = invoice_number.astype(str).astype(object)
    invoice_text[is_cancel_invoice] = "C" + invoice_text[is_cancel_invoice]
    frame = pd.DataFrame(
        {
            "InvoiceNo": invoice_text[line_invoice],
            "StockCode": c.codes.astype(object)[product],
            "Description": c.descriptions[product],
            "Quantity": quantity,
            "InvoiceDate": pd.DatetimeIndex(when).astype("datetime64[ns]"),
            "UnitPrice": price,
            "CustomerID": np.where(registered[line_invoice], c.customer_ids[customer[line_invoice]], np.nan),
            "Country": countries[invoice_country[line_invoice]],
        }
    )
    cancel_line = is_cancel_invoice[line_invoice]
    frame.loc[cancel_line, "Quantity"] = -frame.loc[cancel_line, "Quantity"]
    _add_real_world_noise(frame, rng, ~cancel_line)
    return frame


def _add_real_world_noise(frame: pd.DataFrame, rng: np.random.Generator, sale: np.ndarray) -> None:
    """Non-product codes, returns without a 'C', zero prices, missing descriptions, duplicates."""
    rows = len(frame)
    pick = rng.random(rows)
    non_product = sale & (pick < 0.005)
    codes = list(_NON_PRODUCT)
    chosen = rng.choice(
        len(codes), size=int(non_product.sum()), p=_normalise(np.array([v[1] for v in _NON_PRODUCT.values()]))
    )
    frame.loc[non_product, "StockCode"] = np.array(codes, dtype=object)[chosen]
    frame.loc[non_product, "Description"] = np.array([_NON_PRODUCT[c][0] for c in codes], dtype=object)[chosen]
    frame.loc[non_product, "Quantity"] = 1
    frame.loc[non_product, "UnitPrice"] = np.round(rng.lognormal(np.log(18.0), 0.5, int(non_product.sum())), 2)

    returned = sale & (pick >= 0.005) & (pick < 0.0075)
    frame.loc[returned, "Quantity"] = -rng.integers(1, 50, size=int(returned.sum()))
    frame.loc[returned, "UnitPrice"] = 0.0
    zero_price = sale & (pick >= 0.0075) & (pick < 0.0095)
    frame.loc[zero_price, "UnitPrice"] = 0.0
    frame.loc[(returned | zero_price) & (rng.random(rows) < 0.6), "Description"] = None

    # Repeated scans: a line identical to the one before it on the same invoice.
    same_invoice = np.flatnonzero(frame["InvoiceNo"].to_numpy()[1:] == frame["InvoiceNo"].to_numpy()[:-1]) + 1
    repeat = same_invoice[rng.random(len(same_invoice)) < 0.009]
    repeat = repeat[~np.isin(repeat - 1, repeat)]
    for column in frame.columns:
        values = frame[column].to_numpy(copy=True)
        values[repeat] = values[repeat - 1]
        frame[column] = values


def _trading_day_weights(days: pd.DatetimeIndex) -> np.ndarray:
    """Weekly pattern (Thursday busiest, closed Saturdays), autumn peak, Christmas closure."""
    weekday = np.array([1.0, 1.1, 1.1, 1.3, 0.85, 0.0, 0.65])[days.dayofweek]
    season = 1.0 + 0.8 * np.exp(-0.5 * ((days.dayofyear.to_numpy() - 325) / 30.0) ** 2)
    closed = np.asarray((days >= pd.Timestamp("2010-12-23")) & (days <= pd.Timestamp("2011-01-03")))
    return _normalise(weekday * season * ~closed)


def _normalise(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()
