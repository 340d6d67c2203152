"""What a build says about the packages it adds beyond the device profile.

``build`` prints one line per router naming what the image carries beyond the
ImageBuilder's own profile (the VPN, the release images' packages such as
LuCI, the site's ``extra_packages``, removals), and records it in build-info
(``packages.beyond_profile``). When the image is too big for the flash the
hint names what the image can do without and the site key that drops it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from owrt_vpn.render.packages import ImagePackages
    from owrt_vpn.site.model import Router, Site


def beyond_text(beyond: dict[str, list[str]]) -> str:
    """One line: ``strongSwan (N packages), luci (as the release's images), ...``."""
    parts = [f"the VPN ({len(beyond['vpn'])} packages)"]
    if beyond["release"]:
        parts.append(f"{' '.join(beyond['release'])} (as the release's own images)")
    if beyond["site"]:
        parts.append(f"{' '.join(beyond['site'])} (extra_packages)")
    text = ", ".join(parts)
    if beyond["removed"]:
        text += f"; removed: {' '.join(beyond['removed'])}"
    return text


def too_big_hint(site: Site, router: Router, pk: ImagePackages) -> str:
    """What to leave out when the image is too big, with the key that does it."""
    ways = []
    if pk.release:
        ways.append(
            f"leave out {' '.join(pk.release)} (release_packages = false for "
            f"router {router.name} or in [site])"
        )
    if pk.added:
        ways.append(f"drop {' '.join(pk.added)} from extra_packages")
    if site.settings.packages == "full":
        ways.append('use packages = "minimal" in [site] (only the plugins the site needs)')
    if not ways:
        return (
            "the image holds only the device's own packages and the VPN's: this device's "
            'flash is too small (remove default packages with "-name" in extra_packages, '
            "e.g. -ppp -ppp-mod-pppoe without PPPoE)"
        )
    return "; or ".join(ways)
