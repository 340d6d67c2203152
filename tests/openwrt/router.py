"""A router root as a fresh OpenWrt has it, run under busybox ash with the real ``uci``.

The shell world is what OpenWrt's default busybox build offers: the applets
below and nothing else (Debian's busybox has more; those are left out of
PATH), plus the real ``uci`` built from the pinned sources (userland.py).
Scripts run with ``OWRT_VPN_ROOT`` pointing at the root, as our installer's
test mode expects.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .userland import Userland

# The applets of OpenWrt's default busybox build: every BUSYBOX_DEFAULT_<APPLET>
# that is `default y` (unconditionally) in openwrt/openwrt
# package/utils/busybox/Config-defaults.in (read at commit 012feaa61fda,
# main branch). `[`/`[[` are TEST1/TEST2, `sh` is ASH, `sysctl` is BB_SYSCTL.
_APPLETS_BY_MENU = {
    "archival": "gunzip gzip tar zcat",
    "coreutils": "basename cat chgrp chmod chown chroot cp cut date dd df dirname du echo env "
    "expr false fsync head id ln ls md5sum mkdir mkfifo mknod mktemp mv nice printf pwd "
    "readlink rm rmdir seq sha256sum sleep sort sync tail tee test [ [[ touch tr true uname "
    "uniq wc yes",
    "console-tools": "clear reset resize",
    "debianutils": "start-stop-daemon which",
    "editors": "awk cmp sed vi",
    "findutils": "find grep egrep fgrep xargs",
    "init": "halt poweroff reboot",
    "loginutils": "login passwd",
    "util-linux": "dmesg flock hexdump hwclock mkswap mount pivot_root swapon swapoff "
    "switch_root taskset umount",
    "miscutils": "crond crontab less lock strings time",
    "networking": "brctl ifconfig ip nc netmsg netstat nslookup ntpd ping ping6 route "
    "traceroute traceroute6 dhcprelay udhcpc",
    "procps": "free kill killall pgrep pidof ps sysctl top uptime",
    "shell": "ash sh",
    "sysklogd": "logger",
}
OPENWRT_BUSYBOX_APPLETS = tuple(a for names in _APPLETS_BY_MENU.values() for a in names.split())
OPENWRT_BUSYBOX_SOURCE = (
    "openwrt/openwrt package/utils/busybox/Config-defaults.in @ 012feaa61fda (default y)"
)

# /etc/config/network and /etc/config/dhcp as a fresh OpenWrt has them: the
# network config is what base-files' config_generate writes for a router with a
# bridged LAN and one WAN port; dhcp holds the options of dnsmasq's default
# /etc/config/dhcp (package/network/services/dnsmasq/files/dhcp.conf).
FRESH_NETWORK = """\
config interface 'loopback'
\toption device 'lo'
\toption proto 'static'
\toption ipaddr '127.0.0.1'
\toption netmask '255.0.0.0'

config globals 'globals'
\toption ula_prefix 'fd4e:7a2b:91c0::/48'

config device
\toption name 'br-lan'
\toption type 'bridge'
\tlist ports 'lan1'
\tlist ports 'lan2'

config interface 'lan'
\toption device 'br-lan'
\toption proto 'static'
\toption ipaddr '192.168.1.1'
\toption netmask '255.255.255.0'
\toption ip6assign '60'

config interface 'wan'
\toption device 'eth1'
\toption proto 'dhcp'

config interface 'wan6'
\toption device 'eth1'
\toption proto 'dhcpv6'
"""

FRESH_DHCP = """\
config dnsmasq
\toption domainneeded '1'
\toption boguspriv '1'
\toption filterwin2k '0'
\toption localise_queries '1'
\toption rebind_protection '1'
\toption rebind_localhost '1'
\toption local '/lan/'
\toption domain 'lan'
\toption expandhosts '1'
\toption nonegcache '0'
\toption cachesize '1000'
\toption authoritative '1'
\toption readethers '1'
\toption leasefile '/tmp/dhcp.leases'
\toption resolvfile '/tmp/resolv.conf.d/resolv.conf.auto'
\toption nonwildcard '1'
\toption localservice '1'
\toption ednspacket_max '1232'

config dhcp 'lan'
\toption interface 'lan'
\toption start '100'
\toption limit '150'
\toption leasetime '12h'

