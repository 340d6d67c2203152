"""What the ImageBuilder double knows: releases, targets, device profiles, packages.

The names are the real OpenWrt ones (openwrt/openwrt target image Makefiles,
openwrt/packages ``net/strongswan/Makefile`` of 5.9.11, downloads.openwrt.org
``profiles.json``). Versions, revisions, epochs and sizes are plausible
stand-ins, not copies: nothing may depend on their exact values.

This module is plain data plus small lookups; ``archive.py`` renders it into
the text files the double's shell implementation reads inside the archive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# --------------------------------------------------------------------------- releases


@dataclass(frozen=True)
class Release:
    """One OpenWrt release as the download site and the ImageBuilder describe it."""

    version: str
    revision: str  # VERSION_CODE / DISTRIB_REVISION, "rNNNNN-hash"
    source_date_epoch: int
    kernel: str  # kernel version the kmod packages carry
    strongswan: str
    package_manager: str  # "opkg" or "apk"

    @property
    def is_snapshot(self) -> bool:
        """The snapshot build (``snapshots/``, no version in file names)."""
        return self.version == "SNAPSHOT"

    @property
    def series(self) -> str:
        """``"24.10"`` for ``"24.10.2"``; snapshots sort after every release."""
        if self.is_snapshot:
            return "99.99"
        # a release branch's nightly build (24.10-SNAPSHOT) belongs to its series
        return ".".join(self.version.removesuffix("-SNAPSHOT").split(".")[:2])

    @property
    def file_version(self) -> str:
        """``"24.10.2-"`` as it appears in file names; empty for snapshots."""
        return "" if self.is_snapshot else f"{self.version}-"

    @property
    def download_dir(self) -> str:
        """``releases/24.10.2`` or ``snapshots`` (relative to the mirror base)."""
        return "snapshots" if self.is_snapshot else f"releases/{self.version}"

    @property
    def archive_ext(self) -> str:
        """``tar.xz`` up to 23.05.x, ``tar.zst`` from 24.10 on."""
        return "tar.xz" if self.series <= "23.05" else "tar.zst"

    def pkg_version(self, upstream: str, release: int = 1) -> str:
        """Package version string in this release's style (``1.0-1`` vs ``1.0-r1``)."""
        if self.series <= "23.05":
            return f"{upstream}-{release}"
        return f"{upstream}-r{release}"


RELEASES: dict[str, Release] = {
    r.version: r
    for r in (
        Release("23.05.5", "r24106-10cc5fcd00", 1727094886, "5.15.167", "5.9.11", "opkg"),
        Release("24.10.1", "r28597-0425664679", 1744562312, "6.6.86", "5.9.14", "opkg"),
        Release("24.10.2", "r28739-d9340319c6", 1750711236, "6.6.93", "5.9.14", "opkg"),
        Release("25.12.0", "r32162-4ad84ee2b1", 1768435200, "6.12.58", "6.0.3", "apk"),
        Release("SNAPSHOT", "r32544-0b4e1a0c3d", 1770000000, "6.12.63", "6.0.7", "apk"),
        # a release branch (releases/24.10-SNAPSHOT/ on the download site)
        Release("24.10-SNAPSHOT", "r28801-5b1a0e77f2", 1751000000, "6.6.93", "5.9.14", "opkg"),
    )
}
SNAPSHOT_ALIASES = {"snapshot": "SNAPSHOT", "SNAPSHOT": "SNAPSHOT"}


def release(name: str) -> Release:
    """A release by version (``"snapshot"`` accepted for ``SNAPSHOT``)."""
    return RELEASES[SNAPSHOT_ALIASES.get(name, name)]


STABLE = "24.10.2"
OLDSTABLE = "23.05.5"
UPCOMING = "25.12.0"

# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Profile:
    """One device profile (``DEVICE_<id>`` in the target's image Makefile)."""

    id: str
    vendor: str
    model: str
    variant: str
    device_packages: tuple[str, ...]
    supported_devices: tuple[str, ...]
    # (type, file suffix after "<prefix>-<profile>-"), e.g. ("trx", "squashfs.trx")
    images: tuple[tuple[str, str], ...]
    flash_kib: int  # IMAGE_SIZE: larger images get "WARNING: Image file ... is too big"

    @property
    def title(self) -> str:
        """The name line of ``make info`` (``TP-Link Archer C7 v2``)."""
        return " ".join(p for p in (self.vendor, self.model, self.variant) if p)


@dataclass(frozen=True)
class Target:
    """A target/subtarget pair and its profiles."""

    target: str
    subtarget: str
    arch: str  # kernel ARCH, printed by make info
    arch_packages: str  # package architecture (.targets.json value)
    default_packages: tuple[str, ...]  # target-specific additions to the base set
    kernel_bytes: int  # the kernel's share of every image, for the size check
    profiles: tuple[Profile, ...]

    @property
    def id(self) -> str:
        """``"bcm53xx/generic"``."""
        return f"{self.target}/{self.subtarget}"


_USB3 = ("kmod-usb-ohci", "kmod-usb2", "kmod-usb3", "kmod-phy-bcm-ns-usb2", "kmod-phy-bcm-ns-usb3")
_USB2 = ("kmod-usb-ohci", "kmod-usb2", "kmod-phy-bcm-ns-usb2")

