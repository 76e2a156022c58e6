"""The lineage console and evidence packs on a ledger that real flow runs wrote: two weeks trained and
promoted by the lineage-pipeline flow, a rollback and a signed promotion by an approver, and the
production version reproduced. `lineage ui` runs as a real process on loopback; the browser is Debian's
headless Chromium driven by selenium (chromium-driver); PDFs are read back with pdftotext."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from lineage.openlineage import validate
from tests.conftest import (
    GIT_ENV,
    SCREENSHOTS,
    STAGES,
    VENV_BIN,
    crawl,
    free_port,
    stage_env,
    two_weeks_trained,
)

pytestmark = pytest.mark.integration
TOKEN = "integration-console-token-0123456789"


@dataclass(frozen=True)
class World:
    clone: Path
    db: Path
    production: str  # trained by week 2, rolled back, then promoted again by alice (signed); reproduced
    previous: str  # week 1's version: promoted by the pipeline, never reproduced
    runs: list[str]  # flow run ids, week 1 then week 2
    url: str  # where `lineage ui` serves

    def lineage(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(VENV_BIN / "lineage"), *args], cwd=self.clone, env=_env(self.db), capture_output=True, text=True
        )
        assert (done.returncode == 0) == ok, (
            f"lineage {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        return done

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """A raw GET, the path sent exactly as given (no client-side normalisation of `..`)."""
        host, port = self.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def _env(db: Path, **extra: str) -> dict[str, str]:
    return stage_env(LINEAGE_DB_URL=f"sqlite:///{db}", PREFECT_SERVER_ANALYTICS_ENABLED="false", **GIT_ENV, **extra)


def _serve(world_clone: Path, db: Path, host: str, port: int, **env: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [str(VENV_BIN / "lineage"), "ui", "--host", host, "--port", str(port)],
        cwd=world_clone, env=_env(db, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"lineage ui exited: {process.stdout.read() if process.stdout else ''}")
            time.sleep(0.1)
    process.kill()
    pytest.fail("lineage ui did not start")


@pytest.fixture(scope="module")
def world(origin: Path, tmp_path_factory: pytest.TempPathFactory, ssh_keys: dict[str, Path]) -> Iterator[World]:
    clone, previous, production = two_weeks_trained(origin, tmp_path_factory.mktemp("console"))
    db = clone / "lineage.db"
    alice = str(ssh_keys["alice"])
    world = World(clone, db, production, previous, [], "")
    world.lineage("init", "--approver", "alice", "--key", alice)
    world.lineage("models", "rollback", "--by", "alice", "--key", alice, "--reason", "a drill: roll back")
    world.lineage("models", "promote", production, "--by", "alice", "--key", alice, "--reason", "drill over")
    world.lineage("reproduce", production)
    runs = [r["name"] for r in json.loads(world.lineage("runs", "list", "--format", "json").stdout)]
    port = free_port()
    process = _serve(clone, db, "127.0.0.1", port)
    try:
        yield World(clone, db, production, previous, runs, f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_every_page_answers(world: World) -> None:
    def get(path: str) -> tuple[int, str, str]:
        status, headers, body = world.get(path)
        return status, headers["content-type"], body.decode(errors="replace")

    seen = crawl(get)
    assert {path: status for path, status in seen.items() if status != 200} == {}
    visited = " ".join(seen)
    for page in (f"/models/{world.production}", f"/models/{world.previous}", f"/runs/{world.runs[0]}", "/ledger"):
        assert page in seen, page
    status, headers, chart = world.get(f"/models/{world.production}/tuning.svg")  # the page's <img>
    assert (status, headers["content-type"]) == (200, "image/svg+xml")
    assert chart.startswith(b"<?xml")
    assert "/content" in visited  # a stored report opened
    assert sum(path.startswith("/artifacts/") for path in seen) > 20


def test_json_twins_equal_the_cli(world: World) -> None:
    def twin(path: str) -> Any:
        status, _, body = world.get(f"{path}?format=json")
        assert status == 200, body
        return json.loads(body)

    def cli(*args: str) -> Any:
        return json.loads(world.lineage(*args, "--format", "json").stdout)

    assert twin("/models") == cli("models", "list")[::-1]
    version = twin(f"/models/{world.production}")
    assert version["version"] == cli("models", "show", world.production)
    query = ("query", world.production, "--direction", "ascendants", "--depth", "10", "--include-edges")
    assert version["lineage"] == cli(*query)
    assert version["previous_production"] == world.previous
    assert version["diff"] == cli("diff", world.previous, world.production)
    assert twin(f"/runs/{world.runs[1]}") == cli("runs", "show", world.runs[1])
    model = next(v for v in version["lineage"]["vertices"] if v["label"] == "models/model.pt")
    around = ("query", model["id"], "--direction", "both", "--depth", "1", "--include-edges")
    assert twin(f"/artifacts/{model['id']}")["lineage"] == cli(*around)
    assert twin("/ledger")["verifications"] == cli("verifications")
    # What the page shows beyond the CLI's questions, as the real run recorded it.
    assert version["reproductions"][0]["ok"] is True
    assert all(row["match"] for row in version["reproductions"][0]["artifacts"])
    assert [d["signature"]["status"] for d in version["decisions"]] == ["unsigned", "valid"]
    assert version["decisions"][-1]["signature"]["signed_by"] == "alice"
    assert version["tuning"]["epochs"]
    assert version["shap"]["importance"]
    assert {row["gate"] for row in version["gates"]} == {"drift", "accuracy", "fairness"}
    assert [(v["gate"], v["verdict"]) for v in version["verdicts"]] == [
        ("drift", "passed"), ("accuracy", "passed"), ("fairness", "passed")
    ]  # fmt: skip


def test_unknown_versions_and_traversal_get_404(world: World) -> None:
    status, _, body = world.get("/models/model-000000000000")
    assert status == 404
    assert re.findall(rb'<p class="error">([^<]*)</p>', body) == [
        b"no model version &#39;model-000000000000&#39; in the ledger"
    ]
    for path in (
        "/artifacts/../../lineage.db",
        "/artifacts/..%2F..%2Flineage.db/content",
        "/static/../../../lineage.db",
        "/static/..%2F..%2F..%2Fdvc.yaml",
        "/artifacts/%2e%2e%2f%2e%2e%2fparams.yaml/content",
        "/models/production/../../../../etc/passwd",
    ):
        assert world.get(path)[0] == 404, path


def test_a_non_loopback_bind_needs_credentials(world: World) -> None:
    refused = world.lineage("ui", "--host", "0.0.0.0", "--port", str(free_port()), ok=False)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "lineage: error: refusing to bind to 0.0.0.0 without credentials: set LINEAGE_UI_TOKEN (or "
        "LINEAGE_UI_USERNAME and LINEAGE_UI_PASSWORD), or --credentials-block, or bind to 127.0.0.1"
    ]
    port = free_port()
    process = _serve(world.clone, world.db, "0.0.0.0", port, LINEAGE_UI_TOKEN=TOKEN)
    try:
        guarded = World(world.clone, world.db, world.production, world.previous, world.runs, f"http://127.0.0.1:{port}")
        status, headers, _ = guarded.get("/models")
        assert status == 401
        assert headers["www-authenticate"].startswith("Basic")
        assert guarded.get("/models", {"Authorization": "Bearer wrong-token-of-some-length"})[0] == 401
        assert guarded.get("/models", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def _driver(tmp_path: Path, log_network: bool = False) -> Any:
    """Headless Debian Chromium under selenium, through Debian's chromedriver."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("no chromium and chromedriver here (Debian's chromium, chromium-driver; .ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1440,1800", f"--user-data-dir={tmp_path / 'chromium'}",
    ):  # fmt: skip
        options.add_argument(flag)
    if log_network:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_an_auditor_clicks_through_the_production_version(world: World, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser = _driver(tmp_path)
    try:
        browser.get(f"{world.url}/models")
        assert world.production in browser.find_element(By.TAG_NAME, "table").text
        browser.save_screenshot(str(SCREENSHOTS / "console-models.png"))
        browser.find_element(By.LINK_TEXT, world.production).click()
        WebDriverWait(browser, 60).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#graph svg"))
        )
        labels = {node.text for node in browser.find_elements(By.CSS_SELECTOR, "#graph svg g.node text")}
        # Week 2 changed only tune's params: its own run's stages, etl skipped (its data came from week 1).
        wanted = {"models/model.pt", "data/processed.parquet", "etl (Skipped)", "tune (Completed)", world.production}
        assert wanted <= labels, sorted(labels)
        assert "etl (Completed)" not in labels  # week 1's stages are in the full graph only
        groups = [table.text for table in browser.find_elements(By.CSS_SELECTOR, "table.fairness-groups")]
        assert len(groups) == 2  # is_registered and country
        assert all("privileged (" in text and "unprivileged (" in text for text in groups)
        trials = browser.find_element(By.ID, "trials")
        trials.find_elements(By.TAG_NAME, "th")[2].click()  # sort by validation loss
        losses = [
            float(row.find_elements(By.TAG_NAME, "td")[2].text)
            for row in trials.find_elements(By.CSS_SELECTOR, "tbody tr")
        ]
        assert losses in (sorted(losses), sorted(losses, reverse=True))
        browser.save_screenshot(str(SCREENSHOTS / "console-version.png"))
        browser.find_element(By.LINK_TEXT, "reports/drift.html").click()
        WebDriverWait(browser, 60).until(lambda b: "Dataset Drift" in b.find_element(By.TAG_NAME, "body").text)
        browser.save_screenshot(str(SCREENSHOTS / "console-drift-report.png"))
        browser.back()
        WebDriverWait(browser, 60).until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#graph svg"))
        )
        nodes = browser.find_elements(By.CSS_SELECTOR, "#graph svg a")
        assert not [a.text for a in nodes if a.text.startswith("reproduction/")]  # copies: full graph only
        node = next(a for a in nodes if a.text.startswith("models/model.pt"))
        node.click()  # a node opens its artifact's page
        WebDriverWait(browser, 60).until(lambda b: b.find_element(By.TAG_NAME, "h1").text == "models/model.pt")
        assert "Where it came from" in browser.page_source
    finally:
        browser.quit()


