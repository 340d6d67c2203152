"""The site model in-process: what a valid file gives, identities, edge rules."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pydantic
import pytest

import sitefile
from owrt_vpn import profiles
from owrt_vpn.errors import ConfigError
from owrt_vpn.resources import profiles_dir
from owrt_vpn.site.load import load_site, parse_site
from owrt_vpn.site.model import (
    AUTH_METHODS,
    CERT_AUTH,
    EAP_PASSWORD_AUTH,
    PLATFORM_AUTH,
    PLATFORMS,
    device_identity,
    eap_identity,
    validate_server_id,
)
from test_bad_input import BASE


def _parse(text: str) -> object:
    return parse_site(text, Path("/srv/sites/owrt-vpn.toml"))


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_site(text, Path("owrt-vpn.toml"))
    return info.value.lines()


def test_base_site_model() -> None:
    site = parse_site(BASE, Path("/srv/sites/owrt-vpn.toml"))
    assert site.name == "home"
    assert site.base_dir == Path("/srv/sites")
    assert site.pki_path == Path("/srv/sites/pki")
    assert site.settings.crypto == "compat"
    assert site.settings.server_key == "rsa3072"
    assert (site.settings.client_days, site.settings.crl_days) == (825, 365)
    gw = site.router("gw")
    assert gw.lan_networks == (ipaddress.ip_network("192.168.1.0/24"),)
    assert gw.pool_network == ipaddress.IPv4Network("10.10.10.0/24")
    assert gw.pool6_network is None
    assert gw.server_id_is_ip is False
    assert gw.management.port == 22 and gw.management.user == "root"
    assert gw.management.bakes_access is False
    alice = site.user("alice")
    assert [d.name for d in alice.devices] == ["phone", "laptop"]
    assert [d.platform for d in alice.devices] == ["ios", "windows"]
    assert site.user("bob").auth == "eap-mschapv2"
    assert site.user_routers(alice) == (gw,)
    assert site.router_users(gw) == (alice, site.user("bob"))


def test_model_is_frozen() -> None:
    site = parse_site(BASE, Path("owrt-vpn.toml"))
    with pytest.raises(pydantic.ValidationError):
        site.router("gw").pool = "10.0.0.0/8"  # type: ignore[misc]
    assert isinstance(site.routers, tuple) and isinstance(site.router("gw").lan, tuple)


def test_unknown_router_or_user_lookup() -> None:
    site = parse_site(BASE, Path("owrt-vpn.toml"))
    with pytest.raises(
        ConfigError, match=r"routers: no router named 'gw1' \(did you mean 'gw'\?\)"
    ):
        site.router("gw1")
    with pytest.raises(ConfigError, match=r"users: no user named 'alicia' \(did you mean 'alice'"):
        site.user("alicia")


def test_identities() -> None:
    site = parse_site(BASE, Path("owrt-vpn.toml"))
    alice = site.user("alice")
    assert device_identity(site, alice, alice.devices[0]) == "alice+phone@home"
    assert device_identity("home", "bob", "tablet") == "bob+tablet@home"
    assert eap_identity(site.user("bob")) == "bob"


def test_user_routers_subset() -> None:
    text = BASE.replace('auth = "pubkey"', 'auth = "pubkey"\nrouters = ["gw2"]') + sitefile.router(
        "gw2",
        server_id="203.0.113.7",
        release="23.05.5",
        target="ath79",
        device="tplink_archer-c7-v2",
        pool="10.10.20.0/24",
    )
    site = parse_site(text, Path("owrt-vpn.toml"))
    gw, gw2 = site.router("gw"), site.router("gw2")
    assert gw2.server_id_is_ip is True
    assert gw2.subtarget is None
    assert site.user_routers(site.user("alice")) == (gw2,)
    assert [u.name for u in site.router_users(gw)] == ["bob"]
    assert [u.name for u in site.router_users(gw2)] == ["alice", "bob"]


def test_pool_size_boundary() -> None:
    # 3 devices: a /30 has 2 usable addresses (too small), a /29 has 6.
    assert _parse(BASE.replace('"10.10.10.0/24"', '"10.10.10.0/29"'))
    # A user limited to another router does not count against this pool.
    text = BASE.replace('"10.10.10.0/24"', '"10.10.10.0/31"').replace(
        'auth = "pubkey"', 'auth = "pubkey"\nrouters = ["gw2"]'
    ) + sitefile.router("gw2", server_id="vpn2.example.org", pool="10.10.20.0/24")
    assert _parse(text)  # 1 device on gw, a /31 has 2 addresses


def test_pool6_too_small() -> None:
    text = BASE.replace('pool = "10.10.10.0/24"', 'pool = "10.10.10.0/24"\npool6 = "fd00::/127"')
    assert _problems(text) == [
        "owrt-vpn.toml: routers[gw].pool6: fd00::/127 has 1 usable addresses but 3 devices may "
        "connect"
    ]


def test_misspelt_platform_still_counts_for_pool_size() -> None:
    text = BASE.replace('"10.10.10.0/24"', '"10.10.10.0/30"').replace('"ios"', '"iphone"')
    lines = _problems(text)
    assert lines[0].startswith("owrt-vpn.toml: routers[gw].pool: 10.10.10.0/30 has 2 usable")
    assert lines[1].startswith("owrt-vpn.toml: users[alice].devices[phone].platform: 'iphone'")


def test_every_device_wrong_is_one_error_each() -> None:
    """A user whose only device has a wrong platform: that error, no false "at least one
    [[users.devices]] entry is needed" beside it (one mistake, one error)."""
    import sitefile

    text = sitefile.site(users=[sitefile.user("alice", [("phone", "iphone")])])
    assert _problems(text) == [
        "owrt-vpn.toml: users[alice].devices[phone].platform: 'iphone' is not one of: ios, macos, "
        "android, android-strongswan, windows, linux"
    ]
    empty = sitefile.site(users=[sitefile.user("alice", [])]) + "devices = []\n"
    assert _problems(empty) == [
        "owrt-vpn.toml: users[alice].devices: at least one [[users.devices]] entry is needed"
    ]


