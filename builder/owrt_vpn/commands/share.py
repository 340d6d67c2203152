"""`share USER/DEVICE`: serve one device's profile once over HTTP, its link as a QR code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from owrt_vpn.ui.state import state


def register(app: typer.Typer) -> None:
    """Add `share`."""
    app.command("share")(share)


def share(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(metavar="USER/DEVICE", help="The device whose profile to serve."),
    ],
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            metavar="ADDRESS",
            help="Address to listen on [default: this host's address on its default route].",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int,
        typer.Option(
            "--port", metavar="PORT", min=0, max=65535, help="TCP port (0: any free one)."
        ),
    ] = 0,
    expires: Annotated[
        float,
        typer.Option(
            "--expires", metavar="SECONDS", min=1, help="The link stops working after this."
        ),
    ] = 300.0,
    router: Annotated[
        str | None,
        typer.Option("--router", metavar="NAME", help="The router's profile (strongSwan app)."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="The dist root `bundle` wrote to.")
    ] = Path("dist"),
) -> None:
    """Serve one device's VPN profile once over HTTP and show its link as a QR code.

    iOS/macOS get the .mobileconfig without the certificate password (the
    phone asks for it: read it out to its owner), the strongSwan app its
    .sswan, other platforms their zip. The link works once, for a complete
    download, and expires; nothing else is served.
    """
    from owrt_vpn.bundles import writer as bundles
    from owrt_vpn.bundles.serve_once import OnceServer, default_route_address
    from owrt_vpn.bundles.share import parse_target, shared_profile
    from owrt_vpn.errors import OwrtVpnError
    from owrt_vpn.pki.authority import Pki

    st = state(ctx)
    user, device = parse_target(target)
    site = st.load_site()
    pki = Pki.open(site)
    shared = shared_profile(site, pki, bundles.clients_dir(site, out), user, device, router)
    address = listen if listen is not None else default_route_address()
    server = OnceServer(
        shared.data, shared.filename, shared.content_type, address, port=port, expires=expires
    )
    # The link is for a person: with --json it goes to stderr, the result to stdout.
    err = st.json
    _show_link(server.url, shared.filename, expires, err)
    if shared.asks_p12_password:
        typer.echo(
            "The device asks for the certificate password on import: tell its owner by "
            "another channel (`owrt-vpn bundle --show-passwords` shows it).",
            err=err,
        )
    if shared.asks_eap_password:
        typer.echo("The user signs in with their EAP password when connecting.", err=err)
    typer.echo("Waiting for the download (Ctrl-C stops)...", err=True)
    outcome = server.serve()
    data = {
        "ok": outcome.status == "served",
        "user": user,
        "device": device,
        "file": shared.filename,
        "content_type": shared.content_type,
        "status": outcome.status,
        "client": outcome.client,
        "refused": outcome.refused,
    }
    if outcome.status != "served":
        if st.json:
            st.emit(data)
        raise OwrtVpnError(
            f"share: the link expired after {expires:g} s; nothing was served",
            hint="run `owrt-vpn share` again when the device is ready",
        )
    st.emit(data, f"served {shared.filename} to {outcome.client}; the link is used up")


def _show_link(url: str, filename: str, expires: float, err: bool) -> None:
    """The link, as text and as a QR code to scan (half-block characters)."""
    import io

    import segno

    typer.echo(f"{filename}: {url}", err=err)
    typer.echo(f"(works once, for {expires:g} s)", err=err)
    buf = io.StringIO()
    segno.make(url, error="m").terminal(out=buf, compact=True)
    typer.echo(buf.getvalue(), nl=False, err=err)
