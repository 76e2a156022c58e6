"""`lineage ui`: a read-only web console over the ledger and DVC's storage, for the people who ask the hard
questions without a terminal. Server-rendered pages (FastAPI, Jinja2); each has a JSON twin
(`?format=json`) holding what lineage/views.py returns, which the CLI's JSON also prints.

Pages: /models (every version), /models/NAME (one version: lineage graph, inputs, provenance, gates,
metrics, SHAP, tuning, decisions, reproductions, changes; /evidence.zip downloads its evidence pack),
/runs/ID (a pipeline run), /artifacts/ID (an artifact, and /content to open a stored report), /ledger
(the ledger's health). The ledger is opened read-only; stored files are served only by an artifact id
the ledger holds, and only after their bytes hash to its md5.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from starlette.exceptions import HTTPException

from gates.table import BY_NAME
from lineage import registry, views
from lineage.console.charts import tuning_chart
from lineage.console.graph import summary, to_dot
from lineage.console.security import STORED_REPORT_POLICY, Credentials, guard
from lineage.console.templates import Links, environment
from lineage.entities import Artifact, ModelStatus
from lineage.objects import ObjectError, Objects
from lineage.query import QueryError
from lineage.store import LedgerError, LedgerStore

HERE = Path(__file__).parent
PER_PAGE = 50
_PAGE = re.compile(r"[0-9]{1,40}")
# The only files /static serves: the vendored libraries (static/vendor.json) and the console's own two.
STATIC = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "viz-global.js": "text/javascript; charset=utf-8",  # its WebAssembly is UTF-8 text: decoded otherwise, it breaks
    "tablesort.min.js": "text/javascript; charset=utf-8",
    "tablesort.number.min.js": "text/javascript; charset=utf-8",
}
# What a stored file is served as, by extension; anything else is a download.
MEDIA = {
    ".html": "text/html",
    ".png": "image/png",
    ".json": "application/json",
    ".csv": "text/csv",
    ".svg": "image/svg+xml",
}


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    text = json.dumps(payload, indent=2, sort_keys=True)  # as the CLI prints it
    return Response(text + "\n", status_code=status, media_type="application/json", headers=headers)


def create_app(
    store: LedgerStore,
    objects: Objects | None = None,
    repository: Path = Path("."),
    credentials: Credentials | None = None,
    prefect_ui: str | None = None,
) -> FastAPI:
    """The console over an open (read-only) ledger and, for stored files, DVC's storage."""
    app = FastAPI(title="lineage console", docs_url=None, redoc_url=None, openapi_url=None)
    app.middleware("http")(guard(credentials))
    env = environment()
    links = Links(prefect_ui)
    ledger_name = store.location

    def page(template: str, code: int = 200, **context: Any) -> Response:
        html = env.get_template(template).render(link=links, head=store.head(), ledger_name=ledger_name, **context)
        return Response(html, status_code=code, media_type="text/html; charset=utf-8")

    def wants_json(request: Request) -> bool:
        shape = request.query_params.get("format", "html")
        if shape not in ("html", "json"):
            raise HTTPException(400, f"format must be html or json, not {shape[:40]!r}")
        return shape == "json"

    @app.exception_handler(QueryError)  # views.NotFound, or a version whose run the ledger lacks
    async def not_found(request: Request, error: QueryError) -> Response:
        return _error(request, 404, str(error))

    @app.exception_handler(LedgerError)
    @app.exception_handler(ObjectError)
    async def unavailable(request: Request, error: Exception) -> Response:  # the database or DVC's storage
        return _error(request, 503, str(error))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        message = {404: "no such page", 405: "the console only reads: use GET"}.get(
            error.status_code, str(error.detail)
        )
        return _error(request, error.status_code, message)

    def _error(request: Request, status: int, message: str) -> Response:
        if request.query_params.get("format") == "json":
            return _json({"error": message}, status)
        return page("error.html", status, status=status, message=message)

    @app.get("/")
    def home() -> Response:
        return RedirectResponse("/models", status_code=307)

    @app.get("/models")
    def models(request: Request) -> Response:
        number, status = _page(request), _status(request)
        rows, total = views.models_page(store, number, PER_PAGE, status)
        pages = views.page_count(total, PER_PAGE)

        def pager(to: int) -> str:
            return "/models?" + urlencode({"page": to, **({"status": status} if status else {})})

        if wants_json(request):
            next_link = {"Link": f'<{pager(number + 1)}&format=json>; rel="next"'} if number < pages else {}
            return _json(rows, headers={"X-Total-Count": str(total), **next_link})
        current = registry.production(store)
        return page(
            "models.html", rows=rows, total=total, page=number, pages=pages, pager=pager, status=status,
            statuses=[s.value for s in ModelStatus], production=current.name if current else None,
            gates=list(BY_NAME),
        )  # fmt: skip

    @app.get("/models/{name}")
    def version(request: Request, name: str) -> Response:
        v = views.version_view(store, name, objects, repository)
        if wants_json(request):
            return _json(v)
        full = request.query_params.get("graph") == "full"
        run = v["run"]["flow_run_id"]
        shown = len(v["lineage"]["vertices"]) if full else len(summary(v["lineage"], run))
        tuning = v["tuning"]
        chart = Markup(f'<img class="plot" alt="tuning chart" src="{links.version(v["version"]["name"])}/tuning.svg">')
        return page(
            "version.html", v=v, full=full, dot=to_dot(v["lineage"], full, links.vertex, run=run), shown_vertices=shown,
            chart=chart if tuning["epochs"] and tuning["trials"] else None,
            image=lambda plot: links.content(plot["artifact"]),
        )  # fmt: skip

    @app.get("/models/{name}/tuning.svg")
    def tuning_svg(name: str) -> Response:
        v = views.version_view(store, name, objects, repository)
        svg = tuning_chart(v["tuning"], v["version"]["name"])
        if svg is None:
            raise views.NotFound(f"{v['version']['name']} has no losses per epoch to chart")
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/models/{name}/evidence.zip")
    def evidence_zip(name: str) -> Response:
        from lineage.evidence import EvidenceError, build

        with tempfile.TemporaryDirectory(prefix="evidence-") as scratch:
            try:
                pack = build(store, name, Path(scratch) / "pack", objects, repository)
            except EvidenceError as error:
                raise HTTPException(503, str(error)) from None
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(p for p in pack.folder.rglob("*") if p.is_file()):
                    archive.write(path, f"{pack.name}/{path.relative_to(pack.folder)}")
        disposition = f'attachment; filename="{pack.name}.zip"'
        return Response(buffer.getvalue(), media_type="application/zip", headers={"Content-Disposition": disposition})

    @app.get("/runs/{flow_run_id}")
    def run(request: Request, flow_run_id: str) -> Response:
        r = views.run_view(store, flow_run_id)
        return _json(r) if wants_json(request) else page("run.html", r=r)

    @app.get("/artifacts/{artifact_id}")
    def artifact(request: Request, artifact_id: str) -> Response:
        found = views.artifact_view(store, artifact_id)
        if wants_json(request):
            return _json(found)
        graph = found["lineage"]
        by_id = {vertex["id"]: vertex for vertex in graph["vertices"]}
        came_from = [
            (e["association_type"], by_id[e["source_id"]])
            for e in graph["edges"]
            if e["destination_id"] == artifact_id and e["source_id"] in by_id
        ]
        fed = [
            (e["association_type"], by_id[e["destination_id"]])
            for e in graph["edges"]
            if e["source_id"] == artifact_id and e["destination_id"] in by_id
        ]
        return page("artifact.html", art=found, came_from=came_from, fed=fed)

    @app.get("/artifacts/{artifact_id}/content")
    def content(artifact_id: str) -> Response:
        found = store.get(artifact_id)
        if not isinstance(found, Artifact) or not views.servable(found):
            raise views.NotFound(f"no stored report or metrics file '{artifact_id[:80]}' in the ledger")
        try:
            data = objects.read(found.md5) if objects else None
        except ObjectError as error:
            raise HTTPException(409, str(error)) from None
        if data is None:
            raise views.NotFound(f"{found.source_uri} (md5 {found.md5}) is in neither the DVC cache nor the remote")
        suffix = Path(found.source_uri).suffix
        headers = {"Content-Disposition": f'inline; filename="{Path(found.source_uri).name}"'}
        if suffix in (".html", ".svg"):
            headers["Content-Security-Policy"] = STORED_REPORT_POLICY
        return Response(data, media_type=MEDIA.get(suffix, "application/octet-stream"), headers=headers)

    @app.get("/ledger")
    def health(request: Request) -> Response:
        h = views.health_view(store, objects)
        return _json(h) if wants_json(request) else page("ledger.html", h=h)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404)
        headers = {"Cache-Control": "public, max-age=86400"}
        return Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name], headers=headers)

    return app


def _status(request: Request) -> str | None:
    text = request.query_params.get("status")
    if text is not None and text not in {s.value for s in ModelStatus}:
        raise HTTPException(400, f"status must be one of {', '.join(s.value for s in ModelStatus)}, not {text[:40]!r}")
    return text


def _page(request: Request) -> int:
    text = request.query_params.get("page", "1")
    # ASCII digits: str.isdigit admits '²', which int() refuses; 40 of them bound int()'s work and the message.
    if not _PAGE.fullmatch(text) or int(text) < 1:
        raise HTTPException(400, f"page must be a whole number from 1, not {text[:40]!r}")
    return int(text)
