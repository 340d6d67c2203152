"""`owrt-vpn share USER/DEVICE`: the real CLI serving on loopback, fetched by a real HTTP client.

The link works once (HEAD and other paths do not use it up), expires, carries the
platform's content type, and what it serves holds no password.
"""

from __future__ import annotations

import http.client
import io
import json
import plistlib
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import IO, Any

import pytest

import sitefile
from owrtcli import cli_env, owrt_argv, run_owrt
from requires import require

from .conftest import NAMESPACES
from .netns import Namespace, run_prefix

pytestmark = pytest.mark.integration

USERS = [
    sitefile.user("alice", [("phone", "ios"), ("laptop", "windows"), ("mac", "macos")]),
    sitefile.user("bob", [("phone", "android-strongswan")], auth="eap-mschapv2"),
]


@pytest.fixture(scope="module")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site whose bundles `owrt-vpn bundle` wrote."""
    site = tmp_path_factory.mktemp("share")
    (site / "owrt-vpn.toml").write_text(sitefile.site(users=USERS))
    run_owrt("bundle", "--password-file", "../passwords.txt", cwd=site, check=True)
    return site


class Share:
    """A running `owrt-vpn share`, its link read from its output."""

    def __init__(self, site: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            owrt_argv("share", *args, "--listen", "127.0.0.1"),
            cwd=site, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.head = self.proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/\S+", self.head)
        assert found, self.head + self.rest()
        self.url = found.group(0)

    def rest(self) -> str:
        """The rest of the output once the command ended.

        Read through the text streams: ``communicate()`` would read the pipes
        beneath them and lose what ``readline()`` has already buffered.
        """
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.wait(timeout=30)  # its output is a few lines: no pipe fills up
        return self.proc.stdout.read() + self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def share(bundled: Path) -> Iterator[type[Share]]:
    started: list[Share] = []

    class Started(Share):
        def __init__(self, *args: str) -> None:
            super().__init__(bundled, *args)
            started.append(self)

    yield Started
    for s in started:
        s.close()


def fetch(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    """(status, content type, body) of a real HTTP request."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            body: IO[bytes] = resp
            return resp.status, resp.headers.get("Content-Type", ""), body.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), b""


def secrets_of(site: Path) -> list[str]:
    text = (site.parent / "passwords.txt").read_text()
    return [line.split("\t")[2] for line in text.splitlines() if not line.startswith("#")]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_ios_profile_once_without_its_password(share: type[Share], bundled: Path) -> None:
    dist = snapshot(bundled / "dist")
    s = share("alice/phone")
    # A fresh random path per share: 128 bits, URL-safe base64 (22 characters).
    other = share("alice/phone")
    token, other_token = s.url.split("/")[3], other.url.split("/")[3]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", token) and token != other_token
    other.close()
    # Link previews and probes of other paths get nothing and leave the link alone.
    base = s.url.rsplit("/", 2)[0]
    assert fetch(base + "/")[0] == 404
    assert fetch(base + "/phone.mobileconfig")[0] == 404
    assert fetch(s.url + "x")[0] == 404
    assert fetch(s.url, "POST")[0] == 405
    status, ctype, body = fetch(s.url, "HEAD")
    assert (status, ctype, body) == (200, "application/x-apple-aspen-config", b"")
    status, ctype, body = fetch(s.url)
    assert (status, ctype) == (200, "application/x-apple-aspen-config")
    out = s.rest()
    assert s.proc.returncode == 0, out
    assert "served phone.mobileconfig to 127.0.0.1; the link is used up" in out
    assert "(works once, for 300 s)" in out  # the default expiry: five minutes
    # The link as a QR code to scan: the very drawing segno makes of this URL.
    import segno

    qr = io.StringIO()
    segno.make(s.url, error="m").terminal(out=qr, compact=True)
    assert len(qr.getvalue().splitlines()) > 10 and qr.getvalue() in out
    assert "asks for the certificate password" in s.head + out
    # Used up: nothing listens any more.
    with pytest.raises(urllib.error.URLError):
        fetch(s.url)
    # The served profile is the recorded one minus the PKCS#12 password, which it
    # does not hold; the PKCS#12 opens with the password the admin reads out.
    password = (bundled / "pki/clients/alice/phone.p12.password").read_text().strip()
    assert len(password) >= 16 and password.encode() not in body
    for secret in secrets_of(bundled):
        assert secret.encode() not in body
    served = plistlib.loads(body)
    recorded = plistlib.loads((bundled / "dist/home/clients/alice/phone.mobileconfig").read_bytes())
    (p12,) = [p for p in served["PayloadContent"] if p["PayloadType"].endswith("pkcs12")]
    assert "Password" not in p12
    (kept,) = [p for p in recorded["PayloadContent"] if p["PayloadType"].endswith("pkcs12")]
    assert kept.pop("Password") == password and kept == p12
    from cryptography.hazmat.primitives.serialization import pkcs12

    key, cert, _ = pkcs12.load_key_and_certificates(p12["PayloadContent"], password.encode())
    assert key is not None and cert is not None
    # Nothing of the served variant is recorded: dist/ is as `bundle` left it.
    assert snapshot(bundled / "dist") == dist


