"""``bench/run.py --profile DIR``: pyinstrument reports of the paths the figures time.

One text report per command (the CLI under ``python -m pyinstrument``):
a forced rebuild of one router (warm cache), the no-op rebuild, and
``pki init`` + ``bundle`` for 300 users with ECDSA devices. Worker
processes (the PKI's big batches) are not sampled, their parent is.
"""

from __future__ import annotations

from pathlib import Path

from lab import Lab, site_text
from pki_bench import ECDSA_PLATFORMS

USERS = 300


def _profiled(lb: Lab, report: Path, cwd: Path, *args: str) -> None:
    python = ["-m", "pyinstrument", "-r", "text", "-o", str(report), "-i", "0.001"]
    lb.owrt(*args, cwd=cwd, python=python)


def write(lb: Lab, out: Path) -> dict[str, str]:
    """Profile each hot path into ``out``; {name: report path}."""
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        raise SystemExit("bench: --profile needs pyinstrument (pip install -e '.[test]')") from None
    out.mkdir(parents=True, exist_ok=True)
    site = lb.site("profiled")
    lb.owrt("pki", "init", cwd=site)
    lb.build(site)  # warm: the ImageBuilder and its manifest are cached
    mirror = ("--mirror", lb.mirror_url, "--trust-key", lb.trust_key)
    reports = {
        "build-rebuild": ("build", *mirror, "--force"),
        "build-noop": ("build", *mirror),
    }
    done = {}
    for name, args in reports.items():
        path = out / f"{name}.txt"
        _profiled(lb, path, site, *args)
        done[name] = str(path)
    users = [
        (f"u{i:04d}", "pubkey", [("d", ECDSA_PLATFORMS[i % len(ECDSA_PLATFORMS)])])
        for i in range(USERS)
    ]
    many = lb.site("profiled-users", site_text(["gw"], users, pool_prefix=20))
    for name, args in (
        ("pki-init", ("pki", "init")),
        ("bundle", ("bundle", "--password-file", str(many.parent / "profiled-passwords.txt"))),
    ):
        path = out / f"{name}-{USERS}-users.txt"
        _profiled(lb, path, many, *args)
        done[name] = str(path)
    return done