config dhcp 'wan'
\toption interface 'wan'
\toption ignore '1'
"""

# base-files' uci_apply_defaults (package/base-files/files/lib/functions.sh):
# each script is *sourced* in a subshell from /etc/uci-defaults, deleted when
# that subshell exits 0, then `uci commit`. Below a test root, uci is told
# where the root's config and change files are.
FIRST_BOOT = """\
cd "$OWRT_VPN_ROOT/etc/uci-defaults" || exit 0
files="$(ls)"
[ -z "$files" ] && exit 0
for file in $files; do
\t( . "./$(basename $file)" ) && rm -f "$file"
done
uci -c "$OWRT_VPN_ROOT/etc/config" -t "$OWRT_VPN_ROOT/tmp/.uci" commit
"""


def busybox() -> str:
    """Debian's busybox binary (package ``busybox``)."""
    for path in ("/bin/busybox", "/usr/bin/busybox"):
        if os.access(path, os.X_OK):
            return path
    raise FileNotFoundError("busybox is not installed (see .ci/run)")


def applet_path(dest: Path, uci: Path) -> tuple[Path, list[str]]:
    """A PATH folder holding only OpenWrt's default applets and ``uci``.

    Returns the folder and the applets Debian's busybox lacks (OpenWrt's own
    additions such as ``lock`` and ``netmsg``): those are simply absent.
    """
    bb = busybox()
    have = set(subprocess.run([bb, "--list"], capture_output=True, text=True).stdout.split())
    dest.mkdir(parents=True, exist_ok=True)
    missing = []
    for applet in OPENWRT_BUSYBOX_APPLETS:
        if applet not in have:
            missing.append(applet)
            continue
        link = dest / applet
        if not link.exists():
            link.symlink_to(bb)
    if not (dest / "uci").exists():
        (dest / "uci").symlink_to(uci)
    return dest, missing


class RouterRoot:
    """A scratch OpenWrt root: default configs, our image overlay, busybox + real uci."""

    def __init__(self, base: Path, userland: Userland, firewall4: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.userland = userland
        self.bin, self.missing_applets = applet_path(base / "bin", userland.uci)
        config = self.root / "etc" / "config"
        config.mkdir(parents=True)
        # fw4's own default /etc/config/firewall, from the firewall4 checkout
        shutil.copy(firewall4 / "root" / "etc" / "config" / "firewall", config / "firewall")
        (config / "network").write_text(FRESH_NETWORK)
        (config / "dhcp").write_text(FRESH_DHCP)
        (self.root / "tmp").mkdir()
        (self.root / "etc" / "uci-defaults").mkdir()

    def flash(self, tree: Path) -> None:
        """Copy an image overlay (a rendered tree) over the root, keeping its modes."""
        shutil.copytree(tree, self.root, dirs_exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": str(self.bin),
            "OWRT_VPN_ROOT": str(self.root),
            "HOME": str(self.base),
            **self.userland.env(),
            **extra,
        }

    def ash(self, script: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``script`` under busybox ash with only the router's commands on PATH."""
        return subprocess.run(
            [busybox(), "ash", "-c", script, "ash", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def first_boot(self) -> subprocess.CompletedProcess[str]:
        """Apply /etc/uci-defaults the way base-files does at boot."""
        return self.ash(FIRST_BOOT)

    def uci(self, *args: str) -> str:
        """The real ``uci`` on this root (e.g. ``show firewall``); fails on an error."""
        r = self.ash('uci -c "$OWRT_VPN_ROOT/etc/config" -t "$OWRT_VPN_ROOT/tmp/.uci" "$@"', *args)
        if r.returncode != 0:
            raise AssertionError(f"uci {' '.join(args)}: {r.stderr}")
        return r.stdout

    def uci_batch(self, commands: str) -> None:
        """Feed ``commands`` (ending with a ``commit``) to the real ``uci batch``."""
        r = subprocess.run(
            [
                busybox(),
                "ash",
                "-c",
                'uci -c "$OWRT_VPN_ROOT/etc/config" -t "$OWRT_VPN_ROOT/tmp/.uci" batch',
            ],
            input=commands,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if r.returncode != 0 or r.stderr.strip():
            raise AssertionError(f"uci batch: {r.stderr}")

    def show(self, pkg: str) -> dict[str, str]:
        """``uci show PKG`` as a dict (``firewall.owrt_vpn_ike.src`` -> ``'wan'``)."""
        out = {}
        for line in self.uci("show", pkg).splitlines():
            key, _, value = line.partition("=")
            out[key] = value
        return out
