"""params.yaml: one strict pydantic model; every mistake is one line naming the key."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from tasks.params import Params, load_params
from tasks.stage import InputError
from tests.conftest import REPO


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _load_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(InputError) as caught:
        load_params(_write(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_repository_params_load_with_contract_keys() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.data.source == "synthetic"
    assert params.data.rows == 541_909
    assert params.data.stockcode == ""
    assert params.data.inject_drift.start is None


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    message = _load_error(tmp_path, "seed: 1\ndata: {}\ncolour: blue\n")
    assert message.endswith("params.yaml: colour: unknown key")


def test_unknown_nested_key_is_named_with_its_path(tmp_path: Path) -> None:
    message = _load_error(tmp_path, 'seed: 1\ndata:\n  inject_drift:\n    strat: "2011-01-01"\n')
    assert "data.inject_drift.strat: unknown key" in message


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    message = _load_error(tmp_path, "seed: 1\ndata:\n  rows: many\n")
    assert "data.rows:" in message
    assert "'many'" in message


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("seed: '7'\ndata: {}\n", "seed"),  # a quoted number is a string, not an int
        ("seed: 1\ndata:\n  rows: 0\n", "data.rows"),
        ("seed: -1\ndata: {}\n", "seed"),
        ("seed: 1\ndata:\n  inject_drift:\n    price_factor: -2\n", "data.inject_drift.price_factor"),
        ("seed: 1\ndata:\n  inject_drift:\n    non_uk_share: 1.5\n", "data.inject_drift.non_uk_share"),
        ("seed: 1\ndata:\n  source: ''\n", "data.source"),
        ("seed: 1\n", "data"),
        ("seed: 1\ndata: {}\ndrift:\n  sample_rows: 1000\n", "drift.sample_rows"),  # Evidently's small-sample tests
    ],
)
def test_bad_values_are_rejected_by_key(tmp_path: Path, text: str, key: str) -> None:
    assert f"params.yaml: {key}:" in _load_error(tmp_path, text)


def test_several_problems_report_the_first_and_a_count(tmp_path: Path) -> None:
    message = _load_error(tmp_path, "seed: x\ndata:\n  rows: y\n")
    assert "(and 1 more problem(s))" in message


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        load_params(tmp_path / "absent.yaml")
    assert "not valid YAML" in _load_error(tmp_path, "seed: [1\n")
    assert "expected a mapping" in _load_error(tmp_path, "- 1\n- 2\n")


def test_drift_start_reads_a_quoted_date(tmp_path: Path) -> None:
    for value in ('"2011-09-01"', "'2011-09-01'"):
        params = load_params(_write(tmp_path, f"seed: 1\ndata:\n  inject_drift:\n    start: {value}\n"))
        assert params.data.inject_drift.start == dt.date(2011, 9, 1)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("data:\n  inject_drift:\n    start: 2011-09-01\n",
         'data.inject_drift.start: 2011-09-01 is a YAML date, which DVC cannot read; quote it: "2011-09-01"'),
        ("data:\n  inject_drift:\n    start: 2011-09-01 10:00:00\n",
         "data.inject_drift.start: 2011-09-01 10:00:00 is a YAML date"),
        ("data: {}\ndrift:\n  allowed_by: 2011-09-01\n", "drift.allowed_by: 2011-09-01 is a YAML date"),
        ("data: {}\ndrift:\n  columns: [unit_price, 2011-09-01]\n", "drift.columns.1: 2011-09-01 is a YAML date"),
    ],
)  # fmt: skip
def test_an_unquoted_date_anywhere_is_refused_saying_to_quote_it(tmp_path: Path, text: str, said: str) -> None:
    # YAML reads 2011-09-01 as a date, and DVC, which hashes params.yaml's values itself, stops at one.
    assert _load_error(tmp_path, "seed: 1\n" + text).startswith(f"{tmp_path / 'params.yaml'}: {said}")


def test_integers_are_accepted_for_floats(tmp_path: Path) -> None:
    params = load_params(_write(tmp_path, "seed: 1\ndata:\n  inject_drift:\n    price_factor: 2\n"))
    assert params.data.inject_drift.price_factor == 2.0


def test_every_yaml_key_in_the_repository_file_is_a_model_field() -> None:
    """The committed file spells out every field, so the file alone documents the params."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(raw) == set(Params.model_fields)
    assert set(raw["data"]) == set(Params.model_fields["data"].annotation.model_fields)  # type: ignore[union-attr]
