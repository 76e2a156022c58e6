"""No secrets in the repository: every tracked file is scanned for credential patterns."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import REPO

PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret access key": re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+=]{40}\b"),
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"),
    "password in a URL": re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:([^@\s/'\"]+)@([^/\s:'\"]+)"),
    "token": re.compile(r"\b(?:ghp|gho|github_pat|glpat|xox[bap])[-_][A-Za-z0-9_]{20,}"),
}
# Stand-ins the tests and docs use on purpose: loopback or reserved hosts, or <placeholders>.
PLAYFUL_HOSTS = ("127.0.0.1", "git.example", "example.invalid", "host", "<host>")


def _findings(text: str) -> list[str]:
    found = []
    for name, pattern in PATTERNS.items():
        for match in pattern.finditer(text):
            if name == "password in a URL" and (match.group(2) in PLAYFUL_HOSTS or match.group(1).startswith("<")):
                continue
            found.append(f"{name}: {match.group(0)[:60]}")
    return found


def test_the_scanner_finds_what_it_looks_for() -> None:
    fake_key = "AKIA" + "ABCDEFGHIJKLMNOP"
    assert _findings(f"key = {fake_key}") == [f"AWS access key id: {fake_key}"]
    assert _findings("url = postgresql://app:" + "Sup3r@db.internal.corp:5432/x")[0].startswith("password in a URL")
    assert _findings("-----BEGIN " + "RSA PRIVATE KEY-----") != []
    assert _findings("postgresql+psycopg://lineage:<password>@<host>:5432/lineage") == []


def test_no_tracked_file_holds_a_secret() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    problems = []
    for name in filter(None, tracked):
        path = REPO / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        problems += [f"{name}: {finding}" for finding in _findings(text)]
    assert problems == []
