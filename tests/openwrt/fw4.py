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


# series -> firewall4 commit -> provenance. Each commit is the PKG_SOURCE_VERSION
# of package/network/config/firewall4/Makefile that OpenWrt built the series
# with, as shown by a public source named in the provenance: the branch's own
# Makefile, or the firewall4 package version (`<date>-<hash8>`) in the
# release's package feed or in an installed-package list of a release image
# (the version names the commit). Where no source shows a release's exact
# revision, the row says which bounds pin it and that the rest is the
# "last firewall4 commit before the release" rule. Every commit is in the
# pinned firewall4.bundle of /work/shared/openwrt-src.
FW4_REVISIONS = (
    Fw4Revision(
        "22.03.0",
        "f5fcdcf2c51f6f0a4b116c352000c4fe0523be77",
        "fallback: the last firewall4 commit (2022-09-01) before the v22.03.0 build "
        "(22.03.0 images carry LuCI git-22.245 = 2022-09-02); not confirmed by a "
        "22.03.0 package list. The first series with fw4",
    ),
    Fw4Revision(
        "22.03",
        "7ae5e14bbd7265cc67ec870c3bb0c8e197bb7ca9",
        "firewall4 2022-10-18-7ae5e14b-1 in the 22.03 package feed "
        "(https://openwrt.org/packages/pkgdata/firewall4, generated 2023-12-10) and "
        "in a 22.03.3 (r20028-43d71ad93e) installed-package list; no source seen "
        "for 22.03.6/22.03.7",
    ),
    Fw4Revision(
        "23.05.0",
        "598d9fbb5179667aa0c525040eaa41bc7f2dc015",
        "bounded: 23.05.4 and 23.05.5 ship firewall4 2023-09-01-598d9fbb (see 23.05) "
        "and a branch pin only moves forward; the v23.05.0 build of 2023-10-09 "
        "(its kernel/U-Boot banners) is before the next commit, 4101dd4 of "
        "2023-10-12; that 23.05.0 already had 598d9fbb (2023-09-01) and not an "
        "older commit is the last-commit-before-the-release rule",
    ),
    Fw4Revision(
        "23.05",
        "598d9fbb5179667aa0c525040eaa41bc7f2dc015",
        "firewall4 2023-09-01-598d9fbb-1 in installed-package lists of 23.05.4 "
        "(r24012-d8dd03c46f) and 23.05.5 (r24106-10cc5fcd00, '2023-09-01': the only "
        "firewall4 commit of that day); no source seen for 23.05.6",
    ),
    Fw4Revision(
        "24.10",
        "18fc0ead19faf06b8ce7ec5be84957278e942dfa",
        "PKG_SOURCE_VERSION (PKG_SOURCE_DATE 2024-12-18) of "
        "package/network/config/firewall4/Makefile on openwrt/openwrt's openwrt-24.10 "
        "branch (raw.githubusercontent.com/openwrt/openwrt/openwrt-24.10/...)",
    ),
    Fw4Revision(
        "25.12",
        "b6e5157527d361f99ad52eaa6da273cb0f2dfd59",
        "firewall4 2025.03.17~b6e51575-r1 in the 25.12.0 package feed "
        "(astro/nix-openwrt-imagebuilder cache/25.12.0/packages/mips_24kc/base.nix, "
        "commit 43dbbfc11d16)",
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