def test_evidence_pack_verifies_and_reads_offline(world: World, tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    said = world.lineage("evidence", "production", "--output", str(pack)).stdout
    assert said.startswith(f"{world.production}: ")
    names = sorted(p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file())
    assert {"evidence.html", "evidence.pdf", "record.json", "openlineage.jsonl", "verification.json",
            "MANIFEST.sha256", "model_card.yaml", "reports/drift.html"} <= set(names)  # fmt: skip
    checked = subprocess.run(["sha256sum", "-c", "MANIFEST.sha256"], cwd=pack, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert len(checked.stdout.splitlines()) == len(names) - 1  # every file but the manifest itself
    record = json.loads((pack / "record.json").read_text())
    twin = json.loads(world.get(f"/models/{world.production}?format=json")[2])
    assert record == twin  # the pack's record is the console's JSON twin
    assert json.loads((pack / "verification.json").read_text())["ok"] is True
    events = [json.loads(line) for line in (pack / "openlineage.jsonl").read_text().splitlines()]
    for event in events:
        validate(event)
    assert {e["job"]["name"].split(".")[-1] for e in events} == set(STAGES)

    text = subprocess.run(
        ["pdftotext", str(pack / "evidence.pdf"), "-"], capture_output=True, text=True, check=True
    ).stdout
    for heading in (
        "1. Intended purpose (Annex IV 1(a); model card)", "3. Data (Annex IV 2(d))",
        "4. Training and tuning (Annex IV 2(a)-(b))", "5. Evaluation (Annex IV 2(g), 4)", "6. Gates (Annex IV",
        "Drift gate", "Accuracy gate", "Fairness gate", "7. Explainability (Annex IV 3; Art. 13)",
        "9. Approvals (Annex IV 2(e), 2(g)", "10. Changes since the previous production version (Annex IV 6)",
        "11. Reproduction", "12. Risk management and limitations (Annex IV 3, 5)", "13. Record integrity (Art. 12)",
    ):  # fmt: skip
        assert heading in text, heading
    assert "reproduced byte for byte" in text
    assert "Predicts how many units of a product sell" in text  # the model card, as recorded with the run

    browser = _driver(tmp_path, log_network=True)
    try:
        browser.get_log("performance")  # what the browser did before this page
        browser.get((pack / "evidence.html").as_uri())
        assert "Evidence pack: " + world.production in browser.title
        assert browser.find_elements("css selector", "#lineage svg")  # the graph is inline, drawn at build time
        requests = [
            json.loads(entry["message"])["message"]["params"]["request"]["url"]
            for entry in browser.get_log("performance")
            if json.loads(entry["message"])["message"]["method"] == "Network.requestWillBeSent"
        ]
    finally:
        browser.quit()
    assert (pack / "evidence.html").as_uri() in requests  # the log saw the page load
    assert [url for url in requests if urlparse(url).scheme not in ("file", "data", "chrome", "about")] == []

    (pack / "record.json").write_text("{}")  # a tampered pack no longer verifies
    assert subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=pack, capture_output=True).returncode


def test_a_version_without_reproduction_says_so(world: World, tmp_path: Path) -> None:
    pack = tmp_path / "previous"
    world.lineage("evidence", world.previous, "--output", str(pack))
    text = subprocess.run(
        ["pdftotext", str(pack / "evidence.pdf"), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "This version has not been reproduced yet." in " ".join(text.split())
    refused = world.lineage("evidence", world.previous, "--output", str(pack), ok=False)
    assert refused.stderr.splitlines() == [
        f"lineage: error: {pack} exists and is not an empty folder: a pack is written into a new one"
    ]


def test_the_evidence_pack_downloads_from_the_console(world: World, tmp_path: Path) -> None:
    status, headers, body = world.get(f"/models/{world.production}/evidence.zip")
    assert status == 200
    assert headers["content-disposition"] == f'attachment; filename="{world.production}.zip"'
    archive = tmp_path / "pack.zip"
    archive.write_bytes(body)
    shutil.unpack_archive(archive, tmp_path)
    checked = subprocess.run(
        ["sha256sum", "-c", "MANIFEST.sha256"], cwd=tmp_path / world.production, capture_output=True
    )
    assert checked.returncode == 0
    assert os.path.getsize(tmp_path / world.production / "evidence.pdf") > 10_000


def test_console_credentials_from_a_prefect_secret_block(harness: None) -> None:
    from prefect.blocks.system import Secret

    from lineage.console.security import Credentials, SecurityError, configured

    password = "a-secret-of-twenty-characters"
    Secret.model_validate({"value": f"auditor:{password}"}).save("console-credentials")
    assert configured("console-credentials") == Credentials(username="auditor", password=password)
    with pytest.raises(SecurityError, match=r"^cannot read Prefect Secret block 'nope': "):
        configured("nope")
