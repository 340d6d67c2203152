"""What the commands show of the PKI's work: the items an ensure issued, skipped, generated.

Shared by the commands that issue before they act: `pki` and `user` report
an ensure (:func:`ensure_report`), `push` and `doctor --router` open the PKI
for routers (:func:`open_for_routers`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from owrt_vpn.pki.policy import EnsureReport
    from owrt_vpn.routers.inventory import RouterTarget
    from owrt_vpn.site.model import Site
    from owrt_vpn.ui.state import State


def ensure_report(st: State, report: EnsureReport, show_passwords: bool = False) -> dict[str, Any]:
    """Print what an ensure did (stderr) and return it as JSON data."""
    for item in report.issued:
        st.info(f"issued {item}")
    for item in report.skipped:
        st.warn(item)
    for user in sorted(report.passwords):
        st.info(f"generated an EAP password for {user}")
    data: dict[str, Any] = {"issued": report.issued, "skipped": report.skipped}
    if show_passwords:
        data["passwords"] = dict(sorted(report.passwords.items()))
    return data


def open_for_routers(site: Site, targets: list[RouterTarget], dry_run: bool, st: State) -> Any:
    """The site's PKI, with the targets' router files issued first (unless ``dry_run``).

    PkiError when there is no PKI: the routers' files cannot be rendered.
    """
    from owrt_vpn.errors import PkiError
    from owrt_vpn.pki.authority import Pki
    from owrt_vpn.pki.store import INIT_HINT

    pki = Pki.open(site)
    if not pki.exists:
        raise PkiError(f"{pki.root}: no PKI: the routers' files cannot be rendered", hint=INIT_HINT)
    if not dry_run:
        # Serialised before the routers are contacted, as `build` does.
        for name in dict.fromkeys(t.router.name for t in targets):
            report = pki.ensure_router(site, site.router(name))
            if report.issued:
                st.info(f"{name}: issued " + ", ".join(report.issued))
            for user in report.passwords:  # the password itself is never printed here
                st.warn(f"generated an EAP password for {user} (in {pki.root / 'eap'})")
    return pki
