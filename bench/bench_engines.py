"""Benchmark: etl's core on Polars, DuckDB and Dask at 1x and N x the default rows (issue 39's engine choice).

What it measures. Each engine runs etl's dominant work on a partitioned Parquet input and writes one
processed table: typing and validation of the eight columns (text stripped, blank to missing, the
customer id without its '.0', dates as datetime64[ns], required columns non-null), duplicate removal
over all eight columns (the first copy kept), the four drop reasons counted under the first that
holds and filtered, a missing description imputed with the product's usual one (most lines, a tie to
the first seen) and a missing country with 'Unspecified', then add_features' columns in etl's order:
calendar parts, log and squared price, the price over the product's highest price up to the row's
timestamp, the product's mean quantity per line in the previous calendar month, is_registered and
log1p(quantity), sorted by (invoice_date, invoice_no, stock_code, input order) as etl sorts. The
reference is pandas: tasks.etl's own validate_transactions, clean and add_features, at 1x only (at
100x it needs about 60 GB). Not measured: etl's second write (the raw table under UCI headers),
metrics/etl.json and parsing dates from text (the input Parquet holds timestamps).

The input. Part p of the dataset is `generate_transactions(541_909, seed=1000 + p)` with p * 1,000,000
added to its invoice numbers, so invoices stay unique across parts; 1x is part 0, N x is parts
0..N-1 (N * 541,909 rows). This stands in for a generator with a size parameter and is for
measurement only: each part has its own products and customers, all over the same 13 months.

Each run is a fresh process (so the thread count is set before the engine starts); its wall time
includes interpreter start and imports, its peak memory is the largest resident set of the process
tree, sampled every 0.1 s and from the kernel's maxrss; a run above --limit-mb is stopped. At 1x each
engine runs twice with 1 thread and twice with 2, and each output's md5 is compared with the other
run's (same bytes twice?) and its rows with pandas' (same values in the same order; a float
differing in its last bits counts as differing). At N x each engine runs once with 2 threads.
Prints the figures and the ratios to pandas at 1x; no targets.

Run with `python -m bench.bench_engines [--scale 100] [--data DIR] [--engines polars,duckdb,dask]`.
Needs polars, duckdb and dask[dataframe] installed by hand (they are not in the project's locks);
at 100x the input takes about 0.4 GB and the scratch and output files a few GB under --data.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

DEFAULT_ROWS = 541_909
SEED0 = 1000
INVOICE_OFFSET = 1_000_000
COLUMNS = [
    "invoice_no",
    "stock_code",
    "description",
    "quantity",
    "invoice_date",
    "unit_price",
    "customer_id",
    "country",
]
REQUIRED = ["invoice_no", "stock_code", "quantity", "invoice_date", "unit_price"]
REASONS = ["duplicate_rows", "cancellations", "non_product_codes", "returns_or_zero_quantity", "non_positive_price"]
OUTPUT = [
    *COLUMNS,
    "year",
    "month",
    "day_of_week",
    "hour",
    "log_unit_price",
    "unit_price_squared",
    "price_to_max_so_far",
    "prev_month_avg_quantity",
    "is_registered",
    "log_quantity",
]
PRODUCT_CODE = r"^\d{5}[A-Za-z]*$"
DUCKDB_MEMORY = "5GB"
ROW_GROUP = 100_000
VERSIONS = {"pandas": "pandas", "polars": "polars", "duckdb": "duckdb", "dask": "dask"}


# --------------------------------------------------------------------------------------------
# The input: N parts of the default size, each from the existing generator with its own seed.
# --------------------------------------------------------------------------------------------


def part_path(data: Path, part: int) -> Path:
    return data / "raw" / f"part-{part:03d}.parquet"


def write_part(data: Path, part: int) -> None:
    """Part `part`: the generator's default rows with seed 1000 + part, invoice numbers offset by part * 1e6."""
    from tasks.data import generate_transactions

    frame = generate_transactions(DEFAULT_ROWS, seed=SEED0 + part)
    codes, invoices = pd.factorize(frame["InvoiceNo"])
    text = np.asarray(invoices, dtype=object)
    cancel = np.array([value.startswith("C") for value in text])
    number = np.array([int(value.lstrip("C")) for value in text]) + part * INVOICE_OFFSET
    renumbered = np.where(cancel, "C", "").astype(object) + number.astype(str).astype(object)
    frame["InvoiceNo"] = renumbered[codes]
    path = part_path(data, part)
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    tmp.rename(path)


