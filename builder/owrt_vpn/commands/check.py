"""`check`: validate the site file and report every problem at once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from owrt_vpn.profiles import DEFAULT_MIRROR
from owrt_vpn.ui.state import state

if TYPE_CHECKING:
    from owrt_vpn.site.model import Site


def register(app: typer.Typer) -> None:
    """Add `check`."""
    app.command("check")(check)


def check(
    ctx: typer.Context,
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="Also resolve each router on the mirror (signed sha256sums and profiles.json).",
        ),
    ] = False,
    mirror: Annotated[
        str,
        typer.Option(metavar="URL|DIR", envvar="OWRT_VPN_MIRROR", help="The mirror for --online."),
    ] = DEFAULT_MIRROR,
    trust_key: Annotated[
        list[Path] | None,
        typer.Option(metavar="FILE", help="Also trust this usign public key (--online)."),
    ] = None,
) -> None:
    """Validate the site file and report every problem at once.

    Releases, targets, devices and extra packages are checked against what an
    earlier build downloaded, else the data owrt-vpn ships; what could not be
    checked offline is listed (--online asks the mirror).
    """
    from owrt_vpn.build.dist_modes import loose_modes
    from owrt_vpn.build.preflight import preflight
    from owrt_vpn.errors import ConfigError
    from owrt_vpn.imagebuilder.cache import cache_root
    from owrt_vpn.pki.audit import check_pki
    from owrt_vpn.render import checks
    from owrt_vpn.ui.gitignore import tracked_warning

    st = state(ctx)
    site = st.load_site()
    if online:
        _online(site, mirror, tuple(trust_key or ()))
    pre = preflight(site, cache_root())
    if pre.problems:
        raise ConfigError(pre.problems, hint="`owrt-vpn check --online` asks the mirror")
    # Every PKI file parsed and chain-checked (exit 3 naming the file); loose
    # modes warned about and repaired on files we own.
    warnings = check_pki(site.pki_path)
    # The same for the secrets under dist/<site> (builds' default dist root, from
    # here and beside the site file): images, overlay.tar, bundles.
    for root in dict.fromkeys([Path("dist").resolve(), (site.base_dir / "dist").resolve()]):
        warnings += loose_modes(root / site.name, repair=True)
    warnings += checks.site_warnings(site)
    tracked = tracked_warning(site.base_dir)
    if tracked:
        warnings.append(tracked)
    for w in warnings:
        st.warn(w)
    for item in pre.unchecked:
        st.info(f"not checked offline: {item}")
    # The next step of the Quick start (README): a cheap look at the files,
    # without opening the PKI (check must stay fast and needs no passphrase).
    if not (site.pki_path / "ca.crt").is_file():
        step = "`owrt-vpn pki init` (creates the CA and the certificates)"
    else:
        step = "`owrt-vpn build` (firmware and client bundles into dist/)"
    st.emit(
        {
            "ok": True,
            "site": site.name,
            "site_file": st.site_display,
            "routers": [r.name for r in site.routers],
            "users": [u.name for u in site.users],
            "warnings": warnings,
            "unchecked": pre.unchecked,
        },
        f"{st.site_display}: ok ({len(site.routers)} router(s), {len(site.users)} user(s))"
        f"\nnext: {step}",
    )


def _online(site: Site, mirror_url: str, trust_keys: tuple[Path, ...]) -> None:
    """Resolve every router on the mirror like `build` (verified), remembering the metadata."""
    from owrt_vpn.build.plan import BuildOptions, plan
    from owrt_vpn.errors import OwrtVpnError
    from owrt_vpn.imagebuilder import metadata, mirror
    from owrt_vpn.imagebuilder.cache import Transport, cache_root
    from owrt_vpn.imagebuilder.keys import Keyring
    from owrt_vpn.site.keys import router_key

    keyring = Keyring.load(trust_keys)
    transport = Transport()
    url = mirror.normalize_mirror(mirror_url)
    for p in plan(site, BuildOptions(mirror=url)):
        try:
            res = mirror.resolve(
                url, p.release, p.target, p.subtarget, p.device, keyring, transport
            )
        except OwrtVpnError as exc:
            # The mirror's answer names a release or device, not which router of the
            # site asked for it: say the file and the router, as for every bad input.
            if not getattr(exc, "problems", ()):
                exc.message = f"{site.path.name}: {router_key(p.name)}: {exc.message}"
                exc.args = (exc.message,)
            raise
        metadata.remember(
            cache_root(),
            res.release,
            res.target,
            res.subtarget,
            profiles=list(res.profile_ids) or None,
            default_packages=[str(x) for x in res.profiles_meta.get("default_packages", [])],
        )
