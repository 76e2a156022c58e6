"""Shared fixtures: the repo root, small UCI-layout frames, and a real S3 API server (moto)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def stage_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: the venv first on PATH (dvc.yaml calls `python`)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


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
