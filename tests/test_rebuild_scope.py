"""The rebuild rule: a router's build is keyed on what that router carries, a user's bundles on
what they carry (site/digest.py, pki/digest.py), not on the whole site file or PKI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sitefile
from owrt_vpn.build import state as build_state
from owrt_vpn.build.plan import BuildOptions, inputs, plan
from owrt_vpn.bundles.provenance import BundleInputs
from owrt_vpn.site.load import parse_site
from owrt_vpn.site.model import Site

ALICE = sitefile.user("alice", [("phone", "ios")])
BOB_ON_GW2 = sitefile.user("bob", [("laptop", "linux")], routers=["gw2"])
CAROL_EAP = sitefile.user("carol", [("phone", "android")], auth="eap-mschapv2", routers=["gw2"])


def two(tmp_path: Path, *users: str, gw: str | None = None, **settings: object) -> Site:
    text = sitefile.site(
        routers=[gw or sitefile.router(), sitefile.SECOND_ROUTER],
        users=list(users) or [ALICE],
        **settings,
    )
    path = tmp_path / "owrt-vpn.toml"
    path.write_text(text)
    return parse_site(text, path)


def router_inputs(site: Site) -> dict[str, dict[str, Any]]:
    return {p.name: inputs(p, BuildOptions()) for p in plan(site, BuildOptions())}


def changed(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    return {name: build_state.changed_inputs(a[name], b[name]) for name in a}


def test_an_edit_reaches_only_the_routers_that_carry_it(tmp_path: Path) -> None:
    base = router_inputs(two(tmp_path, ALICE))
    # A user allowed on gw2 only: gw's inputs do not move.
    assert changed(base, router_inputs(two(tmp_path, ALICE, BOB_ON_GW2))) == {
        "gw": [],
        "gw2": ["site.users"],
    }
    # Client-only device settings (the issue's `on_demand = true` on one iPhone): no router.
    on_demand = sitefile.user("alice", [("phone", "ios", {"on_demand": True})])
    assert changed(base, router_inputs(two(tmp_path, on_demand))) == {"gw": [], "gw2": []}
    ssids = sitefile.user(
        "alice", [("phone", "ios", {"on_demand": True, "trusted_ssids": ["Home"]})]
    )
    assert changed(base, router_inputs(two(tmp_path, ssids))) == {"gw": [], "gw2": []}
    # How flash reaches gw (never baked) changes nothing; its baked keys do change gw.
    reach = sitefile.router(management={"address": "198.51.100.2", "port": 2222})
    assert changed(base, router_inputs(two(tmp_path, ALICE, gw=reach))) == {"gw": [], "gw2": []}
    baked = sitefile.router(management={"lan_address": "192.168.1.1/24"})
    assert changed(base, router_inputs(two(tmp_path, ALICE, gw=baked))) == {
        "gw": ["site.router"],
        "gw2": [],
    }
    # A [site] setting every router carries changes both; a PKI lifetime none.
    assert changed(base, router_inputs(two(tmp_path, ALICE, crypto="modern"))) == {
        "gw": ["site.settings"],
        "gw2": ["site.settings"],
    }
    assert changed(base, router_inputs(two(tmp_path, ALICE, client_days=400))) == {
        "gw": [],
        "gw2": [],
    }


def test_pki_material_counts_only_where_it_is_carried(tmp_path: Path) -> None:
    site = two(tmp_path, ALICE, CAROL_EAP)
    pki = site.pki_path
    (pki / "servers").mkdir(parents=True)
    (pki / "eap").mkdir()
    (pki / "ca.crt").write_text("CA")
    (pki / "servers" / "gw.crt").write_text("gw")
    (pki / "servers" / "gw2.crt").write_text("gw2")
    (pki / "eap" / "carol.password").write_text("one")
    base = router_inputs(site)
    (pki / "servers" / "gw2.crt").write_text("gw2 renewed")
    (pki / "eap" / "carol.password").write_text("two")  # carol is on gw2 only
    assert changed(base, router_inputs(site)) == {"gw": [], "gw2": ["pki"]}
    (pki / "ca.crt").write_text("new CA")
    assert changed(base, router_inputs(site)) == {"gw": ["pki"], "gw2": ["pki"]}


def test_bundle_inputs_follow_what_the_bundles_carry(tmp_path: Path) -> None:
    base = BundleInputs(two(tmp_path, ALICE, BOB_ON_GW2))
    alice, bob = base.of("alice"), base.of("bob")
    # Another user's on_demand: alice's bundles are current, bob's are not.
    bob2 = sitefile.user("bob", [("laptop", "linux", {"on_demand": True})], routers=["gw2"])
    after = BundleInputs(two(tmp_path, ALICE, bob2))
    assert after.of("alice") == alice
    assert build_state.changed_inputs(bob, after.of("bob")) == ["site.user"]
    # gw's table changes alice's bundles (she may use gw), not bob's (gw2 only).
    moved = sitefile.router(server_id="vpn9.example.org")
    after = BundleInputs(two(tmp_path, ALICE, BOB_ON_GW2, gw=moved))
    assert build_state.changed_inputs(alice, after.of("alice")) == ["site.routers"]
    assert after.of("bob") == bob
    # The router's management table never reaches a bundle.
    reach = sitefile.router(management={"address": "198.51.100.2"})
    assert BundleInputs(two(tmp_path, ALICE, BOB_ON_GW2, gw=reach)).of("alice") == alice
    # Nor what only the router's image holds (its packages, who may reach the router).
    image_only = sitefile.router(
        extra_packages=["luci-ssl"], release_packages=False, vpn_router_access="dns-ping"
    )
    assert BundleInputs(two(tmp_path, ALICE, BOB_ON_GW2, gw=image_only)).of("alice") == alice
    # The release does: it decides the ESP proposals the bundles offer.
    older = sitefile.router(release="23.05.5")
    after = BundleInputs(two(tmp_path, ALICE, BOB_ON_GW2, gw=older))
    assert build_state.changed_inputs(alice, after.of("alice")) == ["site.routers"]
