"""Linux: a NetworkManager keyfile for the strongSwan plugin, and a swanctl.conf.

- ``<device>.nmconnection`` (one per router) for NetworkManager's strongSwan
  plugin (charon-nm). It cannot read PKCS#12, so the bundle carries the
  certificate (``<device>.crt``) and the key as a separate PEM
  (``<device>.key``), encrypted with the PKCS#12 password; NetworkManager
  asks for that password as the key's password. Not generated for
  ``pubkey+eap-mschapv2``: the plugin has no second authentication round.
- ``<device>-swanctl.conf`` for charon/swanctl users: one connection per
  router; the key and CA are looked up in swanctl's ``private/`` and
  ``x509ca/`` folders, where the README says to put them. Secrets (the key
  password, the EAP password) are not in it: swanctl asks for the key
  password, the EAP password goes into a separate file the README describes.

The file paths in the keyfile point to ``/etc/owrt-vpn/<site>/`` (see
:data:`INSTALL_DIR`), where the README's commands install the files.
"""

from __future__ import annotations

from owrt_vpn.bundles.common import BundleFile, DeviceContext, RouterProfile, render
from owrt_vpn.bundles.pkcs8 import encrypt_pkcs8_pem

INSTALL_DIR = "/etc/owrt-vpn"

NM_METHOD = {"pubkey": "key", "eap-tls": "eap-tls", "eap-mschapv2": "eap"}


def install_dir(ctx: DeviceContext) -> str:
    """Where the README installs the files NetworkManager reads."""
    return f"{INSTALL_DIR}/{ctx.site.name}"


def swanctl_name(ctx: DeviceContext, what: str) -> str:
    """Unique file names for swanctl's credential folders (several sites may share them)."""
    return f"{ctx.site.name}-{ctx.user.name}-{ctx.stem}{what}"


