"""`bundle`: client bundles (profiles, certificates, README) for the site's users."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from owrt_vpn.ui.state import state


def register(app: typer.Typer) -> None:
    """Add `bundle`."""
    app.command("bundle")(bundle)


def bundle(
    ctx: typer.Context,
    users: list[str] = typer.Argument(  # noqa: B008 - typer's declaration style
        None, metavar="USER", help="Only these users (default: all)."
    ),
    out: Path = typer.Option(  # noqa: B008
        Path("dist"), "--out", metavar="DIR", help="Dist root: writes DIR/<site>/clients/."
    ),
    password_file: Path | None = typer.Option(  # noqa: B008
        None,
        "--password-file",
        metavar="PATH",
        help="Write all the bundles' passwords there (0600) instead of printing them.",
    ),
    show_passwords: bool = typer.Option(
        False, "--show-passwords", help="Print all the passwords again, not only new ones."
    ),
) -> None:
    """Write each user device's bundle: folder + zip with profiles, CA, certificate, README.

    Passwords (of the PKCS#12 files, EAP passwords) are never inside a bundle:
    a new one is printed once on a terminal (or all are written to
    --password-file), to be handed over by another channel; --show-passwords
    prints them all again. --json never carries them.
    """
    from owrt_vpn.build.dist_modes import loose_modes
    from owrt_vpn.bundles import writer as bundles
    from owrt_vpn.bundles.writer import PASSWORD_FILE_HEADER
    from owrt_vpn.errors import UsageError
    from owrt_vpn.fsutil import write_atomic
    from owrt_vpn.pki.authority import Pki
    from owrt_vpn.ui.outputs import check_dist_root, check_out_file
    from owrt_vpn.ui.secrets import ShownSecrets

    st = state(ctx)
    site = st.load_site()
    check_dist_root(site, out)
    clients = bundles.clients_dir(site, out).resolve()
    if password_file is not None:
        target = password_file.resolve()
        if target == clients or clients in target.parents:
            raise UsageError(
                f"--password-file {password_file}: inside the bundles ({clients})",
                hint="the passwords must travel separately: pick a path outside --out",
            )
        if not target.parent.is_dir():
            raise UsageError(f"--password-file {password_file}: its folder does not exist")
        check_out_file(site, "--password-file", password_file, header=PASSWORD_FILE_HEADER)
    # Everything checkable before the first write (a CA, a certificate).
    bundles.select_users(site, users or None)
    pki = Pki.open(site)
    if not pki.exists:
        from owrt_vpn.build.state import LOCK_NAME
        from owrt_vpn.pki.policy import refuse_new_ca

        refuse_new_ca(pki.root, site.base_dir / LOCK_NAME, out / site.name)
    ensured = pki.ensure(site) if pki.exists else pki.init(site)
    for item in ensured.issued:
        st.info(f"issued {item}")
    # The writer records what each user's bundles were made from (bundle-info.json).
    report = bundles.build(site, pki, out, users or None)
    for item in report.skipped:
        st.warn(f"skipped {item}")
    for name in report.removed:
        st.info(f"removed the bundles of {name} (no longer in the site file)")
    # The users not rewritten here (USER arguments) keep their folders: their
    # modes are checked too (build/dist_modes.py).
    for warning in loose_modes(out / site.name, repair=True):
        st.warn(warning)
    if password_file is not None:
        write_atomic(password_file, bundles.password_file_text(report), 0o600)

    lines = [f"bundles for {len(report.devices)} device(s) in {report.clients}"]
    for d in report.devices:
        lines.append(f"  {d.user}/{d.device} ({d.platform}, {d.auth}): {d.zip.name}")
        for extra in d.beside:
            lines.append(f"    secret, not in the zip: {extra.name}")
    secrets = bundles.password_file_text(report).splitlines()[4:]
    shown = ShownSecrets(pki.root)
    new = [s for s in secrets if shown.is_new(s)]
    if password_file is not None:
        lines.append(f"passwords written to {password_file} (0600): hand them over separately")
        shown.mark(secrets)
    elif st.json or st.quiet:
        pass  # never in --json; nothing is marked shown that was not
    elif show_passwords:
        lines.append("passwords (give each by another channel than its bundle):")
        lines += [f"  {line.replace(chr(9), '  ')}" for line in secrets]
        shown.mark(secrets)
    elif new and sys.stdout.isatty():
        lines.append("new passwords (shown once; give each by another channel than its bundle):")
        lines += [f"  {line.replace(chr(9), '  ')}" for line in new]
        shown.mark(new)
    elif new:
        lines.append(
            f"{len(new)} new password(s) not shown (not a terminal): "
            "use --password-file FILE or --show-passwords"
        )
    before = len(secrets) - len(new)
    if before and password_file is None and not show_passwords and not st.json:
        lines.append(f"{before} password(s) shown before: --show-passwords repeats them")
    json_devices = []
    for d in report.devices:
        doc = d.to_json()
        doc.pop("p12_password", None)
        doc.pop("eap_password", None)
        json_devices.append(doc)
    st.emit(
        {
            "ok": True,
            "site": site.name,
            "clients": str(report.clients),
            "devices": json_devices,
            "skipped": report.skipped,
            "removed": report.removed,
            "password_file": str(password_file) if password_file else None,
        },
        "\n".join(lines),
    )
