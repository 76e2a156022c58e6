"""Who may read the console, and what every response says to the browser.

The console binds to 127.0.0.1 unless told otherwise, and refuses any other address unless credentials
are configured: a token (LINEAGE_UI_TOKEN) or HTTP basic credentials (LINEAGE_UI_USERNAME and
LINEAGE_UI_PASSWORD), from the environment or a Prefect Secret block holding `TOKEN` or
`USERNAME:PASSWORD`. A token is sent as `Authorization: Bearer TOKEN`, or by a browser as the password
of HTTP basic (any user name). On loopback without credentials, only loopback host names are served,
so a web page elsewhere cannot reach the console through DNS rebinding.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from lineage.errors import LineageError

MIN_SECRET = 16  # characters: a token or password shorter than this guards nothing on a network
SECRET_SOURCES = "retail_lineage.secrets"  # entry points that read a named secret (flows.settings: Prefect)
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}

# What every page says; a stored report gets its own, sandboxed, policy (STORED_REPORT_POLICY).
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cache-Control": "no-store",
}
# A stored report (Evidently's HTML carries its own scripts) runs in a sandbox with an opaque origin, so it
# can read nothing of the console's; it may load nothing from the network.
STORED_REPORT_POLICY = (
    "sandbox allow-scripts allow-popups; default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval' data: blob:; "
    "style-src 'unsafe-inline' data:; img-src data: blob:; font-src data:; frame-ancestors 'none'"
)


class SecurityError(LineageError):
    """Credentials that cannot be used, or a bind the configuration does not allow; one line."""


@dataclass(frozen=True)
class Credentials:
    """A bearer token, or a basic user name and password. Kept out of repr, and so out of logs."""

    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        secret = self.token if self.token is not None else self.password
        if secret is None or (self.token is None and not self.username):
            raise SecurityError("credentials need a token, or a user name and a password")
        if len(secret) < MIN_SECRET:
            raise SecurityError(f"the console's token or password must be at least {MIN_SECRET} characters")

    def allows(self, authorization: str | None) -> bool:
        """Whether an Authorization header carries these credentials (compared in constant time)."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and self.token is not None:
            return hmac.compare_digest(value.strip().encode(), self.token.encode())
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if self.token is not None:
            return hmac.compare_digest(password.encode(), self.token.encode())
        assert self.username is not None
        assert self.password is not None
        same_user = hmac.compare_digest(user.encode(), self.username.encode())
        return hmac.compare_digest(password.encode(), self.password.encode()) and same_user

    @classmethod
    def parse(cls, text: str) -> Credentials:
        """`USERNAME:PASSWORD`, or a token (no colon)."""
        text = text.strip()
        if ":" in text:
            username, _, password = text.partition(":")
            return cls(username=username, password=password)
        return cls(token=text)


def configured(secret_block: str | None = None) -> Credentials | None:
    """The console's credentials: from the Secret block named `secret_block`, else the environment, else None."""
    if secret_block:
        return Credentials.parse(read_secret(secret_block))
    token = os.environ.get("LINEAGE_UI_TOKEN")
    if token:
        return Credentials(token=token)
    username, password = os.environ.get("LINEAGE_UI_USERNAME"), os.environ.get("LINEAGE_UI_PASSWORD")
    if username or password:
        return Credentials(username=username, password=password or "")
    return None


def read_secret(block: str) -> str:
    """A named secret through the installed secret source (the flows package reads Prefect Secret blocks);
    the ledger's package never imports Prefect itself."""
    found = entry_points(group=SECRET_SOURCES, name="prefect")
    if not found:
        raise SecurityError(f"cannot read Secret block {block!r}: no secret source 'prefect' is installed")
    try:
        return str(next(iter(found)).load()(block))
    except Exception as error:  # Prefect's own: no server, no such block
        reason = re.sub(r"^\[Errno \d+\] ", "", (str(error).strip().splitlines() or [type(error).__name__])[0])
        raise SecurityError(f"cannot read Prefect Secret block {block!r}: {reason}") from None


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, credentials: Credentials | None) -> None:
    """Refuse to serve an address other machines can reach without credentials."""
    if not is_loopback(host) and credentials is None:
        raise SecurityError(
            f"refusing to bind to {host} without credentials: set LINEAGE_UI_TOKEN (or LINEAGE_UI_USERNAME and "
            "LINEAGE_UI_PASSWORD), or --credentials-block, or bind to 127.0.0.1"
        )


def _host_name(header: str) -> str:
    """The name in a Host header, without its port (`[::1]:8765` -> `[::1]`)."""
    return header.split("]")[0] + "]" if header.startswith("[") else header.rsplit(":", 1)[0]


def guard(
    credentials: Credentials | None,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The middleware: refuse requests without the credentials (401) or, without credentials, for a host
    name that is not loopback (400); add the security headers to every response."""

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if credentials is None and not is_loopback(_host_name(request.headers.get("host") or "")):
            response: Response = PlainTextResponse("lineage console: this host name is not served\n", status_code=400)
        elif credentials is not None and not credentials.allows(request.headers.get("authorization")):
            response = PlainTextResponse(
                "lineage console: credentials required\n",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="lineage console", charset="UTF-8"'},
            )
        else:
            response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return middleware
