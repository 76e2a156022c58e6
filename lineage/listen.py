"""An ASGI app on uvicorn, for `lineage ui` and `retail-serve`. The socket is bound before uvicorn starts,
so that a port in use or an unknown host is one line (ListenError), not uvicorn's log."""

from __future__ import annotations

import re
import socket
from typing import Any

from lineage.errors import LineageError


class ListenError(LineageError):
    """The address cannot be listened on; one line."""


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on `host` (IPv4 or IPv6) and `port`."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as error:
        reason = re.sub(r" \(while attempting to bind.*", "", str(error.strerror or error))
        raise ListenError(f"cannot listen on {host} port {port}: {reason}") from None


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(app: Any, listening: socket.socket) -> None:
    """Serve `app` on `listening` until stopped, without uvicorn's access log or server header; closes it."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", server_header=False, access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[listening])
    finally:
        listening.close()
