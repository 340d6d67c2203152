"""`pki init|renew|import|list|show`: the CA, the certificates, the CRL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from owrt_vpn.ui.help import WorkflowGroup
from owrt_vpn.ui.pki_view import ensure_report
from owrt_vpn.ui.state import state

pki_app = typer.Typer(
    cls=WorkflowGroup,
    help="The CA, the routers' and devices' certificates, the CRL.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the `pki` command group."""
    app.add_typer(pki_app, name="pki")


@pki_app.command("init")
def pki_init(
    ctx: typer.Context,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure-unencrypted-ca",
            help="Store the CA key unencrypted (throwaway setups and tests only).",
        ),
    ] = False,
) -> None:
    """Create the CA (unless it exists) and every certificate the site needs."""
    from owrt_vpn.pki.authority import Pki

    st = state(ctx)
    site = st.load_site()
    pki = Pki.open(site)
    existed = pki.exists
    if existed and insecure and pki.ca_encrypted:
        st.warn("--insecure-unencrypted-ca ignored: the CA exists and its key stays encrypted")
    from owrt_vpn.pki.store import MissingPassphrase

    try:
        report = pki.init(site, encrypt=not (insecure and not existed))
    except MissingPassphrase as exc:
        if not existed:
            exc.hint = f"{exc.hint}; for a throwaway setup only, pass --insecure-unencrypted-ca"
        raise
    if not pki.ca_encrypted:
        st.warn("the CA key is stored UNENCRYPTED: use this PKI for tests only")
    data = ensure_report(st, report)
    data.update(ok=True, pki_dir=str(pki.root), created_ca=not existed)
    where = pki.root
    human = f"{'created the CA in' if not existed else 'CA exists in'} {where}"
    human += f"; issued {len(report.issued)} item(s)" if report.issued else "; nothing to issue"
    if report.passwords:
        human += f"\nEAP passwords are in {where / 'eap'}"
    st.emit(data, human)


@pki_app.command("renew")
def pki_renew(
    ctx: typer.Context,
    routers: Annotated[
        list[str] | None,
        typer.Option("--router", metavar="NAME", help="Renew this router's certificate."),
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", metavar="NAME", help="Renew this user's devices.")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", metavar="NAME", help="Only this device (--user).")
    ] = None,
    crl: Annotated[bool, typer.Option("--crl", help="Sign the CRL again (new dates).")] = False,
    ca: Annotated[
        bool, typer.Option("--ca", help="Renew the CA certificate (same key and subject).")
    ] = False,
) -> None:
    """Issue new certificates (new keys) before the old ones expire, or a fresh CRL."""
    from owrt_vpn.errors import UsageError
    from owrt_vpn.pki.authority import Pki

    st = state(ctx)
    if device is not None and user is None:
        raise UsageError("pki renew: --device needs --user")
    if not (routers or user or crl or ca):
        raise UsageError(
            "pki renew: nothing to renew", hint="pass --router, --user [--device], --crl or --ca"
        )
    site = st.load_site()
    pki = Pki.open(site)
    done = pki.renew(site, routers=routers or (), user=user, device=device, crl=crl, ca=ca)
    for item in done:
        st.info(f"renewed {item}")
    if crl and "crl" not in done:
        st.info("nothing was ever revoked: there is no CRL to renew")
    st.emit(
        {"ok": True, "renewed": done},
        f"renewed {len(done)} item(s); rebuild the routers/bundles that carry them",
    )


