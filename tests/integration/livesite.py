"""A site whose routers are live test routers (liverouter.py), and the real CLI run on it.

:class:`LiveSite` writes the site file (routers at the live routers'
management addresses), runs ``owrt-vpn`` on the host (PKI, users) or in the
management namespace (push, status, doctor: they need to reach the routers),
"flashes" a live router with what a build of the site would bake (the
rendered overlay and a build-info carrying router, site, release, config
style and package list) and makes road-warrior client profiles.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sitefile
from owrtcli import cli_env, owrt_argv, run_owrt

from .charon import ClientProfile, debian_load_list
from .liverouter import ROUTER_WAN, LiveLab, LiveRouter, sha256

FIRMWARE_REVISION = "r28739-d9340319c6"
LIVE_ENV = {"OWRT_VPN_CA_PASSPHRASE": "live-test-passphrase"}


@dataclass
class LiveSite:
    """A site directory (site file, PKI, dist) for live routers; runs the real CLI."""

    dir: Path
    live: LiveLab
    name: str = "live"
    server_key: str = "ecdsa-p256"

    @property
    def path(self) -> Path:
        """The site file."""
        return self.dir / "owrt-vpn.toml"

    def write(
        self, routers: dict[str, LiveRouter | str], users: Iterable[str], **settings: object
    ) -> None:
        """The site file: ``routers`` maps router names to live routers (or addresses);
        ``users`` are sitefile.user() tables; ``settings`` go to ``[site]``."""
        management = {
            "identity_file": str(self.live.ssh_lab.client_key),
            "known_hosts": "known_hosts",
        }
        site_routers = [
            sitefile.router(
                name,
                server_id=f"{name}.vpn.example",
                subtarget="generic",
                lan=["10.77.0.0/24"],
                pool="10.78.0.0/24",
                dns=["10.77.0.10"],
                management={"address": r if isinstance(r, str) else r.router.address, **management},
            )
            for name, r in routers.items()
        ]
        text = sitefile.site(
            self.name,
            organization="Live Test",
            shared_identity=f"{self.name}Clients",
            server_key=self.server_key,
            **settings,
            routers=site_routers,
            users=users,
        )
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path.write_text(text)
        (self.dir / "known_hosts").write_text(self.live.ssh_lab.known_hosts())

    def env(self) -> dict[str, str]:
        """The CLI's environment (owrtcli's, with this site's CA passphrase)."""
        return cli_env(LIVE_ENV)

    def owrt(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """``owrt-vpn --site FILE ARGS`` on the host (PKI and user commands); must succeed."""
        argv = ("--site", self.path, *args)
        return run_owrt(*argv, cwd=self.dir, env=LIVE_ENV, input=input, check=True, timeout=120)

    def cli(self, *args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], Any]:
        """``owrt-vpn --json ARGS`` in the management namespace; (process, parsed JSON)."""
        argv = owrt_argv("--site", self.path, "--json", *args)
        proc = self.live.ssh_lab.run_in_mgmt(argv, env=self.env(), cwd=self.dir, timeout=timeout)
        return proc, _document(proc, args)

    def cli_ctrl_c(
        self, *args: str, when: Callable[[], bool]
    ) -> tuple[subprocess.CompletedProcess[str], Any]:
        """:meth:`cli`, with Ctrl-C pressed once ``when()`` holds (see SshLab.ctrl_c_in_mgmt)."""
        argv = owrt_argv("--site", self.path, "--json", *args)
        proc = self.live.ssh_lab.ctrl_c_in_mgmt(argv, when=when, env=self.env(), cwd=self.dir)
        return proc, _document(proc, args)

    def text(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``owrt-vpn ARGS`` (human output) in the management namespace."""
        argv = owrt_argv("--site", self.path, *args)
        return self.live.ssh_lab.run_in_mgmt(argv, env=self.env(), cwd=self.dir, timeout=timeout)

    def load(self) -> tuple[Any, Any]:
        """(site, pki) as the library sees them now."""
        from owrt_vpn.pki.authority import Pki
        from owrt_vpn.site.load import load_site

        site = load_site(self.path)
        return site, Pki.open(site)

    def flash(self, lr: LiveRouter, router: str, *, dist: bool = True) -> dict[str, Any]:
        """Build-equivalent for ``router`` (render + build-info) installed on ``lr``.

        The build-info carries what a build records and push/status read:
        router, site, release, config style, the package list. With ``dist``
        the same build-info (plus an image entry) is written where ``build``
        puts it, as the "last build".
        """
        from owrt_vpn import profiles
        from owrt_vpn.render import overlay, packages

        site, pki = self.load()
        r = site.router(router)
        pki.ensure_router(site, r)
        tree = self.dir / "work" / f"overlay-{router}-{time.monotonic_ns()}"
        overlay.render(site, r, pki, tree)
        wanted = packages.package_list(site, r)
        info: dict[str, Any] = {
            "format": 1,
            "router": router,
            "site": {"name": self.name, "file": "owrt-vpn.toml"},
            "release": {"version": r.release, "revision": FIRMWARE_REVISION},
            "target": "bcm53xx",
            "subtarget": "generic",
            "config_style": "swanctl",
            "packages": {"requested": wanted, "installed": {p: "1" for p in wanted}},
            "overlay": {"sha256": sha256(router.encode())},
        }
        load = debian_load_list(
            packages.charon_plugins(site, r), strongswan=profiles.release_info(r.release).strongswan
        )
        lr.flash(tree, info, load=load)
        if dist:
            d = self.dir / "dist" / self.name / "routers" / router
            d.mkdir(parents=True, exist_ok=True)
            image = {"name": f"{router}.trx", "type": "trx", "sha256": sha256(b"image")}
            (d / "build-info.json").write_text(json.dumps({**info, "images": [image]}))
        return info

    def profile(
        self,
        lr: LiveRouter,
        router: str,
        user: str,
        device: str | None,
        auth: str = "pubkey",
        *,
        eap_secret: str | None = None,
        local_id: str | None = None,
    ) -> ClientProfile:
        """A client profile for ``user``/``device`` dialling ``router`` on ``lr``."""
        _, pki = self.load()
        pki_dir = self.dir / "pki"
        cert = key = None
        if auth in ("pubkey", "eap-tls", "pubkey+eap-mschapv2"):
            assert device is not None
            # Read from the PKI directory: the API refuses revoked devices' files.
            cert = (pki_dir / "clients" / user / f"{device}.crt").read_bytes()
            key = (pki_dir / "clients" / user / f"{device}.key").read_bytes()
        eap_id = user if "mschapv2" in auth else None
        if eap_id and eap_secret is None:
            eap_secret = (pki_dir / "eap" / f"{user}.password").read_text().rstrip("\n")
        if local_id is None:
            local_id = f"{user}+{device}@{self.name}" if device and auth != "eap-mschapv2" else user
        return ClientProfile(
            name=f"{user}-{device or 'eap'}-{len(lr.clients)}",
            auth=auth,
            local_id=local_id,
            remote_addr=ROUTER_WAN,
            remote_id=f"{router}.vpn.example",
            ca_pem=pki.ca_cert_pem(),
            cert_pem=cert,
            key_pem=key,
            eap_id=eap_id,
            eap_secret=eap_secret,
        )


def _document(proc: subprocess.CompletedProcess[str], args: tuple[str, ...]) -> Any:
    """The --json document a run printed, checked against its documented schema."""
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"no JSON from {args} (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        ) from None
    name = {"push": "push", "status": "status", "doctor": "doctor-router"}.get(args[0])
    if name is not None:
        validate(name, data)
    return data


SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "json"


def validate(name: str, document: Any) -> None:
    """Check a --json document against docs/json/<name>.schema.json (every error listed)."""
    import jsonschema

    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == [], f"{name} output does not match its schema:\n" + "\n".join(errors)
