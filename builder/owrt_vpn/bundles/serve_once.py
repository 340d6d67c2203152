"""Serve one file once over HTTP, at a random path, for a short time (`owrt-vpn share`).

Decisions (issue 16): listen on one address (``--listen``, else the host's
address on its default route; never all addresses unless asked); the path
holds 128 random bits; only a *complete* GET of that path uses the link up
(HEAD, link-preview fetches of other paths, an aborted download do not);
every other request gets 404 (or 405 for other methods) and nothing else is
ever served; the link expires after ``expires`` seconds.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import quote

from owrt_vpn.errors import UsageError

#: Where a UDP socket is "connected" to learn the default route's source
#: address; nothing is sent (TEST-NET-1: never a real host).
_PROBE = ("192.0.2.1", 9)


def default_route_address() -> str:
    """The host's address on its default route (IPv4). UsageError when there is none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(_PROBE)
            address = str(s.getsockname()[0])
        except OSError:
            address = ""
    # An unconnectable probe leaves the unspecified address: no route, no answer.
    if not address or address == socket.inet_ntoa(bytes(4)):
        raise UsageError(
            "share: no default route to find this host's address", hint="pass --listen ADDRESS"
        )
    return address


@dataclass
class Outcome:
    """How a share ended: ``served`` to ``client``, or ``expired``; the requests turned away."""

    status: str = "expired"
    client: str | None = None
    refused: list[str] = field(default_factory=list)


class OnceServer:
    """An HTTP server for one file at one random path, until one complete GET or expiry."""

    def __init__(
        self,
        data: bytes,
        filename: str,
        content_type: str,
        listen: str,
        port: int = 0,
        expires: float = 300.0,
    ) -> None:
        self.data = data
        self.filename = filename
        self.content_type = content_type
        self.expires = expires
        self.path = f"/{secrets.token_urlsafe(16)}/{quote(filename)}"
        self.outcome = Outcome()
        family = socket.AF_INET6 if ":" in listen else socket.AF_INET
        handler = _handler(self)

        class _Server(HTTPServer):
            address_family = family

        try:
            self._httpd = _Server((listen, port), handler)
        except OSError as exc:
            raise UsageError(
                f"share: cannot listen on {listen} port {port}: {exc.strerror}",
                hint="pass --listen with an address of this host (and a free --port)",
            ) from None
        self._httpd.timeout = 0.2

    @property
    def url(self) -> str:
        """The link to the file."""
        host, port = self._httpd.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}{self.path}"

    def serve(self, tick: Callable[[float], None] | None = None) -> Outcome:
        """Answer requests until the file was fetched once, completely, or the link expired.

        ``tick(seconds_left)`` is called about five times a second.
        """
        deadline = time.monotonic() + self.expires
        try:
            while self.outcome.status != "served":
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if tick is not None:
                    tick(left)
                self._httpd.handle_request()
        finally:
            self._httpd.server_close()
        return self.outcome


def _handler(owner: OnceServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "owrt-vpn-share"
        sys_version = ""
        timeout = 30  # a stalled client does not hold the link for ever

        def _refuse(self, code: int) -> None:
            owner.outcome.refused.append(f"{self.command} {self.path[:64]} -> {code}")
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()

        def _headers(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", owner.content_type)
            self.send_header("Content-Length", str(len(owner.data)))
            self.send_header("Content-Disposition", f'attachment; filename="{owner.filename}"')
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()

        def do_GET(self) -> None:
            if owner.outcome.status == "served" or self.path != owner.path:
                self._refuse(404)
                return
            self._headers()
            try:
                self.wfile.write(owner.data)
                self.wfile.flush()
            except OSError:
                return  # the download broke off: the link stays valid
            owner.outcome.status = "served"
            owner.outcome.client = self.client_address[0]

        def do_HEAD(self) -> None:
            if owner.outcome.status == "served" or self.path != owner.path:
                self._refuse(404)
                return
            self._headers()

        def _not_allowed(self) -> None:
            self._refuse(405)

        do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _not_allowed

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the command reports what happened."""

    return Handler