def test_problems_name_users_and_devices() -> None:
    """Errors name entries, not their place: alice is the second user here."""
    text = sitefile.site(
        users=[
            sitefile.user("bob", [("tablet", "android")], auth="eap-mschapv2"),
            sitefile.user("alice", [("laptop", "linux"), ("phone", "iphone")]),
        ]
    )
    assert _problems(text) == [
        "owrt-vpn.toml: users[alice].devices[phone].platform: 'iphone' is not one of: ios, "
        "macos, android, android-strongswan, windows, linux"
    ]
    # A cross-section rule names them too (its own check, not pydantic's).
    eap_tls = sitefile.site(users=[sitefile.user("bob"), sitefile.user(
        "alice", [("laptop", "linux"), ("tab", "android")], auth="eap-tls")])  # fmt: skip
    assert [ln.split(": ")[1] for ln in _problems(eap_tls)] == [
        "users[alice].devices[tab].platform"
    ]
    router = sitefile.site(routers=[sitefile.router("gw"), sitefile.router(
        "branch", server_id="vpn2.example.org", pool="10.10.20.0/24", tunnel="ful")])  # fmt: skip
    assert [ln.split(": ")[1] for ln in _problems(router)] == ["routers[branch].tunnel"]


def test_an_entry_without_a_usable_name_is_named_by_its_position() -> None:
    # The third user's name is invalid, so its problems (the name's and its
    # device's) say users[2]; its device keeps its own name.
    text = sitefile.site(
        users=[
            sitefile.user("alice"),
            sitefile.user("bob"),
            sitefile.user("Carol!", [("phone", "iphone")]),
        ]
    )
    assert [ln.split(": ")[1] for ln in _problems(text)] == [
        "users[2].name",
        "users[2].devices[phone].platform",
    ]
    # No name at all; a device without a name falls back to its position too.
    nameless = BASE.replace('name = "bob"\n', "").replace('name = "tablet"\n', "")
    assert [ln.split(": ")[1] for ln in _problems(nameless)] == [
        "users[1].name",
        "users[1].devices[0].name",
    ]


