"""The prediction endpoint: FastAPI over one verified scorer at a time.

- `POST /predict`: one or many rows, their predicted quantities and the version that predicted them;
- `POST /price-curve`: a product, a date and a list of prices, the quantity at each (one batch call);
- `GET /health`: the version served and its promotion record (503 while none can be served);
- `GET /metadata`: the request schema, the model's feature names and where its model card is.

It serves only the production version, as the decisions that hold imply it (lineage/decisions.py): the
version of the latest promotion or rollback whose signature, signer, gates and four eyes check against the
ledger, never a bare pointer. A thread reads that every `poll_seconds`. When it moves, the thread loads the
new version beside the old one, then swaps it in: a request in flight finishes on the version it started
with, and none is dropped. Each swap is recorded as an `EndpointUpdate` on the endpoint's context (the only
records the endpoint writes: deployments/ledger-roles.sql gives it a database role that can write nothing
else). A version whose files fail their md5 check, or that a pointer or decision names without a decision
that holds, is refused: the verified one keeps serving, and /health says what was refused and why.
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

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.redact import redact_text
from lineage import registry
from lineage.decisions import Production
from lineage.entities import Context
from lineage.errors import LineageError
from lineage.objects import Objects
from lineage.predictions import endpoint_update
from lineage.query import QueryError
from lineage.store import LedgerStore
from serving.loader import NotServable, load_scorer
from tasks.score import REQUIRED, Scorer
from tasks.stage import InputError

log = logging.getLogger("retail-serve")
# C0 and C1 control characters and DEL: a stock code, country or id is printable text, and a NUL or a
# newline would otherwise reach the logs as it came.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _printable(value: Any) -> Any:
    if isinstance(value, str) and (found := _CONTROL.search(value)):
        raise PydanticCustomError(
            "control_character",
            "Input should have no control characters (found {character} at position {position})",
            {"character": repr(found.group()), "position": found.start()},
        )
    return value


def _iso_text(value: Any) -> Any:
    # JSON has no date type: a date is text, never a number read as seconds since 1970.
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise PydanticCustomError("iso_date", "Input should be an ISO 8601 date (YYYY-MM-DD), with a time or not")
    return value


# Strict: a string is never read as a number ("2.5"), nor a bool as one (true), nor a number as text.
Text = Annotated[
    str,
    StringConstraints(strict=True, strip_whitespace=True, min_length=1, max_length=100),
    BeforeValidator(_printable),
]
Price = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]  # the ceiling is the endpoint's setting
When = Annotated[dt.datetime, BeforeValidator(_iso_text)]  # the window of years is the endpoint's setting


@dataclass(frozen=True)
class Settings:
    ledger_url: str | None = None  # None: LINEAGE_DB_URL, else sqlite:///lineage.db
    endpoint: str = "retail-demand"  # the Endpoint context's name in the ledger
    poll_seconds: float = 10.0
    max_body_bytes: int = 2_000_000
    max_rows: int = 10_000
    max_price: float = 100_000.0  # a unit price must be below this (the data's highest is under 40,000)
    first_year: int = 2000  # dates from the first of January of this year
    last_year: int = 2100  # to the end of this one
    console_url: str | None = None  # where `lineage ui` serves, for the model card link
    serving: dict[str, str] = field(default_factory=dict)  # recorded with each update: host, image


class Row(BaseModel):
    """One transaction to score, in the raw table's terms (see tasks/score.py)."""

    model_config = ConfigDict(extra="forbid")
    stock_code: Text
    unit_price: Price
    invoice_date: When  # a time zone is converted to UTC and dropped, as the data's times are
    country: Text
    customer_id: Text | None = None  # absent: an unregistered customer
    invoice_no: Text | None = None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: list[Row] = Field(min_length=1)


class PriceCurveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stock_code: Text
    date: When  # a bare date (2011-12-20) means noon, when the shop is open
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
    unloadable: int | None = None  # seq of the decision whose version would not load: retried only after a new one
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
        """Serve the version the decisions that hold put in production, if it is not the one served (one poll)."""
        try:
            with LedgerStore(self.settings.ledger_url) as store:
                view = registry.Registry(store)
                current = view.production()
                untrusted = _untrusted(view.production_state)
                if untrusted is not None:
                    log.error("retail-serve: refused %s: %s", untrusted["model_version"], untrusted["reason"])
                if current is None:
                    self.served.unavailable = "no model version is in production"
                    self.served.refused = untrusted
                    return
                served = self.served.version
                refused = self.served.refused
                if served is not None and served.name == current.name:
                    self.served.version = current  # its latest record: status, reasons
                    self.served.refused = untrusted  # a file refusal says nothing once production is back on it
                    return
                decided = view.production_state.decision
                decided_at = decided.seq if decided is not None else None
                if refused and refused["model_version"] == current.name and self.served.unloadable == decided_at:
                    return  # refused already; a new promotion or rollback of it is tried again
                try:
                    scorer = load_scorer(store, self.objects, current.name)
                except (NotServable, QueryError) as error:
                    reason = redact_text(str(error))  # shown by /health and the log: no remote's credentials
                    self.served.refused = {"model_version": current.name, "reason": reason}
                    self.served.unloadable = decided_at
                    if served is None:
                        self.served.unavailable = f"refused {current.name}"
                    log.error("retail-serve: refused %s: %s", current.name, reason)
                    return
                now = dt.datetime.now(dt.UTC)
                store.append(endpoint_update(store, self.settings.endpoint, current, now, self.settings.serving))
                promoted = _promotion(view.production_state)
                self.served = Served(scorer, current, now, promoted, untrusted)  # one assignment: never half
                log.info("retail-serve: now serving %s on %s", current.name, self.settings.endpoint)
        # LineageError: the ledger unreadable, or a refusal; ValueError: a record that does not parse (pydantic).
        except (LineageError, ValueError) as error:
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