def ensure_parts(data: Path, parts: int) -> None:
    missing = [part for part in range(parts) if not part_path(data, part).exists()]
    if not missing:
        return
    part_path(data, 0).parent.mkdir(parents=True, exist_ok=True)
    print(f"writing {len(missing)} input parts under {data / 'raw'}", flush=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(write_part, [data] * len(missing), missing))
    print(f"  {time.perf_counter() - started:.0f} s", flush=True)


def input_files(data: Path, parts: int) -> list[str]:
    return [str(part_path(data, part)) for part in range(parts)]


# --------------------------------------------------------------------------------------------
# The engines. Each takes the input files, a thread count and an output path; returns the counts.
# --------------------------------------------------------------------------------------------


def run_pandas(files: list[str], out: Path, threads: int, scratch: Path) -> dict[str, Any]:
    """tasks.etl's own functions on the whole table in memory (the reference)."""
    from tasks.data import validate_transactions
    from tasks.etl import add_features, clean

    raw = validate_transactions(pd.concat([pd.read_parquet(f) for f in files], ignore_index=True), "bench")
    cleaned, report = clean(raw)
    processed = add_features(cleaned)
    processed.to_parquet(out, index=False)
    return {"read": report.rows_read, "dropped": report.dropped, "clean": report.rows_clean}


