"""Benchmark 3: PKI + client bundles for many users, against the guide's own recipe.

Ours: a site with N users of one device each, then ``owrt-vpn pki init`` (CA,
server certificate, every device key + certificate + PKCS#12) and ``owrt-vpn
bundle`` (every bundle file, zips, password file), timed together.
The guide's: its "Making Keys" shell script (``guide_recipe.sh``): per user
``ipsec pki --gen``, ``--pub | --issue``, ``openssl x509`` (twice) and
``openssl pkcs12 -export``, one process after the other as the guide runs
them. The ratio compares the time per user; the guide's side only makes
certificates and .p12 files (no profiles, READMEs or zips) and is timed
without its CA step, so the comparison leans in the guide's favour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab import Lab, median, repeat, site_text, timed

# Platforms whose device certificates are ECDSA P-256 (pki.client_key_type_for);
# Android's built-in client gets RSA-3072.
ECDSA_PLATFORMS = ("ios", "macos", "windows", "linux", "android-strongswan")
RSA_PLATFORMS = ("android",)
RECIPE = Path(__file__).resolve().parent / "guide_recipe.sh"


def ours(
    lb: Lab, label: str, users: int, platforms: tuple[str, ...], build: bool = False
) -> dict[str, Any]:
    """``pki init`` + ``bundle`` for ``users`` users, one device each; with ``build``
    also the firmware of the site's router: overhead and no-op with that many users."""
    spec = [(f"u{i:04d}", "pubkey", [("d", platforms[i % len(platforms)])]) for i in range(users)]
    site = lb.site(label, site_text(["gw"], spec, pool_prefix=20))
    pki = lb.owrt("pki", "init", cwd=site)
    passwords = site.parent / f"{label}-passwords.txt"  # outside --out, as the CLI requires
    bundle = lb.owrt("bundle", "--password-file", str(passwords), cwd=site)
    clients = site / "dist" / "bench" / "clients"
    zips = list(clients.rglob("*.zip"))
    if len(zips) != users:
        raise RuntimeError(f"{label}: {len(zips)} bundles for {users} users")
    files = sum(1 for p in clients.rglob("*") if p.is_file())
    total = pki.wall + bundle.wall
    firmware = _firmware(lb, site) if build else None
    return {
        **({"firmware": firmware} if firmware else {}),
        "users": users,
        "platforms": list(platforms),
        "pki_wall": round(pki.wall, 3),
        "bundle_wall": round(bundle.wall, 3),
        "wall": round(total, 3),
        "cpu": round(pki.cpu + bundle.cpu, 3),
        "per_user_ms": round(1000 * total / users, 2),
        "files_written": files,
    }


def _firmware(lb: Lab, site: Path) -> dict[str, Any]:
    """Build the router of a big site, rebuild it (--force), then no-op builds."""
    from build_bench import _split

    lb.build(site)  # first: ImageBuilder cached already, overlay with every user
    forced = _split(lb.build(site, "--force"))
    noops = repeat(3, lambda: lb.build(site))
    return {
        "overhead": round(forced["overhead"], 3),
        "make_image": round(forced["make_image"], 3),
        "noop_wall": median([r.wall for r in noops]),
    }


def guide(lb: Lab, label: str, users: int, key_type: str, key_size: int) -> dict[str, Any]:
    """The guide's script for ``users`` clients (CA and server first, untimed in the ratio)."""
    work = lb.root / "guide" / label
    work.mkdir(parents=True)
    names = " ".join(f"u{i:04d}" for i in range(users))
    argv = ["sh", str(RECIPE), str(work)]
    ca = timed([*argv, "ca", key_type, str(key_size), ""], work, lb.env)
    clients = timed([*argv, "clients", key_type, str(key_size), names], work, lb.env)
    made = len(list(work.glob("client_*.p12")))
    if made != users:
        raise RuntimeError(f"guide recipe {label}: {made} .p12 files for {users} users")
    return {
        "users": users,
        "client_key": f"{key_type}-{key_size}",
        "ca_and_server_wall": round(ca.wall, 3),
        "wall": round(clients.wall, 3),
        "cpu": round(clients.cpu, 3),
        "per_user_ms": round(1000 * clients.wall / users, 2),
    }


def pki_bundles(lb: Lab, n_ecdsa: int, n_rsa: int, n_guide_ecdsa: int, n_guide_rsa: int) -> Any:
    """Benchmark 3: ECDSA and RSA-3072 devices, ours vs the guide's recipe."""
    ecdsa = ours(lb, "ecdsa", n_ecdsa, ECDSA_PLATFORMS, build=True)
    rsa = ours(lb, "rsa", n_rsa, RSA_PLATFORMS)
    g_ecdsa = guide(lb, "ecdsa", n_guide_ecdsa, "ecdsa", 256)
    g_rsa = guide(lb, "rsa", n_guide_rsa, "rsa", 3072)
    for mine, theirs in ((ecdsa, g_ecdsa), (rsa, g_rsa)):
        mine["guide"] = theirs
        mine["guide_per_user_over_ours"] = round(theirs["per_user_ms"] / mine["per_user_ms"], 2)
        mine["scaled_to_1000_users_wall"] = round(mine["per_user_ms"], 3)  # ms/user x 1000 = s
        theirs["scaled_to_1000_users_wall"] = round(theirs["per_user_ms"], 3)
    return {"ecdsa": ecdsa, "rsa3072": rsa}
