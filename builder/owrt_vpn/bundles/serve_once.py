"""Serve one file once over HTTP, at a random path, for a short time (`owrt-vpn share`).

Decisions (issue 16): listen on one address (``--listen``, else the host's
address on its default route; never all addresses unless asked); the path
holds 128 random bits; only a *complete* GET of that path uses the link up
(HEAD, link-preview fetches of other paths, an aborted download do not);
every other request gets 404 (or 405 for other methods) and nothing else is
ever served; the link expires after ``expires`` seconds.

"Complete" is judged at the TCP level (:func:`_delivered`): writing the body
succeeds as soon as it fits in the kernel's buffers, so a client that reads
part of a small file and hangs up would otherwise use the link up.
"""

from __future__ import annotations

import secrets
import socket
import socketserver
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import quote

from owrt_vpn.errors import UsageError

#: How long a client has to take the rest of the file and hang up (seconds).
_DELIVERY_WAIT = 30.0

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

            def server_bind(self) -> None:
                # HTTPServer's own looks the address up in DNS (getfqdn): seconds
                # of waiting where DNS does not answer, for a name nothing uses.
                socketserver.TCPServer.server_bind(self)
                host, port = self.server_address[:2]
                self.server_name, self.server_port = str(host), int(port)

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
                complete = _delivered(self.connection, _DELIVERY_WAIT)
            except OSError:
                complete = False
            if not complete:
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


def _delivered(sock: socket.socket, wait: float) -> bool:
    """Whether the client took the whole response just written to ``sock``.

    We close our side and watch the connection: a client that hangs up with
    part of the file unread resets it (RST), or, when the rest was still on
    its way, never acknowledges it. Only a clean close (FIN) after the
    client's TCP acknowledged every byte, within ``wait`` seconds, is a
    complete download.
    """
    sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + wait
    closed = False
    while (left := deadline - time.monotonic()) > 0:
        if not closed:
            sock.settimeout(min(left, 0.2))
            try:
                closed = sock.recv(4096) == b""  # anything the client still sends is ignored
            except TimeoutError:
                continue
            except OSError:
                return False  # reset
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return False
        if closed:
            if _unacknowledged(sock) == 0:
                return True
            time.sleep(0.01)
    return False


def _unacknowledged(sock: socket.socket) -> int:
    """Bytes written to ``sock`` that its peer has not acknowledged (0 where unknown).

    Linux's SIOCOUTQ (= TIOCOUTQ); other systems have no such count, and then
    the client's clean close alone decides.
    """
    try:
        import fcntl
        import termios

        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    except (ImportError, AttributeError, OSError):
        return 0
    return int(struct.unpack("i", raw)[0])
