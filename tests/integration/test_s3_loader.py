"""Loading s3:// URIs through fsspec/s3fs from a real S3 API server (moto's standalone server)."""

from __future__ import annotations

import io

import boto3
import pandas as pd
import pytest

from tasks.data import load_transactions
from tasks.stage import InputError
from tests.conftest import uci_frame

pytestmark = pytest.mark.integration


@pytest.fixture
def bucket(s3_env: str) -> str:
    s3 = boto3.client("s3", endpoint_url=s3_env)
    s3.create_bucket(Bucket="retail-loader")
    s3.put_object(Bucket="retail-loader", Key="raw/sales.csv", Body=uci_frame().to_csv(index=False).encode())
    buffer = io.BytesIO()
    uci_frame().to_parquet(buffer, index=False)
    s3.put_object(Bucket="retail-loader", Key="raw/sales.parquet", Body=buffer.getvalue())
    latin1 = uci_frame()
    latin1.loc[0, "Description"] = "£"
    s3.put_object(Bucket="retail-loader", Key="raw/latin1.csv", Body=latin1.to_csv(index=False).encode("latin-1"))
    return "retail-loader"


@pytest.mark.parametrize("key", ["raw/sales.csv", "raw/sales.parquet"])
def test_s3_uri_loads_like_a_local_file(bucket: str, key: str, tmp_path: pytest.TempPathFactory) -> None:
    local = tmp_path / "sales.csv"  # type: ignore[operator]
    uci_frame().to_csv(local, index=False)
    pd.testing.assert_frame_equal(load_transactions(f"s3://{bucket}/{key}"), load_transactions(local))


def test_missing_s3_object_is_a_clear_error(bucket: str) -> None:
    with pytest.raises(InputError, match=r"^s3://retail-loader/raw/absent\.csv: file not found$"):
        load_transactions(f"s3://{bucket}/raw/absent.csv")


def test_non_utf8_s3_object_names_line_and_column(bucket: str) -> None:
    with pytest.raises(InputError, match=r"not UTF-8: byte 0xa3 at line 2, column 'Description'"):
        load_transactions(f"s3://{bucket}/raw/latin1.csv")