def run_polars(files: list[str], out: Path, threads: int, scratch: Path) -> dict[str, Any]:
    """Polars lazy queries on its streaming engine: typed, deduplicated and flagged rows to a scratch
    Parquet file, their counts, then the features sorted into the output."""
    import polars as pl

    def text(column: str) -> Any:
        stripped = pl.col(column).cast(pl.String).str.strip_chars()
        return pl.when(stripped == "").then(None).otherwise(stripped)

    customer = text("CustomerID").str.replace(r"\.0$", "").str.strip_chars()
    scan = pl.scan_parquet(files, row_index_name="row_id")
    typed = scan.select(
        invoice_no=text("InvoiceNo"),
        stock_code=text("StockCode"),
        description=text("Description"),
        quantity=pl.col("Quantity").cast(pl.Int64),
        invoice_date=pl.col("InvoiceDate").cast(pl.Datetime("ns")),
        unit_price=pl.col("UnitPrice").cast(pl.Float64),
        customer_id=pl.when(customer == "").then(None).otherwise(customer),
        country=text("Country"),
        row_id=pl.col("row_id").cast(pl.Int64),
    )
    reason = (
        pl.when(pl.col("invoice_no").str.to_uppercase().str.starts_with("C").fill_null(False))
        .then(1)
        .when(~pl.col("stock_code").str.contains(PRODUCT_CODE).fill_null(False))
        .then(2)
        .when(pl.col("quantity") <= 0)
        .then(3)
        .when(pl.col("unit_price") <= 0)
        .then(4)
        .otherwise(0)
        .cast(pl.Int8)
    )
    stage = scratch / "polars-clean.parquet"
    distinct = typed.group_by(COLUMNS).agg(pl.col("row_id").min())
    distinct.with_columns(reason=reason).sink_parquet(stage, compression="snappy", engine="streaming")

    clean = pl.scan_parquet(stage)
    counted = (
        clean.select(
            distinct=pl.len(),
            **{f"reason_{code}": (pl.col("reason") == code).sum() for code in range(5)},
            **{f"null_{column}": pl.col(column).null_count() for column in REQUIRED},
        )
        .collect(engine="streaming")
        .row(0, named=True)
    )
    check_required({column: counted[f"null_{column}"] for column in REQUIRED})
    read = scan.select(pl.len()).collect().item()

    kept = clean.filter(pl.col("reason") == 0).drop("reason")
    missing = kept.filter(pl.col("description").is_null()).select("stock_code").unique()
    usual = (
        kept.join(missing, on="stock_code", how="semi")
        .filter(pl.col("description").is_not_null())
        .group_by("stock_code", "description")
        .agg(lines=pl.len(), first=pl.col("row_id").min())
        .group_by("stock_code")
        .agg(usual=pl.col("description").sort_by(["lines", "first"], descending=[True, False]).first())
    )
    filled = (
        kept.join(usual, on="stock_code", how="left")
        .with_columns(
            description=pl.coalesce("description", "usual", pl.lit("UNKNOWN")),
            country=pl.col("country").fill_null("Unspecified"),
        )
        .drop("usual")
    )
    month = pl.col("invoice_date").dt.year().cast(pl.Int64) * 12 + pl.col("invoice_date").dt.month().cast(pl.Int64)
    monthly = (
        filled.group_by("stock_code", month.alias("month_index"))
        .agg(prev_month_avg_quantity=pl.col("quantity").mean())
        .with_columns(pl.col("month_index") + 1)
    )
    when = pl.col("invoice_date").dt
    features = (
        filled.with_columns(month_index=month)
        .join(monthly, on=["stock_code", "month_index"], how="left")
        .with_columns(peak=pl.col("unit_price").max().over("stock_code", "invoice_date"))
        .with_columns(ceiling=pl.col("peak").cum_max().over("stock_code", order_by="invoice_date"))
        .sort("invoice_date", "invoice_no", "stock_code", "row_id")
        .select(
            *COLUMNS,
            year=when.year().cast(pl.Int16),
            month=when.month().cast(pl.Int8),
            day_of_week=(when.weekday() - 1).cast(pl.Int8),
            hour=when.hour().cast(pl.Int8),
            log_unit_price=pl.col("unit_price").log(),
            unit_price_squared=pl.col("unit_price") * pl.col("unit_price"),
            price_to_max_so_far=pl.col("unit_price") / pl.col("ceiling"),
            prev_month_avg_quantity=pl.col("prev_month_avg_quantity"),
            is_registered=pl.col("customer_id").is_not_null().cast(pl.Int8),
            log_quantity=pl.col("quantity").cast(pl.Float64).log1p(),
        )
    )
    # A fixed row group size: by default the sink cuts a row group wherever a morsel ends, which
    # varies from run to run (the same rows, other bytes).
    features.sink_parquet(out, compression="snappy", row_group_size=ROW_GROUP, engine="streaming")
    stage.unlink()
    return counts(read, counted["distinct"], [counted[f"reason_{code}"] for code in range(5)])


