"""Verified downloads into the cache against a real HTTP server on loopback, with faults."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from owrt_vpn.errors import EXIT_INTEGRITY, DownloadError, IntegrityError
from owrt_vpn.imagebuilder.cache import Cache, RetryPolicy, Transport, sha256_file

PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
NAME = "openwrt-imagebuilder-24.10.2-bcm53xx-generic.Linux-x86_64.tar.zst"


@dataclass
class Faults:
    """What the server does wrong, consumed request by request."""

    status: list[int] = field(default_factory=list)  # statuses to answer first
    cut_after: list[int] = field(default_factory=list)  # close after N body bytes
    body: bytes = PAYLOAD
    slow: float = 0.0  # seconds between 64 KiB chunks
    ranges: bool = True
    length: bool = True  # send Content-Length (else: the body ends when the connection closes)


@dataclass
class Server:
    url: str
    faults: Faults
    requests: list[dict[str, str]]


@pytest.fixture
def server() -> Iterator[Server]:
    faults = Faults()
    log: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            log.append({"path": self.path, "range": self.headers.get("Range", "")})
            if faults.status:
                code = faults.status.pop(0)
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path != f"/{NAME}":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body, start = faults.body, 0
            rng = self.headers.get("Range", "")
            if rng and faults.ranges:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            if faults.length:
                self.send_header("Content-Length", str(len(body) - start))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.send_header("ETag", '"v1"')
            self.end_headers()
            cut = faults.cut_after.pop(0) if faults.cut_after else None
            sent, pos = 0, start
            while pos < len(body):
                chunk = body[pos : pos + 65536]
                if cut is not None and sent + len(chunk) > cut:
                    self.wfile.write(chunk[: cut - sent])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)
                sent += len(chunk)
                pos += len(chunk)
                if faults.slow:
                    time.sleep(faults.slow)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", faults, log)
    finally:
        httpd.shutdown()
        httpd.server_close()


FAST = Transport(RetryPolicy(attempts=4, base_delay=0.05))


def assert_clean_cache(cache: Cache, expect_archive: bool) -> None:
    """archives/ holds only verified files; no partial download is left."""
    archives = (
        list((cache.root / "archives").glob("*/*")) if (cache.root / "archives").exists() else []
    )
    for a in archives:
        assert sha256_file(a) == a.parent.name, f"corrupt cache entry {a}"
    assert bool(archives) == expect_archive
    partial = cache.root / "partial"
    assert not partial.exists() or list(partial.iterdir()) == []


def test_download_verifies_and_second_fetch_makes_no_request(
    tmp_path: Path, server: Server
) -> None:
    cache = Cache(tmp_path / "c")
    seen: list[tuple[int, int | None]] = []
    path, downloaded = cache.fetch(
        f"{server.url}/{NAME}", SHA, NAME, FAST, lambda d, t: seen.append((d, t))
    )
    assert downloaded and path.read_bytes() == PAYLOAD
    assert path == cache.archive_path(SHA, NAME)
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    n = len(server.requests)
    path2, downloaded2 = cache.fetch(f"{server.url}/{NAME}", SHA, NAME, FAST)
    assert path2 == path and not downloaded2
    assert len(server.requests) == n
    assert_clean_cache(cache, True)


def test_corrupt_cached_copy_is_downloaded_again(tmp_path: Path, server: Server) -> None:
    cache = Cache(tmp_path / "c")
    path, _ = cache.fetch(f"{server.url}/{NAME}", SHA, NAME, FAST)
    path.write_bytes(b"bit rot")
    path2, downloaded = cache.fetch(f"{server.url}/{NAME}", SHA, NAME, FAST)
    assert downloaded and path2.read_bytes() == PAYLOAD
    assert_clean_cache(cache, True)


def test_sha256_mismatch_is_refused_and_not_cached(tmp_path: Path, server: Server) -> None:
    server.faults.body = PAYLOAD[:-1] + b"!"
    cache = Cache(tmp_path / "c")
    with pytest.raises(IntegrityError, match="sha256 mismatch") as exc:
        cache.fetch(f"{server.url}/{NAME}", SHA, NAME, FAST)
    assert exc.value.exit_code == EXIT_INTEGRITY
    assert_clean_cache(cache, False)


def test_404_fails_at_once(tmp_path: Path, server: Server) -> None:
    cache = Cache(tmp_path / "c")
    with pytest.raises(DownloadError, match="HTTP 404"):
        cache.fetch(f"{server.url}/missing.tar.zst", SHA, NAME, FAST)
    assert len(server.requests) == 1
    assert_clean_cache(cache, False)


def test_http_500_then_success_is_retried(tmp_path: Path, server: Server) -> None:
    server.faults.status = [500, 503]
    cache = Cache(tmp_path / "c")
    path, _ = cache.fetch(f"{server.url}/{NAME}", SHA, NAME, FAST)
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 3
    assert_clean_cache(cache, True)


def test_persistent_500_gives_up(tmp_path: Path, server: Server) -> None:
    server.faults.status = [500] * 10
    cache = Cache(tmp_path / "c")
    with pytest.raises(DownloadError, match="after 4 attempts"):
        cache.fetch(f"{server.url}/{NAME}", SHA, NAME, FAST)
    assert_clean_cache(cache, False)


def test_connection_cut_mid_transfer_is_resumed(tmp_path: Path, server: Server) -> None:
    server.faults.cut_after = [1_000_000, 700_000]
    cache = Cache(tmp_path / "c")
    path, _ = cache.fetch(f"{server.url}/{NAME}", SHA, NAME, FAST)
    assert path.read_bytes() == PAYLOAD
    ranges = [r["range"] for r in server.requests]
    assert len(ranges) == 3 and ranges[0] == ""
    # Resumed where the data on disk ends (whole read chunks before the cut).
    first, second = (int(r.removeprefix("bytes=").rstrip("-")) for r in ranges[1:])
    assert 900_000 < first <= 1_000_000
    assert first + 600_000 < second <= first + 700_000
    assert_clean_cache(cache, True)


def test_server_without_range_support_restarts(tmp_path: Path, server: Server) -> None:
    server.faults.cut_after = [1_000_000]
    server.faults.ranges = False
    cache = Cache(tmp_path / "c")
    path, _ = cache.fetch(f"{server.url}/{NAME}", SHA, NAME, FAST)
    assert path.read_bytes() == PAYLOAD
    assert_clean_cache(cache, True)


def test_no_resume_promise_when_the_server_ignores_ranges(tmp_path: Path, server: Server) -> None:
    server.faults.cut_after = [1_000_000] * 10
    server.faults.ranges = False
    with pytest.raises(DownloadError) as exc:
        Cache(tmp_path / "c").fetch(f"{server.url}/{NAME}", SHA, NAME, FAST)
    assert "resumes" not in (exc.value.hint or "")
    assert "ignores Range requests" in (exc.value.hint or "")


def test_get_bytes_from_directory_mirror(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello")
    assert FAST.get_bytes(str(tmp_path / "f")) == b"hello"
    assert FAST.get_bytes(f"file://{tmp_path}/f") == b"hello"
    with pytest.raises(DownloadError, match="not found"):
        FAST.get_bytes(str(tmp_path / "nope"))


def test_archive_from_directory_mirror(tmp_path: Path) -> None:
    src = tmp_path / "mirror" / NAME
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    cache = Cache(tmp_path / "c")
    path, downloaded = cache.fetch(str(src), SHA, NAME, FAST)
    assert downloaded and path.read_bytes() == PAYLOAD
    src.write_bytes(b"changed")
    cache2 = Cache(tmp_path / "c2")
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        cache2.fetch(str(src), SHA, NAME, FAST)
    assert_clean_cache(cache2, False)


FETCH_SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from owrt_vpn.imagebuilder.cache import Cache, Transport
    path, _ = Cache(Path(sys.argv[1])).fetch(sys.argv[2], sys.argv[3], sys.argv[4], Transport())
    print(path)
    """
)


