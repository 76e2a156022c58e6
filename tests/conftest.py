"""Shared fixtures: the repo root, small UCI-layout frames, and a real S3 API server (moto)."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def stage_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: the venv first on PATH (dvc.yaml calls `python`)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_module(workspace: Path, module: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m <module>` in `workspace`, as DVC runs a stage, with this checkout's code."""
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=workspace,
        env=stage_env(PYTHONPATH=str(REPO), **env),
        capture_output=True,
        text=True,
        check=False,
    )


def write_params(workspace: Path, **sections: dict[str, object]) -> None:
    """The repository's params.yaml with some keys of some sections replaced."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))


def uci_frame() -> pd.DataFrame:
    """Six hand-written lines in the UCI Online Retail layout, dates as the UCI file writes them."""
    return pd.DataFrame(
        {
            "InvoiceNo": ["536365", "536365", "536366", "C536367", "536368", "536369"],
            "StockCode": ["85123A", "71053", "85123A", "71053", "POST", "22633"],
            "Description": [
                "WHITE HANGING HEART",
                "WHITE METAL LANTERN",
                None,
                "WHITE METAL LANTERN",
                "POSTAGE",
                "HAND WARMER",
            ],
            "Quantity": ["6", "6", "8", "-2", "1", "12"],
            "InvoiceDate": [
                "12/1/2010 8:26",
                "12/1/2010 8:26",
                "12/1/2010 8:28",
                "12/2/2010 9:01",
                "12/2/2010 10:00",
                "1/5/2011 14:30",
            ],
            "UnitPrice": ["2.55", "3.39", "2.55", "3.39", "18.00", "1.85"],
            "CustomerID": ["17850", "17850", "", "13047", "12583", ""],
            "Country": ["United Kingdom", "United Kingdom", "United Kingdom", "United Kingdom", "France", "EIRE"],
        }
    )


def processed_frame(rows: int, seed: int, inject_from: dt.date | None = None) -> pd.DataFrame:
    """What etl writes to data/processed.parquet, for a synthetic sample (drift injected from a date)."""
    from tasks.data import generate_transactions, validate_transactions
    from tasks.etl import add_features, clean
    from tasks.params import DriftInjection

    raw = generate_transactions(rows, seed, DriftInjection(start=inject_from))
    return add_features(clean(validate_transactions(raw, "synthetic"))[0])


@pytest.fixture(scope="session")
def steady() -> pd.DataFrame:
    """A processed synthetic sample without drift (30,000 rows: enough for a steady verdict)."""
    return processed_frame(30_000, seed=42)


@pytest.fixture(scope="session")
def drifted() -> pd.DataFrame:
    """The same sample with prices and the country mix shifted from 1 November 2011."""
    return processed_frame(30_000, seed=42, inject_from=dt.date(2011, 11, 1))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's standalone S3 API server on loopback; yields its endpoint URL."""
    port = free_port()
    process = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("moto_server did not start")
    yield endpoint
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point AWS clients at the moto server with throwaway credentials."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_server
