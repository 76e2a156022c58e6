"""Every bad input is one clear line naming the file, the column and the problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from tasks.data import load_transactions
from tasks.stage import InputError
from tests.conftest import uci_frame


def _csv(tmp_path: Path, frame: pd.DataFrame) -> Path:
    path = tmp_path / "sales.csv"
    frame.to_csv(path, index=False)
    return path


def _missing_column(tmp_path: Path) -> Path:
    return _csv(tmp_path, uci_frame().drop(columns=["UnitPrice"]))


def _empty_file(tmp_path: Path) -> Path:
    path = tmp_path / "sales.csv"
    path.write_bytes(b"")
    return path


def _header_only(tmp_path: Path) -> Path:
    return _csv(tmp_path, uci_frame().iloc[0:0])


def _bad_date(tmp_path: Path) -> Path:
    frame = uci_frame()
    frame.loc[3, "InvoiceDate"] = "the day after"
    return _csv(tmp_path, frame)


def _bad_quantity(tmp_path: Path) -> Path:
    frame = uci_frame()
    frame.loc[2, "Quantity"] = "six"
    return _csv(tmp_path, frame)


def _bad_price(tmp_path: Path) -> Path:
    frame = uci_frame()
    frame.loc[4, "UnitPrice"] = "£18"
    return _csv(tmp_path, frame)


def _empty_quantity(tmp_path: Path) -> Path:
    frame = uci_frame()
    frame.loc[1, "Quantity"] = ""
    return _csv(tmp_path, frame)


def _latin1(tmp_path: Path) -> Path:
    frame = uci_frame()
    frame.loc[2, "Description"] = "POUND £ SIGN"
    path = tmp_path / "sales.csv"
    frame.to_csv(path, index=False, encoding="latin-1")
    return path


def _truncated_parquet(tmp_path: Path) -> Path:
    path = tmp_path / "sales.parquet"
    uci_frame().to_parquet(path, index=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_xlsx(tmp_path: Path) -> Path:
    path = tmp_path / "sales.xlsx"
    path.write_bytes(b"PK\x03\x04 this is not a workbook")
    return path


def _unsupported(tmp_path: Path) -> Path:
    path = tmp_path / "sales.json"
    path.write_text("[]")
    return path


def _absent(tmp_path: Path) -> Path:
    return tmp_path / "nowhere.csv"


CASES: list[tuple[Callable[[Path], Path], list[str]]] = [
    (_missing_column, ["missing column 'UnitPrice'"]),
    (_empty_file, ["empty file, no header row"]),
    (_header_only, ["no data rows, only a header"]),
    (_bad_date, ["column 'InvoiceDate'", "1 unparsable date(s)", "data row 4", "'the day after'"]),
    (_bad_quantity, ["column 'Quantity'", "non-numeric", "data row 3", "'six'"]),
    (_bad_price, ["column 'UnitPrice'", "non-numeric", "data row 5", "'£18'"]),
    (_empty_quantity, ["column 'Quantity'", "data row 2"]),
    (_latin1, ["not UTF-8", "byte 0xa3", "line 4", "column 'Description'"]),
    (_truncated_parquet, ["not a readable Parquet file, truncated or corrupt"]),
    (_corrupt_xlsx, ["cannot read file"]),
    (_unsupported, ["unsupported file type '.json'"]),
    (_absent, ["file not found"]),
]


@pytest.mark.parametrize(("make", "expected"), CASES, ids=[make.__name__.strip("_") for make, _ in CASES])
def test_bad_input_is_one_line_naming_file_column_and_problem(
    tmp_path: Path, make: Callable[[Path], Path], expected: list[str]
) -> None:
    path = make(tmp_path)
    with pytest.raises(InputError) as caught:
        load_transactions(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    for fragment in expected:
        assert fragment in message