def run_duckdb(files: list[str], out: Path, threads: int, scratch: Path) -> dict[str, Any]:
    """DuckDB SQL in a scratch database file, `threads` threads, a memory limit and spilling under
    `scratch`: typed, deduplicated and flagged rows into a table, their counts, then the features
    sorted into the output."""
    import duckdb

    database = scratch / "duckdb.db"
    database.unlink(missing_ok=True)
    con = duckdb.connect(str(database))
    con.execute(f"SET threads = {threads}")
    con.execute(f"SET memory_limit = '{DUCKDB_MEMORY}'")
    con.execute(f"SET temp_directory = '{scratch / 'duckdb-spill'}'")
    con.execute("SET preserve_insertion_order = true")

    def text(column: str) -> str:
        return f"nullif(trim(CAST({column} AS VARCHAR)), '')"

    customer = f"nullif(trim(regexp_replace({text('CustomerID')}, '\\.0$', '')), '')"
    con.execute(
        f"""
        CREATE TABLE clean AS
        WITH typed AS (
            SELECT {text("InvoiceNo")} AS invoice_no, {text("StockCode")} AS stock_code,
                   {text("Description")} AS description, CAST(Quantity AS BIGINT) AS quantity,
                   CAST(InvoiceDate AS TIMESTAMP_NS) AS invoice_date, CAST(UnitPrice AS DOUBLE) AS unit_price,
                   {customer} AS customer_id, {text("Country")} AS country,
                   file_index * 4294967296 + file_row_number AS row_id
            FROM read_parquet(?, file_row_number = true)
        ), distinct_rows AS (
            SELECT {", ".join(COLUMNS)}, min(row_id) AS row_id FROM typed GROUP BY ALL
        )
        SELECT *, CAST(CASE
            WHEN coalesce(starts_with(upper(invoice_no), 'C'), false) THEN 1
            WHEN NOT coalesce(regexp_full_match(stock_code, '{PRODUCT_CODE}'), false) THEN 2
            WHEN quantity <= 0 THEN 3
            WHEN unit_price <= 0 THEN 4
            ELSE 0 END AS TINYINT) AS reason
        FROM distinct_rows
        """,
        [files],
    )
    nulls = ", ".join(f"count(*) FILTER (WHERE {column} IS NULL)" for column in REQUIRED)
    reasons = ", ".join(f"count(*) FILTER (WHERE reason = {code})" for code in range(5))
    row = con.execute(f"SELECT count(*), {reasons}, {nulls} FROM clean").fetchone()
    assert row is not None
    check_required(dict(zip(REQUIRED, row[6:], strict=True)))
    read_row = con.execute("SELECT count(*) FROM read_parquet(?)", [files]).fetchone()
    assert read_row is not None

    month = "(year(invoice_date) * 12 + month(invoice_date))"
    con.execute(
        f"""
        COPY (
        WITH kept AS (SELECT * EXCLUDE (reason) FROM clean WHERE reason = 0),
        usual AS (
            SELECT stock_code, description AS usual FROM (
                SELECT stock_code, description, count(*) AS lines, min(row_id) AS first_row FROM kept
                WHERE description IS NOT NULL
                  AND stock_code IN (SELECT stock_code FROM kept WHERE description IS NULL)
                GROUP BY ALL)
            QUALIFY row_number() OVER (PARTITION BY stock_code ORDER BY lines DESC, first_row) = 1
        ), filled AS (
            SELECT k.* REPLACE (coalesce(k.description, u.usual, 'UNKNOWN') AS description,
                                coalesce(k.country, 'Unspecified') AS country)
            FROM kept k LEFT JOIN usual u ON k.stock_code = u.stock_code
        ), monthly AS (
            SELECT stock_code, {month} + 1 AS month_index, avg(quantity) AS prev_month_avg_quantity
            FROM filled GROUP BY ALL
        )
        SELECT f.invoice_no, f.stock_code, f.description, f.quantity, f.invoice_date, f.unit_price,
               f.customer_id, f.country,
               CAST(year(f.invoice_date) AS SMALLINT) AS year, CAST(month(f.invoice_date) AS TINYINT) AS month,
               CAST(isodow(f.invoice_date) - 1 AS TINYINT) AS day_of_week,
               CAST(hour(f.invoice_date) AS TINYINT) AS hour,
               ln(f.unit_price) AS log_unit_price, f.unit_price * f.unit_price AS unit_price_squared,
               f.unit_price / max(f.unit_price) OVER (
                   PARTITION BY f.stock_code ORDER BY f.invoice_date
                   RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS price_to_max_so_far,
               m.prev_month_avg_quantity,
               CAST(f.customer_id IS NOT NULL AS TINYINT) AS is_registered,
               ln(f.quantity + 1) AS log_quantity
        FROM filled f LEFT JOIN monthly m
          ON f.stock_code = m.stock_code AND {month.replace("invoice", "f.invoice")} = m.month_index
        ORDER BY f.invoice_date, f.invoice_no, f.stock_code, f.row_id
        ) TO '{out}' (FORMAT parquet, COMPRESSION snappy)
        """
    )
    con.close()
    database.unlink()
    return counts(read_row[0], row[0], list(row[1:6]))