def test_a_name_made_of_digits_is_quoted() -> None:
    # users["7"] is the user called 7, never the eighth user.
    text = sitefile.site(users=[sitefile.user("7", [("1", "iphone")])])
    assert [ln.split(": ")[1] for ln in _problems(text)] == ['users["7"].devices["1"].platform']


def test_a_duplicate_name_names_each_of_its_entries_by_position() -> None:
    """``users[alice]`` would be ambiguous: both alices are named by position."""
    text = sitefile.site(
        users=[
            sitefile.user("alice", [("phone", "iphone")]),
            sitefile.user("bob"),
            sitefile.user("alice", [("laptop", "linux")]),
        ]
    )
    assert _problems(text) == [
        "owrt-vpn.toml: users[0].devices[phone].platform: 'iphone' is not one of: ios, macos, "
        "android, android-strongswan, windows, linux",
        "owrt-vpn.toml: users[2].name: duplicate name 'alice' (also users[0])",
    ]
    devices = sitefile.site(users=[sitefile.user("alice", [("phone", "ios"), ("phone", "linux")])])
    assert _problems(devices) == [
        "owrt-vpn.toml: users[alice].devices[1].name: duplicate name 'phone' "
        "(also users[alice].devices[0])"
    ]
    routers = sitefile.site(routers=[sitefile.router("gw"), sitefile.router(
        "gw", server_id="vpn2.example.org", pool="10.10.20.0/24")])  # fmt: skip
    assert _problems(routers) == [
        "owrt-vpn.toml: routers[1].name: duplicate name 'gw' (also routers[0])"
    ]


def test_problems_keep_the_order_of_the_file() -> None:
    # zed comes first in the file, so its problem does, although "alice" < "zed".
    text = sitefile.site(
        users=[
            sitefile.user("zed", [("phone", "symbian")]),
            sitefile.user("alice", [("phone", "iphone")]),
        ]
    )
    assert [ln.split(": ")[1] for ln in _problems(text)] == [
        "users[zed].devices[phone].platform",
        "users[alice].devices[phone].platform",
    ]


def test_broken_lan_does_not_fake_an_overlap() -> None:
    # With `lan` unusable, its default (192.168.1.0/24) must not be compared
    # with the pool: only the real problem is reported.
    text = BASE.replace('lan = ["192.168.1.0/24"]', 'lan = "192.168.1.0/24"').replace(
        '"10.10.10.0/24"', '"192.168.1.0/25"'
    )
    assert _problems(text) == [
        "owrt-vpn.toml: routers[gw].lan: must be a list, not str '192.168.1.0/24'"
    ]


def test_legacy_with_allow_weak_is_accepted() -> None:
    text = BASE.replace('crypto = "compat"', 'crypto = "legacy"\nallow_weak = true')
    assert parse_site(text, Path("x.toml")).settings.crypto == "legacy"


@pytest.mark.parametrize(
    "value", ["vpn.example.org", "gw", "203.0.113.5", "2001:db8::1", "a-b.example"]
)
def test_server_id_accepted(value: str) -> None:
    assert validate_server_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "vpn example",
        "vpn.example.org.",
        "-vpn.example",
        "10.0.0",
        "ff02::1",
        "fe80::1%eth0",
        "::",
        'a"b',
        "x" * 64 + ".example",
    ],
)
def test_server_id_rejected(value: str) -> None:
    with pytest.raises(ValueError):
        validate_server_id(value)