def test_strongswan_app_and_zip_content_types(share: type[Share], bundled: Path) -> None:
    s = share("bob/phone")
    status, ctype, body = fetch(s.url)
    assert (status, ctype) == (200, "application/vnd.strongswan.profile")
    assert json.loads(body)["remote"]["addr"] == "vpn.example.org"
    for secret in secrets_of(bundled):
        assert secret.encode() not in body
    assert "EAP password" in s.head + s.rest() and s.proc.returncode == 0
    s = share("alice/laptop")
    status, ctype, body = fetch(s.url)
    assert (status, ctype) == (200, "application/zip")
    assert body == (bundled / "dist/home/clients/alice/alice-laptop.zip").read_bytes()
    zipped = zipfile.ZipFile(BytesIO(body))
    assert "alice-laptop/README.md" in zipped.namelist()
    for name in zipped.namelist():  # compressed: look inside every member
        member = zipped.read(name)
        assert not any(secret.encode() in member for secret in secrets_of(bundled)), name
    assert s.rest() and s.proc.returncode == 0
    s = share("alice/mac")
    status, ctype, body = fetch(s.url)
    assert (status, ctype) == (200, "application/x-apple-aspen-config")
    assert not any(secret.encode() in body for secret in secrets_of(bundled))
    payloads = plistlib.loads(body)["PayloadContent"]
    (p12,) = [p for p in payloads if p["PayloadType"].endswith("pkcs12")]
    assert "Password" not in p12
    assert "asks for the certificate password" in s.head + s.rest() and s.proc.returncode == 0