def run_dask(files: list[str], out: Path, threads: int, scratch: Path) -> dict[str, Any]:
    """dask.dataframe on its local threaded scheduler: the same task graph runs on a Dask cluster
    (Prefect's DaskTaskRunner) given a distributed Client. Validation is tasks.data's own, per part;
    duplicates go by a hash shuffle on the invoice (identical rows share it); the price ceiling and
    the sort by a shuffle on the product and a sort on the date. The output is a directory of parts
    in order."""
    import dask
    import dask.dataframe as dd
    import pyarrow.parquet as pq

    from tasks.data import validate_transactions

    dask.config.set(scheduler="threads", num_workers=threads)
    dask.config.set({"dataframe.convert-string": False, "dataframe.shuffle.method": "disk"})
    meta_source = validate_transactions(pd.read_parquet(files[0]).head(50), "meta")

    def typed(frame: pd.DataFrame, partition_info: dict[str, Any] | None = None) -> pd.DataFrame:
        part = partition_info["number"] if partition_info else 0
        frame = validate_transactions(frame.reset_index(drop=True), "bench")
        frame["row_id"] = np.int64(part) * 4294967296 + np.arange(len(frame), dtype=np.int64)
        return frame

    meta = meta_source.assign(row_id=np.int64(0)).iloc[:0]
    raw = dd.read_parquet(files, split_row_groups=False).map_partitions(typed, meta=meta)
    read = sum(pq.ParquetFile(path).metadata.num_rows for path in files)

    def flag(frame: pd.DataFrame) -> pd.DataFrame:
        # Rows identical over the eight columns are in one partition (shuffled on the invoice):
        # the first in input order stays.
        frame = frame.sort_values("row_id", kind="stable")
        frame = frame[~frame.duplicated(COLUMNS)]
        reasons = np.select(
            [
                frame["invoice_no"].str.upper().str.startswith("C").fillna(False).to_numpy(dtype=bool),
                ~frame["stock_code"].str.match(PRODUCT_CODE).fillna(False).to_numpy(dtype=bool),
                (frame["quantity"] <= 0).to_numpy(),
                (frame["unit_price"] <= 0).to_numpy(),
            ],
            [1, 2, 3, 4],
            0,
        )
        return frame.assign(reason=reasons.astype(np.int8))

    stage = scratch / "dask-clean"
    shutil.rmtree(stage, ignore_errors=True)
    flagged = raw.shuffle("invoice_no").map_partitions(flag, meta=meta.assign(reason=np.int8(0)))
    flagged.to_parquet(stage, write_index=False)
    flagged = dd.read_parquet(stage)
    tally = flagged["reason"].value_counts().compute()
    nulls = flagged[REQUIRED].isna().sum().compute()
    check_required({column: int(nulls[column]) for column in REQUIRED})
    distinct = int(tally.sum())

    kept = flagged[flagged["reason"] == 0].drop(columns="reason")
    missing = set(kept.loc[kept["description"].isna(), "stock_code"].unique().compute())
    if missing:
        lines = kept[kept["stock_code"].isin(list(missing)) & kept["description"].notna()]
        pairs = lines.groupby(["stock_code", "description"]).agg(lines=("row_id", "size"), first=("row_id", "min"))
        ranked = (
            pairs.compute().reset_index().sort_values(["stock_code", "lines", "first"], ascending=[True, False, True])
        )
        usual = ranked.drop_duplicates("stock_code").set_index("stock_code")["description"]
    else:
        usual = pd.Series(dtype=object)

    def fill(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.copy()
        gap = frame["description"].isna()
        frame.loc[gap, "description"] = frame.loc[gap, "stock_code"].map(usual).fillna("UNKNOWN")
        frame["country"] = frame["country"].fillna("Unspecified")
        return frame

    filled = kept.map_partitions(fill, meta=meta)
    month = filled["invoice_date"].dt.year.astype("int64") * 12 + filled["invoice_date"].dt.month.astype("int64")
    filled = filled.assign(month_index=month)
    # One output partition: with several, dask 2026.11 returned a (product, month) twice at 30x.
    monthly = filled.groupby(["stock_code", "month_index"])["quantity"].mean(split_out=1).compute()
    if not monthly.index.is_unique:
        raise SystemExit("dask: a (product, month) twice in the monthly means")
    monthly.index = monthly.index.set_levels(monthly.index.levels[1] + 1, level=1)

    def by_product(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.sort_values(["stock_code", "invoice_date", "row_id"], kind="stable")
        peak = frame.groupby(["stock_code", "invoice_date"], sort=False)["unit_price"].transform("max")
        ceiling = peak.groupby(frame["stock_code"], sort=False).cummax()
        frame["price_to_max_so_far"] = frame["unit_price"] / ceiling
        key = pd.MultiIndex.from_arrays([frame["stock_code"], frame["month_index"]])
        frame["prev_month_avg_quantity"] = monthly.reindex(key).to_numpy()
        return frame

    with_product = filled.shuffle("stock_code").map_partitions(
        by_product, meta=meta.assign(month_index=np.int64(0), price_to_max_so_far=0.0, prev_month_avg_quantity=0.0)
    )

    def features(frame: pd.DataFrame) -> pd.DataFrame:
        from tasks.etl import row_features, scalar_math

        frame = frame.sort_values(["invoice_date", "invoice_no", "stock_code", "row_id"], kind="stable")
        frame = frame.reset_index(drop=True)
        row_features(frame)
        frame["is_registered"] = frame.pop("is_registered")
        frame["log_quantity"] = scalar_math(math.log1p, frame["quantity"])
        return frame[OUTPUT]

    ordered = with_product.sort_values("invoice_date")
    out_meta = features(with_product._meta.assign(row_id=np.int64(0)))
    result = ordered.map_partitions(features, meta=out_meta)
    result.to_parquet(out, write_index=False, compression="snappy")
    shutil.rmtree(stage)
    return counts(read, distinct, [int(tally.get(code, 0)) for code in range(5)])


def check_required(nulls: dict[str, int]) -> None:
    empty = {column: count for column, count in nulls.items() if count}
    if empty:
        raise SystemExit(f"required columns with empty values: {empty}")


def counts(read: int, distinct: int, by_reason: list[int]) -> dict[str, Any]:
    """etl's drop counts from the read rows, the distinct rows and the distinct rows per reason (0 = kept)."""
    dropped = {"duplicate_rows": read - distinct}
    dropped |= {name: int(n) for name, n in zip(REASONS[1:], by_reason[1:], strict=True)}
    return {"read": int(read), "dropped": dropped, "clean": int(by_reason[0])}


ENGINES = {"pandas": run_pandas, "polars": run_polars, "duckdb": run_duckdb, "dask": run_dask}


def child(engine: str, parts: int, threads: int, data: Path, out: Path, result: Path) -> None:
    """One run in this fresh process (the parent measures it); the counts go to `result` as JSON."""
    scratch = data / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary = ENGINES[engine](input_files(data, parts), out, threads, scratch)
    summary["seconds_inside"] = time.perf_counter() - started
    result.write_text(json.dumps(summary))


# --------------------------------------------------------------------------------------------
# The parent: runs, measures and compares.
# --------------------------------------------------------------------------------------------


@dataclass
class Run:
    engine: str
    parts: int
    threads: int
    seconds: float = 0.0
    peak_mb: float = 0.0
    rows: int = 0
    md5: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    failure: str = ""


def thread_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in (
        "POLARS_MAX_THREADS",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "ARROW_NUM_THREADS",
    ):
        env[name] = str(threads)
    return env


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total


def measure(engine: str, parts: int, threads: int, data: Path, out: Path, limit_mb: float) -> Run:
    run = Run(engine, parts, threads)
    result = out.with_suffix(".json")
    result.unlink(missing_ok=True)
    if out.is_dir():
        shutil.rmtree(out)
    out.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "bench.bench_engines", "--child", engine, "--parts", str(parts)]
    argv += ["--threads", str(threads), "--data", str(data), "--out", str(out), "--result", str(result)]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=thread_env(threads), start_new_session=True)
    watched = psutil.Process(proc.pid)
    peak, status, maxrss_kb = 0, 0, 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            maxrss_kb = usage.ru_maxrss
            break
        peak = max(peak, tree_rss(watched))
        if peak > limit_mb * 2**20 and not run.failure:
            run.failure = f"stopped above {limit_mb:,.0f} MB"
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.1)
    proc.returncode = os.waitstatus_to_exitcode(status)
    shutil.rmtree(data / "scratch", ignore_errors=True)  # what a stopped run left
    run.seconds = time.perf_counter() - started
    run.peak_mb = max(peak / 2**20, maxrss_kb / 1024)
    if proc.returncode and not run.failure:
        run.failure = f"exit code {proc.returncode}"
    if not run.failure:
        run.summary = json.loads(result.read_text())
        run.rows = output_rows(out)
        run.md5 = md5(out)
    return run