def test_process_killed_mid_download_then_rerun_resumes(tmp_path: Path, server: Server) -> None:
    server.faults.slow = 0.02  # ~3 MiB/s: slow enough to kill it midway
    cache_dir = tmp_path / "c"
    argv = [sys.executable, "-c", FETCH_SCRIPT, str(cache_dir), f"{server.url}/{NAME}", SHA, NAME]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part = Cache(cache_dir).part_path(SHA)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if part.exists() and part.stat().st_size > 500_000:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the download never started")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    have = part.stat().st_size
    assert 0 < have < len(PAYLOAD)
    assert not (cache_dir / "archives").exists() or not list((cache_dir / "archives").glob("*/*"))
    server.faults.slow = 0.0
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60)
    path = Path(out.stdout.strip())
    assert path.read_bytes() == PAYLOAD
    resumed = server.requests[-1]["range"]
    assert resumed.startswith("bytes=") and int(resumed[6:-1]) >= have
    assert_clean_cache(Cache(cache_dir), True)


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "no-length"])
def test_an_archive_larger_than_the_cap_is_refused_as_it_arrives(
    tmp_path: Path, server: Server, length: bool
) -> None:
    """A mirror must not fill the disk: an endless or huge answer stops at the cap."""
    transport = Transport(RetryPolicy(attempts=1))
    transport.max_archive = len(PAYLOAD) - 1
    server.faults.length = length  # without it, only the bytes arriving tell
    cache = Cache(tmp_path / "c")
    with pytest.raises(IntegrityError, match=r"larger than \d+ MiB, refused") as exc:
        cache.fetch(f"{server.url}/{NAME}", SHA, NAME, transport)
    assert exc.value.exit_code == EXIT_INTEGRITY
    assert_clean_cache(cache, False)
    assert not (cache.root / "partial").exists() or not list((cache.root / "partial").iterdir())


def test_an_index_larger_than_the_cap_is_refused(server: Server) -> None:
    transport = Transport(RetryPolicy(attempts=1))
    assert transport.get_bytes(f"{server.url}/{NAME}", "sha256sums") == PAYLOAD
    transport.max_small = 1 << 20
    for length in (True, False):
        server.faults.length = length
        with pytest.raises(IntegrityError, match=r"^sha256sums: larger than 1 MiB, refused"):
            transport.get_bytes(f"{server.url}/{NAME}", "sha256sums")
