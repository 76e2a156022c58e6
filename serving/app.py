"""The prediction endpoint: FastAPI over one verified scorer at a time.

- `POST /predict`: one or many rows, their predicted quantities and the version that predicted them;
- `POST /price-curve`: a product, a date and a list of prices, the quantity at each (one batch call);
- `GET /health`: the version served and its promotion record (503 while none can be served);
- `GET /metadata`: the request schema, the model's feature names and where its model card is.

It serves only the production version. A thread polls the ledger's production pointer every
`poll_seconds`. When the pointer moves (a promotion or a rollback), the thread loads the new version
beside the old one, then swaps it in: a request in flight finishes on the version it started with, and
none is dropped. Each swap is recorded as an `EndpointUpdate` on the endpoint's context. A version whose
files fail their md5 check is refused; the verified one keeps serving, and /health says what was refused.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.redact import redact_text
from lineage import registry
from lineage.entities import Action, ActionType, AssociationType, Context
from lineage.objects import Objects
from lineage.predictions import endpoint_update
from lineage.query import QueryError
from lineage.store import LedgerError, LedgerStore
from serving.loader import NotServable, load_scorer
from tasks.score import REQUIRED, Scorer
from tasks.stage import InputError

log = logging.getLogger("retail-serve")
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]


@dataclass(frozen=True)
class Settings:
    ledger_url: str | None = None  # None: LINEAGE_DB_URL, else sqlite:///lineage.db
    endpoint: str = "retail-demand"  # the Endpoint context's name in the ledger
    poll_seconds: float = 10.0
    max_body_bytes: int = 2_000_000
    max_rows: int = 10_000
    console_url: str | None = None  # where `lineage ui` serves, for the model card link
    serving: dict[str, str] = field(default_factory=dict)  # recorded with each update: host, image


class Row(BaseModel):
    """One transaction to score, in the raw table's terms (see tasks/score.py)."""

    model_config = ConfigDict(extra="forbid")
    stock_code: Text
    unit_price: Price
    invoice_date: dt.datetime  # ISO 8601; a time zone is converted to UTC and dropped, as the data's times are
    country: Text
    customer_id: Text | None = None  # absent: an unregistered customer
    invoice_no: Text | None = None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[Row] = Field(min_length=1)


class PriceCurveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stock_code: Text
    date: dt.datetime  # ISO 8601; a bare date (2011-12-20) means noon, when the shop is open
    prices: list[Price] = Field(min_length=1, max_length=1000)
    country: Text = "United Kingdom"
    customer_id: Text | None = "registered"  # any id means a registered customer; null an unregistered one

    @field_validator("date", mode="before")
    @classmethod
    def _noon(cls, value: Any) -> Any:
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            return f"{value.strip()}T12:00:00"
        return value


@dataclass
class Served:
    """What the endpoint serves now, and the last version it refused."""

    scorer: Scorer | None = None
    version: Context | None = None
    since: dt.datetime | None = None
    promotion: dict[str, Any] | None = None  # the decision that put the version in production
    refused: dict[str, str] | None = None
    unavailable: str = "starting"


class Endpoint:
    """The served scorer and the thread that follows the production pointer."""

    def __init__(self, settings: Settings, objects: Objects) -> None:
        self.settings = settings
        self.objects = objects
        self.served = Served()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def follow_production(self) -> None:
        """Serve the version production names now, if it is not the one served (one poll)."""
        try:
            with LedgerStore(self.settings.ledger_url) as store:
                current = registry.production(store)
                if current is None:
                    self.served.unavailable = "no model version is in production"
                    return
                served = self.served.version
                refused = self.served.refused
                if served is not None and served.name == current.name:
                    self.served.version = current  # its latest record: status, reasons
                    self.served.refused = None  # production is back on it: a refusal now says nothing
                    return
                if refused is not None and refused["model_version"] == current.name:
                    return  # refused already; a new promotion or rollback moves the pointer again
                try:
                    scorer = load_scorer(store, self.objects, current.name)
                except (NotServable, QueryError) as error:
                    reason = redact_text(str(error))  # shown by /health and the log: no remote's credentials
                    self.served.refused = {"model_version": current.name, "reason": reason}
                    if served is None:
                        self.served.unavailable = f"refused {current.name}"
                    log.error("retail-serve: refused %s: %s", current.name, reason)
                    return
                now = dt.datetime.now(dt.UTC)
                store.append(endpoint_update(store, self.settings.endpoint, current, now, self.settings.serving))
                promoted = _promotion(store, current)
                self.served = Served(scorer, current, now, promoted)  # one assignment: old or new, never half
                log.info("retail-serve: now serving %s on %s", current.name, self.settings.endpoint)
        except LedgerError as error:
            log.error("retail-serve: the ledger cannot be read: %s", redact_text(str(error)))

    def start(self) -> None:
        self.follow_production()
        self._thread = threading.Thread(target=self._poll, name="follow-production", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.poll_seconds):
            self.follow_production()


