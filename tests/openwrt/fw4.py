"""Render the real fw4 ruleset for a router root (OpenWrt's firewall4 on the real ucode).

fw4 runs as ``utpl`` on ``main.uc`` with ``ACTION=print``, in a private
mount namespace where the router root's ``/etc/config`` and
``/usr/share/nftables.d`` and the checkout's ``/usr/share/firewall4`` are
bind-mounted over the host's paths (fw4 reads fixed paths). ucode has no
ubus here: a stand-in ``ubus`` module answers ``network.interface dump``
with the test's devices, so the ruleset matches the namespace it is loaded in.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .userland import Userland


@dataclass(frozen=True)
class Fw4Revision:
    """The firewall4 commit a release series runs, and how that is known."""

    series: str
    commit: str
    provenance: str


# series -> firewall4 commit -> provenance. Where the openwrt/openwrt branch's
# package/network/config/firewall4/Makefile could not be read here, the
# revision is the last firewall4 commit (committer date) before the named
# release, as the issue prescribes; the provenance says which rule gave it.
# The release dates are OpenWrt's announced ones as known to the author; no
# copy of the announcements was in reach to check them against.
FW4_REVISIONS = (
    Fw4Revision(
        "22.03.0",
        "f5fcdcf2c51f6f0a4b116c352000c4fe0523be77",
        "fallback: last firewall4 commit before 22.03.0 (2022-09-06); the first series with fw4",
    ),
    Fw4Revision(
        "22.03",
        "dfbcc1cd127c78fc61bb870d36d2512b571d223b",
        "fallback: last firewall4 commit before 22.03.7 (2024-07-25), the series' newest release",
    ),
    Fw4Revision(
        "23.05.0",
        "4101dd42473bfda24e3bfd958f0edfff8c8efa90",
        "fallback: last firewall4 commit before 23.05.0 (2023-10-13)",
    ),
    Fw4Revision(
        "23.05",
        "dfbcc1cd127c78fc61bb870d36d2512b571d223b",
        "fallback: last firewall4 commit before 23.05.5 (2024-09-25), the newest known here",
    ),
    Fw4Revision(
        "24.10",
        "b6e5157527d361f99ad52eaa6da273cb0f2dfd59",
        "fallback: last firewall4 commit before 24.10.2 (2025-06-25, profiles' default release)",
    ),
    Fw4Revision(
        "25.12",
        "b6e5157527d361f99ad52eaa6da273cb0f2dfd59",
        "branched from master after it pinned b6e5157 (openwrt/openwrt PR 18283, 2025-03); "
        "no later firewall4 commit exists in the pinned bundle",
    ),
    Fw4Revision(
        "master",
        "b6e5157527d361f99ad52eaa6da273cb0f2dfd59",
        "PKG_SOURCE_VERSION of package/network/config/firewall4/Makefile on openwrt/openwrt "
        "main (read at commit 06b12599f7c1)",
    ),
)

# The devices fw4 is told about; the test namespace names its links the same.
LAN_DEV = "br-lan"
WAN_DEV = "eth1"


def ubus_standin(lan_addr: str, wan_addr: str) -> str:
    """A ucode ``ubus`` module answering ``network.interface dump`` (and nothing else)."""

    def iface(name: str, dev: str, addr: str | None) -> dict[str, object]:
        v4 = []
        if addr:
            ip, _, mask = addr.partition("/")
            v4 = [{"address": ip, "mask": int(mask)}]
        return {
            "interface": name,
            "up": True,
            "device": dev,
            "l3_device": dev,
            "ipv4-address": v4,
            "ipv6-address": [],
            "ipv6-prefix-assignment": [],
            "data": {},
        }

    dump = {
        "interface": [
            iface("lan", LAN_DEV, lan_addr),
            iface("wan", WAN_DEV, wan_addr),
            iface("wan6", WAN_DEV, None),
        ]
    }
    return (
        "// test stand-in for ucode's ubus module: fw4 only asks network.interface dump\n"
        f"const dump = {json.dumps(dump)};\n"
        "return {\n"
        "\tconnect: () => ({\n"
        "\t\tcall: (obj, method) => (obj == 'network.interface' && method == 'dump') ? dump : {},\n"
        "\t\tdisconnect: () => null,\n"
        "\t\terror: () => null\n"
        "\t}),\n"
        "\terror: () => null\n"
        "};\n"
    )


# Run inside `unshare -m`: fw4 reads /etc/config, /usr/share/nftables.d and
# /usr/share/firewall4, and keeps state in /var/run; none of the host's are touched.
_MOUNTS = """\
set -eu
for d in /etc/config /usr/share/nftables.d /usr/share/firewall4 /var/run; do mkdir -p "$d"; done
mount --bind "$ROOT/etc/config" /etc/config
mount --bind "$ROOT/usr/share/nftables.d" /usr/share/nftables.d
mount --bind "$FW4/root/usr/share/firewall4" /usr/share/firewall4
mount -t tmpfs tmpfs /var/run
exec "$UTPL" -S -L "$MODS" -L "$FW4/root/usr/share/ucode" -L "$LIB/ucode" \
  /usr/share/firewall4/main.uc
"""


def render_ruleset(
    userland: Userland,
    fw4: Path,
    root: Path,
    lan_addr: str = "192.168.1.1/24",
    wan_addr: str = "203.0.113.1/24",
) -> subprocess.CompletedProcess[str]:
    """fw4's ``print`` of the ruleset for ``root`` (stdout), its messages on stderr."""
    (root / "usr/share/nftables.d").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fw4-ubus-") as mods:
        Path(mods, "ubus.uc").write_text(ubus_standin(lan_addr, wan_addr))
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "ACTION": "print",
            "ROOT": str(root),
            "FW4": str(fw4),
            "MODS": mods,
            "LIB": str(userland.lib),
            "UTPL": str(userland.utpl),
            **userland.env(),
        }
        return subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", _MOUNTS],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