def _escape(value: str) -> str:
    """A strongswan.conf/swanctl.conf value: quoted when it has anything but safe characters."""
    if value and all(c.isalnum() or c in "._-@+:/,=" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _nm_value(value: str) -> str:
    r"""A keyfile value (GLib key file escapes: \\ \n \t \r and leading spaces)."""
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return "\\s" + out[1:] if out.startswith(" ") else out


def nmconnection(ctx: DeviceContext, prof: RouterProfile) -> bytes:
    """The NetworkManager keyfile of one router."""
    base = install_dir(ctx)
    vpn: list[tuple[str, str]] = [
        ("address", prof.server),
        ("certificate", f"{base}/ca.pem"),
        ("encap", "no"),
        ("ipcomp", "no"),
        ("method", NM_METHOD[ctx.auth]),
        ("proposal", "yes"),
        ("ike", prof.proposal.ike),
        ("esp", prof.proposal.esp),
        ("remote-identity", prof.remote_id),
        ("virtual", "yes"),
        # 1 = agent-owned: the desktop asks once and keeps it in the keyring.
        ("password-flags", "1"),
        ("service-type", "org.freedesktop.NetworkManager.strongswan"),
    ]
    if ctx.creds is not None:
        vpn += [
            ("usercert", f"{base}/{ctx.stem}.crt"),
            ("userkey", f"{base}/{ctx.stem}.key"),
            ("local-identity", ctx.identity),
        ]
    else:
        vpn.append(("user", ctx.eap_id or ""))
    lines = [
        "[connection]",
        f"id={_nm_value(prof.display)}",
        f"uuid={ctx.uuid('nm', prof.router.name).lower()}",
        "type=vpn",
        "autoconnect=false",
        "",
        "[vpn]",
        *(f"{k}={_nm_value(v)}" for k, v in sorted(vpn)),
        "",
        "[ipv4]",
        "method=auto",
        f"never-default={'false' if prof.full_tunnel else 'true'}",
        "",
        "[ipv6]",
        "addr-gen-mode=default",
        "method=auto" if prof.ipv6 else "method=ignore",
        "",
    ]
    return "\n".join(lines).encode()


def _conn_block(ctx: DeviceContext, prof: RouterProfile) -> list[str]:
    # Ask for a virtual IP of each family the router hands out.
    vips = ["0.0.0.0", "::"] if prof.ipv6 else ["0.0.0.0"]  # noqa: S104
    lines = [
        f"   {prof.conn} {{",
        "      version = 2",
        f"      remote_addrs = {_escape(prof.server)}",
        f"      vips = {','.join(vips)}",
        f"      proposals = {prof.proposal.ike}",
        "      fragmentation = yes",
        "      mobike = yes",
        "      dpd_delay = 30s",
        "      send_certreq = yes",
        "      local {",
    ]
    if ctx.auth in ("pubkey", "pubkey+eap-mschapv2"):
        lines += [
            "         auth = pubkey",
            f"         certs = {swanctl_name(ctx, '.crt')}",
            f"         id = {_escape(ctx.identity)}",
            "      }",
        ]
        if ctx.auth == "pubkey+eap-mschapv2":
            lines += [
                "      local-eap {",
                "         auth = eap-mschapv2",
                # The second round's identity is the user name too: without
                # it charon looks the EAP secret up by IP address.
                f"         id = {_escape(ctx.eap_id or '')}",
                f"         eap_id = {_escape(ctx.eap_id or '')}",
                "      }",
            ]
    elif ctx.auth == "eap-tls":
        lines += [
            "         auth = eap-tls",
            f"         certs = {swanctl_name(ctx, '.crt')}",
            f"         id = {_escape(ctx.identity)}",
            "      }",
        ]
    else:
        lines += [
            "         auth = eap-mschapv2",
            f"         id = {_escape(ctx.identity)}",
            f"         eap_id = {_escape(ctx.eap_id or '')}",
            "      }",
        ]
    lines += [
        "      remote {",
        "         auth = pubkey",
        f"         id = {_escape(prof.remote_id)}",
        f"         cacerts = {swanctl_name(ctx, '-ca.pem')}",
        "      }",
        "      children {",
        f"         {prof.conn} {{",
        f"            remote_ts = {','.join(prof.remote_ts)}",
        f"            esp_proposals = {prof.proposal.esp}",
        "            dpd_action = restart",
        "            start_action = none",
        "         }",
        "      }",
        "   }",
    ]
    return lines


def swanctl_conf(ctx: DeviceContext) -> bytes:
    """``<device>-swanctl.conf``: one connection per router (no secrets in it)."""
    head = [
        f"# {ctx.site.name} VPN for {ctx.user.name}/{ctx.device.name} ({ctx.auth}), "
        "written by owrt-vpn.",
        "# Install: see README.md. Start: swanctl --initiate --child <connection name>",
        "connections {",
    ]
    body: list[str] = []
    for prof in ctx.profiles:
        body += _conn_block(ctx, prof)
    return "\n".join([*head, *body, "}", ""]).encode()


def render_device(ctx: DeviceContext) -> list[BundleFile]:
    """Files of a Linux device."""
    files: list[BundleFile] = []
    nm_files = []
    if ctx.auth != "pubkey+eap-mschapv2":
        for prof in ctx.profiles:
            name = ctx.profile_file(prof, ".nmconnection")
            nm_files.append((prof, name))
            files.append(BundleFile(name, nmconnection(ctx, prof)))
    files.append(BundleFile(f"{ctx.stem}-swanctl.conf", swanctl_conf(ctx)))
    if ctx.creds is not None:
        files.append(BundleFile(f"{ctx.stem}.crt", ctx.creds.cert_pem))
        key = encrypt_pkcs8_pem(ctx.creds.key_pem, ctx.creds.p12_password)
        files.append(BundleFile(f"{ctx.stem}.key", key, secret=True))
    values = ctx.template_values() | {
        "nm_files": nm_files,
        "swanctl_file": f"{ctx.stem}-swanctl.conf",
        "install_dir": install_dir(ctx),
        "swanctl_cert": swanctl_name(ctx, ".crt"),
        "swanctl_key": swanctl_name(ctx, ".key"),
        "swanctl_ca": swanctl_name(ctx, "-ca.pem"),
        "swanctl_secrets": swanctl_name(ctx, "-secrets.conf"),
        "swanctl_conf": swanctl_name(ctx, ".conf"),
        "extra_files": [
            *((name, f"NetworkManager connection, router {p.router.name}") for p, name in nm_files),
            (f"{ctx.stem}-swanctl.conf", "swanctl connections (no secrets)"),
            *(
                [
                    (f"{ctx.stem}.crt", "your certificate (PEM)"),
                    (
                        f"{ctx.stem}.key",
                        "your private key, encrypted with the PKCS#12 password (secret)",
                    ),
                ]
                if ctx.creds
                else []
            ),
        ],
    }
    files.append(BundleFile("README.md", render("linux.md.j2", values)))
    return files
