"""What OpenWrt's strongSwan init scripts do, per release series, holds for the files we install.

Read from the pinned openwrt/packages net/strongswan files of every branch
(19.07 to master; the live handshakes on that layout run for two series in
tests/integration/test_openwrt_strongswan.py). For the config style each
series gets (profiles/releases.toml):

- the init script our installer reloads exists there, and its reload runs
  what reloads every file we install (``swanctl --load-all`` /
  ``ipsec rereadall`` + ``ipsec reload``);
- procd restarts strongSwan when our configuration file changes (it is
  matched by the init script's ``procd_*_param file`` list);
- swanctl: the package's swanctl.conf gets the ``/var`` include appended
  (the upstream file's ``include conf.d/*.conf`` stays, and loads ours), and
  the init script starts charon with ``start-scripts`` running ``load-all``.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

from openwrt.userland import HOW_TO_GET, SRC_ENV, source_dir
from owrt_vpn import profiles
from owrt_vpn.render import overlay
from owrt_vpn.resources import templates_dir

SERIES = ("19.07", "21.02", "22.03", "23.05", "24.10", "25.12", "snapshot")
OUR_CONF = {
    "swanctl": ["etc/swanctl/conf.d/owrt-vpn.conf", "etc/strongswan.d/owrt-vpn.conf"],
    "ipsec": ["etc/ipsec.conf", "etc/ipsec.secrets", "etc/strongswan.d/owrt-vpn.conf"],
}


def package_dir(series: str) -> Path:
    d = (
        source_dir()
        / "strongswan-package"
        / ("master" if series == "snapshot" else f"openwrt-{series}")
    )
    if not d.is_dir():
        pytest.fail(HOW_TO_GET.format(src=d, env=SRC_ENV), pytrace=False)
    return d


def file_triggers(init: str) -> list[str]:
    """The paths of ``procd_set_param file`` / ``procd_append_param file`` ($VARs resolved)."""
    variables = dict(re.findall(r"^([A-Z_]+)=(\S+)$", init, re.M))
    out = []
    for arg in re.findall(r"procd_(?:set|append)_param file (\S+)", init):
        out.append(re.sub(r"\$([A-Z_]+)", lambda m: variables.get(m.group(1), m.group(0)), arg))
    return out


def function(init: str, name: str) -> str:
    """The body of shell function ``name`` (up to the next line holding only ``}``)."""
    m = re.search(rf"^{name}\(\) \{{\n(.*?)^\}}", init, re.M | re.S)
    assert m, f"no {name}() in the init script"
    return m.group(1)


@pytest.mark.parametrize("series", SERIES)
def test_init_scripts_reload_and_restart_for_our_files(series: str) -> None:
    style = profiles.release_info(series if series == "snapshot" else f"{series}.0")
    d = package_dir(series)
    init_name = "swanctl" if style.config_style == "swanctl" else "ipsec"
    init = (d / "files" / f"{init_name}.init").read_text()
    # the installer reloads /etc/init.d/<this> (the script this package installs)
    reload = function(init, "reload_service")
    if init_name == "swanctl":
        assert "swanctl --load-all --noprompt" in reload
    else:
        assert "ipsec rereadall" in reload and "ipsec reload" in reload
    # a change to our configuration restarts strongSwan through procd
    triggers = file_triggers(init)
    for rel in OUR_CONF[style.config_style][:1]:
        assert any(fnmatch.fnmatch("/" + rel, t) for t in triggers), (rel, triggers)
    if init_name == "swanctl":
        # written into /var/ipsec/strongswan.conf (charon.start-scripts)
        assert '"load-all = /usr/sbin/swanctl --load-all --noprompt"' in init
        make = (d / "Makefile").read_text()
        assert 'echo "include /var/swanctl/swanctl.conf" >> $(1)/etc/swanctl/swanctl.conf' in make


def test_the_installer_reloads_the_init_script_of_its_style() -> None:
    script = (templates_dir() / f"{overlay.INSTALLER}.j2").read_text()
    assert "svc swanctl reload" in script and "svc ipsec reload" in script


def mod_available(make: str) -> tuple[set[str], set[str]]:
    """PKG_MOD_AVAILABLE: the plugins always packaged, and those behind a
    ``$(if $(CONFIG_...),<plugin>,)``."""
    m = re.search(r"^PKG_MOD_AVAILABLE:=\s*\\\n(.*?)\n\n", make, re.M | re.S)
    assert m, "no PKG_MOD_AVAILABLE"
    always = set(re.findall(r"^\t([a-z0-9-]+)", m.group(1), re.M))
    gated = set(re.findall(r"\$\(if \$\([A-Z_]+\),([a-z0-9-]+),\)", m.group(1)))
    return always, gated


def makefile_define(make: str, name: str) -> str:
    """The body of ``define <name>`` ... ``endef`` in an OpenWrt package Makefile."""
    m = re.search(rf"^define {re.escape(name)}\n(.*?)^endef", make, re.M | re.S)
    assert m, f"no define {name}"
    return m.group(1)


@pytest.mark.parametrize("series", SERIES)
def test_strongswan_version_and_full_plugins_match_the_makefile(series: str) -> None:
    """releases.toml's strongSwan version and packages.toml's [full_plugins] are the
    branch's: PKG_VERSION, and every plugin strongswan-full always pulls in (a
    ``+COND:strongswan-mod-x`` dependency is left out) plus the built-in ones."""
    make = (package_dir(series) / "Makefile").read_text()
    version = re.search(r"^PKG_VERSION:=(\S+)$", make, re.M)
    assert version and profiles.load("releases")["series"][series]["strongswan"] == version[1]
    full = makefile_define(make, "Package/strongswan-full")
    always = set(re.findall(r"^\s*\+strongswan-mod-([a-z0-9-]+)", full, re.M))
    gated = set(re.findall(r"^\s*\+[A-Z_]+:strongswan-mod-([a-z0-9-]+)", full, re.M))
    data = profiles.load("packages")
    entry = data["series"][series]
    builtin = set(entry["builtin_plugins"])
    # a built-in plugin is compiled into the base package (--enable-<p>, no package)
    for plugin in builtin:
        assert f"--enable-{plugin}" in make and plugin not in always
    assert set(data["full_plugins"][entry["full_plugins"]]) == always | builtin
    assert gated == ({"ccm", "eap-mschapv2", "md4"} if series == "snapshot" else set())


DOUBLE_SERIES = {"23.05": "23.05", "24.10": "24.10", "25.12": "25.12", "snapshot": "99.99"}


@pytest.mark.parametrize("series", sorted(DOUBLE_SERIES))
def test_the_imagebuilder_double_packages_the_branchs_plugins(series: str) -> None:
    """The double's strongswan-mod-* and strongswan-full follow the branch's Makefile
    (``$(if $(CONFIG_...),x,)`` plugins included: the double's snapshot is built
    with STRONGSWAN_INCLUDE_INSECURE)."""
    from imagebuilder_double.package_data import full_plugins, plugins_for

    make = (package_dir(series) / "Makefile").read_text()
    always, gated = mod_available(make)
    assert set(plugins_for(DOUBLE_SERIES[series])) == always | gated
    full = makefile_define(make, "Package/strongswan-full")
    in_full = set(re.findall(r"^\s*\+(?:[A-Z_]+:)?strongswan-mod-([a-z0-9-]+)", full, re.M))
    assert set(full_plugins(DOUBLE_SERIES[series])) == in_full


@pytest.mark.parametrize("series", SERIES)
def test_the_vpn_packages_exist_on_the_branch(series: str) -> None:
    """Every strongSwan package packages.toml names for a series is built by that
    branch's Makefile, and the plugins it marks unavailable are not."""
    make = (package_dir(series) / "Makefile").read_text()
    mods, _ = mod_available(make)
    packages = set(re.findall(r"^\$\(eval \$\(call BuildPackage,([a-z0-9-]+)\)\)", make, re.M))
    packages |= {f"strongswan-mod-{p}" for p in mods}
    entry = profiles.load("packages")["series"][series]
    named = {p for key in ("base", "swanctl", "ipsec", "full") for p in entry[key]}
    assert {p for p in named if p.startswith("strongswan")} <= packages
    assert not set(entry["unavailable_plugins"]) & mods
    # swanctl needs the vici plugin (the package list names both)
    swanctl = makefile_define(make, "Package/strongswan-swanctl")
    assert "+strongswan-mod-vici" in swanctl
