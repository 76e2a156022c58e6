"""Serving on a ledger that real flow runs wrote (two weeks, both promoted): the `score` flow on a real Prefect
server, and `retail-serve` as a real process following the production pointer through a promotion, under
load, and refusing a tampered model while it keeps serving the verified one."""

from __future__ import annotations

import http.client
import json
import re
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lineage.decisions import PRODUCTION_POINTER
from tests import insider
from tests.conftest import (
    GIT_ENV,
    POSTGRES_PSYCOPG,
    REPO,
    VENV_BIN,
    copy_to_postgres,
    free_port,
    postgres_database,
    prefect_server,
    stage_env,
    two_weeks_trained,
)

pytestmark = pytest.mark.integration
POLL_SECONDS = "0.5"


@dataclass(frozen=True)
class World:
    clone: Path
    db: Path
    production: str  # week 2's version
    previous: str  # week 1's version, archived when week 2 was promoted
    alice: Path  # a registered approver's key

    def env(self, **extra: str) -> dict[str, str]:
        return stage_env(
            LINEAGE_DB_URL=f"sqlite:///{self.db}", PREFECT_SERVER_ANALYTICS_ENABLED="false", **GIT_ENV, **extra
        )

    def lineage(self, *args: str) -> str:
        done = subprocess.run(
            [str(VENV_BIN / "lineage"), *args], cwd=self.clone, env=self.env(), capture_output=True, text=True
        )
        assert done.returncode == 0, f"lineage {' '.join(args)}: {done.stdout}{done.stderr}"
        return done.stdout


@pytest.fixture(scope="module")
def world(origin: Path, tmp_path_factory: pytest.TempPathFactory, ssh_keys: dict[str, Path]) -> World:
    clone, previous, production = two_weeks_trained(origin, tmp_path_factory.mktemp("serving"))
    world = World(clone, clone / "lineage.db", production, previous, ssh_keys["alice"])
    world.lineage("init", "--approver", "alice", "--key", str(world.alice))
    return world


def _score(world: World, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "python"), "-m", "flows.score", *args], cwd=world.clone, env=env, capture_output=True, text=True
    )


def test_scoring_on_a_prefect_server_gives_the_inference_stages_predictions(world: World, tmp_path: Path) -> None:
    with prefect_server(tmp_path) as server:
        env = world.env(PREFECT_API_URL=server["PREFECT_API_URL"], PREFECT_HOME=server["PREFECT_HOME"])
        done = _score(world, env, "data/splits/test.parquet")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        named = _score(
            world,
            env,
            "data/splits/test.parquet",
            "--model-version",
            world.previous,
            "--output",
            "data/scores/old.parquet",
        )
        assert named.returncode == 0, named.stdout[-3000:] + named.stderr[-3000:]
        bad = world.clone / "bad.csv"
        bad.write_text("StockCode,UnitPrice,Country\n85123A,2.55,France\n")
        refused = _score(world, env, str(bad))
        flow_runs = subprocess.run(
            [str(VENV_BIN / "prefect"), "flow-run", "ls", "--flow-name", "score", "--output", "json"],
            env=env,
            capture_output=True,
            text=True,
        ).stdout
    scored = pd.read_parquet(world.clone / f"data/scores/test.{world.production}.parquet")
    inferred = pd.read_parquet(world.clone / "data/predictions.parquet")
    assert scored["predicted_quantity"].to_numpy().tobytes() == inferred["y_pred"].to_numpy().tobytes()
    assert (scored["stock_code"] == inferred["stock_code"]).all()
    assert set(scored["model_version"]) == {world.production}
    states = sorted(run["state_type"] for run in json.loads(flow_runs))
    assert states == ["COMPLETED", "COMPLETED", "FAILED"]  # on the server, as people see them in the UI
    assert refused.returncode == 1
    assert f"{bad}: missing column 'InvoiceDate' (found: StockCode, UnitPrice, Country)" in refused.stdout
    assert sorted(p.name for p in (world.clone / "data/scores").glob("*.parquet")) == sorted(
        [f"test.{world.production}.parquet", "old.parquet"]
    )  # the refused table left nothing behind

    # The Prediction actions: tied to the version, its model and both tables by md5.
    lineage = json.loads(world.lineage("query", f"data/scores/test.{world.production}.parquet", "--format", "json"))
    labels = {(v["type"], v["label"]) for v in lineage["vertices"]}
    assert ("ModelVersion", world.production) in labels
    assert ("Model", "models/model.pt") in labels
    assert ("DataSet", "data/splits/test.parquet") in labels
    action = next(v for v in lineage["vertices"] if v["type"] == "Prediction")
    assert action["details"]["parameters"]["model_status"] == "production"
    old = json.loads(world.lineage("query", "data/scores/old.parquet", "--format", "json"))
    action = next(v for v in old["vertices"] if v["type"] == "Prediction")
    assert action["details"]["parameters"]["model_status"] == "archived"  # named explicitly, recorded as such
    assert (world.clone / "data/scores/old.parquet.dvc").is_file()  # tracked by DVC, pushed to the remote
    pushed = json.loads(world.lineage("query", "data/scores/old.parquet", "--format", "json", "--depth", "1"))
    output = next(v for v in pushed["vertices"] if v["label"] == "data/scores/old.parquet")
    assert output["details"]["properties"]["remote"].endswith(output["details"]["md5"][2:])


