"""Column roles of data/processed.parquet (written by etl): the target, the model's features and the
columns that are never features. One small module, so that a stage needing a column name does not
depend on the loaders or the synthetic generator."""

# Identifiers and the raw date stay in the table for joins and splitting but are never model
# features; calendar columns are features but meaningless to test for drift.
ID_COLUMNS = ["invoice_no", "stock_code", "customer_id", "invoice_date"]
CALENDAR_COLUMNS = ["year", "month", "day_of_week", "hour"]
NUMERIC_FEATURES = [
    "unit_price",
    "log_unit_price",
    "unit_price_squared",
    "price_to_max_so_far",
    "prev_month_avg_quantity",
    "is_registered",
    "month",
    "hour",
]
CATEGORICAL_FEATURES = ["country", "day_of_week"]
TARGET = "log_quantity"