def output_files(out: Path) -> list[Path]:
    return sorted(out.glob("*.parquet")) if out.is_dir() else [out]


def output_rows(out: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(path).metadata.num_rows for path in output_files(out))


def md5(out: Path) -> str:
    digest = hashlib.md5()
    for path in output_files(out):
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_output(out: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    frame = pd.concat([pq.read_table(path).to_pandas() for path in output_files(out)], ignore_index=True)
    frame = frame[OUTPUT]
    for column in frame.columns:
        if pd.api.types.is_integer_dtype(frame[column]):
            frame[column] = frame[column].astype("int64")
        elif pd.api.types.is_datetime64_any_dtype(frame[column]):
            frame[column] = frame[column].astype("datetime64[ns]")
        elif not pd.api.types.is_float_dtype(frame[column]):
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def compare_rows(out: Path, reference: Path) -> str:
    """How `out`'s rows compare with the reference's: same values in the same order, or what differs."""
    mine, theirs = read_output(out), read_output(reference)
    if len(mine) != len(theirs):
        return f"{len(mine):,} rows against {len(theirs):,}"

    def differing(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, int]:
        found = {}
        for column in OUTPUT:
            x, y = a[column].to_numpy(), b[column].to_numpy()
            if x.dtype.kind == "f":
                same = (x == y) | (np.isnan(x) & np.isnan(y))
            else:
                same = pd.Series(x).fillna("\0").to_numpy() == pd.Series(y).fillna("\0").to_numpy()
            if not same.all():
                found[column] = int((~same).sum())
        return found

    diffs = differing(mine, theirs)
    if not diffs:
        return "yes (same order)"
    if set(diffs) - {"log_unit_price", "log_quantity", "unit_price_squared", "price_to_max_so_far"}:
        keys = ["invoice_date", "invoice_no", "stock_code", "quantity", "unit_price", "customer_id", "description"]
        mine = mine.sort_values(keys, kind="stable", ignore_index=True)
        theirs = theirs.sort_values(keys, kind="stable", ignore_index=True)
        sorted_diffs = differing(mine, theirs)
        if not sorted_diffs:
            return "yes (other order)"
        diffs = sorted_diffs
    worst = ""
    floats = [c for c in diffs if mine[c].dtype.kind == "f"]
    if floats:
        ulps = max(
            int(np.nanmax(np.abs(mine[c].to_numpy().view(np.int64) - theirs[c].to_numpy().view(np.int64))))
            for c in floats
        )
        worst = f", at most {ulps} ulp"
    return "no: " + ", ".join(f"{c} {n:,} cells" for c, n in diffs.items()) + worst


def version(engine: str) -> str:
    return metadata.version(VERSIONS[engine])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100, help="parts at the large size (x 541,909 rows)")
    parser.add_argument("--data", type=Path, default=Path("/tmp/bench_engines"), help="input, scratch and outputs")
    parser.add_argument("--engines", default="polars,duckdb,dask")
    parser.add_argument("--large-threads", type=int, default=2)
    parser.add_argument("--skip-small", action="store_true", help="only the large runs")
    parser.add_argument("--limit-mb", type=float, default=9.5 * 1024, help="stop a run whose memory passes this")
    parser.add_argument("--child", choices=list(ENGINES), help=argparse.SUPPRESS)
    parser.add_argument("--parts", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.parts, args.threads, args.data, args.out, args.result)
        return

    engines = args.engines.split(",")
    outputs = args.data / "out"
    outputs.mkdir(parents=True, exist_ok=True)
    ensure_parts(args.data, max(args.scale, 1))
    runs: list[Run] = []

    def record(engine: str, parts: int, threads: int, label: str) -> Run:
        suffix = "" if engine == "dask" else ".parquet"
        run = measure(engine, parts, threads, args.data, outputs / f"{engine}-{label}{suffix}", args.limit_mb)
        runs.append(run)
        state = run.failure or f"{run.rows:,} rows, md5 {run.md5[:8]}"
        print(
            f"  {engine:<7}{parts:>4}x  {threads} thr  {run.seconds:8.1f} s  {run.peak_mb:7.0f} MB  {state}", flush=True
        )
        return run

    print(f"runs ({', '.join(f'{e} {version(e)}' for e in ['pandas', *engines])}):", flush=True)
    verdicts: dict[tuple[str, int], tuple[str, str]] = {}
    if not args.skip_small:
        reference = [record("pandas", 1, 1, f"1x-{n}") for n in (1, 2)]
        verdicts["pandas", 1] = ("yes" if reference[0].md5 == reference[1].md5 else "no", "-")
        for engine in engines:
            for threads in (1, 2):
                pair = [record(engine, 1, threads, f"1x-t{threads}-{n}") for n in (1, 2)]
                same = pair[0].md5 == pair[1].md5 and not pair[0].failure
                rows = compare_rows(outputs / f"{engine}-1x-t{threads}-1{'' if engine == 'dask' else '.parquet'}",
                                    outputs / "pandas-1x-1.parquet")  # fmt: skip
                verdicts[engine, threads] = ("yes" if same else "no", rows)
                counts_same = pair[0].summary.get("dropped") == reference[0].summary.get("dropped")
                print(f"    {engine} {threads} thr: same bytes twice {same}; rows as pandas: {rows}; "
                      f"drop counts as pandas: {counts_same}", flush=True)  # fmt: skip
    if args.scale > 1:
        for engine in engines:
            record(engine, args.scale, args.large_threads, f"{args.scale}x")

    print(f"\nsummary (wall s / peak MB; {os.cpu_count()} cores)")
    base = min((r for r in runs if r.engine == "pandas" and not r.failure), key=lambda r: r.seconds, default=None)
    for run in runs:
        if run.failure:
            print(f"  {run.engine:<7}{run.parts:>4}x {run.threads} thr  {run.failure} after {run.seconds:.0f} s, "
                  f"{run.peak_mb:,.0f} MB")  # fmt: skip
            continue
        ratio = f"  {run.seconds / base.seconds:6.2f}x pandas' time" if base and run.parts == 1 else ""
        per_row = run.parts * DEFAULT_ROWS / run.seconds
        print(f"  {run.engine:<7}{run.parts:>4}x {run.threads} thr  {run.seconds:8.1f} s  {run.peak_mb:7.0f} MB  "
              f"{per_row:11,.0f} rows/s{ratio}")  # fmt: skip
    for (engine, threads), (twice, rows) in verdicts.items():
        print(f"  {engine} {threads} thr at 1x: same bytes twice: {twice}; same rows as pandas: {rows}")
    (args.data / "runs.json").write_text(json.dumps([run.__dict__ for run in runs], indent=1, default=str))


if __name__ == "__main__":
    main()
