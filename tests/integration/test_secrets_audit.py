"""The secrets audit: after a real build, every file that holds a secret is 0600 in a 0700 folder,
and no secret appears in ``--json``, the build logs or build-info.

The site has every kind of secret: the CA key and its passphrase, router and
device keys, PKCS#12 files and their passwords, EAP passwords, the
``.mobileconfig`` that embeds a PKCS#12 password. A file holds a secret when
its bytes contain one (read from the PKI) or when it is an image, an overlay
or a PKCS#12 (which carry keys in compressed or encrypted form). The rule
about *displaying* a newly generated secret on a terminal is tested with
the commands that display them.
"""

from __future__ import annotations

import base64
import json
import re
import stat
from pathlib import Path

import pytest

import sitefile
from imagebuilder_double.fixtures import ServedMirror, served_mirror  # noqa: F401
from owrtcli import OWRT_ENV, CliRunner

pytestmark = pytest.mark.integration

USERS = [
    sitefile.user("alice", [("phone", "ios"), ("laptop", "linux"), ("pc", "windows")]),
    sitefile.user("bob", [("tablet", "android")], auth="eap-mschapv2"),
    sitefile.user("erin", [("mac", "macos")], auth="eap-tls"),
]
# Files that carry key material without it showing as bytes (compressed, encrypted).
OPAQUE = re.compile(r"\.(trx|bin|img|itb|gz|tar|p12|key)$")


def _secrets(pki: Path) -> set[bytes]:
    """Every secret value the PKI holds, as bytes to search for."""
    out = {OWRT_ENV["OWRT_VPN_CA_PASSPHRASE"].encode()}
    for path in pki.rglob("*"):
        if path.name.endswith(".password"):
            out.add(path.read_bytes().strip())
        elif path.suffix == ".p12":
            # Embedded as base64 (.ps1, .sswan, .mobileconfig): an encrypted key is key material.
            out.add(base64.b64encode(path.read_bytes())[:40])
        elif path.suffix == ".key":
            # A line from inside the PEM body: it shows wherever the key is copied.
            body = [ln for ln in path.read_bytes().splitlines() if not ln.startswith(b"-----")]
            out.add(body[1])
    assert all(len(s) >= 8 for s in out)
    return out


def test_secrets_at_rest_and_in_outputs(
    tmp_path: Path,
    cli: CliRunner,
    served_mirror: ServedMirror,  # noqa: F811
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    env = {"OWRT_VPN_CACHE": str(site / ".cache"), "OWRT_VPN_KEYS_DIR": str(tmp_path / "keys")}
    (site / "owrt-vpn.toml").write_text(sitefile.site(users=USERS))
    proc = cli("build", "--json", "--mirror", served_mirror.url, "--trust-key",
               served_mirror.key.public, cwd=site, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    secrets = _secrets(site / "pki")
    assert len(secrets) >= 10

    # 1. none in --json, the logs, build-info
    outputs = {"--json": proc.stdout.encode()}
    outputs |= {str(p): p.read_bytes() for p in site.glob("dist/*/logs/*.log")}
    outputs |= {str(p): p.read_bytes() for p in site.rglob("build-info.json")}
    assert len(outputs) >= 3
    for where, data in outputs.items():
        leaked = [s[:4] + b"..." for s in secrets if s in data]
        assert not leaked, f"{where} shows secrets {leaked}"

    # 2. every file holding one: 0600 in a 0700 folder
    holders = []
    for path in sorted(p for p in site.rglob("*") if p.is_file() and not p.is_symlink()):
        data = path.read_bytes()
        if OPAQUE.search(path.name) or any(s in data for s in secrets):
            holders.append(path)
    names = {p.name for p in holders}
    wanted = {"ca.key", "gw.key", "overlay.tar", "bob.password", "phone.p12", "pc-windows.ps1"}
    assert wanted <= names, wanted - names
    assert any(n.endswith(".mobileconfig") for n in names), sorted(names)
    assert any(n.endswith(".ps1") for n in names), names
    loose = []
    for path in holders:
        mode = stat.S_IMODE(path.stat().st_mode)
        folder = stat.S_IMODE(path.parent.stat().st_mode)
        if mode != 0o600 or folder != 0o700:
            loose.append(f"{path.relative_to(site)} {mode:04o} in {folder:04o}")
    assert not loose, "\n".join(loose)
    # The build's JSON is well-formed and names what it built.
    assert json.loads(proc.stdout)["ok"] is True
