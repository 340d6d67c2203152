"""The driver reads the ImageBuilder's real wording (owrt_vpn.imagebuilder.backends.output).

The texts below are laid out as the sources print them (see that module's
docstring for where each was read): opkg collects its errors and prints each
as `` * <message>``, so the dependencies of one "Cannot satisfy" share a line;
apk prints its solver report with two-space labels (on stdout, which `make
manifest` discards); OpenWrt's Build/check-size prints the same "Image file
... is too big" for an image and for a kernel. The double's own output is
tested end to end in tests/integration/test_build_failures.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from owrt_vpn.imagebuilder.backends.base import BuildRequest
from owrt_vpn.imagebuilder.backends.output import (
    apk_explanation_missing,
    diagnose,
    parse_package_list,
)

K3 = "openwrt-24.10.2-vpn-gw-bcm53xx-generic-phicomm_k3-squashfs.trx"
KDIR = "/ib/build_dir/target-arm_cortex-a9_musl_eabi/linux-bcm53xx_generic"
WHERE = "bcm53xx/generic phicomm_k3: "
APK_ERROR = "ERROR: unable to select packages:\n"

# (what the ImageBuilder printed, the error message the driver gives)
CASES = {
    "opkg: unresolved candidate, and dependencies sharing one line": (
        "Unknown package 'strongswan-mod-openssl'.\n"
        "Collected errors:\n"
        " * pkg_hash_check_unresolved: cannot find dependency libopenssl3 for "
        "strongswan-mod-openssl\n"
        " * satisfy_dependencies_for: Cannot satisfy the following dependencies for "
        "strongswan-mod-eap-mschapv2:\n"
        " * \tstrongswan-mod-md4 * \tstrongswan-mod-des * \n"
        " * opkg_install_cmd: Cannot install package strongswan-mod-eap-mschapv2.\n",
        "cannot satisfy the dependencies of strongswan-mod-openssl (missing: libopenssl3); "
        "strongswan-mod-eap-mschapv2 (missing: strongswan-mod-md4, strongswan-mod-des)",
    ),
    # "Unknown package 'P'." is a NOTICE on stdout, which make manifest discards
    "opkg: make manifest leaves the collected error": (
        "Collected errors:\n"
        " * opkg_install_cmd: Cannot install package luci-app-nope.\n"
        "make[2]: *** [Makefile:224: package_install] Error 255\n",
        "unknown package(s) for this release/target: luci-app-nope",
    ),
    "opkg: Conflicts field": (
        "Collected errors:\n"
        " * check_conflicts_for: The following packages conflict with dnsmasq-full:\n"
        " * check_conflicts_for: \tdnsmasq * \n"
        " * opkg_install_cmd: Cannot install package dnsmasq-full.\n",
        "package conflict: dnsmasq-full conflicts with dnsmasq",
    ),
    # as reported in openwrt/openwrt#15103 (dnsmasq-full without -dnsmasq)
    "opkg: variants installing the same file": (
        "Collected errors:\n"
        " * check_data_file_clashes: Package dnsmasq-full wants to install file "
        "/scratch/union/build_dir/target-x86_64_musl/root-x86/etc/hotplug.d/ntp/25-dnsmasqsec\n"
        "\tBut that file is already provided by package  * dnsmasq\n"
        " * opkg_install_cmd: Cannot install package dnsmasq-full.\n",
        "package conflict: dnsmasq-full conflicts with dnsmasq (both install "
        "/etc/hotplug.d/ntp/25-dnsmasqsec)",
    ),
    "apk: a package asked for": (
        APK_ERROR + "  luci-app-nope (no such package):\n    required by: world[luci-app-nope]\n",
        "unknown package(s) for this release/target: luci-app-nope",
    ),
    "apk: a dependency": (
        APK_ERROR + "  libopenssl3 (no such package):\n"
        "    required by: strongswan-mod-openssl-6.0.3-r1[libopenssl3]\n",
        "cannot satisfy the dependencies of strongswan-mod-openssl (missing: libopenssl3)",
    ),
    "apk: make manifest leaves the ERROR line only": (
        APK_ERROR + "make: *** [Makefile:192: manifest] Error 2\n",
        "apk cannot select these packages (an unknown package, a conflict, or a dependency "
        "no feed has)",
    ),
    # in colour, as make's ERROR_MESSAGE may print it on a terminal
    "an image too big": (
        f"\x1b[31;1m    WARNING: Image file {KDIR}/tmp/{K3} is too big: 9000000 > 8192000\x1b[m\n",
        f"the image is too big for the device's flash: {K3} (9000000 > 8192000 bytes)",
    ),
    "an image too big, old wording (no numbers)": (
        f"WARNING: Image file {KDIR}/tmp/{K3} is too big\n",
        f"the image is too big for the device's flash: {K3}",
    ),
    "the kernel too big": (
        f"    WARNING: Image file {KDIR}/phicomm_k3-kernel.bin is too big: 4629092 > 4194304\n",
        "this release's kernel is too big for the kernel partition of phicomm_k3 "
        "(phicomm_k3-kernel.bin, 4629092 > 4194304 bytes; no image was made)",
    ),
}


def _req(tmp_path: Path) -> BuildRequest:
    return BuildRequest(
        tmp_path, "0" * 64, "phicomm_k3", (), (), "vpn-gw", (K3,), tmp_path, tmp_path / "log",
        target="bcm53xx/generic",
    )  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_real_wording_gets_a_specific_error(tmp_path: Path, case: str) -> None:
    output, message = CASES[case]
    err = diagnose(output, _req(tmp_path), 2, "manifest")
    assert err.message == WHERE + message


def test_insecure_plugins_say_why(tmp_path: Path) -> None:
    # md4 is one master builds only with STRONGSWAN_INCLUDE_INSECURE
    output = CASES["opkg: unresolved candidate, and dependencies sharing one line"][0]
    assert "STRONGSWAN_INCLUDE_INSECURE" in (diagnose(output, _req(tmp_path), 2, "x").hint or "")


def test_when_apk_explanation_is_missing() -> None:
    bare = APK_ERROR + "make: *** [Makefile:192: manifest] Error 2\n"
    assert apk_explanation_missing(bare)
    assert not apk_explanation_missing(bare + "  x (no such package):\n    required by: world[x]\n")
    assert not apk_explanation_missing("Collected errors:\n")


def test_package_list_lines_of_both_managers() -> None:
    opkg = (
        "luci-ssl - 25.051.60519~bc8a4ed - 1205 - LuCI with HTTPS support\n"
        " continuation - 3 - of a description\n"
        "ip-tiny - 6.11.0-r1 - 170541\n"
    )
    assert parse_package_list(opkg) == {"luci-ssl": 1205, "ip-tiny": 170541}
    apk = (
        "OK: 0 MiB in 0 packages\n"
        "luci-ssl-25.051.60519~bc8a4ed-r1 aarch64_cortex-a53 {luci-ssl} (Apache-2.0)\n"
        "dnsmasq-2.91-r1 arm_cortex-a9 {dnsmasq} (GPL-2.0) [installed]\n"
        "kmod-8021q-6.6.93-r1 arm_cortex-a9 {linux} (GPL-2.0)\n"
    )
    assert parse_package_list(apk) == {"luci-ssl": 0, "dnsmasq": 0, "kmod-8021q": 0}
