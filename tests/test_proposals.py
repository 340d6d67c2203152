"""Proposal parsing/matching, per-platform choice, and the `check` warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

import sitefile
from owrt_vpn.render import checks
from owrt_vpn.render import proposals as P
from owrt_vpn.site.load import parse_site
from owrt_vpn.site.model import CRYPTO_PROFILES, PLATFORM_AUTH, PLATFORMS


def _site(crypto: str, platforms: list[str], tmp_path: Path) -> object:
    """A valid site with one user per platform (an auth method each platform can use)."""
    users = [
        sitefile.user(
            f"u-{pl}",
            [("dev", pl)],
            auth="pubkey" if "pubkey" in PLATFORM_AUTH[pl] else sorted(PLATFORM_AUTH[pl])[0],
        )
        for pl in platforms
    ]
    allow_weak = True if crypto == "legacy" else None
    text = sitefile.site("t", crypto=crypto, allow_weak=allow_weak, users=users)
    return parse_site(text, tmp_path / "owrt-vpn.toml")


# ---------------------------------------------------------------- parsing


def test_parse_types_and_implied_prf() -> None:
    p = P.parse("aes256-aes128-sha256-sha384-modp2048-ecp256", "ike")
    assert p.encr == ("aes256", "aes128")
    assert p.integ == ("sha256", "sha384")
    assert p.prf == ("prfsha256", "prfsha384")  # charon derives PRFs from integrity
    assert p.dh == ("modp2048", "ecp256")
    assert not p.aead


def test_parse_aead_aliases_and_esn() -> None:
    p = P.parse("aes128gcm-chacha20poly1305-prfsha256-x25519", "ike")
    assert p.encr == ("aes128gcm16", "chacha20poly1305") and p.aead
    assert p.integ == () and p.prf == ("prfsha256",) and p.dh == ("curve25519",)
    assert P.parse("aes256gcm16-noesn", "esp").dh == ()


@pytest.mark.parametrize(
    ("text", "kind", "why"),
    [
        ("aes256-sha256-modp9999", "ike", "unknown algorithm"),
        ("aes256gcm16-aes256-sha256-ecp256", "ike", "cannot share"),
        ("aes256gcm16-ecp256", "ike", "needs a PRF"),
        ("aes256-sha256", "ike", "needs a DH group"),
        ("aes256-ecp256", "esp", "no integrity"),
        ("aes256gcm16-sha256", "esp", "no integrity algorithm"),
        ("aes256-sha256-prfsha256", "esp", "no PRF"),
    ],
)
def test_parse_rejects(text: str, kind: P.Kind, why: str) -> None:
    with pytest.raises(P.ProposalSyntaxError, match=why):
        P.parse(text, kind)


def test_every_shipped_proposal_parses() -> None:
    for crypto in CRYPTO_PROFILES:
        assert [P.parse(p, "ike") for p in P.server_ike(crypto)]
        assert [P.parse(p, "esp") for p in P.server_esp(crypto)]
    assert set(P.platforms()) == set(PLATFORMS)
    for name in P.platforms():
        info = P.platform(name)
        for ike, esp in info.suites:
            P.parse(ike, "ike")
            P.parse(esp, "esp")
        assert [P.parse(p, "ike") for p in info.offers_ike]
        assert [P.parse(p, "esp") for p in info.offers_esp]
        assert info.configurable == bool(info.suites)


# ---------------------------------------------------------------- matching


def test_select_uses_server_order_and_prints_strongswan_syntax() -> None:
    server = P.parse("aes256-aes128-sha384-sha256-ecp384-modp2048", "ike")
    client = P.parse("aes128-aes256-sha256-modp2048", "ike")
    picked = P.select(server, client)
    assert picked is not None and picked.text() == "aes256-sha256-modp2048"


def test_aead_never_matches_classic() -> None:
    a = P.parse("aes256gcm16-prfsha256-ecp256", "ike")
    b = P.parse("aes256-sha256-ecp256", "ike")
    assert P.select(a, b) is None


def test_explicit_prf_must_match() -> None:
    server = ["aes256gcm16-prfsha384-ecp256"]
    assert not P.accepts(server, "aes256gcm16-prfsha256-ecp256", "ike")
    assert P.accepts(server, "aes256gcm16-prfsha256-prfsha384-ecp256", "ike")


def test_esp_pfs_group_is_a_value_of_its_own() -> None:
    with_pfs = ["aes256gcm16-ecp256"]
    without = ["aes256gcm16"]
    assert not P.accepts(with_pfs, "aes256gcm16", "esp")
    assert not P.accepts(without, "aes256gcm16-ecp256", "esp")
    assert P.accepts(with_pfs + without, "aes256gcm16", "esp")
    assert P.accepts(with_pfs + without, "aes256gcm16-modp2048-ecp256", "esp")


def test_windows_defaults_need_legacy() -> None:
    # The untweaked Windows client (modp1024) has no match in compat: the
    # "policy match error" that the PowerShell script exists to avoid.
    assert not P.manual_setup_works("windows", "compat")
    assert P.manual_setup_works("windows", "legacy")


# ---------------------------------------------------------------- the table


@pytest.mark.parametrize("crypto", CRYPTO_PROFILES)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_platform_has_a_proposal_or_check_says_so(
    platform: str, crypto: str, tmp_path: Path
) -> None:
    chosen = P.for_platform(platform, crypto)
    warnings = checks.proposal_warnings(_site(crypto, [platform], tmp_path))
    if chosen is None:
        assert len(warnings) == 1 and P.platform(platform).label in warnings[0]
        return
    assert warnings == []
    # What the bundle requests is accepted by the router's list...
    if chosen.configured:
        assert P.accepts(P.server_ike(crypto), chosen.ike, "ike")
        assert P.accepts(P.server_esp(crypto), chosen.esp, "esp")
        assert (chosen.ike, chosen.esp) in P.platform(platform).suites
    # ...and what is negotiated is one of the client's and one of the router's choices.
    for kind, srv, mine in (
        ("ike", P.server_ike(crypto), chosen.ike.split(",")),
        ("esp", P.server_esp(crypto), chosen.esp.split(",")),
    ):
        neg = P.parse(getattr(chosen, f"negotiated_{kind}"), kind)  # type: ignore[arg-type]
        assert any(P.select(P.parse(s, kind), neg) for s in srv)  # type: ignore[arg-type]
        assert any(P.select(P.parse(c, kind), neg) for c in mine)  # type: ignore[arg-type]


def test_ecp_only_server_warns_for_android_builtin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Reference failure 7: Android's built-in client has no ECP groups.
    monkeypatch.setattr(P, "server_ike", lambda crypto: ("aes256gcm16-prfsha256-ecp256-ecp384",))
    monkeypatch.setattr(P, "server_esp", lambda crypto: ("aes256gcm16", "aes256gcm16-ecp256"))
    site = _site("compat", ["android", "ios", "android-strongswan"], tmp_path)
    warnings = checks.proposal_warnings(site)
    assert len(warnings) == 1
    assert "Android built-in client" in warnings[0] and "u-android/dev" in warnings[0]
    assert "NO_PROPOSAL_CHOSEN" in warnings[0] and "android-strongswan" in warnings[0]


def test_narrow_server_warns_for_configurable_clients(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A server that takes only ChaCha20 for IKE: neither Apple nor Windows
    # profiles can request it, strongSwan-based clients can.
    monkeypatch.setattr(P, "server_ike", lambda crypto: ("chacha20poly1305-prfsha256-curve25519",))
    monkeypatch.setattr(
        P, "server_esp", lambda crypto: ("chacha20poly1305", "chacha20poly1305-curve25519")
    )
    site = _site("compat", ["ios", "windows", "linux"], tmp_path)
    text = "\n".join(checks.proposal_warnings(site))
    assert "iOS" in text and "Windows" in text and "13868" in text
    assert "Linux" not in text


def test_server_without_pfs_gets_the_no_pfs_suites(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "server_esp", lambda crypto: ("aes256gcm16-aes128gcm16",))
    ios = P.for_platform("ios", "compat")
    linux = P.for_platform("linux", "compat")
    assert ios is not None and ios.esp == "aes256gcm16"
    assert linux is not None and linux.negotiated_esp == "aes256gcm16"


def test_advice_names_the_way_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_ike, real_esp = P.server_ike, P.server_esp
    # Pretend "modern" were ECP-only: Android's built-in client then has a way
    # out through compat and through the strongSwan app.
    monkeypatch.setattr(
        P,
        "server_ike",
        lambda c: ("aes256gcm16-prfsha256-ecp256",) if c == "modern" else real_ike(c),
    )
    monkeypatch.setattr(P, "server_esp", real_esp)
    (warning,) = checks.proposal_warnings(_site("modern", ["android"], tmp_path))
    assert 'set site.crypto = "compat"' in warning and "android-strongswan" in warning


def test_warnings_are_per_router(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from owrt_vpn.render import packages

    real = packages.esp_proposals
    # Router "old" pretends its kernel could only do ChaCha20 for ESP.
    two = parse_site(
        sitefile.site(
            "t",
            routers=[
                sitefile.router(),
                sitefile.router("old", server_id="old.example.org", pool="10.10.20.0/24"),
            ],
            users=[sitefile.user("w", [("pc", "windows")])],
        ),
        tmp_path / "two.toml",
    )
    monkeypatch.setattr(
        packages,
        "esp_proposals",
        lambda s, r: ("chacha20poly1305",) if r.name == "old" else real(s, r),
    )
    (warning,) = checks.proposal_warnings(two)
    assert "router old" in warning and "w/pc" in warning and "router gw" not in warning