def test_platform_auth_matrix() -> None:
    assert set(PLATFORM_AUTH) == set(PLATFORMS)
    assert all(PLATFORM_AUTH[p] <= set(AUTH_METHODS) for p in PLATFORMS)
    # The rules of issue 2: no EAP-TLS on Android's built-in client; the
    # second round only on the strongSwan app and Linux.
    assert "eap-tls" not in PLATFORM_AUTH["android"]
    second = {p for p in PLATFORMS if "pubkey+eap-mschapv2" in PLATFORM_AUTH[p]}
    assert second == {"android-strongswan", "linux"}
    assert {"pubkey", "eap-tls", "pubkey+eap-mschapv2"} == CERT_AUTH
    assert {"eap-mschapv2", "pubkey+eap-mschapv2"} == EAP_PASSWORD_AUTH


def test_shipped_template_is_valid() -> None:
    from string import Template

    target = profiles.default_target()
    info = profiles.target_info(target)
    text = Template((profiles_dir() / "site-template.toml").read_text()).substitute(
        server_id="vpn.example.org",
        release=profiles.default_release(),
        target=target,
        subtarget=info["default_subtarget"],
        device=info["default_device"],
    )
    site = parse_site(text, Path("owrt-vpn.toml"))
    assert [r.name for r in site.routers] == ["gw"]
    assert site.routers[0].release == profiles.default_release()


def test_load_site_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"shown\.toml: site file not found"):
        load_site(tmp_path / "missing.toml", "shown.toml")
    (tmp_path / "s.toml").write_text(BASE.replace("port = 22", "port = 0"))
    with pytest.raises(ConfigError) as info:
        load_site(tmp_path / "s.toml")
    assert info.value.lines() == [
        f"{tmp_path / 's.toml'}: routers[gw].management.port: must be >= 1, not 0"
    ]
    assert info.value.exit_code == 2


def test_readme_documents_every_key() -> None:
    """docs/site-file.md (the site-file reference) lists exactly the model's keys, per table."""
    import re

    from owrt_vpn.site.model import Device, Management, Router, SiteSettings, User

    readme = (Path(__file__).resolve().parent.parent / "docs" / "site-file.md").read_text()
    section = readme.split("<!-- section: site-file -->")[1].split("<!-- /section: site-file -->")[
        0
    ]
    tables = {}
    for block in re.split(r"^### ", section, flags=re.M)[1:]:
        heading = block.splitlines()[0]
        tables[heading.split("`")[1]] = re.findall(r"^\| `(\w+)` \|", block, flags=re.M)
    assert tables == {
        "[site]": list(SiteSettings.model_fields),
        "[[routers]]": [k for k in Router.model_fields if k != "management"],
        "[routers.management]": list(Management.model_fields),
        "[[users]]": list(User.model_fields),
        "[[users.devices]]": list(Device.model_fields),
    }


ODD_VALUES = [
    "1",
    "-1",
    "0",
    "true",
    "1.5",
    "[]",
    '[1, "a"]',
    "{}",
    "{a = 1}",
    '""',
    '"\\u0000"',
    "1979-05-27T07:32:00Z",
    "[[]]",
    '"' + "x" * 300 + '"',
    '"::"',
    '"0.0.0.0/0"',
    '["0.0.0.0/0"]',
    '[{name = "x"}]',
    '"10.10.10.0/24"',
    '"fe80::/10"',
    '"a"',
]


def test_odd_values_give_located_problems_never_a_crash() -> None:
    """Every key of the base site set to every odd value: ConfigError or a valid site."""
    import re

    lines = BASE.splitlines()
    tried = 0
    for i, line in enumerate(lines):
        m = re.match(r"^(\w+) = ", line)
        if not m:
            continue
        for value in ODD_VALUES:
            text = "\n".join([*lines[:i], f"{m.group(1)} = {value}", *lines[i + 1 :]])
            tried += 1
            try:
                parse_site(text, Path("x.toml"))
            except ConfigError as exc:
                assert exc.lines(), text
                for problem in exc.lines():
                    assert re.match(r"^x\.toml: (site|routers|users|line \d+)\S*: \S", problem)
    assert tried > 400
