"""common.redact: every form a credential takes in a URL or in free text is masked, a URL without one is left
as it is; and what a user sees holds no secret: the installed `lineage` and `retail-serve` commands on a
ledger URL with `?password=`, every console page (and its JSON twin) on such a ledger, and the ledger's
own records of a run's configuration, read with plain SQL."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import assume, given
from hypothesis import strategies as st

from common.redact import MASK, error_line, redact_text, redact_url, secret_key, url_secrets
from lineage.console.app import create_app
from lineage.entities import ActionStatus
from lineage.recorder import Provenance, RunInfo, StageRun, record_run
from lineage.store import LedgerStore
from tests.conftest import GIT_ENV, VENV_BIN, crawl, free_port, record_two_weeks
from tests.lineage_workspace import STAGES, write_workspace

SECRET = "Hunter2-s3cret"
# Split where the repository's secret scanner (test_no_secrets.py) would take a stand-in for a real one.
GITHUB_TOKEN = "ghp_" + "Hunter2s3cret" * 3

# (a URL, what it must read once redacted)
FORMS = [
    ("postgresql+psycopg://lineage:Hunter2-s3cret@host:5432/lineage", "postgresql+psycopg://lineage:***@host:5432/lineage"),
    ("postgresql+psycopg://user@127.0.0.1:1/db?password=Hunter2-s3cret",
     "postgresql+psycopg://user@127.0.0.1:1/db?password=***"),
    ("postgresql://u@h/db?sslmode=verify-full&sslpassword=Hunter2-s3cret&application_name=etl",
     "postgresql://u@h/db?sslmode=verify-full&sslpassword=***&application_name=etl"),
    ("https://marquez:5000/api?api_key=Hunter2-s3cret", "https://marquez:5000/api?api_key=***"),
    ("https://marquez:5000/api?apikey=Hunter2-s3cret", "https://marquez:5000/api?apikey=***"),
    ("https://h/x?token=Hunter2-s3cret&page=2", "https://h/x?token=***&page=2"),
    ("https://h/x?access_token=Hunter2-s3cret", "https://h/x?access_token=***"),
    ("https://h/x?client_secret=Hunter2-s3cret", "https://h/x?client_secret=***"),
    ("https://h/x?access_key=Hunter2-s3cret", "https://h/x?access_key=***"),
    ("https://maps.example/api?key=Hunter2-s3cret", "https://maps.example/api?key=***"),
    ("https://h/x?signature=Hunter2-s3cret", "https://h/x?signature=***"),
    ("https://bucket.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261207"
     "&X-Amz-Security-Token=Hunter2-s3cret&X-Amz-Signature=Hunter2-s3cret&X-Amz-Expires=604800",
     "https://bucket.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=***"
     "&X-Amz-Security-Token=***&X-Amz-Signature=***&X-Amz-Expires=604800"),
    ("https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sp=r&se=2026-12-31&sig=Hunter2-s3cret%3D",
     "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sp=r&se=2026-12-31&sig=***"),
    ("https://h/cb#access_token=Hunter2-s3cret&state=1", "https://h/cb#access_token=***&state=1"),
    ("jdbc:sqlserver://h:1433;databaseName=d;password=Hunter2-s3cret", "jdbc:sqlserver://h:1433;databaseName=d;password=***"),
    # percent-encoded: the value and the key
    ("postgresql://u:Hunter2%40s3cret@host/db", "postgresql://u:***@host/db"),
    ("https://h/x?pass%77ord=Hunter2-s3cret", "https://h/x?pass%77ord=***"),
    # a password with an unencoded @ or / is masked whole
    ("postgresql://u:Hunter2" + "@s3cret@host/db", "postgresql://u:***@host/db"),
    ("postgresql://u:Hunter2/s3cret@host/db", "postgresql://u:***@host/db"),
    # a token as the user name, as git remotes carry one
    (f"https://{GITHUB_TOKEN}@git.example/o/r.git", "https://***@git.example/o/r.git"),
    ("https://x-access-token:Hunter2-s3cret@git.example/o/r.git", "https://x-access-token:***@git.example/o/r.git"),
    # no scheme: a user:password@host DSN, a libpq keyword string
    ("lineage:Hunter2-s3cret@db/lineage", "lineage:***@db/lineage"),
    ("host=db dbname=lineage password=Hunter2-s3cret sslpassword='Hunter2 s3cret'",
     "host=db dbname=lineage password=*** sslpassword=***"),
    # malformed
    ("postgresql+psycopg://u:Hunter2-s3cret@host:port/db", "postgresql+psycopg://u:***@host:port/db"),
    ("http://[::1?token=Hunter2-s3cret", "http://[::1?token=***"),
]  # fmt: skip
CLEAN = [
    "sqlite:///lineage.db", "sqlite:////abs/path/lineage.db", "sqlite://", "s3://retail-lineage/dvc",
    "http://127.0.0.1:4200/api", "postgresql+psycopg://lineage@db:5432/lineage?sslmode=require&application_name=x",
    "file:///srv/dvc-storage", "https://github.com/o/r.git", "ssh://git@github.com/o/r.git", "git@github.com:o/r.git",
    "https://h/x?token=&page=2", "https://h/@alice", "http://[::1", "://", "not a url", "", "azure://container/p",
]  # fmt: skip


@pytest.mark.parametrize(("url", "shown"), FORMS, ids=[f[1][:60] for f in FORMS])
def test_every_form_of_credential_is_masked(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # masking twice changes nothing
    if "://" in url or "=" in url:  # in free text a URL is known by its scheme, not by user:password@ alone
        assert redact_text(f"connecting to '{url}': refused") == f"connecting to '{shown}': refused"
    secrets = url_secrets(url)
    assert secrets, url
    assert not any(secret in redact_url(url) for secret in secrets)


@pytest.mark.parametrize("url", CLEAN)
def test_a_url_without_credentials_is_unchanged(url: str) -> None:
    assert redact_url(url) == url
    assert redact_text(f"at {url}: ok") == f"at {url}: ok"
    assert url_secrets(url) == set()


def test_the_decoded_password_is_a_secret_too() -> None:
    """A driver decodes the URL before it talks: its message may echo `p@ss`, not `p%40ss`."""
    assert url_secrets("postgresql://u:Hunter2%40s3cret@host/db") == {"Hunter2%40s3cret", "Hunter2@s3cret"}
    assert url_secrets("https://h/x?token=a+b%2Bc") == {"a+b%2Bc", "a+b+c", "a b+c"}


def test_a_password_the_driver_echoes_is_masked() -> None:
    url = f"postgresql+psycopg://u@127.0.0.1:1/x?password={quote(SECRET + '@x', safe='')}"
    echoed = f'connection failed: password "{SECRET}@x" rejected; retry with password={SECRET}@x'
    assert SECRET not in redact_text(echoed, url_secrets(url))
    assert (
        redact_text(echoed, url_secrets(url)) == 'connection failed: password "***" rejected; retry with password=***'
    )
    # the URL in the same line brings its own secrets: none given, the echo is masked as well
    line = redact_text(f"cannot open {url}: {echoed}")
    assert SECRET not in line
    # (the colon after the URL went with the masked value: text never tells where a value ends)
    assert line.startswith("cannot open postgresql+psycopg://u@127.0.0.1:1/x?password=*** connection failed: ")


def test_text_keeps_its_words_and_loses_its_secrets() -> None:
    text = (
        "dvc push failed: https://bot:Hunter2-s3cret@git.example/dvc/files and "
        "s3://b/k?X-Amz-Signature=Hunter2-s3cret; conninfo host=db password=Hunter2-s3cret "
        "AccountKey=Hunter2-s3cret; token = 'Hunter2-s3cret' (attempt 3 of 4, sslmode=require)"
    )
    assert redact_text(text) == (
        "dvc push failed: https://bot:***@git.example/dvc/files and "
        "s3://b/k?X-Amz-Signature=***; conninfo host=db password=*** "
        "AccountKey=***; token = *** (attempt 3 of 4, sslmode=require)"
    )
    plain = "stage etl: 541,909 rows read from data/raw/online_retail.xlsx; drift.allow=false"
    assert redact_text(plain) == plain
    assert redact_text("the OpenLineage key is wrong", ["Hunter2-s3cret"]) == "the OpenLineage key is wrong"
    assert redact_text(f"Bearer {SECRET} refused", [SECRET]) == "Bearer *** refused"
    assert redact_text(f"Bearer {quote(SECRET + '/x', safe='')} refused", [SECRET + "/x"]) == "Bearer *** refused"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True), ("PASSWORD", True), ("sslpassword", True), ("pwd", True), ("passphrase", True),
        ("token", True), ("X-Amz-Security-Token", True), ("secret", True), ("AWS_SECRET_ACCESS_KEY", True),
        ("api_key", True), ("apikey", True), ("api-key", True), ("access_key", True), ("AccountKey", True),
        ("key", True), ("private_key", True), ("sig", True), ("signature", True), ("X-Amz-Signature", True),
        ("X-Amz-Credential", True), ("credentials", True), ("sas_token", True), ("Authorization", True),
        ("session_token", True), ("pass", True), ("db_pass", True), ("ssh_key", True), ("connection_string", True),
        ("user", False), ("username", False), ("host", False), ("sslmode", False), ("application_name", False),
        ("region", False), ("endpointurl", False), ("url", False), ("monkey", False), ("bypass", False),
        ("image", False), ("sv", False), ("se", False), ("keyboard", False),
    ],
)  # fmt: skip
def test_which_keys_name_a_secret(key: str, secret: bool) -> None:
    assert secret_key(key) is secret


def test_error_line_is_the_driver_s_first_line_masked() -> None:
    class Wrapped(Exception):
        orig = RuntimeError(f'FATAL:  password authentication failed: "{SECRET}"\nDETAIL: more')

    url = f"postgresql+psycopg://u:{SECRET}@host/db"
    assert error_line(Wrapped("(psycopg.OperationalError) ... [SQL: ...]"), url) == (
        'FATAL:  password authentication failed: "***"'
    )
    assert error_line(ValueError(), url) == "ValueError"
    assert error_line(OSError(f"cannot reach https://h/x?token={SECRET}\nsecond line")) == (
        "cannot reach https://h/x?token=***"
    )


def _absent(secret: str, text: str) -> None:
    """`secret` is in `text` neither as it is nor percent-encoded."""
    assert secret not in text, text
    assert quote(secret, safe="") not in text, text


TEMPLATES = [
    "postgresql+psycopg://u:{}@127.0.0.1:1/db", "mysql://u:{}@host", "u:{}@h/db",  # user info: any character
    "postgresql://u@h/db?password={}&x=1", "https://h/p?sig={}", "https://h/p?a=1&X-Amz-Signature={}#f",
    "https://h/p;token={}",  # parameters: percent-encoded, as a URL must carry & # ; in a value
]  # fmt: skip


@given(
    secret=st.text(st.characters(exclude_categories=["Cs", "Cc", "Z"], exclude_characters="*"), min_size=3),
    template=st.sampled_from(TEMPLATES),
    encode=st.booleans(),
)
def test_a_secret_never_survives_in_any_form(secret: str, template: str, encode: bool) -> None:
    assume(secret not in template.format("***"))  # text the masked URL shows anyway, such as "://"
    in_userinfo = "{}@" in template
    url = template.format(quote(secret, safe="") if encode or not in_userinfo else secret)
    _absent(secret, redact_url(url))
    if "://" in template and not set(secret) & set("'\"<>`"):  # in text, a URL has a scheme and ends at a quote
        shown = redact_text(f"error at {url}: {secret} was refused")
        _absent(secret, shown)


# -- what a user sees ------------------------------------------------------------------------------------

UNREACHABLE = [
    f"postgresql+psycopg://user@127.0.0.1:1/db?password={SECRET}",
    f"postgresql+psycopg://user:{SECRET}@127.0.0.1:1/db?sslpassword={SECRET}&sslmode=disable",
    # psycopg echoes a bad value: the password given again as another option
    f"postgresql+psycopg://user@127.0.0.1:1/db?password={SECRET}&connect_timeout={SECRET}",
]


@pytest.mark.parametrize("url", UNREACHABLE)
@pytest.mark.parametrize(
    "argv", [["models", "list"], ["verify"], ["query", "production"], ["export", "archive", "--output", "a.jsonl"]]
)
def test_the_lineage_command_never_shows_the_password(url: str, argv: list[str], tmp_path: Path) -> None:
    for how, env in (("--db", {}), ("LINEAGE_DB_URL", {"LINEAGE_DB_URL": url})):
        args = [*argv, "--db", url] if how == "--db" else argv
        done = subprocess.run(
            [str(VENV_BIN / "lineage"), *args], env=_env(env), cwd=tmp_path, capture_output=True, text=True,
            check=False, timeout=120,
        )  # fmt: skip
        assert SECRET not in done.stdout + done.stderr, (how, done.stderr)
        assert done.returncode == 1
        [line] = done.stderr.splitlines()
        assert line.startswith("lineage: error: cannot open the lineage ledger at postgresql+psycopg://user"), line
        assert "127.0.0.1:1/db?" in line
        assert MASK in line


def test_retail_serve_never_shows_the_password(tmp_path: Path) -> None:
    url = UNREACHABLE[2]
    done = subprocess.run(
        [str(VENV_BIN / "retail-serve"), "--db", url, "--port", str(free_port())],
        env=_env({}), cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert SECRET not in done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("retail-serve: error: cannot open the lineage ledger at postgresql+psycopg://user@")
    assert "bad value for connect_timeout: '***'" in line


def _env(extra: dict[str, str]) -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "LINEAGE_DB_URL"} | extra


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("redact")
    with LedgerStore(f"sqlite:///{root / 'lineage.db'}") as store:
        record_two_weeks(store, root)
    return root / "lineage.db"


def test_no_console_page_shows_the_password(ledger: Path) -> None:
    """A ledger URL with secrets in its query (SQLite ignores them): every page, its JSON twin and an error."""
    url = f"sqlite:///{ledger}?password={SECRET}&sslpassword={SECRET}&token={quote(SECRET + '/x', safe='')}"
    store = LedgerStore(url, read_only=True)
    assert store.location == f"sqlite:///{ledger}?password=***&sslpassword=***&token=***"
    client = TestClient(create_app(store, None, Path(".")), base_url="http://127.0.0.1")
    bodies: list[str] = []

    def get(path: str) -> tuple[int, str, str]:
        page = client.get(path)
        bodies.extend([page.text, client.get(path + "?format=json").text])
        return page.status_code, page.headers.get("content-type", ""), page.text

    seen = crawl(get)
    assert len(seen) > 10
    assert set(seen.values()) <= {200, 404}
    get("/models/no-such-version")
    _absent(SECRET, "\n".join(bodies))
    assert sum(f"sqlite:///{ledger}?password=***&amp;sslpassword=***&amp;token=***" in b for b in bodies) > 10
    store.close()


def test_a_run_s_configuration_reaches_the_ledger_without_secrets(tmp_path: Path) -> None:
    """.dvc/config, the deployment's job variables and the git remote, each holding the secret in another
    form; read back with plain SQL, no record holds it (nor its encoded form)."""
    root = tmp_path / "workspace"
    root.mkdir()
    write_workspace(root, 1)
    (root / ".dvc").mkdir()
    (root / ".dvc" / "config").write_text(
        "[core]\n    remote = dav\n"
        f"['remote \"dav\"']\n    url = webdavs://bot:{SECRET}@git.example/dvc?token={SECRET}\n"
        f"    password = {SECRET}\n"
        f"['remote \"blob\"']\n    url = azure://c/p\n    connection_string = AccountName=a;AccountKey={SECRET};\n",
        encoding="utf-8",
    )
    remote = f"https://x-access-token:{SECRET}@git.example/r.git"
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "w1"], ["remote", "add", "origin", remote]):
        subprocess.run(["git", *command], cwd=root, env=GIT_ENV, check=True)
    configuration = {
        "name": "weekly",
        "job_variables": {
            "env": {
                "LINEAGE_DB_URL": f"postgresql+psycopg://lineage@db/lineage?password={SECRET}",
                "PGOPTIONS": f"host=db password={SECRET}",
                "OPENLINEAGE_URL": f"https://marquez:5000/?api_key={quote(SECRET + '/', safe='')}",
                "DVC_REMOTE_S3_URL": "s3://retail/dvc",
            },
            "image": "ecr/retail:abc",
        },
        "parameters": {"lineage_db_block": "ledger-url"},
    }
    stages = [StageRun(s, ActionStatus.COMPLETED, dt.datetime.now(dt.UTC), dt.datetime.now(dt.UTC)) for s in STAGES]
    info = RunInfo(
        str(uuid.uuid4()), stages, dt.datetime.now(dt.UTC), dt.datetime.now(dt.UTC), None, "runs/x",
        "lineage-pipeline/weekly", deployment_configuration=configuration,
    )  # fmt: skip
    db = tmp_path / "lineage.db"
    with LedgerStore(f"sqlite:///{db}") as store:
        record_run(store, info, root)
    with sqlite3.connect(db) as raw:
        bodies = [body for (body,) in raw.execute("SELECT body FROM ledger_records")]
    everything = "\n".join(bodies)
    _absent(SECRET, everything)
    # what is kept says where things are, secrets masked
    assert "webdavs://bot:***@git.example/dvc?token=***" in everything
    assert "postgresql+psycopg://lineage@db/lineage?password=***" in everything
    assert "host=db password=***" in everything
    assert "s3://retail/dvc" in everything
    assert Provenance.read(root).repository == "https://git.example/r.git"  # whoever cloned it


def test_a_name_can_leave_the_user_out() -> None:
    """A git repository is named the same whoever cloned it: without the user info, secrets still masked."""
    assert redact_url(f"https://{GITHUB_TOKEN}@git.example/o/r.git", user=False) == "https://git.example/o/r.git"
    assert redact_url("ssh://git@git.example/o/r.git", user=False) == "ssh://git.example/o/r.git"
    assert redact_url("https://h/r.git?token=Hunter2-s3cret", user=False) == "https://h/r.git?token=***"
    assert redact_url("https://git.example/o/r.git", user=False) == "https://git.example/o/r.git"
