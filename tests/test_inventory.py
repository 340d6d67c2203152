"""Inventory files and router selection for `owrt-vpn flash` (bad input stops before SSH)."""

from __future__ import annotations

from pathlib import Path

import pytest

import sitefile
from owrt_vpn.errors import ConfigError
from owrt_vpn.routers.inventory import load_inventory, site_targets
from owrt_vpn.site.load import parse_site

SITE = sitefile.site(
    routers=[
        sitefile.router(
            "branch",
            management={
                "address": "198.51.100.2",
                "identity_file": "keys/id_ed25519",
                "known_hosts": "~/kh",
            },
        ),
        sitefile.router("lab", server_id="vpn2.example.org"),
    ],
    users=[],
)


@pytest.fixture
def site_file(tmp_path: Path) -> Path:
    path = tmp_path / "owrt-vpn.toml"
    path.write_text(SITE)
    return path


def test_site_targets(site_file: Path, tmp_path: Path) -> None:
    site = parse_site(SITE, site_file)
    (t,) = site_targets(site, tmp_path / "dist", ["branch"])
    assert t.ssh.host == "198.51.100.2" and t.ssh.port == 22 and t.ssh.user == "root"
    assert t.ssh.identity_file == tmp_path / "keys/id_ed25519"
    assert t.ssh.known_hosts == Path("~/kh").expanduser()
    assert t.build_dir == tmp_path / "dist/home/routers/branch"
    assert not t.bakes_access
    with pytest.raises(ConfigError, match=r"routers\[lab\]\.management\.address: required"):
        site_targets(site, tmp_path / "dist")
    with pytest.raises(ConfigError, match=r"no router named 'brnch'.*did you mean 'branch'"):
        site_targets(site, tmp_path / "dist", ["brnch"])


def test_inventory(site_file: Path, tmp_path: Path) -> None:
    site = parse_site(SITE, site_file)
    inv = tmp_path / "inv" / "fleet.toml"
    inv.parent.mkdir()
    inv.write_text(
        '[defaults]\nuser = "admin"\nidentity_file = "fleet_key"\n\n'
        '[[routers]]\nname = "shop-1"\nrouter = "branch"\naddress = "198.51.100.20"\n\n'
        '[[routers]]\nname = "shop-2"\nrouter = "lab"\naddress = "shop2.example.org"\nport = 2222\n'
        'user = "root"\n'
    )
    a, b = load_inventory(inv, site, tmp_path / "dist")
    assert (a.name, a.router.name, a.ssh.user, a.ssh.port) == ("shop-1", "branch", "admin", 22)
    assert a.ssh.identity_file == inv.parent / "fleet_key"
    assert (b.name, b.router.name, b.ssh.user, b.ssh.port) == ("shop-2", "lab", "root", 2222)
    assert b.build_dir == tmp_path / "dist/home/routers/lab"


def test_inventory_reports_every_problem(site_file: Path, tmp_path: Path) -> None:
    site = parse_site(SITE, site_file)
    inv = tmp_path / "fleet.toml"
    inv.write_text(
        '[defaults]\naddress = "198.51.100.1"\n\n'
        '[[routers]]\nname = "a"\nrouter = "brnch"\naddress = "198.51.100.20"\n\n'
        '[[routers]]\nname = "a"\nrouter = "lab"\naddress = "not a host!"\nport = 70000\n'
        'authorized_keys = ["ssh-ed25519 AAAA x"]\nadress = "x"\n\n'
        '[[routers]]\nname = "Bad Name"\nrouter = "lab"\n'
    )
    with pytest.raises(ConfigError) as exc:
        load_inventory(inv, site, tmp_path / "dist")
    lines = exc.value.lines()
    f = str(inv)
    expected = [
        f"{f}: defaults.address: each router has its own address",
        f"{f}: routers[0].router: no router named 'brnch' in the site file (did you mean 'bra",
        f"{f}: routers[1].authorized_keys: is baked into the image at build time",
        f"{f}: routers[1].adress: unknown key (did you mean 'address'?)",
        f"{f}: routers[1].name: duplicate name 'a' (also routers[0])",
        f"{f}: routers[1].address: 'not a host!' is not a host name or IP address",
        f"{f}: routers[1].port: ",
        f"{f}: routers[2].name: 'Bad Name' is not a valid name",
        f"{f}: routers[2].address: required key is missing",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)
    assert len(lines) == len(expected), lines


def test_flash_cli_bad_inventory_exits_2(cli, site_file: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inv = tmp_path / "fleet.toml"
    inv.write_text('[[routers]]\nname = "x"\nrouter = "nope"\naddress = "198.51.100.9"\n')
    proc = cli("flash", "--inventory", inv)
    assert proc.returncode == 2, proc.stderr
    assert f"error: {inv}: routers[x].router: no router named 'nope'" in proc.stderr
    proc = cli("flash", "--router", "nope")
    assert proc.returncode == 2
    assert "error: --router: no router named 'nope'" in proc.stderr