@pytest.fixture(scope="module")
def endpoint(world: World) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [str(VENV_BIN / "retail-serve"), "--port", str(port), "--poll-seconds", POLL_SECONDS,
         "--max-body-bytes", "100000"],
        cwd=world.clone, env=world.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"127.0.0.1:{port}"
    for _ in range(600):
        try:
            if _get(url, "/health")[0] == 200:
                break
        except OSError:
            pass
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _get(url: str, path: str) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(url, timeout=60)
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def _post(connection: http.client.HTTPConnection, path: str, body: Any) -> tuple[int, Any]:
    connection.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def _rows(world: World, count: int) -> list[dict[str, Any]]:
    """The first test rows as a caller sends them."""
    test = pd.read_parquet(world.clone / "data/splits/test.parquet").head(count)
    test["invoice_date"] = test["invoice_date"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    columns = ["stock_code", "unit_price", "invoice_date", "country"]
    return [dict(zip(columns, values, strict=True)) for values in test[columns].itertuples(index=False)]


def _wait_for(url: str, version: str) -> dict[str, Any]:
    """/health once it names `version`: polled, at most 40 poll intervals."""
    for _ in range(int(40 * float(POLL_SECONDS) / 0.1)):
        _, health = _get(url, "/health")
        if health.get("model_version") == version:
            return health
        time.sleep(0.1)
    pytest.fail(f"/health still says {health}")


def test_the_endpoint_follows_production_without_failing_a_request(world: World, endpoint: str) -> None:
    health = _wait_for(endpoint, world.production)
    assert health["status"] == "serving"
    assert health["promotion"]["decision"] == "promoted"
    rows = _rows(world, 3)
    served: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        connection = http.client.HTTPConnection(endpoint, timeout=60)
        while not stop.is_set() or not served or served[-1] != world.previous:
            status, body = _post(connection, "/predict", {"rows": rows})
            if status != 200:
                failures.append(f"{status} {body}")
            else:
                served.append(body["model_version"])
            if len(served) > 20_000:
                break

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    world.lineage(
        "models", "promote", world.previous, "--by", "alice", "--key", str(world.alice), "--reason", "back to week 1"
    )
    health = _wait_for(endpoint, world.previous)
    stop.set()
    for thread in clients:
        thread.join()
    assert failures == []
    assert served[0] == world.production
    assert world.previous in served
    assert health["promotion"]["by"] == "alice"

    # The ledger answers "which model served this endpoint when".
    lineage = json.loads(world.lineage("query", "retail-demand", "--format", "json", "--depth", "2"))
    updates = [v["label"] for v in lineage["vertices"] if v["type"] == "EndpointUpdate"]
    assert {label.split(" at ")[0] for label in updates} == {world.production, world.previous}
    assert all(re.fullmatch(r"model-\w+ at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", label) for label in updates)
    history = json.loads(world.lineage("served", "retail-demand", "--format", "json"))
    assert [row["model_version"] for row in history] == [world.production, world.previous]
    assert history[1]["previous_version"] == world.production
    now = json.loads(world.lineage("served", "retail-demand", "--at", history[1]["since"], "--format", "json"))
    assert [row["model_version"] for row in now] == [world.previous]
    text = world.lineage("query", "retail-demand", "--depth", "2")
    assert world.production in text
    assert world.previous in text


def _start(world: World, **env: str) -> tuple[subprocess.Popen[str], str]:
    """Another retail-serve process on the world's clone (with `env` added), once it answers /health."""
    port = free_port()
    process = subprocess.Popen(
        [str(VENV_BIN / "retail-serve"), "--port", str(port), "--poll-seconds", POLL_SECONDS],
        cwd=world.clone, env={**world.env(), **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"127.0.0.1:{port}"
    for _ in range(600):
        try:
            _get(url, "/health")
            return process, url
        except OSError:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            time.sleep(0.1)
    pytest.fail("retail-serve did not answer")


def _psql(database: str, *args: str, user: str = "postgres") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", user, "-d", database, "-v", "ON_ERROR_STOP=1", *args],
                          capture_output=True, text=True, check=False)  # fmt: skip


def test_the_endpoint_records_its_updates_through_a_role_that_cannot_write_decisions(
    world: World, tmp_path: Path
) -> None:
    """retail-serve on PostgreSQL with the role deployments/ledger-roles.sql gives it: it records its updates,
    while the same role's plain INSERT of a decision, or UPDATE of a record, is refused by the database."""
    serving = _production(world)
    role = f"serve_{uuid.uuid4().hex[:10]}"
    with postgres_database("serving_role") as database:
        owner = POSTGRES_PSYCOPG.format(database=database)
        copy_to_postgres(world.db, owner)
        assert _psql(database, "-c", f"CREATE ROLE {role} LOGIN").returncode == 0
        try:
            granted = _psql(database, "-v", f"serving={role}", "-f", str(REPO / "deployments/ledger-roles.sql"))
            assert granted.returncode == 0, granted.stderr
            process, url = _start(world, LINEAGE_DB_URL=f"postgresql+psycopg://{role}@127.0.0.1:5432/{database}")
            try:
                assert _wait_for(url, serving)["status"] == "serving"
                updates = "SELECT count(*) FROM ledger_records WHERE entity_type = 'EndpointUpdate'"
                assert _psql(database, "-tAc", updates).stdout.strip() == str(_updates(world) + 1)
                forged = (
                    "INSERT INTO ledger_records VALUES (100000, 'action', 'forged', 'Promotion', NULL, NULL, NULL, "
                    "'{}', 'x', 'y')"
                )
                refused = _psql(database, "-c", forged, user=role)
                assert refused.returncode != 0
                assert 'new row violates row-level security policy for table "ledger_records"' in refused.stderr
                edited = _psql(database, "-c", "UPDATE ledger_records SET body = '{}' WHERE seq = 1", user=role)
                assert "permission denied for table ledger_records" in edited.stderr
                assert "permission denied" in _psql(database, "-c", "DELETE FROM ledger_head", user=role).stderr
                # A promotion by the owner: the endpoint follows it and records that update too.
                other = world.production if serving == world.previous else world.previous
                promoted = subprocess.run(
                    [str(VENV_BIN / "lineage"), "models", "promote", other, "--by", "alice", "--key", str(world.alice),
                     "--reason", "on PostgreSQL", "--db", owner],
                    cwd=tmp_path, env=world.env(), capture_output=True, text=True,  # no anchor for this copy
                )  # fmt: skip
                assert promoted.returncode == 0, promoted.stderr
                assert _wait_for(url, other)["promotion"]["by"] == "alice"
                assert _psql(database, "-tAc", updates).stdout.strip() == str(_updates(world) + 2)
            finally:
                process.terminate()
                process.wait(timeout=30)
        finally:
            _psql("postgres", "-c", f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            _psql("postgres", "-c", f"DROP ROLE IF EXISTS {role}")


def _production(world: World) -> str:
    return str(json.loads(world.lineage("models", "list", "--status", "production", "--format", "json"))[0]["name"])


def _updates(world: World) -> int:
    with sqlite3.connect(world.db) as raw:
        (count,) = raw.execute("SELECT count(*) FROM ledger_records WHERE entity_type = 'EndpointUpdate'").fetchone()
    return int(count)


def test_a_forged_promotion_moves_nothing_and_the_endpoint_says_so(world: World, endpoint: str) -> None:
    """With plain SQL and no key: a status record, a pointer move and an unsigned promotion of the previous
    version, the chain rehashed. The endpoint keeps serving the verified version, and /health says what it
    refused and why; `lineage verify` names the forged decision."""
    serving = _wait_for(endpoint, world.previous)["model_version"]  # production since the promotion drill
    target = world.production
    version_id = _entity_id(world, target)
    status = insider.latest_body(world.db, version_id)
    status["properties"] |= {"status": "production", "status_reason": "approved by the model risk board"}
    moved = insider.latest_body(world.db, PRODUCTION_POINTER)
    moved["properties"]["model_version"] = target
    promotion: dict[str, Any] = {
        "id": str(uuid.uuid4()), "action_type": "Promotion", "status": "Completed", "command": f"promoted {target}",
        "start": "2026-12-07T12:00:00Z", "end": "2026-12-07T12:00:00Z", "prefect_task_run_id": None,
        "metadata": {"repository": None, "commit_id": None, "generated_by": None, "project_id": None},
        "parameters": {"decision": "promoted", "model_version": target, "previous_production": serving,
                       "by": "alice", "reason": "approved by the model risk board", "signature": "unsigned",
                       "ledger_id": insider.rows_hash(world.db, 1)},
    }  # fmt: skip
    _, _, seq = insider.append(world.db, [
        ("context", version_id, "ModelVersion", target, None, None, status),
        ("context", PRODUCTION_POINTER, "Deployment", "production", None, None, moved),
        ("action", promotion["id"], "Promotion", None, None, None, promotion),
    ])  # fmt: skip
    for _ in range(int(40 * float(POLL_SECONDS) / 0.1)):
        health = _get(endpoint, "/health")[1]
        if health["refused"] and health["refused"]["model_version"] == target:
            break
        time.sleep(0.1)
    assert health["model_version"] == serving
    assert f"seq {seq} (entity {promotion['id']})" in health["refused"]["reason"]
    assert "unsigned, and the ledger's policy refuses unsigned decisions" in health["refused"]["reason"]
    connection = http.client.HTTPConnection(endpoint, timeout=60)
    assert _post(connection, "/predict", {"rows": _rows(world, 1)})[1]["model_version"] == serving
    done = subprocess.run([str(VENV_BIN / "lineage"), "verify", "--full"], cwd=world.clone, env=world.env(),
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1
    assert f"signatures FAILED at seq {seq} (entity {promotion['id']})" in done.stdout


def test_a_tampered_model_is_refused_and_the_verified_one_keeps_serving(world: World, endpoint: str) -> None:
    serving = _wait_for(endpoint, world.previous)["model_version"]
    target = world.production
    md5 = json.loads(world.lineage("models", "show", target, "--format", "json"))["model_md5"]
    cached = world.clone / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    cached.chmod(0o644)
    cached.write_bytes(cached.read_bytes() + b"tampered")
    world.lineage("models", "promote", target, "--by", "alice", "--key", str(world.alice), "--reason", "week 2 again")
    for _ in range(int(40 * float(POLL_SECONDS) / 0.1)):
        status, health = _get(endpoint, "/health")
        if health["refused"] and "altered" in health["refused"]["reason"]:  # this refusal, not the forged one's
            break
        time.sleep(0.1)
    assert health["model_version"] == serving
    assert health["refused"]["model_version"] == target
    assert f"the stored object {md5} is altered" in health["refused"]["reason"]
    connection = http.client.HTTPConnection(endpoint, timeout=60)
    status, body = _post(connection, "/predict", {"rows": _rows(world, 1)})
    assert (status, body["model_version"]) == (200, serving)


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"country": None}, "rows.0.country: Field required"),
        ({"unit_price": -1}, "rows.0.unit_price: Input should be greater than 0"),
        ({"stock_code": "NOPE1"}, "rows: column 'StockCode': 1 stock code(s) the model has no sales history of"),
        ({"invoice_date": "2011-13-45"}, "rows.0.invoice_date: Input should be a valid datetime"),
    ],
)
def test_bad_requests_get_a_one_line_422(world: World, endpoint: str, change: dict[str, Any], detail: str) -> None:
    row = {key: value for key, value in {**_rows(world, 1)[0], **change}.items() if value is not None}
    status, body = _post(http.client.HTTPConnection(endpoint, timeout=60), "/predict", {"rows": [row]})
    assert status == 422
    assert body["detail"].startswith(detail)


def test_an_oversized_body_is_refused_with_413(world: World, endpoint: str) -> None:
    status, body = _post(http.client.HTTPConnection(endpoint, timeout=60), "/predict", {"rows": _rows(world, 1) * 2000})
    assert status == 413
    assert body["detail"] == "request body: over the limit of 100000 bytes; send fewer rows per request"


def test_a_port_in_use_is_one_line(world: World) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(VENV_BIN / "retail-serve"), "--port", str(port)],
            cwd=world.clone,
            env=world.env(),
            capture_output=True,
            text=True,
        )
    assert done.returncode == 2
    assert done.stderr.strip() == f"retail-serve: error: cannot listen on 127.0.0.1 port {port}: Address already in use"


def test_a_ledger_that_cannot_be_opened_is_one_line(world: World, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "lineage.db"
    done = subprocess.run(
        [str(VENV_BIN / "retail-serve"), "--db", f"sqlite:///{missing}"],
        cwd=world.clone, env=world.env(), capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("retail-serve: error: cannot open the lineage ledger at sqlite:///")
    assert len(done.stderr.strip().splitlines()) == 1


def _entity_id(world: World, version: str) -> str:
    return str(json.loads(world.lineage("models", "show", version, "--format", "json"))["id"])
