"""`check`: validate the site file and report every problem at once."""

from __future__ import annotations

import typer

from owrt_vpn.ui.state import state


def register(app: typer.Typer) -> None:
    """Add `check`."""
    app.command("check")(check)


def check(ctx: typer.Context) -> None:
    """Validate the site file and report every problem at once."""
    from owrt_vpn.pki.audit import check_pki
    from owrt_vpn.render import checks
    from owrt_vpn.ui.gitignore import tracked_warning

    st = state(ctx)
    site = st.load_site()
    # Every PKI file parsed and chain-checked (exit 3 naming the file); loose
    # modes warned about and repaired on files we own.
    warnings = check_pki(site.pki_path)
    warnings += checks.site_warnings(site)
    tracked = tracked_warning(site.base_dir)
    if tracked:
        warnings.append(tracked)
    for w in warnings:
        st.warn(w)
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
        },
        f"{st.site_display}: ok ({len(site.routers)} router(s), {len(site.users)} user(s))"
        f"\nnext: {step}",
    )