class Unavailable(Exception):
    """No version can be served yet (none in production, or the one there refused): a 503."""


class BodyLimit:
    """Refuse a request body over `limit` bytes with 413, having read no more of it than that (a declared
    Content-Length is refused before reading; a chunked body is read up to the limit, then replayed)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                await self._refuse(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: a disconnect, when the client goes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"request body: over the limit of {self.limit} bytes; send fewer rows per request"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


def _one_line(error: RequestValidationError) -> str:
    """The first problem, naming the field as a path into the body (rows.3.unit_price)."""
    errors = error.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"] if part != "body") or "request body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def create_app(settings: Settings, objects: Objects) -> FastAPI:
    endpoint = Endpoint(settings, objects)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        endpoint.start()
        yield
        endpoint.stop()

    app = FastAPI(title="retail-serve", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.state.endpoint = endpoint

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _one_line(error)}, status_code=422)

    @app.exception_handler(InputError)
    async def _unscorable(_request: Request, error: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.exception_handler(Unavailable)
    async def _unavailable(_request: Request, error: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503)

    def serving() -> tuple[Scorer, Context]:
        served = endpoint.served  # read once: this request uses one version throughout
        if served.scorer is None or served.version is None:
            raise Unavailable(f"no model version is served: {served.unavailable or served.refused}")
        return served.scorer, served.version

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
        if len(request.rows) > settings.max_rows:
            raise InputError(f"rows: {len(request.rows)} rows, over the limit of {settings.max_rows} per request")
        scorer, version = serving()
        quantities = scorer.predict_rows([row.model_dump() for row in request.rows], "rows").tolist()
        return {
            "model_version": version.name,
            "model_md5": version.properties.get("model_md5"),
            "predicted_quantity": quantities,
        }

    @app.post("/price-curve")
    def price_curve(request: PriceCurveRequest) -> dict[str, Any]:
        scorer, version = serving()
        when = request.date
        row = {"stock_code": request.stock_code, "invoice_date": when, "country": request.country}
        rows = [{**row, "unit_price": price, "customer_id": request.customer_id} for price in request.prices]
        quantities = scorer.predict_rows(rows, "price curve").tolist()
        return {
            "model_version": version.name,
            "model_md5": version.properties.get("model_md5"),
            "stock_code": request.stock_code,
            "date": when.isoformat(),
            "country": request.country,
            "registered_customer": request.customer_id is not None,
            "curve": [
                {"unit_price": p, "predicted_quantity": q} for p, q in zip(request.prices, quantities, strict=True)
            ],
        }

    @app.get("/health")
    def health() -> JSONResponse:
        served = endpoint.served
        body: dict[str, Any] = {"endpoint": settings.endpoint, "status": "serving" if served.scorer else "unavailable"}
        if served.version is not None:
            body |= {
                "model_version": served.version.name,
                "model_md5": served.version.properties.get("model_md5"),
                "serving_since": served.since.isoformat() if served.since else None,
                "promotion": served.promotion,
            }
        else:
            body["reason"] = served.unavailable
        body["refused"] = served.refused
        return JSONResponse(body, status_code=200 if served.scorer else 503)

    @app.get("/metadata")
    def metadata() -> dict[str, Any]:
        scorer, version = serving()
        name = version.name
        return {
            "model_version": name,
            "request": {
                "fields": list(Row.model_fields),
                "required": REQUIRED,
                "schema": PredictRequest.model_json_schema(),
                "max_rows": settings.max_rows,
                "max_body_bytes": settings.max_body_bytes,
            },
            "model_features": scorer.feature_names,
            "products": len(scorer.history.products),
            "model_card": f"{settings.console_url.rstrip('/')}/models/{name}#model-card"
            if settings.console_url
            else None,
            "lineage": f"lineage query {name}",
        }

    return BodyLimit(app, settings.max_body_bytes)  # type: ignore[return-value]


def _promotion(store: LedgerStore, version: Context) -> dict[str, Any] | None:
    """The decision that put `version` in production (who, when, why, signed by whom)."""
    sources = store.linked([version.id], "destination", [AssociationType.CONTRIBUTED_TO])[version.id]
    decisions = sorted(
        (e for e in sources if isinstance(e, Action) and e.action_type == ActionType.PROMOTION), key=lambda a: a.start
    )
    put = [a for a in decisions if a.parameters.get("decision") in ("promoted", "rolled_back")]
    if not put:
        return None
    p = put[-1].parameters
    return {
        "decision": p.get("decision"),
        "by": p.get("by"),
        "at": put[-1].start.isoformat(),
        "reason": p.get("reason"),
        "signed_by": p.get("signed_by"),
        "previous_production": p.get("previous_production"),
    }