class UnbufferedResponse(http.client.HTTPResponse):
    """An http.client response that reads the socket directly, without a read-ahead
    buffer: what the test does not read stays unread (in the kernel), whatever the
    size of the file, as in a download stopped half-way."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp.close()  # nothing read through it yet
        self.fp = sock.makefile("rb", buffering=0)


def test_an_aborted_download_leaves_the_link_valid(share: type[Share], bundled: Path) -> None:
    """A client that reads part of the body and hangs up has not used the link up."""
    recorded = (bundled / "dist/home/clients/alice/alice-laptop.zip").read_bytes()
    s = share("alice/laptop")
    address, path = s.url.removeprefix("http://").split("/", 1)
    host, port = address.split(":")
    for _ in range(2):  # twice: the server is still there after the first one
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.response_class = UnbufferedResponse
        conn.request("GET", "/" + path)
        resp = conn.getresponse()
        assert resp.status == 200
        part = resp.read(100)
        assert len(part) == 100 and int(resp.headers["Content-Length"]) == len(recorded) > 100
        # Hang up with the rest unread (the response holds the socket with
        # "Connection: close"): the client's kernel resets the connection.
        resp.close()
        conn.close()
        assert s.proc.poll() is None
    status, _, body = fetch(s.url)
    assert status == 200 and body == recorded
    out = s.rest()
    assert s.proc.returncode == 0, out
    assert "served alice-laptop.zip to 127.0.0.1; the link is used up" in out
    with pytest.raises(urllib.error.URLError):
        fetch(s.url)


def test_link_expires(share: type[Share]) -> None:
    s = share("alice/phone", "--expires", "1")
    time.sleep(1.5)
    out = s.rest()
    assert s.proc.returncode == 1, out
    assert "error: share: the link expired after 1 s; nothing was served" in out
    with pytest.raises(urllib.error.URLError):
        fetch(s.url)


def test_refuses_short_p12_passwords_and_bad_targets(bundled: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    import shutil

    shutil.copytree(bundled, site)
    (site / "pki/clients/alice/phone.p12.password").write_text("fifteen-chars-x\n")
    proc = run_owrt("share", "alice/phone", "--listen", "127.0.0.1", cwd=site)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        "error: share: alice/phone: the PKCS#12 password has 15 characters, fewer than 16: "
        "what share serves over plain HTTP can be attacked offline"
    )
    assert "http://" not in proc.stdout
    proc = run_owrt("share", "alice/tablet", "--listen", "127.0.0.1", cwd=site)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        "error: owrt-vpn.toml: users[alice].devices: user 'alice' has no device 'tablet'"
    )
    proc = run_owrt("share", "alice", cwd=site)
    assert proc.returncode == 2 and "'alice' is not USER/DEVICE" in proc.stderr


def test_json_result_with_the_link_on_stderr(bundled: Path) -> None:
    proc = subprocess.Popen(
        owrt_argv("--json", "share", "alice/laptop", "--listen", "127.0.0.1"),
        cwd=bundled, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        found = re.search(r"http://127\.0\.0\.1:\d+/\S+", proc.stderr.readline())
        assert found
        assert fetch(found.group(0))[0] == 200
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    doc = json.loads(out)
    assert proc.returncode == 0
    assert (doc["status"], doc["client"], doc["content_type"]) == (
        "served", "127.0.0.1", "application/zip",
    )  # fmt: skip
    assert not any(s in out for s in secrets_of(bundled))


def test_listens_on_the_default_route_address_only(bundled: Path) -> None:
    """Without --listen: the address of the default route's interface, not every address;
    without a default route, a usage error that names --listen."""
    require("ip", "ss", root=NAMESPACES)
    ns = Namespace(f"{run_prefix()}-share")
    ns.create()
    try:
        proc = subprocess.run(
            ns.argv(owrt_argv("share", "alice/laptop")),
            cwd=bundled, env=cli_env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [
            "error: share: no default route to find this host's address",
            "hint: pass --listen ADDRESS",
        ]
        # Both ends of a veth pair stay in the namespace: an uplink with a default route.
        ns.ip("link", "add", "uplink", "type", "veth", "peer", "name", "far")
        ns.ip("link", "set", "far", "up")
        ns.ip("addr", "add", "198.51.100.7/24", "dev", "uplink")
        ns.ip("addr", "add", "198.51.100.8/24", "dev", "uplink")  # a second one: not used
        ns.ip("link", "set", "uplink", "up")
        ns.ip("route", "add", "default", "via", "198.51.100.1")
        server = subprocess.Popen(
            ns.argv(owrt_argv("share", "alice/laptop")),
            cwd=bundled, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            found = re.search(r"http://198\.51\.100\.7:(\d+)/\S+", server.stdout.readline())
            assert found, server.stdout.read()
            # The one listening socket of the namespace: that address, that port.
            listening = [line.split()[3] for line in ns.run("ss", "-Hltn").stdout.splitlines()]
            assert listening == [f"198.51.100.7:{found.group(1)}"], listening
            get = ns.run(sys.executable, "-c", FETCH, found.group(0))
            size = (bundled / "dist/home/clients/alice/alice-laptop.zip").stat().st_size
            assert get.stdout.split() == ["200", str(size)]
            server.wait(timeout=30)
            assert server.returncode == 0
        finally:
            if server.poll() is None:
                server.kill()
            server.communicate()
    finally:
        ns.delete()


# A whole download (status and the body's length): only that uses the link up.
FETCH = (
    "import sys, urllib.request\n"
    "with urllib.request.urlopen(sys.argv[1], timeout=10) as r:\n"
    "    print(r.status, len(r.read()))"
)
