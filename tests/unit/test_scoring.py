"""Scoring new rows (tasks/score.py) and the prediction endpoint's requests (serving/app.py), on a synthetic
sample: etl's features, a preprocessor fitted on its first months and a small seeded network."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from lineage.entities import Context, ContextType
from lineage.objects import Objects
from serving.app import Served, Settings, create_app
from tasks.columns import CATEGORICAL_FEATURES, NUMERIC_FEATURES
from tasks.model import DemandNet, Hyperparameters, make_deterministic, save_model
from tasks.online import Online
from tasks.preprocess import build_preprocessor, readable_feature_names
from tasks.score import FILES, KEPT, History, Scorer, featurise
from tasks.stage import InputError
from tests.conftest import processed_frame

FEATURES = [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]


@pytest.fixture(scope="module")
def processed() -> pd.DataFrame:
    return processed_frame(6_000, seed=7)


@pytest.fixture(scope="module")
def scorer(processed: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Scorer:
    """A scorer from bytes, as the endpoint builds one from DVC's storage."""
    make_deterministic(7, 1)
    preprocessor = build_preprocessor(20).fit(processed[FEATURES].iloc[: len(processed) // 2])
    names = readable_feature_names(preprocessor)
    hyperparameters = Hyperparameters([8], [0.0], False, "adam", 0.01, 64)
    folder = tmp_path_factory.mktemp("scorer")
    save_model(folder / "model.pt", DemandNet(len(names), hyperparameters), hyperparameters, names)
    joblib.dump(preprocessor, folder / "preprocessor.joblib")
    processed.to_parquet(folder / "processed.parquet", index=False)
    files = {
        "model": (folder / "model.pt").read_bytes(),
        "preprocessor": (folder / "preprocessor.joblib").read_bytes(),
        "history": (folder / "processed.parquet").read_bytes(),
    }
    return Scorer.load(
        "model-0123456789ab", files, {role: hashlib.md5(data).hexdigest() for role, data in files.items()}
    )


def _raw(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows as a caller sends them: the raw columns only."""
    return frame[[c for c in KEPT if c in frame.columns]].copy()


def test_rows_etl_processed_get_etls_features_exactly(processed: pd.DataFrame) -> None:
    later = processed.iloc[len(processed) * 4 // 5 :]
    features = featurise(_raw(later), History.of(processed), "rows")
    for column in FEATURES:
        expected, found = later[column].to_numpy(), features[column].to_numpy()
        assert found.dtype == expected.dtype, column
        if expected.dtype.kind == "f":
            assert found.tobytes() == expected.tobytes(), column  # NaN where etl has NaN, and the same bits
        else:
            assert (found == expected).all(), column


def test_a_new_row_uses_history_up_to_its_time(processed: pd.DataFrame) -> None:
    history = History.of(processed)
    product = processed["stock_code"].value_counts().index[0]
    sales = processed[processed["stock_code"] == product]
    last = sales["invoice_date"].max()
    ceiling = sales["unit_price"].max()
    rows = pd.DataFrame(
        {
            "stock_code": [product, product, product],
            "invoice_date": [last + pd.Timedelta(days=1), last + pd.Timedelta(days=1), last + pd.Timedelta(days=400)],
            "unit_price": [ceiling / 2, ceiling * 2, ceiling],
            "customer_id": ["1", None, "2"],
            "country": ["France", "United Kingdom", "France"],
        }
    )
    features = featurise(rows, history, "rows")
    assert features["price_to_max_so_far"].tolist() == [0.5, 1.0, 1.0]  # its own price counts as seen
    assert features["is_registered"].tolist() == [1, 0, 1]
    month = (last + pd.Timedelta(days=1)).to_period("M") - 1
    in_month = sales[sales["invoice_date"].dt.to_period("M") == month]["quantity"]
    assert features["prev_month_avg_quantity"].iloc[0] == pytest.approx(
        in_month.mean() if len(in_month) else np.nan, nan_ok=True
    )
    assert np.isnan(features["prev_month_avg_quantity"].iloc[2])  # no sales in the month before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"stock_code": "NOPE1"},
            "rows: column 'StockCode': 1 stock code(s) the model has no sales history of, first at data row 2: 'NOPE1'",
        ),
        ({"unit_price": -1.0}, "rows: column 'UnitPrice': 1 price(s) not above zero, first at data row 2: -1.0"),
    ],
)
def test_a_row_that_cannot_be_featurised_says_why(
    processed: pd.DataFrame, change: dict[str, Any], message: str
) -> None:
    rows = _raw(processed.tail(3)).reset_index(drop=True)
    for column, value in change.items():
        rows.loc[1, column] = value
    with pytest.raises(InputError) as raised:
        featurise(rows, History.of(processed), "rows")
    assert str(raised.value) == message


def test_the_online_path_gives_the_batch_paths_inputs(scorer: Scorer, processed: pd.DataFrame) -> None:
    assert scorer.online is not None  # checked on a sample of the training rows when loaded
    later = _raw(processed.iloc[len(processed) * 4 // 5 :])
    rows: list[dict[str, Any]] = [
        {str(key): (None if key == "customer_id" and pd.isna(value) else value) for key, value in row.items()}
        for row in later.to_dict("records")
    ]
    batch = scorer.preprocessor.transform(featurise(later, scorer.history, "rows")).astype(np.float32)
    assert scorer.online.matrix(rows, "rows").tobytes() == batch.tobytes()
    with pytest.raises(InputError, match=r"rows: column 'StockCode': 1 stock code\(s\) .* data row 2: 'NOPE1'"):
        scorer.online.matrix([rows[0], {**rows[0], "stock_code": "NOPE1"}], "rows")


def test_an_online_path_that_differs_is_not_used(
    scorer: Scorer, processed: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    def off_by_a_bit(self: Online, rows: list[dict[str, Any]], source: str) -> np.ndarray:
        return np.nextafter(original(self, rows, source), np.float32(np.inf))

    original = Online.matrix
    monkeypatch.setattr(Online, "matrix", off_by_a_bit)
    assert scorer._checked_online(processed) is None


def test_altered_files_are_refused_before_loading(scorer: Scorer) -> None:
    files = {role: b"not what was recorded" for role in FILES}
    md5s = {role: "0" * 32 for role in FILES}
    with pytest.raises(InputError, match=r"model-x's models/model.pt: md5 \w+ differs from 0{32}, which was recorded"):
        Scorer.load("model-x", files, md5s)


# -- the endpoint's requests ------------------------------------------------------------------------------


@pytest.fixture
def client(scorer: Scorer) -> TestClient:
    app = create_app(Settings(max_body_bytes=20_000, max_rows=50, console_url="http://console:8765"), Objects())
    version = Context(context_type=ContextType.MODEL_VERSION, name=scorer.version, properties={"model_md5": "ab" * 16})
    app.app.state.endpoint.served = Served(scorer, version, dt.datetime.now(dt.UTC))  # type: ignore[attr-defined]
    return TestClient(app)  # no lifespan: the poller and the ledger stay out of a unit test


def _row(processed: pd.DataFrame, **change: Any) -> dict[str, Any]:
    last = processed.iloc[-1]
    row = {
        "stock_code": last["stock_code"],
        "unit_price": float(last["unit_price"]),
        "invoice_date": last["invoice_date"].isoformat(),
        "country": last["country"],
    }
    return {key: value for key, value in {**row, **change}.items() if value is not None}


def test_predict_scores_one_or_many_rows_as_the_batch_scorer(
    client: TestClient, processed: pd.DataFrame, scorer: Scorer
) -> None:
    tail = processed.tail(5)
    rows = [_row(tail.iloc[[i]]) for i in range(5)]
    response = client.post("/predict", json={"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == scorer.version
    batch = scorer.score(_raw(tail).assign(customer_id=None, invoice_no=None), "rows")["predicted_quantity"]
    assert body["predicted_quantity"] == pytest.approx(batch.tolist(), rel=1e-6)
    one = client.post("/predict", json={"rows": rows[:1]}).json()["predicted_quantity"]
    assert one == pytest.approx(body["predicted_quantity"][:1], rel=1e-6)


def test_price_curve_gives_a_quantity_per_price(client: TestClient, processed: pd.DataFrame) -> None:
    last = processed.iloc[-1]
    request = {"stock_code": last["stock_code"], "date": "2011-12-20", "prices": [0.5, 1.0, 2.0, 4.0]}
    response = client.post("/price-curve", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [point["unit_price"] for point in body["curve"]] == [0.5, 1.0, 2.0, 4.0]
    assert all(point["predicted_quantity"] >= 0 for point in body["curve"])
    assert body["date"] == "2011-12-20T12:00:00"  # a bare date means noon


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"unit_price": None}, "rows.0.unit_price: Field required"),
        ({"unit_price": -2.5}, "rows.0.unit_price: Input should be greater than 0"),
        ({"invoice_date": "31/12/2011 25:00"}, "rows.0.invoice_date: Input should be an ISO 8601 date (YYYY-MM-DD)"),
        (
            {"stock_code": "NOPE1"},
            "rows: column 'StockCode': 1 stock code(s) the model has no sales history of, first at data row 1: 'NOPE1'",
        ),
        ({"colour": "red"}, "rows.0.colour: Extra inputs are not permitted"),
    ],
)
def test_bad_requests_get_422_with_one_line(
    client: TestClient, processed: pd.DataFrame, change: dict[str, Any], detail: str
) -> None:
    response = client.post("/predict", json={"rows": [_row(processed, **change)]})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(detail), response.json()
    assert "\n" not in response.json()["detail"]


def test_too_many_rows_and_oversized_bodies_are_refused(client: TestClient, processed: pd.DataFrame) -> None:
    response = client.post("/predict", json={"rows": [_row(processed)] * 51})
    assert (response.status_code, response.json()["detail"]) == (422, "rows: 51 rows, over the limit of 50 per request")
    body = json.dumps({"rows": [_row(processed)] * 200})
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["detail"] == "request body: over the limit of 20000 bytes; send fewer rows per request"

    def chunks() -> Any:  # no Content-Length: counted as it arrives
        yield body.encode()

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_health_and_metadata_say_what_is_served(client: TestClient, scorer: Scorer) -> None:
    metadata = client.get("/metadata").json()
    assert metadata["model_version"] == scorer.version
    assert metadata["model_features"] == scorer.feature_names
    assert metadata["request"]["required"] == ["stock_code", "invoice_date", "unit_price", "country"]
    assert metadata["model_card"] == f"http://console:8765/models/{scorer.version}#model-card"
    nothing = create_app(Settings(), Objects())
    response = TestClient(nothing).get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert (
        TestClient(nothing)
        .post(
            "/predict",
            json={"rows": [{"stock_code": "1", "unit_price": 1, "invoice_date": "2011-01-01", "country": "x"}]},
        )
        .status_code
        == 503
    )


def test_a_scored_table_keeps_its_rows_in_order(scorer: Scorer, processed: pd.DataFrame) -> None:
    rows = _raw(processed.tail(40))
    table = scorer.score(rows, "rows")
    assert table["stock_code"].tolist() == rows["stock_code"].tolist()
    assert set(table["model_version"]) == {scorer.version}
    assert np.isfinite(table["predicted_quantity"]).all()
    assert (table["predicted_quantity"] >= 0).all()
