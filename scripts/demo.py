"""`make demo`: build example firmware and client bundles, offline.

This machine may not reach downloads.openwrt.org, so the demo starts a
loopback mirror holding the ImageBuilder *double* (tests/imagebuilder_double,
generated on the fly and signed with a throwaway key) and runs the real
``owrt-vpn`` against it for an example site in ``demo/``. The firmware it
makes comes from that stand-in: it is NOT flashable. The real build is the
same command without ``--mirror``/``--trust-key`` (see the end of the output).

Run as ``PYTHONPATH=tests .venv/bin/python scripts/demo.py`` (the Makefile does).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo"
SITE = DEMO / "site"
OWRT = [sys.executable, "-m", "owrt_vpn"]


def owrt(*args: str, env: dict[str, str]) -> None:
    """Run the real CLI in the demo site; stop the demo on failure."""
    print(f"\n$ owrt-vpn {' '.join(args)}", flush=True)
    proc = subprocess.run([*OWRT, *args], cwd=SITE, env=env, check=False)
    if proc.returncode != 0:
        sys.exit(f"demo: `owrt-vpn {' '.join(args)}` failed with status {proc.returncode}")


def main() -> int:
    """Serve the double, build the firmware and the bundles, say where they are."""
    sys.path.insert(0, str(REPO / "tests"))
    from imagebuilder_double.fixtures import start_served_mirror

    SITE.mkdir(parents=True, exist_ok=True)
    mirror_root = DEMO / "double"
    shutil.rmtree(mirror_root, ignore_errors=True)  # a fresh throwaway key every run
    served, server = start_served_mirror(mirror_root, [("24.10.2", "bcm53xx", "generic")])
    env = dict(os.environ)
    env.pop("OWRT_VPN_SITE", None)
    env.setdefault("OWRT_VPN_CA_PASSPHRASE", "demo-only-passphrase")
    env["OWRT_VPN_CACHE"] = str(DEMO / "cache")
    env["OWRT_VPN_KEYS_DIR"] = str(DEMO / "keys")
    try:
        print(f"demo: ImageBuilder double served at {served.url} (signed by a throwaway key)")
        if not (SITE / "owrt-vpn.toml").exists():
            owrt("init", "--server-id", "vpn.example.org", env=env)
        owrt(
            "build",
            "--target",
            "bcm53xx",
            "--mirror",
            served.url,
            "--trust-key",
            str(served.key.public),
            env=env,
        )
        owrt("bundle", "--password-file", str(DEMO / "bundle-passwords.txt"), env=env)
    finally:
        server.stop()

    routers = SITE / "dist" / "home" / "routers"
    clients = SITE / "dist" / "home" / "clients"
    print("\n" + "=" * 72)
    print("Firmware (one folder per router):")
    for image in sorted(routers.glob("*/*")):
        if image.suffix in (".trx", ".bin", ".chk", ".img"):
            print(f"  {image.relative_to(REPO)}")
    if clients.is_dir():
        print("Client bundles (one zip per user device):")
        for z in sorted(clients.rglob("*.zip")):
            print(f"  {z.relative_to(REPO)}")
        print(f"  their passwords: {(DEMO / 'bundle-passwords.txt').relative_to(REPO)}")
    print(
        "\nThis firmware was built by the OFFLINE STAND-IN of the OpenWrt ImageBuilder\n"
        "(tests/imagebuilder_double): it has the real layout and our real VPN files,\n"
        "but it is NOT flashable. To build the real thing on a machine that can reach\n"
        "downloads.openwrt.org (or a mirror of it, --mirror URL), run in demo/site:\n\n"
        "    owrt-vpn build --target bcm53xx\n"
    )
    print(f"The demo's CA passphrase is {env['OWRT_VPN_CA_PASSPHRASE']!r}: demo use only.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
