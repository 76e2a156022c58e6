"""What /predict and /price-curve accept: real numbers and strings (no "2.5" or true for a price, no number
for a date or a text), a price above 0 and below the endpoint's ceiling, a date in its window of years, no
control characters; each refusal a 422 naming the field's path. No answer is ever null, NaN or infinite."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from lineage.entities import Context, ContextType
from lineage.objects import Objects
from serving import cli
from serving.app import Served, Settings, create_app
from tasks.score import Scorer
from tests.unit.test_scoring import processed, scorer  # noqa: F401 (fixtures: a synthetic sample, its scorer)

CEILING = "Input should be less than 100000 (retail-serve --max-price)"
WINDOW = "is outside 2000 to 2100 (retail-serve --first-year, --last-year)"
ISO = "Input should be an ISO 8601 date (YYYY-MM-DD), with a time or not"


def _client(scorer: Scorer, **chosen: Any) -> TestClient:  # noqa: F811
    app = create_app(Settings(**chosen), Objects())
    version = Context(context_type=ContextType.MODEL_VERSION, name=scorer.version, properties={"model_md5": "ab" * 16})
    app.app.state.endpoint.served = Served(scorer, version, dt.datetime.now(dt.UTC))  # type: ignore[attr-defined]
    return TestClient(app)  # no lifespan: the poller and the ledger stay out of a unit test


@pytest.fixture(scope="module")
def client(scorer: Scorer) -> TestClient:  # noqa: F811
    return _client(scorer)


@pytest.fixture(scope="module")
def row(processed: pd.DataFrame) -> dict[str, Any]:  # noqa: F811
    last = processed.iloc[-1]
    return {
        "stock_code": last["stock_code"],
        "unit_price": float(last["unit_price"]),
        "invoice_date": last["invoice_date"].isoformat(),
        "country": last["country"],
    }


def _refused(response: Any) -> str:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert "\n" not in detail
    return detail


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"unit_price": 1e308}, f"rows.0.unit_price: {CEILING}"),
        ({"unit_price": 100_000}, f"rows.0.unit_price: {CEILING}"),
        ({"unit_price": "2.5"}, "rows.0.unit_price: Input should be a valid number"),
        ({"unit_price": True}, "rows.0.unit_price: Input should be a valid number"),
        ({"unit_price": 0}, "rows.0.unit_price: Input should be greater than 0"),
        ({"invoice_date": "0001-01-01T00:00:00"}, f"rows.0.invoice_date: year 1 {WINDOW}"),
        ({"invoice_date": "9999-12-31T23:59:59-05:00"}, f"rows.0.invoice_date: year 9999 {WINDOW}"),
        ({"invoice_date": "1999-12-31"}, f"rows.0.invoice_date: year 1999 {WINDOW}"),
        ({"invoice_date": 1323000000}, f"rows.0.invoice_date: {ISO}"),
        ({"invoice_date": "1323000000"}, f"rows.0.invoice_date: {ISO}"),
        ({"invoice_date": True}, f"rows.0.invoice_date: {ISO}"),
        ({"country": "United\x00Kingdom"},
         "rows.0.country: Input should have no control characters (found '\\x00' at position 6)"),
        ({"stock_code": "85123A\n"}, "rows.0.stock_code: Input should have no control characters (found '\\n' at"),
        ({"customer_id": "17850\x85"}, "rows.0.customer_id: Input should have no control characters (found '\\x85'"),
        ({"invoice_no": "\x7f536365"}, "rows.0.invoice_no: Input should have no control characters (found '\\x7f'"),
        ({"customer_id": 17850}, "rows.0.customer_id: Input should be a valid string"),
        ({"country": True}, "rows.0.country: Input should be a valid string"),
    ],
)  # fmt: skip
def test_predict_refuses_a_field_by_its_path(
    client: TestClient, row: dict[str, Any], change: dict, detail: str
) -> None:
    assert _refused(client.post("/predict", json={"rows": [{**row, **change}]})).startswith(detail)
    # The second row of two is named as such.
    second = _refused(client.post("/predict", json={"rows": [row, {**row, **change}]}))
    assert second.startswith(detail.replace("rows.0.", "rows.1."))


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"prices": [1.0, 1e308]}, f"prices.1: {CEILING}"),
        ({"prices": ["2.5"]}, "prices.0: Input should be a valid number"),
        ({"prices": [True]}, "prices.0: Input should be a valid number"),
        ({"date": "9999-01-01"}, f"date: year 9999 {WINDOW}"),
        ({"date": "0001-01-01"}, f"date: year 1 {WINDOW}"),
        ({"date": 0}, f"date: {ISO}"),
        ({"country": "UK\x07"}, "country: Input should have no control characters (found '\\x07' at position 2)"),
        ({"stock_code": "\x00"}, "stock_code: Input should have no control characters"),
        ({"customer_id": 1}, "customer_id: Input should be a valid string"),
    ],
)
def test_price_curve_refuses_a_field_by_its_path(
    client: TestClient, row: dict[str, Any], change: dict, detail: str
) -> None:
    request = {"stock_code": row["stock_code"], "date": "2011-12-20", "prices": [1.0, 2.0], **change}
    assert _refused(client.post("/price-curve", json=request)).startswith(detail)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_json_beyond_numbers_is_refused(client: TestClient, row: dict[str, Any], token: str) -> None:
    # Python's JSON parser reads these tokens (1e400 as inf); a client's encoder would never send them.
    body = '{"rows": [{"stock_code": "%s", "unit_price": %s, "invoice_date": "2011-12-09", "country": "UK"}]}'
    response = client.post(
        "/predict", content=body % (row["stock_code"], token), headers={"content-type": "application/json"}
    )
    assert _refused(response) == "rows.0.unit_price: Input should be a finite number"


def test_the_ceiling_and_the_window_are_the_endpoints_settings(scorer: Scorer, row: dict[str, Any]) -> None:  # noqa: F811
    narrow = _client(scorer, max_price=10.0, first_year=2011, last_year=2011)
    assert narrow.post("/predict", json={"rows": [{**row, "unit_price": 9.99}]}).status_code == 200
    assert _refused(narrow.post("/predict", json={"rows": [{**row, "unit_price": 10.0}]})) == (
        "rows.0.unit_price: Input should be less than 10 (retail-serve --max-price)"
    )
    assert _refused(narrow.post("/predict", json={"rows": [{**row, "invoice_date": "2010-12-31T23:59:59"}]})) == (
        "rows.0.invoice_date: year 2010 is outside 2011 to 2011 (retail-serve --first-year, --last-year)"
    )
    metadata = narrow.get("/metadata").json()["request"]
    assert (metadata["max_price"], metadata["years"]) == (10.0, [2011, 2011])


def test_an_answer_the_model_cannot_give_as_a_number_is_refused_not_null(scorer: Scorer, row: dict[str, Any]) -> None:  # noqa: F811
    # With the ceiling lifted, a price whose square overflows float32 gives the network no finite output.
    lifted = _client(scorer, max_price=1e300)
    detail = _refused(lifted.post("/predict", json={"rows": [row, {**row, "unit_price": 1e25}]}))
    assert detail == "rows.1: the model gives no finite quantity for it (inputs far outside its data)"
    curve = {"stock_code": row["stock_code"], "date": "2011-12-20", "prices": [1.0, 1e25]}
    assert _refused(lifted.post("/price-curve", json=curve)).startswith("prices.1: the model gives no finite quantity")


_ANY_JSON = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.datetimes(dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30)).map(dt.datetime.isoformat),
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["unit_price", "invoice_date", "country", "customer_id"]), value=_ANY_JSON)
def test_every_answer_is_a_finite_number_or_a_422(
    client: TestClient, row: dict[str, Any], field: str, value: Any
) -> None:
    response = client.post("/predict", json={"rows": [{**row, field: value}]})
    assert response.status_code in {200, 422}, response.text
    if response.status_code == 200:
        (quantity,) = response.json()["predicted_quantity"]
        assert isinstance(quantity, float)
        assert math.isfinite(quantity)
    else:  # the field, or the row when the (untrained) network overflows on a price within the ceiling
        assert response.json()["detail"].startswith((f"rows.0.{field}: ", "rows.0: the model gives no finite"))


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--first-year", "2050", "--last-year", "2000"],
         "retail-serve: error: --first-year 2050 is after --last-year 2000"),
        (["--max-price", "0"], "Invalid value for '--max-price'"),
        (["--first-year", "0"], "Invalid value for '--first-year'"),
    ],
)  # fmt: skip
def test_the_command_refuses_bounds_that_make_no_sense(argv: list[str], said: str) -> None:
    result = CliRunner().invoke(cli.cli, argv, prog_name="retail-serve")
    assert result.exit_code == 2
    assert said in result.output
