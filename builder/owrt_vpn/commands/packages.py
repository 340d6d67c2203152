"""`packages`: the OpenWrt package list (PACKAGES=) of each router's image."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from owrt_vpn.ui.selection import routers as chosen_routers
from owrt_vpn.ui.state import state

if TYPE_CHECKING:
    from owrt_vpn.site.model import Site


def register(app: typer.Typer) -> None:
    """Add `packages`."""
    app.command("packages")(packages_cmd)


def packages_cmd(
    ctx: typer.Context,
    router: str | None = typer.Option(
        None, "--router", metavar="NAME", help="Only this router [default: every router]."
    ),
    config_style: str | None = typer.Option(
        None, "--config-style", metavar="swanctl|ipsec", help="Override the config style."
    ),
) -> None:
    """Print the OpenWrt packages (PACKAGES=) each router's image gets."""
    from owrt_vpn.render import packages

    st = state(ctx)
    site: Site = st.load_site()
    out: list[dict[str, Any]] = []
    for r in chosen_routers(site, router):
        pk = packages.image_packages(site, r, config_style)
        pkgs = list(pk.request)
        out.append(
            {
                "router": r.name,
                "config_style": packages.config_style(r, config_style),
                "packages": pkgs,
                "disabled_services": packages.disabled_services(site, r, config_style),
                "charon_plugins": packages.charon_plugins(site, r, config_style),
                "plugin_packages": packages.plugin_package_count(pkgs),
                "beyond_profile": pk.beyond_profile(),
            }
        )
    if len(out) == 1:
        human = " ".join(out[0]["packages"])
    else:
        human = "\n".join(f"{e['router']}: {' '.join(e['packages'])}" for e in out)
    st.emit({"ok": True, "routers": out}, human)
