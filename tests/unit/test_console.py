"""The lineage console in process (FastAPI's test client) on a ledger of recorded stand-in runs: pages,
JSON twins against the CLI's JSON, one-line 404s, stored files served only by ledger id and md5, the
security headers, credentials and host names, and a ledger left unchanged."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineage.console.app import create_app
from lineage.console.graph import to_dot
from lineage.console.security import Credentials, SecurityError, check_bind, configured
from lineage.entities import Artifact, ArtifactType
from lineage.store import Kind, LedgerStore
from tests.conftest import crawl, record_two_weeks
from tests.unit.test_lineage_cli import lineage

TOKEN = "a-long-enough-console-token"


class FakeObjects:
    """DVC's storage as a dict of md5 -> bytes (the real one, on a real cache and remote, is exercised by the
    integration test); `read` checks bytes against their md5 as Objects does."""

    remote_url = "file:///remote"

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def read(self, md5: str) -> bytes | None:
        from lineage.objects import ObjectError

        data = self.files.get(md5)
        if data is not None and hashlib.md5(data).hexdigest() != md5:
            raise ObjectError(f"the stored object {md5} is altered")
        return data

    def location(self, md5: str) -> str:
        return f"{self.remote_url}/files/md5/{md5[:2]}/{md5[2:]}"

    def run_record(self, flow_run_id: str, name: str) -> bytes | None:
        return None

    def remote(self) -> str:
        return self.remote_url

    def anchors(self, ledger_id: str) -> list:
        return []  # no decision published one


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    """Two recorded weeks: week 1 promoted, week 2 rejected by fairness."""
    root = tmp_path_factory.mktemp("console")
    with LedgerStore(f"sqlite:///{root / 'lineage.db'}") as store:
        versions, runs = record_two_weeks(store, root)
    return root / "lineage.db", versions, runs


def _report(store: LedgerStore, path: str, version_run: str) -> Artifact:
    found = [a for a in store.find(Kind.ARTIFACT, ArtifactType.REPORT, name=path) if isinstance(a, Artifact)]
    assert found, path
    return found[-1] if version_run == "last" else found[0]


@pytest.fixture
def client(ledger: tuple[Path, list[str], list[str]]) -> TestClient:
    """The console on a read-only ledger, with the drift report of week 2 'stored' under its md5."""
    store = LedgerStore(f"sqlite:///{ledger[0]}", read_only=True)
    report = _report(store, "reports/drift.html", "last")
    html = b"<html><body>drift report</body></html>"
    # The stand-in's md5s are made up: store bytes under the recorded md5 only where they hash to it.
    objects = FakeObjects({report.md5: html} if hashlib.md5(html).hexdigest() == report.md5 else {})
    return TestClient(create_app(store, objects, Path(".")), base_url="http://127.0.0.1")  # type: ignore[arg-type]


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_every_page_answers(client: TestClient, ledger: tuple[Path, list[str], list[str]]) -> None:
    _, (good, bad), (first_run, _) = ledger
    models = client.get("/models")
    assert models.status_code == 200
    assert f"In production: {good}" in _text(models.text)
    for name in (good, bad, "production"):
        page = client.get(f"/models/{name}")
        assert page.status_code == 200, page.text
        assert 'id="graph-dot"' in page.text
    full = client.get(f"/models/{bad}?graph=full")
    assert "full graph" in _text(full.text)
    shown = _text(client.get(f"/models/{bad}").text)
    assert "is_registered: is_registered = 1 against everyone else" in shown
    assert "privileged (is_registered = 1)" in shown
    assert "unprivileged (is_registered ≠ 1)" in shown
    assert "This version has not been reproduced yet." in shown
    assert f"since {good}" in shown  # the rejected week is compared with the production version before it
    assert client.get(f"/runs/{first_run}").status_code == 200
    assert client.get("/ledger").status_code == 200
    assert client.get("/").headers.get("location") is None  # followed: the test client lands on /models
    for static in ("console.css", "console.js", "viz-global.js", "tablesort.min.js", "tablesort.number.min.js"):
        assert client.get(f"/static/{static}").status_code == 200


def test_every_gate_of_the_table_has_its_column_its_verdict_and_its_section(
    client: TestClient, ledger: tuple[Path, list[str], list[str]]
) -> None:
    _, (good, bad), _ = ledger
    assert "drift gate accuracy gate fairness gate" in _text(client.get("/models").text)  # in the table's order
    page = client.get(f"/models/{bad}").text
    shown = _text(page)
    assert "Gates drift passed accuracy passed fairness failed" in shown
    sections = re.findall(r'<h3 id="gate-(\w+)">\w+ gate <span class="badge (\w+)">', page)
    assert sections == [("drift", "passed"), ("accuracy", "passed"), ("fairness", "failed")]
    assert "Test RMSLE: network 0.53, baseline 0.52 (a HistGradientBoosting regressor" in shown
    assert "test RMSLE / baseline's, far end of 95% interval 1.03 <= 1.1 passed" in html.unescape(shown)
    verdicts = client.get(f"/models/{good}?format=json").json()["verdicts"]
    assert [(v["gate"], v["verdict"]) for v in verdicts] == [("drift", "passed"), ("accuracy", "passed"),
                                                             ("fairness", "passed")]  # fmt: skip


def test_json_twins_equal_the_cli(client: TestClient, ledger: tuple[Path, list[str], list[str]]) -> None:
    db, (good, bad), (first_run, _) = ledger
    as_cli = json.loads(lineage(db, "models", "list", "--format", "json").stdout)
    twin = client.get("/models?format=json")
    assert twin.json() == as_cli[::-1]  # the page lists newest first
    assert twin.headers["x-total-count"] == "2"
    assert twin.json()[0]["decision"]["decision"] == "rejected"
    version = client.get(f"/models/{bad}?format=json").json()
    assert version["version"] == json.loads(lineage(db, "models", "show", bad, "--format", "json").stdout)
    query = lineage(
        db, "query", bad, "--direction", "ascendants", "--depth", "10", "--include-edges", "--format", "json"
    )
    assert version["lineage"] == json.loads(query.stdout)
    assert version["previous_production"] == good
    assert version["diff"] == json.loads(lineage(db, "diff", good, bad, "--format", "json").stdout)
    run = client.get(f"/runs/{first_run}?format=json").json()
    assert run == json.loads(lineage(db, "runs", "show", first_run, "--format", "json").stdout)
    assert [s["stage"] for s in run["stages"]] == ["etl", "drift_check", "preprocess", "tune", "inference", "fairness"]
    artifact = next(v["id"] for v in version["lineage"]["vertices"] if v["kind"] == "artifact")
    both = lineage(db, "query", artifact, "--direction", "both", "--depth", "1", "--include-edges", "--format", "json")
    assert client.get(f"/artifacts/{artifact}?format=json").json()["lineage"] == json.loads(both.stdout)
    health = client.get("/ledger?format=json").json()
    assert health["verifications"] == json.loads(lineage(db, "verifications", "--format", "json").stdout)
    assert health["check"]["ok"] is True


def test_unknown_things_are_one_line_404s(client: TestClient) -> None:
    page = client.get("/models/model-nope")
    assert page.status_code == 404
    assert re.findall(r'<p class="error">([^<]*)</p>', page.text) == [
        "no model version &#39;model-nope&#39; in the ledger"
    ]
    assert client.get("/models/model-nope?format=json").json() == {
        "error": "no model version 'model-nope' in the ledger"
    }
    assert client.get("/runs/nope?format=json").json() == {"error": "no pipeline run 'nope' in the ledger"}
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/models?format=xml").status_code == 400
    assert client.get("/models?page=0").status_code == 400
    assert client.get("/models?status=gone").status_code == 400


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("page=99999999999999999999", "page 99999999999999999999 is past the last page, 1 (2 model versions"),
        ("page=9223372036854775808", "page 9223372036854775808 is past the last page, 1 (2 model versions"),
        ("page=2", "page 2 is past the last page, 1 (2 model versions"),
        ("page=99999999999999999999&status=rejected",
         "page 99999999999999999999 is past the last page, 1 (1 rejected versions"),
    ],
)  # fmt: skip
def test_a_page_past_the_last_is_a_one_line_404(client: TestClient, query: str, said: str) -> None:
    said += ", 50 a page)"
    page = client.get(f"/models?{query}")
    assert page.status_code == 404
    assert re.findall(r'<p class="error">([^<]*)</p>', page.text) == [said]
    twin = client.get(f"/models?{query}&format=json")
    assert (twin.status_code, twin.json()) == (404, {"error": said})


@pytest.mark.parametrize("text", ["0", "-1", "1.0", "1e3", " 1", "²", "١", "０", "9" * 41, ""])
def test_a_page_that_is_no_whole_number_is_a_one_line_400(client: TestClient, text: str) -> None:
    answer = client.get("/models", params={"page": text, "format": "json"})
    assert (answer.status_code, answer.json()) == (
        400,
        {"error": f"page must be a whole number from 1, not {text[:40]!r}"},
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    page=st.one_of(st.integers(-(10**40), 10**40).map(str), st.text(st.characters(exclude_categories=["Cs"]))),
    status=st.sampled_from([None, "candidate", "production", "rejected", "archived", "x"]),
    shape=st.sampled_from(["html", "json", "xml"]),
)
def test_no_page_status_or_format_is_a_server_error(
    client: TestClient, page: str, status: str | None, shape: str
) -> None:
    params = {"page": page, "format": shape, **({"status": status} if status else {})}
    assert client.get("/models", params=params).status_code in {200, 400, 404}


@pytest.mark.parametrize(
    "path",
    [
        "/artifacts/..%2F..%2F..%2Fetc%2Fpasswd/content",
        "/artifacts/../../lineage.db/content",
        "/static/..%2Fapp.py",
        "/static/vendor.json",  # present in the folder, but not a file the console serves
        "/static/%2e%2e/security.py",
        "/artifacts/artifact-0000/content",
    ],
)
def test_path_traversal_gets_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_stored_files_only_by_ledger_id_and_md5(client: TestClient, ledger: tuple[Path, list[str], list[str]]) -> None:
    store = LedgerStore(f"sqlite:///{ledger[0]}", read_only=True)
    data = next(a for a in store.find(Kind.ARTIFACT, ArtifactType.DATASET) if isinstance(a, Artifact))
    assert client.get(f"/artifacts/{data.id}/content").status_code == 404  # data stays in DVC's storage
    report = _report(store, "reports/drift.html", "last")
    missing = client.get(f"/artifacts/{report.id}/content")  # recorded, but in no storage here
    assert missing.status_code == 404
    assert "is in neither the DVC cache nor the remote" in missing.text


def test_an_altered_stored_file_is_refused(ledger: tuple[Path, list[str], list[str]]) -> None:
    store = LedgerStore(f"sqlite:///{ledger[0]}", read_only=True)
    report = _report(store, "reports/drift.html", "last")
    objects = FakeObjects({report.md5: b"<script>alert('not what was recorded')</script>"})
    client = TestClient(create_app(store, objects, Path(".")), base_url="http://127.0.0.1")  # type: ignore[arg-type]
    refused = client.get(f"/artifacts/{report.id}/content")
    assert refused.status_code == 409
    assert "alert" not in refused.text


def test_security_headers_and_read_only_methods(client: TestClient) -> None:
    for path in ("/models", "/models/nope", "/static/console.css"):
        headers = client.get(path).headers
        assert "script-src 'self' 'wasm-unsafe-eval'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
    assert client.post("/models").status_code == 405
    assert client.delete("/models/production").status_code == 405


def test_a_foreign_host_name_is_not_served_without_credentials(client: TestClient) -> None:
    assert client.get("/models", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/models", headers={"host": "localhost:8765"}).status_code == 200
    assert client.get("/models", headers={"host": "[::1]:8765"}).status_code == 200


def _basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_credentials_are_required_when_configured(ledger: tuple[Path, list[str], list[str]]) -> None:
    store = LedgerStore(f"sqlite:///{ledger[0]}", read_only=True)
    for credentials, good, bad in [
        (Credentials(token=TOKEN), {"authorization": f"Bearer {TOKEN}"}, {"authorization": "Bearer wrong"}),
        (Credentials(token=TOKEN), _basic("anyone", TOKEN), _basic("anyone", "wrong")),
        (Credentials(username="auditor", password=TOKEN), _basic("auditor", TOKEN), _basic("mallory", TOKEN)),
    ]:
        client = TestClient(create_app(store, None, Path("."), credentials), base_url="http://console.example")
        refused = client.get("/models")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith('Basic realm="lineage console"')
        assert client.get("/models", headers=bad).status_code == 401
        assert client.get("/static/console.css").status_code == 401
        assert client.get("/models", headers=good).status_code == 200


def test_binding_beyond_loopback_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, None)
    for host in ("0.0.0.0", "192.168.1.5", "::", "console.example"):
        with pytest.raises(SecurityError, match=f"refusing to bind to {re.escape(host)} without credentials"):
            check_bind(host, None)
        check_bind(host, Credentials(token=TOKEN))
    with pytest.raises(SecurityError, match="at least 16 characters"):
        Credentials(token="short")
    with pytest.raises(SecurityError, match="a user name and a password"):
        Credentials(username="", password=TOKEN)
    for name in ("LINEAGE_UI_TOKEN", "LINEAGE_UI_USERNAME", "LINEAGE_UI_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert configured() is None
    monkeypatch.setenv("LINEAGE_UI_USERNAME", "auditor")
    with pytest.raises(SecurityError, match="at least 16 characters"):
        configured()  # a user name without a password guards nothing
    monkeypatch.setenv("LINEAGE_UI_PASSWORD", TOKEN)
    assert configured() == Credentials(username="auditor", password=TOKEN)
    assert TOKEN not in repr(configured())
    assert Credentials.parse(f"auditor:{TOKEN}") == Credentials(username="auditor", password=TOKEN)
    assert Credentials.parse(TOKEN) == Credentials(token=TOKEN)


def test_the_console_never_writes_the_ledger(ledger: tuple[Path, list[str], list[str]], tmp_path: Path) -> None:
    db = Path(shutil.copy(ledger[0], tmp_path / "lineage.db"))
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    store = LedgerStore(f"sqlite:///{db}", read_only=True)
    client = TestClient(create_app(store, None, Path(".")), base_url="http://127.0.0.1")
    crawled = _crawl(client)
    assert len(crawled) > 30
    store.close()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert not (tmp_path / "lineage.db-journal").exists()


def _crawl(client: TestClient) -> dict[str, int]:
    def get(path: str) -> tuple[int, str, str]:
        response = client.get(path)
        return response.status_code, response.headers["content-type"], response.text

    return crawl(get)


def test_every_linked_page_answers(client: TestClient) -> None:
    crawled = _crawl(client)
    stored = {path: status for path, status in crawled.items() if path.endswith("/content")}
    assert {path: status for path, status in crawled.items() if status != 200 and path not in stored} == {}
    assert set(stored.values()) == {404}  # the stand-in runs' reports are in no DVC storage here


def test_the_summary_graph_keeps_the_data_flow_and_links_each_node(client: TestClient) -> None:
    graph: dict[str, Any] = client.get("/models/production?format=json").json()["lineage"]
    summary = to_dot(graph, False, lambda vertex: f"/x/{vertex['id']}")
    full = to_dot(graph, True, lambda vertex: None)
    assert summary.count("[label=") < full.count("[label=") == len(graph["vertices"])
    assert "tasks/etl.py" not in summary
    assert "tasks/etl.py" in full
    assert "models/model.pt" in summary
    assert summary.count("href=") == summary.count("[label=")
    assert "href=" not in full
