"""IKE/ESP proposals: the one source of truth for the router, the bundles and `check`.

Data lives in ``profiles/``: ``proposals.toml`` holds what the router accepts
per crypto profile, ``platforms.toml`` what each client platform proposes by
default and what its bundle can make it propose (its *suites*). This module
parses strongSwan proposal strings into transform sets and decides, the way
charon does, whether two proposals have a common choice:

- every transform type either side lists (encryption, integrity, PRF, DH)
  needs a common algorithm; AEAD ciphers carry no integrity algorithm;
- IKE proposals without an explicit PRF use the PRFs of their integrity
  algorithms (``sha256`` implies ``prfsha256``), as charon does;
- ESP DH groups are the PFS groups of rekeyings: "no group" is a value of
  its own, so a client without PFS needs a server proposal without a group
  and a client with PFS one with that group (the first CHILD_SA, created in
  IKE_AUTH, has no key exchange at all and matches either way).

:func:`for_platform` picks the proposal a bundle requests, and
:func:`owrt_vpn.render.checks.proposal_warnings` is what ``owrt-vpn check`` reports when a declared
platform has no common proposal with the router.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from owrt_vpn.profiles import load

Kind = Literal["ike", "esp"]

# strongSwan keyword -> (transform type, canonical name). Aliases map to the
# name charon prints, so that two spellings of one algorithm compare equal.
_ALIASES = {
    "aes": "aes128",
    "x25519": "curve25519",
    "x448": "curve448",
    "ecp256bp": "ecp256bp",
    "chacha20poly1305compat": "chacha20poly1305",
}
_ENCR_RE = re.compile(r"^(3des|des|cast128|blowfish\d*|null|(aes|camellia)(128|192|256)(ctr)?)$")
_AEAD_RE = re.compile(
    r"^((aes|camellia)(128|192|256)(gcm|ccm)(8|12|16|64|96|128)?|chacha20poly1305)$"
)
_INTEG_RE = re.compile(
    r"^(md5|md5_128|sha1|sha1_160|sha256|sha256_96|sha384|sha512|aesxcbc|aescmac)$"
)
_PRF_RE = re.compile(r"^prf(md5|sha1|sha256|sha384|sha512|aesxcbc|aescmac)$")
_DH_RE = re.compile(
    r"^(modp(768|1024|1536|2048|3072|4096|6144|8192|1024s160|2048s224|2048s256)"
    r"|ecp(192|224|256|384|521)|ecp(224|256|384|512)bp|curve25519|curve448)$"
)
# The PRF an integrity keyword implies in an IKE proposal without explicit PRF.
_INTEG_PRF = {
    "md5": "prfmd5",
    "md5_128": "prfmd5",
    "sha1": "prfsha1",
    "sha1_160": "prfsha1",
    "sha256": "prfsha256",
    "sha256_96": "prfsha256",
    "sha384": "prfsha384",
    "sha512": "prfsha512",
    "aesxcbc": "prfaesxcbc",
    "aescmac": "prfaescmac",
}
_TYPES = ("encr", "integ", "prf", "dh")


class ProposalSyntaxError(ValueError):
    """A proposal string with a keyword strongSwan would not accept."""


@dataclass(frozen=True)
class Proposal:
    """One parsed proposal: ordered algorithms per transform type."""

    kind: Kind
    encr: tuple[str, ...]
    integ: tuple[str, ...]
    prf: tuple[str, ...]
    dh: tuple[str, ...]

    @property
    def aead(self) -> bool:
        """True when the ciphers are AEAD (GCM, CCM, ChaCha20-Poly1305)."""
        return bool(self.encr) and bool(_AEAD_RE.fullmatch(self.encr[0]))

    def text(self) -> str:
        """The proposal in strongSwan syntax."""
        prf = (
            self.prf
            if self.kind == "ike" and (self.aead or self.prf != self._implied_prf())
            else ()
        )
        return "-".join((*self.encr, *self.integ, *prf, *self.dh))

    def _implied_prf(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_INTEG_PRF[i] for i in self.integ))

    def get(self, transform: str) -> tuple[str, ...]:
        """The algorithms of one transform type (``encr``, ``integ``, ``prf``, ``dh``)."""
        return tuple(getattr(self, transform))


@cache
def parse(text: str, kind: Kind) -> Proposal:
    """Parse a strongSwan proposal string (``aes256gcm16-prfsha256-ecp256``)."""
    encr: list[str] = []
    aead: list[str] = []
    integ: list[str] = []
    prf: list[str] = []
    dh: list[str] = []
    for raw in text.strip().lower().split("-"):
        word = _ALIASES.get(raw, raw)
        if word in ("esn", "noesn"):
            continue
        if _AEAD_RE.fullmatch(word):
            aead.append(_gcm16(word))
        elif _ENCR_RE.fullmatch(word):
            encr.append(word)
        elif _INTEG_RE.fullmatch(word):
            integ.append(word)
        elif _PRF_RE.fullmatch(word):
            prf.append(word)
        elif _DH_RE.fullmatch(word):
            dh.append(word)
        else:
            raise ProposalSyntaxError(f"{text!r}: unknown algorithm {raw!r}")
    if aead and encr:
        raise ProposalSyntaxError(f"{text!r}: AEAD and classic ciphers cannot share a proposal")
    if not aead and not encr:
        raise ProposalSyntaxError(f"{text!r}: no encryption algorithm")
    if aead:
        if integ:
            raise ProposalSyntaxError(f"{text!r}: AEAD ciphers take no integrity algorithm")
        if kind == "ike" and not prf:
            raise ProposalSyntaxError(f"{text!r}: an AEAD IKE proposal needs a PRF")
    elif not integ:
        raise ProposalSyntaxError(f"{text!r}: no integrity algorithm")
    if kind == "ike":
        if not dh:
            raise ProposalSyntaxError(f"{text!r}: an IKE proposal needs a DH group")
        if not prf:
            prf = [_INTEG_PRF[i] for i in integ]
    elif prf:
        raise ProposalSyntaxError(f"{text!r}: ESP proposals take no PRF")
    return Proposal(
        kind=kind,
        encr=uniq(aead or encr),
        integ=uniq(integ),
        prf=uniq(prf),
        dh=uniq(dh),
    )


def _gcm16(word: str) -> str:
    # "aes128gcm" means the 16-byte ICV variant, as in strongSwan.
    return word + "16" if re.fullmatch(r"(aes|camellia)(128|192|256)(gcm|ccm)", word) else word


def uniq(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def select(server: Proposal, client: Proposal) -> Proposal | None:
    """The single-algorithm proposal charon would pick, or None without a match.

    Like charon (``prefer_configured_proposals = yes``), the server's order
    decides among the common algorithms.
    """
    if server.kind != client.kind or server.aead != client.aead:
        return None
    chosen: dict[str, tuple[str, ...]] = {}
    for transform in _TYPES:
        mine, theirs = server.get(transform), client.get(transform)
        if not mine and not theirs:
            chosen[transform] = ()
            continue
        common = [a for a in mine if a in theirs]
        if not common:
            return None
        chosen[transform] = (common[0],)
    return Proposal(kind=server.kind, **chosen)


def negotiate(server: Sequence[str], client: Sequence[str], kind: Kind) -> Proposal | None:
    """What charon selects from the ``client``'s proposals with the ``server``'s, or None."""
    for s in server:
        sp = parse(s, kind)
        for c in client:
            picked = select(sp, parse(c, kind))
            if picked is not None:
                return picked
    return None


def accepts(server: Sequence[str], client: str, kind: Kind) -> bool:
    """True when a server offering ``server`` accepts a client proposing ``client``."""
    return negotiate(server, [client], kind) is not None


# --------------------------------------------------------------------------
# the router's side


def server_ike(crypto: str) -> tuple[str, ...]:
    """The IKE proposals the router accepts under crypto profile ``crypto``."""
    return tuple(load("proposals")["server"][crypto]["ike"])


def server_esp(crypto: str) -> tuple[str, ...]:
    """The ESP proposals the router accepts under crypto profile ``crypto``."""
    return tuple(load("proposals")["server"][crypto]["esp"])


# --------------------------------------------------------------------------
# the clients' side


@dataclass(frozen=True)
class PlatformInfo:
    """What ``profiles/platforms.toml`` says about one client platform."""

    name: str
    label: str
    configurable: bool
    how: str
    offers_ike: tuple[str, ...]
    offers_esp: tuple[str, ...]
    suites: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ClientProposal:
    """The proposals a client of one platform uses against one crypto profile.

    ``ike``/``esp`` are what the bundle writes into the client's settings
    (for a non-configurable client: what it offers anyway);
    ``negotiated_ike``/``negotiated_esp`` are what the router will select.
    """

    platform: str
    crypto: str
    ike: str
    esp: str
    negotiated_ike: str
    negotiated_esp: str
    configured: bool


def platform(name: str) -> PlatformInfo:
    """The proposal facts of platform ``name`` (KeyError if unknown)."""
    d: Mapping[str, Any] = load("platforms")[name]
    return PlatformInfo(
        name=name,
        label=str(d["label"]),
        configurable=bool(d["configurable"]),
        how=str(d["how"]),
        offers_ike=tuple(d["offers_ike"]),
        offers_esp=tuple(d["offers_esp"]),
        suites=tuple((str(s["ike"]), str(s["esp"])) for s in d["suites"]),
    )


def platforms() -> tuple[str, ...]:
    """Every platform described in ``profiles/platforms.toml``."""
    return tuple(load("platforms"))


def for_platform(
    name: str,
    crypto: str,
    server_ike_list: Sequence[str] | None = None,
    server_esp_list: Sequence[str] | None = None,
) -> ClientProposal | None:
    """The proposal a ``name`` client should request from a ``crypto`` router.

    Configurable platforms get their first suite the router accepts (IKE and
    ESP both); a non-configurable one (Android's built-in client) gets what it
    offers by default, if the router accepts any of it. None means no common
    proposal: `check` warns about it. ``server_*_list`` override the router's
    proposals (tests; routers with custom proposals).
    """
    ike_srv = tuple(server_ike_list) if server_ike_list is not None else server_ike(crypto)
    esp_srv = tuple(server_esp_list) if server_esp_list is not None else server_esp(crypto)
    info = platform(name)
    if info.configurable:
        for ike, esp in info.suites:
            ike_sel = negotiate(ike_srv, [ike], "ike")
            esp_sel = negotiate(esp_srv, [esp], "esp")
            if ike_sel is not None and esp_sel is not None:
                return ClientProposal(name, crypto, ike, esp, ike_sel.text(), esp_sel.text(), True)
        return None
    ike_sel = negotiate(ike_srv, info.offers_ike, "ike")
    esp_sel = negotiate(esp_srv, info.offers_esp, "esp")
    if ike_sel is None or esp_sel is None:
        return None
    return ClientProposal(
        name,
        crypto,
        ",".join(info.offers_ike),
        ",".join(info.offers_esp),
        ike_sel.text(),
        esp_sel.text(),
        False,
    )


def manual_setup_works(name: str, crypto: str) -> bool:
    """True when a client set up by hand (default proposals) gets a common proposal."""
    info = platform(name)
    return (
        negotiate(server_ike(crypto), info.offers_ike, "ike") is not None
        and negotiate(server_esp(crypto), info.offers_esp, "esp") is not None
    )