def _finite(quantities: np.ndarray, where: str) -> list[float]:
    """The quantities as a JSON list; a 422 naming the first request item whose quantity is not a finite number
    (inputs far outside the training data can overflow the network), never a null in the answer."""
    bad = ~np.isfinite(quantities)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(f"{where}.{first}: the model gives no finite quantity for it (inputs far outside its data)")
    return [float(quantity) for quantity in quantities]


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

    # The endpoint's own bounds, refused as pydantic refuses a field: its path, then the problem.
    def price_below_ceiling(where: str, price: float) -> None:
        if price >= settings.max_price:
            raise InputError(f"{where}: Input should be less than {settings.max_price:g} (retail-serve --max-price)")

    def year_in_window(where: str, when: dt.datetime) -> None:
        if not settings.first_year <= when.year <= settings.last_year:
            window = f"{settings.first_year} to {settings.last_year}"
            raise InputError(f"{where}: year {when.year} is outside {window} (retail-serve --first-year, --last-year)")

    def serving() -> tuple[Scorer, Context]:
        served = endpoint.served  # read once: this request uses one version throughout
        if served.scorer is None or served.version is None:
            raise Unavailable(f"no model version is served: {served.unavailable or served.refused}")
        return served.scorer, served.version

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
        if len(request.rows) > settings.max_rows:
            raise InputError(f"rows: {len(request.rows)} rows, over the limit of {settings.max_rows} per request")
        for number, row in enumerate(request.rows):
            price_below_ceiling(f"rows.{number}.unit_price", row.unit_price)
            year_in_window(f"rows.{number}.invoice_date", row.invoice_date)
        scorer, version = serving()
        quantities = _finite(scorer.predict_rows([row.model_dump() for row in request.rows], "rows"), "rows")
        return {
            "model_version": version.name,
            "model_md5": version.properties.get("model_md5"),
            "predicted_quantity": quantities,
        }

    @app.post("/price-curve")
    def price_curve(request: PriceCurveRequest) -> dict[str, Any]:
        when = request.date
        year_in_window("date", when)
        for number, price in enumerate(request.prices):
            price_below_ceiling(f"prices.{number}", price)
        scorer, version = serving()
        row = {"stock_code": request.stock_code, "invoice_date": when, "country": request.country}
        rows = [{**row, "unit_price": price, "customer_id": request.customer_id} for price in request.prices]
        quantities = _finite(scorer.predict_rows(rows, "price curve"), "prices")
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
                "max_price": settings.max_price,
                "years": [settings.first_year, settings.last_year],
            },
            "model_features": scorer.feature_names,
            "products": len(scorer.history.products),
            "model_card": f"{settings.console_url.rstrip('/')}/models/{name}#model-card"
            if settings.console_url
            else None,
            "lineage": f"lineage query {name}",
        }

    return BodyLimit(app, settings.max_body_bytes)  # type: ignore[return-value]


def _promotion(state: Production) -> dict[str, Any] | None:
    """The decision that put the production version there (who, when, why, signed by whom)."""
    decided = state.action
    if decided is None:
        return None
    p = decided.parameters
    return {
        "decision": p.get("decision"),
        "by": p.get("by"),
        "at": decided.start.isoformat(),
        "reason": p.get("reason"),
        "signed_by": p.get("signed_by"),
        "previous_production": p.get("previous_production"),
    }


def _untrusted(state: Production) -> dict[str, str] | None:
    """What the endpoint refuses to follow: a pointer naming a version no decision that holds put in production, or
    a later promotion or rollback that does not hold (the newest)."""
    if state.pointer_disagrees and state.pointer:
        reason = "the production pointer names it, but no decision that holds put it in production"
        if state.refused:
            reason += f"; the decision at {state.refused[0].line()}"
        return {"model_version": state.pointer, "reason": reason}
    if state.refused:
        newest = state.refused[0]
        return {"model_version": str(newest.version), "reason": f"the decision at {newest.line()}"}
    return None
