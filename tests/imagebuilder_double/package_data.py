"""The double's package index: real OpenWrt package names, dependencies, files.

Names and dependencies follow openwrt/packages ``net/strongswan/Makefile``
(strongSwan 5.9.11: ``PKG_MOD_AVAILABLE``, the ``-full``/``-default``/
``-minimal`` metas) and the base system of openwrt/openwrt. Versions and
sizes are plausible stand-ins. ``%SW%`` (strongSwan version), ``%KVER%``
(kernel) and ``%ARCH%`` are filled in per release by ``archive.py``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Package:
    """One binary package of the index.

    ``version`` is the upstream version, or ``"kernel"`` for kmods (they carry
    the release's kernel version). ``init`` lists ``(script, START, STOP)``.
    """

    name: str
    version: str
    depends: tuple[str, ...] = ()
    size: int = 4_000  # compressed package size, bytes (the image size check sums these)
    files: tuple[str, ...] = ()
    init: tuple[tuple[str, int, int], ...] = ()
    provides: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    abi: str = ""  # ABI suffix of the package name (libopenssl3 -> "3"), stripped by STRIP_ABI
    only: tuple[str, ...] = ()  # package manager(s) this package exists for; () = both


def _p(name: str, version: str, depends: str = "", size: int = 4_000, **kw: object) -> Package:
    return Package(name, version, tuple(depends.split()), size, **kw)  # type: ignore[arg-type]


def _kmod(name: str, depends: str = "", size: int = 6_000) -> Package:
    mod = name.removeprefix("kmod-").replace("-", "_")
    return _p(name, "kernel", depends, size, files=(f"/lib/modules/%KVER%/{mod}.ko",))


# strongSwan plugins (PKG_MOD_AVAILABLE of net/strongswan) and their extra dependencies.
STRONGSWAN_PLUGINS: dict[str, str] = {
    "addrblock": "", "aes": "", "af-alg": "kmod-crypto-user", "agent": "", "attr": "",
    "attr-sql": "strongswan-charon", "bliss": "strongswan-libnttfft strongswan-mod-mgf1 "
    "strongswan-mod-hmac", "blowfish": "", "ccm": "", "chapoly": "kmod-crypto-chacha20poly1305",
    "cmac": "", "constraints": "", "connmark": "libip4tc", "coupling": "", "ctr": "",
    "curl": "libcurl", "curve25519": "", "des": "", "dhcp": "", "dnskey": "", "drbg": "",
    "duplicheck": "", "eap-identity": "", "eap-md5": "",
    "eap-mschapv2": "strongswan-mod-md4 strongswan-mod-des", "eap-radius": "",
    "eap-tls": "strongswan-libtls", "farp": "", "fips-prf": "strongswan-mod-sha1",
    "forecast": "libip4tc kmod-ipt-conntrack-extra", "gcm": "", "gcrypt": "libgcrypt",
    "gmp": "libgmp", "gmpdh": "", "ha": "", "hmac": "", "kdf": "", "kernel-libipsec": "",
    "kernel-netlink": "", "ldap": "libopenldap", "led": "", "load-tester": "", "md4": "",
    "md5": "", "mgf1": "", "mysql": "strongswan-mod-sql libmysqlclient-r",
    "newhope": "strongswan-libnttfft strongswan-mod-chapoly strongswan-mod-sha3",
    "ntru": "strongswan-mod-mgf1", "openssl": "libopenssl", "pem": "", "pgp": "", "pkcs1": "",
    "pkcs7": "", "pkcs8": "", "pkcs11": "", "pkcs12": "", "pubkey": "", "random": "", "rc2": "",
    "resolve": "", "revocation": "", "sha1": "", "sha2": "", "sha3": "", "smp": "libxml2",
    "socket-default": "", "socket-dynamic": "", "sql": "",
    "sqlite": "strongswan-mod-sql libsqlite3", "sshkey": "",
    "stroke": "strongswan-charon strongswan-ipsec", "test-vectors": "", "uci": "libuci",
    "unity": "", "updown": "iptables ip6tables iptables-mod-ipsec kmod-ipt-ipsec", "vici": "",
    "whitelist": "", "wolfssl": "libwolfssl", "x509": "", "xauth-eap": "",
    "xauth-generic": "", "xcbc": "",
}  # fmt: skip
# Plugins without a strongswan.d/charon/<name>.conf upstream (none of ours matter).
_NOT_IN_FULL = {"gmpdh", "kernel-libipsec", "socket-dynamic"}
DEFAULT_PLUGINS = [
    "aes",
    "attr",
    "connmark",
    "constraints",
    "des",
    "dnskey",
    "fips-prf",
    "gmp",
    "hmac",
    "kernel-netlink",
    "md5",
    "mgf1",
    "pem",
    "pgp",
    "pkcs1",
    "pubkey",
    "random",
    "rc2",
    "resolve",
    "revocation",
    "sha1",
    "sha2",
    "socket-default",
    "sshkey",
    "updown",
    "x509",
    "xauth-generic",
    "xcbc",
]
MINIMAL_PLUGINS = [
    "aes",
    "gmp",
    "hmac",
    "kernel-netlink",
    "mgf1",
    "pubkey",
    "random",
    "sha1",
    "socket-default",
    "stroke",
    "updown",
    "x509",
    "xcbc",
]
# Plugins packaged from a release series on, and those gone: PKG_MOD_AVAILABLE
# of openwrt/packages net/strongswan/Makefile (openwrt-24.10 42525d32c410
# 5.9.14 adds eap-dynamic; openwrt-25.12 57654a9f48f8 6.0.3 adds lookip and
# drops bliss, newhope, ntru, uci; master 0521bb567933 6.0.7, the snapshots,
# also drops af-alg; tests/test_imagebuilder_double.py compares). OpenWrt's 6.0
# Makefiles package neither eap-gtc nor error-notify. master builds ccm,
# eap-mschapv2 and md4 only with STRONGSWAN_INCLUDE_INSECURE: the double's
# snapshot has them (as with it set); Variant(omit_packages=...) takes them out.
PLUGINS_ADDED: dict[str, dict[str, str]] = {
    "24.10": {"eap-dynamic": ""},
    "25.12": {"lookip": ""},
}
PLUGINS_REMOVED: dict[str, set[str]] = {
    "25.12": {"bliss", "newhope", "ntru", "uci"},
    "99.99": {"af-alg"},
}


def plugins_for(series: str) -> dict[str, str]:
    """The ``strongswan-mod-*`` plugins of a release series and their extra dependencies."""
    plugins = dict(STRONGSWAN_PLUGINS)
    for since, added in PLUGINS_ADDED.items():
        if series >= since:
            plugins.update(added)
    for since, removed in PLUGINS_REMOVED.items():
        if series >= since:
            for name in removed:
                plugins.pop(name, None)
    return dict(sorted(plugins.items()))


def full_plugins(series: str) -> list[str]:
    """The plugins ``strongswan-full`` depends on in a release series."""
    return sorted(set(plugins_for(series)) - _NOT_IN_FULL)


FULL_PLUGINS = full_plugins("23.05")


def _strongswan(series: str) -> list[Package]:
    sw = "strongswan"
    pk: list[Package] = [
        _p(
            sw,
            "%SW%",
            "libc libpthread ip kmod-crypto-aead kmod-crypto-authenc kmod-crypto-cbc "
            "kmod-lib-zlib-inflate kmod-lib-zlib-deflate kmod-crypto-des kmod-crypto-echainiv "
            "kmod-crypto-hmac kmod-crypto-md5 kmod-crypto-sha1 kmod-ipsec kmod-ipsec4 "
            "kmod-ipsec6",
            140_000,
            files=(
                "/etc/strongswan.conf",
                "/etc/strongswan.d/charon/nonce.conf",
                "/usr/lib/ipsec/libstrongswan.so.0.0.0",
                "/usr/lib/ipsec/plugins/libstrongswan-nonce.so",
            ),
        ),
        _p(
            "strongswan-charon",
            "%SW%",
            sw,
            90_000,
            files=(
                "/etc/strongswan.d/charon.conf",
                "/etc/strongswan.d/charon-logging.conf",
                "/usr/lib/ipsec/charon",
                "/usr/lib/ipsec/libcharon.so.0.0.0",
            ),
        ),
        _p(
            "strongswan-charon-cmd",
            "%SW%",
            f"{sw} strongswan-charon",
            20_000,
            files=("/usr/sbin/charon-cmd",),
        ),
        _p(
            "strongswan-ipsec",
            "%SW%",
            sw,
            12_000,
            files=("/etc/ipsec.conf", "/etc/ipsec.secrets", "/etc/ipsec.user", "/usr/sbin/ipsec"),
            init=(("ipsec", 90, 10),),
        ),
        _p("strongswan-libtls", "%SW%", sw, 40_000, files=("/usr/lib/ipsec/libtls.so.0",)),
        _p(
            "strongswan-pki",
            "%SW%",
            f"{sw} strongswan-libtls",
            35_000,
            files=("/etc/strongswan.d/pki.conf", "/usr/bin/pki"),
        ),
        _p(
            "strongswan-swanctl",
            "%SW%",
            f"{sw} strongswan-mod-vici",
            45_000,
            files=(
                "/etc/swanctl/swanctl.conf",
                "/usr/sbin/swanctl",
                "/etc/swanctl/conf.d/",
                "/etc/swanctl/x509/",
                "/etc/swanctl/x509ca/",
                "/etc/swanctl/private/",
                "/etc/swanctl/x509crl/",
            ),
            init=(("swanctl", 90, 10),),
        ),
        _p(
            "strongswan-gencerts",
            "%SW%",
            f"{sw} strongswan-pki bash",
            3_000,
            files=("/usr/bin/gencerts",),
        ),
    ]
    if series < "25.12":  # the NTRU/NewHope helper, gone with those plugins in 6.0
        pk.append(
            _p("strongswan-libnttfft", "%SW%", sw, 8_000, files=("/usr/lib/ipsec/libnttfft.so.0",))
        )
    for name, extra in plugins_for(series).items():
        pk.append(
            _p(f"strongswan-mod-{name}", "%SW%", f"{sw} {extra}".strip(), 9_000,
               files=(f"/etc/strongswan.d/charon/{name}.conf",
                      f"/usr/lib/ipsec/plugins/libstrongswan-{name}.so"))
        )  # fmt: skip

    def meta(name: str, plugins: list[str], more: str) -> Package:
        deps = [sw, *more.split(), *(f"strongswan-mod-{p}" for p in plugins)]
        return _p(name, "%SW%", " ".join(deps), 1_500)

    pk += [
        meta("strongswan-default", DEFAULT_PLUGINS, "strongswan-charon strongswan-swanctl"),
        meta("strongswan-minimal", MINIMAL_PLUGINS, "strongswan-charon"),
        meta(
            "strongswan-full", full_plugins(series),
            "strongswan-charon strongswan-charon-cmd strongswan-ipsec "
            + ("strongswan-libnttfft " if series < "25.12" else "")
            + "strongswan-pki strongswan-swanctl",
        ),
        meta(
            "strongswan-isakmp",
            [p for p in ("aes", "des", "gmpdh", "hmac", "kernel-netlink", "md5", "mgf1",
                         "pubkey", "random", "sha1", "socket-default", "stroke", "uci",
                         "updown") if p in plugins_for(series)],
            "strongswan-charon strongswan-ipsec",
        ),
    ]  # fmt: skip
    return pk


_KMODS = [
    _kmod("kmod-crypto-aead", "kmod-crypto-null kmod-crypto-manager"),
    _kmod("kmod-crypto-authenc", "kmod-crypto-manager kmod-crypto-null"),
    _kmod("kmod-crypto-aes"), _kmod("kmod-crypto-cbc"),
    _kmod("kmod-crypto-ccm", "kmod-crypto-ctr kmod-crypto-aead"),
    _kmod("kmod-crypto-chacha20poly1305", "kmod-crypto-aead kmod-crypto-manager"),
    _kmod("kmod-crypto-ctr", "kmod-crypto-seqiv"), _kmod("kmod-crypto-des"),
    _kmod("kmod-crypto-echainiv", "kmod-crypto-rng"),
    _kmod("kmod-crypto-gcm", "kmod-crypto-ctr kmod-crypto-ghash kmod-crypto-null"),
    _kmod("kmod-crypto-gf128"), _kmod("kmod-crypto-ghash", "kmod-crypto-gf128 kmod-crypto-hash"),
    _kmod("kmod-crypto-hash"), _kmod("kmod-crypto-hmac", "kmod-crypto-hash kmod-crypto-manager"),
    _kmod("kmod-crypto-manager", "kmod-crypto-aead kmod-crypto-hash"),
    _kmod("kmod-crypto-md5", "kmod-crypto-hash"), _kmod("kmod-crypto-null", "kmod-crypto-hash"),
    _kmod("kmod-crypto-rng", "kmod-crypto-hash kmod-crypto-hmac kmod-crypto-sha256"),
    _kmod("kmod-crypto-seqiv", "kmod-crypto-aead kmod-crypto-rng"),
    _kmod("kmod-crypto-sha1", "kmod-crypto-hash"), _kmod("kmod-crypto-sha256", "kmod-crypto-hash"),
    _kmod("kmod-crypto-sha512", "kmod-crypto-hash"), _kmod("kmod-crypto-user"),
    _kmod("kmod-ipsec", "kmod-crypto-authenc kmod-crypto-cbc kmod-crypto-deflate "
          "kmod-crypto-des kmod-crypto-echainiv kmod-crypto-hmac kmod-crypto-iv "
          "kmod-crypto-md5 kmod-crypto-sha1"),
    _kmod("kmod-crypto-deflate", "kmod-lib-zlib-inflate kmod-lib-zlib-deflate"),
    _kmod("kmod-crypto-iv"), _kmod("kmod-ipsec4", "kmod-ipsec kmod-iptunnel4"),
    _kmod("kmod-ipsec6", "kmod-ipsec kmod-iptunnel6"), _kmod("kmod-iptunnel4"),
    _kmod("kmod-iptunnel6"), _kmod("kmod-lib-zlib-inflate"), _kmod("kmod-lib-zlib-deflate"),
    _kmod("kmod-nft-core", "kmod-nfnetlink kmod-nf-reject kmod-nf-conntrack", 60_000),
    _kmod("kmod-nft-nat", "kmod-nft-core kmod-nf-nat"),
    _kmod("kmod-nft-offload", "kmod-nf-flow kmod-nft-nat"),
    _kmod("kmod-nft-fib", "kmod-nft-core"), _kmod("kmod-nft-xfrm", "kmod-nft-core"),
    _kmod("kmod-nfnetlink"), _kmod("kmod-nf-reject"), _kmod("kmod-nf-conntrack", size=40_000),
    _kmod("kmod-nf-nat", "kmod-nf-conntrack"), _kmod("kmod-nf-flow", "kmod-nf-conntrack"),
    _kmod("kmod-ipt-core"), _kmod("kmod-ipt-ipsec", "kmod-ipt-core"),
    _kmod("kmod-ipt-conntrack-extra", "kmod-ipt-core"),
    _kmod("kmod-gpio-button-hotplug"), _kmod("kmod-leds-gpio"), _kmod("kmod-leds-reset"),
    _kmod("kmod-usb-core"), _kmod("kmod-usb-ohci", "kmod-usb-core"),
    _kmod("kmod-usb2", "kmod-usb-core"), _kmod("kmod-usb3", "kmod-usb-core"),
    _kmod("kmod-usb-chipidea2", "kmod-usb2"), _kmod("kmod-usb-ledtrig-usbport", "kmod-usb-core"),
    _kmod("kmod-phy-bcm-ns-usb2", "kmod-usb-core"), _kmod("kmod-phy-bcm-ns-usb3", "kmod-usb-core"),
    _kmod("kmod-cfg80211", size=150_000), _kmod("kmod-mac80211", "kmod-cfg80211", 250_000),
    _kmod("kmod-brcmutil"), _kmod("kmod-brcmfmac", "kmod-cfg80211 kmod-brcmutil", 180_000),
    _kmod("kmod-b43", "kmod-mac80211", 160_000), _kmod("kmod-ath", "kmod-mac80211", 40_000),
    _kmod("kmod-ath9k", "kmod-ath", 170_000), _kmod("kmod-ath10k-ct", "kmod-ath", 280_000),
]  # fmt: skip

_BASE = [
    _p("libc", "1.2.5", "", 300_000, files=("/lib/ld-musl-%ARCH%.so.1", "/lib/libc.so")),
    _p("libgcc1", "13.3.0", "libc", 30_000, provides=("libgcc",), abi="1",
       files=("/lib/libgcc_s.so.1",)),
    _p("libpthread", "1.2.5", "libc", 1_000), _p("librt", "1.2.5", "libc", 1_000),
    _p("kernel", "kernel", "", 1_000),
    _p("base-files", "1630", "libc netifd jsonfilter usign", 50_000,
       files=("/etc/banner", "/etc/hosts", "/etc/config/system", "/etc/rc.common",
              "/etc/openwrt_version", "/etc/uci-defaults/", "/sbin/sysupgrade",
              "/lib/functions.sh"),
       init=(("boot", 10, 0), ("done", 95, 0), ("sysctl", 11, 0), ("system", 10, 0),
             ("umount", 0, 90))),
    _p("busybox", "1.36.1", "libc", 220_000, files=("/bin/busybox", "/bin/sh"),
       init=(("cron", 50, 0),)),
    _p("ca-bundle", "20240203", "", 130_000, files=("/etc/ssl/certs/ca-certificates.crt",)),
    _p("dropbear", "2024.86", "libc", 100_000,
       files=("/usr/sbin/dropbear", "/etc/config/dropbear"), init=(("dropbear", 19, 50),)),
    _p("dnsmasq", "2.90", "libc libubus", 120_000,
       files=("/usr/sbin/dnsmasq", "/etc/config/dhcp"), init=(("dnsmasq", 19, 85),)),
    _p("dnsmasq-full", "2.90", "libc libubus libnftnl kmod-nft-core", 170_000,
       files=("/usr/sbin/dnsmasq", "/etc/config/dhcp"), init=(("dnsmasq", 19, 85),),
       conflicts=("dnsmasq",)),
    _p("firewall4", "2024.12.18", "ucode nftables kmod-nft-core kmod-nft-fib kmod-nft-nat "
       "kmod-nft-offload", 40_000, files=("/sbin/fw4", "/etc/config/firewall",
       "/usr/share/nftables.d/"), init=(("firewall", 19, 0),)),
    _p("nftables-json", "1.1.1", "libc libnftnl libmnl", 150_000, provides=("nftables",),
       files=("/usr/sbin/nft",)),
    _p("fstools", "2024.07.14", "ubox", 30_000, files=("/sbin/mount_root",)),
    _p("jsonfilter", "2024.01.23", "libubox", 8_000, files=("/usr/bin/jsonfilter",)),
    _p("usign", "2020.05.23", "libubox", 10_000, files=("/usr/bin/usign",)),
    _p("libubox", "2024.03.29", "libc", 20_000), _p("libubus", "2025.01.02", "libubox", 10_000),
    _p("libuci", "2025.01.20", "libubox", 15_000), _p("libnftnl", "1.2.8", "libmnl", 40_000),
    _p("libmnl", "1.0.5", "libc", 7_000), _p("libip4tc", "1.8.10", "libc", 12_000),
    _p("libgmp", "6.3.0", "libc", 180_000), _p("libcurl", "8.12.1", "libc libopenssl", 200_000),
    _p("libgcrypt", "1.10.3", "libc", 300_000), _p("libopenldap", "2.6.9", "libc", 250_000),
    _p("libmysqlclient-r", "10.4", "libc", 900_000), _p("libxml2", "2.13.6", "libc", 500_000),
    _p("libsqlite3", "3.49.1", "libc", 450_000), _p("libwolfssl", "5.7.6", "libc", 400_000),
    _p("libmbedtls", "3.6.3", "libc", 250_000),
    _p("libustream-mbedtls", "2024.07.28", "libubox libmbedtls", 8_000),
    _p("libopenssl3", "3.0.16", "libc", 900_000, provides=("libopenssl",), abi="3",
       files=("/usr/lib/libcrypto.so.3", "/usr/lib/libssl.so.3")),
    _p("libopenssl-conf", "3.0.16", "libopenssl", 3_000, files=("/etc/ssl/openssl.cnf",)),
    _p("libopenssl-legacy", "3.0.16", "libopenssl", 40_000,
       files=("/usr/lib/ossl-modules/legacy.so",)),
    _p("logd", "2024.04.26", "libubox libubus", 10_000, files=("/sbin/logd",),
       init=(("log", 12, 0),)),
    _p("mtd", "26", "libc", 12_000, files=("/sbin/mtd",)),
    _p("netifd", "2024.12.17", "libc libubox libubus libuci", 90_000,
       files=("/sbin/netifd", "/etc/config/network"), init=(("network", 20, 90),)),
    _p("odhcp6c", "2024.09.25", "libc", 30_000, files=("/usr/sbin/odhcp6c",)),
    _p("odhcpd-ipv6only", "2024.05.08", "libc libubox libuci libubus", 40_000,
       files=("/usr/sbin/odhcpd",), init=(("odhcpd", 35, 85),)),
    _p("opkg", "2024.10.16", "libc", 60_000, files=("/bin/opkg", "/etc/opkg.conf"),
       only=("opkg",)),
    _p("apk-mbedtls", "3.0.0_pre20250113", "libc libmbedtls", 140_000, provides=("apk",),
       files=("/usr/bin/apk",), only=("apk",)),
    _p("ppp", "2.5.1", "libc kmod-ppp", 90_000, files=("/usr/sbin/pppd",)),
    _p("ppp-mod-pppoe", "2.5.1", "ppp kmod-pppoe", 12_000),
    _kmod("kmod-ppp"), _kmod("kmod-pppoe", "kmod-ppp"),
    _p("procd", "2024.12.22", "ubusd ubus libubox", 60_000, files=("/sbin/procd",),
       init=(("gpio_switch", 94, 0), ("led", 96, 0), ("sysfixtime", 0, 0))),
    _p("procd-ujail", "2024.12.22", "procd", 40_000, files=("/sbin/ujail",)),
    _p("ubox", "2024.04.26", "libubox libubus", 15_000, files=("/sbin/kmodloader",)),
    _p("ubus", "2025.01.02", "libubus", 8_000, files=("/bin/ubus",)),
    _p("ubusd", "2025.01.02", "libubox", 12_000, files=("/sbin/ubusd",)),
    _p("uci", "2025.01.20", "libuci", 8_000, files=("/sbin/uci",)),
    _p("ucode", "2025.02.10", "libc", 70_000, files=("/usr/bin/ucode",)),
    _p("uclient-fetch", "2024.10.22", "libubox", 10_000, files=("/bin/uclient-fetch",)),
    _p("urandom-seed", "3", "", 1_500, files=("/lib/preinit/81_urandom_seed",),
       init=(("urandom_seed", 99, 0),)),
    _p("urngd", "2023.11.01", "libubox", 6_000, files=("/sbin/urngd",),
       init=(("urngd", 0, 0),)),
    _p("uboot-envtools", "2024.07", "libc", 20_000, files=("/usr/sbin/fw_printenv",)),
    # OpenWrt's iproute2: separate files, ALTERNATIVES for /sbin/ip, no conflict.
    _p("ip-tiny", "6.11.0", "libc libnl-tiny", 150_000, provides=("ip",),
       files=("/usr/libexec/ip-tiny",)),
    _p("ip-full", "6.11.0", "libc libnl-tiny libbpf", 230_000, provides=("ip",),
       files=("/usr/libexec/ip-full",)),
    _p("libnl-tiny", "2023.12.05", "libc", 15_000), _p("libbpf", "1.4.6", "libc", 120_000),
    _p("bash", "5.2.37", "libc", 300_000, files=("/bin/bash",)),
    _p("iptables-nft", "1.8.10", "libc kmod-nft-core", 50_000, provides=("iptables",),
       files=("/usr/sbin/iptables",)),
    _p("ip6tables-nft", "1.8.10", "libc kmod-nft-core", 10_000, provides=("ip6tables",),
       files=("/usr/sbin/ip6tables",)),
    _p("iptables-mod-ipsec", "1.8.10", "libc kmod-ipt-ipsec", 4_000),
    _p("nvram", "11", "libc", 5_000, files=("/usr/sbin/nvram",)),
    _p("otrx", "2024.01.01", "libc", 5_000, files=("/usr/bin/otrx",)),
    _p("osafeloader", "2024.01.01", "libc", 5_000, files=("/usr/bin/osafeloader",)),
    _p("oseama", "2024.01.01", "libc", 5_000, files=("/usr/bin/oseama",)),
    _p("swconfig", "12", "libc libuci libnl-tiny", 10_000, files=("/sbin/swconfig",)),
    _p("wpad-basic-mbedtls", "2024.09.15", "libc libubus libmbedtls", 300_000,
       files=("/usr/sbin/wpad",), provides=("hostapd", "wpa-supplicant"),
       init=(("wpad", 19, 0),)),
    _p("brcmfmac-firmware-4366b1-pcie", "20241110", "", 500_000),
    _p("brcmfmac-firmware-4366c0-pcie", "20241110", "", 500_000),
    _p("brcmfmac-firmware-43602a1-pcie", "20241110", "", 350_000),
    _p("ath10k-firmware-qca988x-ct", "2020.11.08", "", 300_000),
    _p("luci", "25.051", "uhttpd rpcd", 2_000), _p("uhttpd", "2023.06.25", "libubox", 30_000,
       files=("/usr/sbin/uhttpd",), init=(("uhttpd", 50, 0),)),
    _p("rpcd", "2024.09.17", "libubus libuci", 30_000, init=(("rpcd", 12, 0),)),
    _p("luci-ssl", "25.051", "luci libustream-mbedtls", 1_000),
    _p("attendedsysupgrade-common", "11", "rpcd", 3_000),
    _p("luci-app-attendedsysupgrade", "25.051", "luci attendedsysupgrade-common", 20_000),
    _p("wireguard-tools", "1.0.20210914", "libc kmod-wireguard", 40_000, files=("/usr/bin/wg",)),
    _kmod("kmod-wireguard", size=60_000),
    _p("openssl-util", "3.0.16", "libopenssl libopenssl-conf", 200_000,
       files=("/usr/bin/openssl",)),
]  # fmt: skip

# Test hook: declared large enough to overflow any profile's flash.
BLOAT = _p("double-test-bloat", "1.0", "libc", 600_000_000)


def packages(
    variant_omit: tuple[str, ...] = (), manager: str = "opkg", series: str = "24.10"
) -> list[Package]:
    """The package index (sorted by name) for one package manager."""
    allp = [*_BASE, *_KMODS, *_strongswan(series), BLOAT]
    return sorted(
        (p for p in allp if p.name not in variant_omit and (not p.only or manager in p.only)),
        key=lambda p: p.name,
    )