@pki_app.command("import")
def pki_import(
    ctx: typer.Context,
    ca_cert: Annotated[
        Path | None, typer.Option("--ca-cert", metavar="FILE", help="caCert.pem (PEM or DER).")
    ] = None,
    ca_key: Annotated[
        Path | None, typer.Option("--ca-key", metavar="FILE", help="caKey.pem (PEM or DER).")
    ] = None,
    ca_p12: Annotated[
        Path | None, typer.Option("--ca-p12", metavar="FILE", help="ca.p12 (key and certificate).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing CA.")] = False,
) -> None:
    """Adopt an existing CA (e.g. from the guide's script), then issue what the site needs."""
    from owrt_vpn.errors import UsageError
    from owrt_vpn.pki import ca_import as imp
    from owrt_vpn.pki.authority import Pki

    st = state(ctx)
    if ca_p12 is not None and (ca_cert is not None or ca_key is not None):
        raise UsageError("pki import: pass either --ca-p12 or --ca-cert with --ca-key, not both")
    if ca_p12 is None and (ca_cert is None or ca_key is None):
        raise UsageError(
            "pki import: pass --ca-cert FILE --ca-key FILE, or --ca-p12 FILE",
            hint="the guide's script makes caCert.pem, caKey.pem and ca.p12",
        )
    site = st.load_site()
    if ca_p12 is not None:
        cert, key = imp.read_ca_p12(ca_p12)
    else:
        assert ca_cert is not None and ca_key is not None
        cert, key = imp.read_ca_pair(ca_cert, ca_key)
    pki = Pki.open(site)
    report = pki.import_ca(site, cert, key, force=force)
    data = ensure_report(st, report)
    data.update(ok=True, subject=cert.subject.rfc4514_string(), pki_dir=str(pki.root))
    verb = "imported" if "ca (imported)" in report.issued else "already using"
    st.emit(data, f"{verb} the CA {cert.subject.rfc4514_string()} in {pki.root}")


def _record_json(r: Any) -> dict[str, Any]:
    return dict(r.to_json())


@pki_app.command("list")
def pki_list(
    ctx: typer.Context,
    all_records: Annotated[
        bool, typer.Option("--all", help="Also renewed and removed certificates.")
    ] = False,
) -> None:
    """List the issued certificates (serial, subject, status, expiry)."""
    from owrt_vpn.pki.authority import Pki

    st = state(ctx)
    pki = Pki.open(st.load_site())
    records = pki.records(all_records=all_records)
    lines = [f"{'kind':<7} {'owner':<24} {'status':<8} {'expires':<11} serial"]
    for r in records:
        owner = r.router or (f"{r.user}/{r.device}" if r.user else "-")
        current = "" if r.current else " (old)"
        line = f"{r.kind:<7} {owner:<24} {r.status:<8} {r.not_after[:10]:<11} {r.serial_hex}"
        lines.append(line + current)
    st.emit({"certificates": [_record_json(r) for r in records]}, "\n".join(lines))


@pki_app.command("show")
def pki_show(ctx: typer.Context) -> None:
    """Show the CA, the CRL and the state digest."""
    from owrt_vpn.errors import PkiError
    from owrt_vpn.pki.authority import Pki
    from owrt_vpn.pki.store import INIT_HINT

    st = state(ctx)
    pki = Pki.open(st.load_site())
    ca = pki.ca_record()
    if ca is None or not pki.exists:
        raise PkiError(f"{pki.root}: no CA", hint=INIT_HINT)
    crl = pki.crl_info()
    data = {
        "pki_dir": str(pki.root),
        "ca": _record_json(ca),
        "ca_encrypted": pki.ca_encrypted,
        "crl": crl,
        "revoked": len(pki.revoked()),
        "certificates": len(pki.records()),
        "digest": pki.digest(),
    }
    human = [
        f"PKI directory: {pki.root}",
        f"CA:            {ca.subject} ({ca.key_type}, expires {ca.not_after[:10]})",
        f"CA key:        {'encrypted' if pki.ca_encrypted else 'UNENCRYPTED'}",
        f"certificates:  {len(pki.records())} current, {len(pki.revoked())} revoked",
        "CRL:           "
        + (f"#{crl['number']}, next update {str(crl['next_update'])[:10]}" if crl else "none"),
    ]
    st.emit(data, "\n".join(human))