_BCM53XX = Target(
    "bcm53xx",
    "generic",
    "arm",
    "arm_cortex-a9",
    ("kmod-gpio-button-hotplug", "kmod-leds-gpio", "nvram", "osafeloader", "oseama", "otrx"),
    3_200_000,
    (
        Profile(
            "asus_rt-ac68u",
            "ASUS",
            "RT-AC68U",
            "",
            _USB3,
            ("asus,rt-ac68u",),
            (("trx", "squashfs.trx"),),
            32768,
        ),
        Profile(
            "dlink_dir-885l",
            "D-Link",
            "DIR-885L",
            "",
            ("kmod-brcmfmac", "brcmfmac-firmware-4366b1-pcie", *_USB3),
            ("dlink,dir-885l",),
            (("bin", "squashfs.bin"),),
            131072,
        ),
        Profile(
            "netgear_r7000",
            "Netgear",
            "R7000",
            "",
            ("kmod-brcmfmac", "brcmfmac-firmware-43602a1-pcie", *_USB3),
            ("netgear,r7000",),
            (("chk", "squashfs.chk"),),
            131072,
        ),
        Profile(
            "phicomm_k3",
            "Phicomm",
            "K3",
            "",
            ("kmod-brcmfmac", "brcmfmac-firmware-4366c0-pcie", *_USB3),
            ("phicomm,k3",),
            (("trx", "squashfs.trx"),),
            131072,
        ),
        Profile(
            "tenda_ac9",
            "Tenda",
            "AC9",
            "",
            ("kmod-b43", *_USB2),
            ("tenda,ac9",),
            (("trx", "squashfs.trx"),),
            8192,
        ),
    ),
)

_SYSUP = ("sysupgrade", "squashfs-sysupgrade.bin")
_FACTORY = ("factory", "squashfs-factory.bin")
_ATH10K = ("kmod-ath10k-ct", "ath10k-firmware-qca988x-ct")

_ATH79 = Target(
    "ath79",
    "generic",
    "mips",
    "mips_24kc",
    ("kmod-gpio-button-hotplug", "swconfig", "kmod-ath9k", "uboot-envtools", "wpad-basic-mbedtls"),
    2_400_000,
    (
        Profile(
            "8dev_carambola2", "8devices", "Carambola2", "", ("kmod-usb-chipidea2",),
            ("8dev,carambola2",), (_SYSUP,), 16000,
        ),
        Profile(
            "netgear_wndr3700-v2", "Netgear", "WNDR3700", "v2",
            ("kmod-usb2", "kmod-usb-ledtrig-usbport", "kmod-leds-reset"),
            ("netgear,wndr3700-v2",), (_SYSUP, _FACTORY), 15872,
        ),
        Profile(
            "tplink_archer-c7-v2", "TP-Link", "Archer C7", "v2",
            ("kmod-usb2", "kmod-usb-ledtrig-usbport", *_ATH10K),
            ("tplink,archer-c7-v2",), (_SYSUP, _FACTORY), 15872,
        ),
        Profile(
            "tplink_archer-c7-v5", "TP-Link", "Archer C7", "v5",
            ("kmod-usb2", "kmod-usb-ledtrig-usbport", *_ATH10K),
            ("tplink,archer-c7-v5",), (_SYSUP, _FACTORY), 15360,
        ),
        Profile(
            "tplink_tl-wdr4300-v1", "TP-Link", "TL-WDR4300", "v1",
            ("kmod-usb2", "kmod-usb-ledtrig-usbport"),
            ("tplink,tl-wdr4300-v1",), (_SYSUP, _FACTORY), 7808,
        ),
    ),
)  # fmt: skip

TARGETS: dict[str, Target] = {t.id: t for t in (_BCM53XX, _ATH79)}

# Base default packages (include/target.mk DEFAULT_PACKAGES + .router), before
# the target's own additions. opkg or apk is added per release.
BASE_DEFAULTS = (
    "base-files", "ca-bundle", "dropbear", "fstools", "libc", "libgcc", "libustream-mbedtls",
    "logd", "mtd", "netifd", "uci", "uclient-fetch", "urandom-seed", "urngd", "busybox",
    "procd-ujail", "dnsmasq", "firewall4", "nftables", "kmod-nft-offload", "odhcp6c",
    "odhcpd-ipv6only", "ppp", "ppp-mod-pppoe",
)  # fmt: skip


def default_packages(target: Target, manager: str) -> list[str]:
    """DEFAULT_PACKAGES of a target for a release's package manager."""
    return sorted({*BASE_DEFAULTS, *target.default_packages, manager})


@dataclass(frozen=True)
class Variant:
    """Knobs for special ImageBuilders in tests.

    ``package_manager``: force ``opkg``/``apk`` (default: the release's).
    ``omit_packages``: drop names from the index (e.g. ``strongswan-full``,
    missing from some 24.10 feeds). ``flash_kib``: override profile flash sizes.
    ``kernel_kib``: a kernel partition limit per profile (KERNEL_SIZE of the
    real device definitions): a larger kernel gets Build/check-size's "WARNING:
    Image file <KDIR>/<device>-kernel.bin is too big: <n> > <limit>" and no
    image. ``disk_free_kib``: the build host's free space for the root file
    system (apk reports "No space left on device" beyond it).
    """

    package_manager: str | None = None
    omit_packages: tuple[str, ...] = ()
    flash_kib: dict[str, int] = field(default_factory=dict)
    kernel_kib: dict[str, int] = field(default_factory=dict)
    disk_free_kib: int | None = None

    def key(self) -> tuple[object, ...]:
        """Hashable identity (for caches)."""
        return (
            self.package_manager,
            self.omit_packages,
            tuple(sorted(self.flash_kib.items())),
            tuple(sorted(self.kernel_kib.items())),
            self.disk_free_kib,
        )
