"""Bundle provenance: what a user's bundles were made from (``bundle-info.json``).

``<clients>/<user>/bundle-info.json`` holds digests only (what the bundles
carry from the site file: :class:`owrt_vpn.site.digest.BundleSiteInputs`; the
user's PKI files and index records: :class:`owrt_vpn.pki.digest.PkiDigests`;
owrt-vpn's code and data; SOURCE_DATE_EPOCH). The bundle writer writes it
with each user's bundles; ``build`` compares it to skip bundles that are
current, ``verify`` to tell changed inputs from a reproducibility failure.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from owrt_vpn import __version__
from owrt_vpn.codegraph import code_digest
from owrt_vpn.pki.digest import PkiDigests
from owrt_vpn.repro import source_date_epoch, tree_digest
from owrt_vpn.site.digest import BundleSiteInputs
from owrt_vpn.site.model import Site

BUNDLE_INFO = "bundle-info.json"
BUNDLE_INFO_FORMAT = 1
# The modules that make bundles from a site file: the code key is their
# import closure (the site loader and its rules, the writer, every platform).
BUNDLE_ENTRIES = ("owrt_vpn.site.load", "owrt_vpn.bundles.writer", "owrt_vpn.bundles.provenance")


@cache
def bundle_tool_digest() -> dict[str, str]:
    """owrt-vpn's version and digests of the code and data that shape a bundle.

    The code is every module the bundle writer can reach (its import closure),
    so no module that shapes a bundle can be left out of the key.
    """
    from owrt_vpn.resources import data_dir

    try:
        data = tree_digest(data_dir("profiles"))
    except FileNotFoundError:
        data = ""
    code = code_digest(*BUNDLE_ENTRIES)
    return {"version": __version__, "code": code, "profiles": data}


def bundle_inputs(site: Site, user: str) -> dict[str, Any]:
    """What one user's bundles are made from (written as ``bundle-info.json``)."""
    return BundleInputs(site).of(user)


class BundleInputs:
    """:func:`bundle_inputs` for many users of one site: the site's settings and
    router tables, the CA certificate and ``index.json`` digested once, not once
    per user (the no-op bundle check of a 1,000-user build reads them all)."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.site_inputs = BundleSiteInputs(site)
        self.pki = PkiDigests(site.pki_path)
        self._users = {u.name: u for u in site.users}

    def of(self, user: str) -> dict[str, Any]:
        """The inputs of ``user``'s bundles: what they carry from the site file
        (not the whole file: an edit elsewhere leaves them current), the user's
        PKI material, owrt-vpn's bundle code, SOURCE_DATE_EPOCH."""
        site = self.site
        return {
            "format": BUNDLE_INFO_FORMAT,
            "user": user,
            "tool": bundle_tool_digest(),
            "site": {
                "name": site.name,
                "file": site.path.name,
                **self.site_inputs.of(self._users[user]),
            },
            "pki": self.pki.user(user),
            "source_date_epoch": source_date_epoch(),
        }

    def write(self, folder: Path, user: str) -> None:
        """Write ``folder/bundle-info.json`` for ``user`` (digests only, no time)."""
        import json

        from owrt_vpn.fsutil import write_atomic

        data = json.dumps(self.of(user), indent=2, sort_keys=True) + "\n"
        # As durable as the bundle files beside it (not synced one by one).
        write_atomic(folder / BUNDLE_INFO, data, 0o644, sync=False)
