"""A real HTTP server on 127.0.0.1 serving a mirror directory, with fault injection.

Serves files with ``Content-Length``, ``Range`` (206 / 416) and ``HEAD``, and
can be told, per URL path, to answer 404, to answer 500 N times and then
succeed, to cut the connection after K bytes (once), or to send slowly. Every
request is logged (method, path, Range header, status, body bytes sent), so a
test can assert "zero requests for the archive".

    with MirrorServer(root) as srv:
        srv.fail(path, status=500, times=2)
        srv.cut(path, after=100_000)
        requests.get(srv.url + path)
        assert srv.count(path) == 3

Pytest: the ``mirror_server`` fixture serves ``tmp_path / "mirror"``; import it
into a test module (``from integration.mirror import mirror_server``) or a conftest.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import pytest

CHUNK = 16 * 1024


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    status: int
    bytes_sent: int
    complete: bool  # False when the body was cut short on purpose


@dataclass
class _Entry:
    method: str
    path: str
    range: str | None
    status: int = 0
    bytes_sent: int = 0
    complete: bool = False


@dataclass
class _Fault:
    kind: str  # "status", "cut", "slow"
    times: int  # how many requests it still applies to (-1: forever)
    status: int = 0
    after: int = 0
    delay: float = 0.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, every
    # keep-alive response after the first stalls ~40 ms on the client's
    # delayed ACK. Real mirrors (nginx: tcp_nodelay) do not stall like that.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the request log is the record."""

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        owner = self.server.owner
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        rng = self.headers.get("Range")
        # logged before anything reaches the client, so a test that has its
        # response also sees the request in the log
        entry = owner._log(self.command, path, rng)
        fault = owner._take_fault(path)
        if fault is not None and fault.kind == "status":
            self._empty(entry, fault.status)
            return
        target = owner._resolve(path)
        if target is None:
            self._empty(entry, 404)
            return
        size = target.stat().st_size
        start, end, status = 0, size - 1, 200
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if m is None or (m.group(1) == "" and m.group(2) == ""):
                self._empty(entry, 416, {"Content-Range": f"bytes */{size}"})
                return
            if m.group(1) == "":  # suffix range: the last N bytes
                start, end = max(0, size - int(m.group(2))), size - 1
            else:
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            if start >= size or start > end:
                self._empty(entry, 416, {"Content-Range": f"bytes */{size}"})
                return
            status = 206
        length = end - start + 1
        owner._update(entry, status=status, complete=head or length == 0)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", self.date_time_string(int(target.stat().st_mtime)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not head:
            self._body(entry, target, start, length, fault)

    def _body(
        self, entry: _Entry, target: Path, start: int, length: int, fault: _Fault | None
    ) -> None:
        owner = self.server.owner
        limit = fault.after if fault is not None and fault.kind == "cut" else length
        delay = fault.delay if fault is not None and fault.kind == "slow" else 0.0
        sent = 0
        with target.open("rb") as f:
            f.seek(start)
            while sent < min(length, limit):
                data = f.read(min(CHUNK, length - sent, limit - sent))
                if not data:
                    break
                done = sent + len(data) >= length
                owner._update(entry, bytes_sent=sent + len(data), complete=done)
                try:
                    self.wfile.write(data)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    owner._update(entry, bytes_sent=sent, complete=False)
                    self.close_connection = True
                    return
                sent += len(data)
                if delay:
                    time.sleep(delay)
        if sent < length:
            self._cut()

    def _cut(self) -> None:
        """Drop the connection mid-body, as a failing network would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def _empty(self, entry: _Entry, status: int, headers: dict[str, str] | None = None) -> None:
        self.server.owner._update(entry, status=status, complete=True)
        body = f"{status}\n".encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: MirrorServer


class MirrorServer:
    """Serve ``root`` on ``127.0.0.1:<random port>`` from a background thread."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._lock = threading.Lock()
        self._faults: dict[str, list[_Fault]] = {}
        self._log_entries: list[_Entry] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> MirrorServer:
        """Bind a free port and start serving."""
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="mirror", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port."""
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL without a trailing slash, e.g. ``http://127.0.0.1:41234``."""
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ faults
    def _add(self, path: str, fault: _Fault) -> None:
        with self._lock:
            self._faults.setdefault(_norm(path), []).append(fault)

    def fail(self, path: str, status: int = 500, times: int = 1) -> None:
        """Answer ``status`` (e.g. 404, 500, 503) to the next ``times`` requests
        (``times=-1``: always), then serve normally."""
        self._add(path, _Fault("status", times, status=status))

    def not_found(self, path: str) -> None:
        """Always answer 404 for ``path`` even if the file exists."""
        self.fail(path, 404, times=-1)

    def cut(self, path: str, after: int, times: int = 1) -> None:
        """Send headers for the whole body but drop the connection after ``after`` bytes."""
        self._add(path, _Fault("cut", times, after=after))

    def slow(self, path: str, delay: float = 0.05, times: int = -1) -> None:
        """Sleep ``delay`` seconds after every 16 KiB chunk."""
        self._add(path, _Fault("slow", times, delay=delay))

    def clear_faults(self) -> None:
        """Forget every fault."""
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(path, [])
            while queue:
                f = queue[0]
                if f.times == 0:
                    queue.pop(0)
                    continue
                if f.times > 0:
                    f.times -= 1
                return f
            return None

    # ------------------------------------------------------------ files and log
    def _resolve(self, path: str) -> Path | None:
        rel = path.lstrip("/")
        candidate = (self.root / rel).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    def _log(self, method: str, path: str, rng: str | None) -> _Entry:
        entry = _Entry(method, path, rng)
        with self._lock:
            self._log_entries.append(entry)
        return entry

    def _update(self, entry: _Entry, **changes: object) -> None:
        with self._lock:
            for k, v in changes.items():
                setattr(entry, k, v)

    @property
    def log(self) -> list[Request]:
        """A snapshot of the request log, oldest first."""
        with self._lock:
            return [
                Request(e.method, e.path, e.range, e.status, e.bytes_sent, e.complete)
                for e in self._log_entries
            ]

    def requests_for(self, path_or_suffix: str) -> list[Request]:
        """Logged requests whose path equals, or ends with, the argument."""
        return [r for r in self.log if r.path == path_or_suffix or r.path.endswith(path_or_suffix)]

    def count(self, path_or_suffix: str) -> int:
        """How many requests reached ``path_or_suffix`` (any method, any status)."""
        return len(self.requests_for(path_or_suffix))

    def reset_log(self) -> None:
        """Forget the logged requests."""
        with self._lock:
            self._log_entries.clear()


def _norm(path: str) -> str:
    return "/" + path.lstrip("/")


@contextlib.contextmanager
def serve(root: Path) -> Iterator[MirrorServer]:
    """Context manager: a started :class:`MirrorServer` for ``root``."""
    srv = MirrorServer(root).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def mirror_server(tmp_path: Path) -> Iterator[MirrorServer]:
    """A started server for ``tmp_path / "mirror"`` (created empty); stopped after the test."""
    root = tmp_path / "mirror"
    root.mkdir(exist_ok=True)
    with serve(root) as srv:
        yield srv
