"""UCI text (owrt_vpn.render.uci): libuci's quoting, and reading back what we write."""

from __future__ import annotations

import pytest

from owrt_vpn.render import uci

NASTY = [
    "plain",
    "it's",
    "''",
    "a'b'c'",
    'double "quotes"',
    "back\\slash",
    "#not a comment",
    "  spaces  around  ",
    "{braces} [brackets] $dollar `tick` ;semi",
    "ünïcødé €",
    "",
    "=equals=",
]


@pytest.mark.parametrize("value", NASTY)
def test_quote_round_trips_through_the_tokenizer(value: str) -> None:
    text = uci.render_config([uci.Section("rule", "x", {"name": value})])
    [section] = uci.parse_config(text)
    assert section.options == {"name": value}


def test_single_quote_uses_libuci_escaping() -> None:
    assert uci.quote("it's") == "'it'\\''s'"
    assert uci.quote("''") == "''\\'''\\'''"


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\0b"])
def test_newlines_cannot_be_written(bad: str) -> None:
    with pytest.raises(uci.UciError):
        uci.quote(bad)


def test_config_file_round_trip_keeps_order_lists_and_anonymous_sections() -> None:
    sections = [
        uci.Section(
            "rule", "owrt_vpn_ike", {"name": "owrt-vpn IKE", "src": "wan", "proto": ["udp"]}
        ),
        uci.Section("defaults", None, {"input": "REJECT"}),
        uci.Section("zone", "lan", {"network": ["lan", "o'dd"], "masq": "0"}),
    ]
    text = uci.render_config(sections)
    assert "config rule 'owrt_vpn_ike'\n\toption name 'owrt-vpn IKE'\n" in text
    assert "\tlist network 'o'\\''dd'\n" in text
    back = uci.parse_config(text)
    assert [(s.type, s.name, s.options) for s in back] == [
        (s.type, s.name, s.options) for s in sections
    ]


def test_parser_reads_what_a_router_writes() -> None:
    # libuci accepts double quotes with escapes, bare words, comments, `package`.
    text = (
        "package firewall\n"
        "# a comment\n"
        "config defaults\n"
        "\toption syn_flood 1\n"
        'config rule "r1"  # trailing comment\n'
        '\toption name "say \\"hi\\""\n'
        "\tlist proto tcp\n"
        "\tlist proto 'udp'\n"
    )
    secs = uci.parse_config(text)
    assert secs[0].type == "defaults" and secs[0].options == {"syn_flood": "1"}
    assert secs[1].name == "r1"
    assert secs[1].options == {"name": 'say "hi"', "proto": ["tcp", "udp"]}


@pytest.mark.parametrize(
    "text",
    ["config rule 'x\n", "\toption name 'v'\n", "config rule 'x'\n\tbogus a b\n", 'config a "b\n'],
)
def test_malformed_config_is_rejected(text: str) -> None:
    with pytest.raises(uci.UciError):
        uci.parse_config(text)


@pytest.mark.parametrize("name", ["bad-name", "sp ace", "dot.ted", "", "q'"])
def test_names_outside_libucis_charset_are_refused(name: str) -> None:
    with pytest.raises(uci.UciError):
        uci.render_config([uci.Section("rule", name, {})])
    with pytest.raises(uci.UciError):
        uci.set_section("firewall", name, "rule", {})


@pytest.mark.parametrize("value", NASTY)
def test_batch_round_trip(value: str) -> None:
    cmds = uci.set_section(
        "firewall", "owrt_vpn_x", "rule", {"name": value, "proto": ["udp", value]}
    )
    cmds += [uci.Command("set", "dhcp.@dnsmasq[0].localservice", "0")]
    cmds += [uci.Command("delete", "firewall.owrt_vpn_old"), uci.Command("commit", "firewall")]
    text = uci.render_batch(cmds)
    assert uci.parse_batch(text) == cmds


def test_set_section_deletes_first_for_idempotent_reruns() -> None:
    text = uci.render_batch(uci.set_section("firewall", "owrt_vpn_esp", "rule", {"proto": "esp"}))
    assert text == (
        "delete firewall.owrt_vpn_esp\n"
        "set firewall.owrt_vpn_esp='rule'\n"
        "set firewall.owrt_vpn_esp.proto='esp'\n"
    )


@pytest.mark.parametrize("path", ["firewall.a.b.c", "fire-wall.x", "firewall.@rule[x]", "a..b"])
def test_bad_batch_paths_are_refused(path: str) -> None:
    with pytest.raises(uci.UciError):
        uci.Command("set", path, "v").text()
