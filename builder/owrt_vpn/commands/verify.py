"""`verify`: rebuild what dist/ holds and compare it byte for byte (reproducibility)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from owrt_vpn.ui.state import State, state

if TYPE_CHECKING:
    from owrt_vpn.build.verify import VerifyReport


def register(app: typer.Typer) -> None:
    """Add `verify`."""
    app.command("verify")(verify)


class _Stages:
    """Build/verify stages on stderr with elapsed time (no progress bars: CI logs)."""

    def __init__(self, st: State) -> None:
        self.st = st
        self.t0 = time.monotonic()

    def stage(self, router: str, message: str) -> None:
        self.st.info(f"[{time.monotonic() - self.t0:6.1f}s] {router}: {message}")

    def progress(self, router: str, name: str) -> Callable[[int, int | None], None] | None:
        return None

    def output(self, router: str, line: str) -> None:
        if self.st.verbose and not self.st.json:
            sys.stderr.write(f"{router} | {line}\n")

    def warn(self, message: str) -> None:
        self.st.warn(message)


def verify(
    ctx: typer.Context,
    router: Annotated[
        list[str] | None,
        typer.Option(
            "--router", "-r", metavar="NAME", help="Verify only this router (repeatable)."
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option(metavar="DIR", help="The dist root the build wrote to.")
    ] = Path("dist"),
    scratch: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Rebuild into this new directory and keep it [default: a temp dir, removed].",
        ),
    ] = None,
    trust_key: Annotated[
        list[Path] | None,
        typer.Option(metavar="FILE", help="Also trust this usign public key (as for build)."),
    ] = None,
    jobs: Annotated[
        int, typer.Option(metavar="N", min=1, max=64, help="Routers rebuilt in parallel.")
    ] = 1,
    no_diffoscope: Annotated[
        bool, typer.Option("--no-diffoscope", help="Do not run diffoscope on differing files.")
    ] = False,
    diffoscope_timeout: Annotated[
        float,
        typer.Option(metavar="SECONDS", min=1, help="Time limit of one diffoscope run."),
    ] = 120.0,
) -> None:
    """Rebuild the site's routers and bundles found in dist/ and compare them byte for byte.

    Exit 0 when every artifact is identical, 3 when one differs, 1 when some
    item could not be compared (its inputs changed since the build, or the
    rebuild failed) and nothing differs.
    """
    from owrt_vpn.build.verify import VerifyOptions
    from owrt_vpn.build.verify import verify as run_verify

    st = state(ctx)
    site = st.load_site()
    opts = VerifyOptions(
        routers=tuple(router or ()),
        out=out,
        scratch=scratch,
        trust_keys=tuple(trust_key or ()),
        jobs=jobs,
        diffoscope=not no_diffoscope,
        diffoscope_timeout=diffoscope_timeout,
    )
    report = run_verify(site, opts, _Stages(st))
    code = report.exit_code
    data = {
        "ok": code == 0,
        "exit_code": code,
        "site": report.site,
        "dist": str(report.dist),
        "scratch": str(report.scratch) if report.scratch else None,
        "not_built": report.not_built,
        "items": [i.to_json() for i in report.items],
    }
    st.emit(data, _verify_text(report))
    raise typer.Exit(code)


def _verify_text(report: VerifyReport) -> str:
    lines = []
    for item in report.items:
        what = f"{item.kind} {item.name}"
        if item.status == "identical":
            lines.append(f"{what}: identical ({item.files} files)")
        elif item.status == "differs":
            lines.append(f"{what}: DIFFERS ({len(item.differences)} of {item.files} files)")
            for d in item.differences:
                lines.append(f"  {d.kind}: {d.path}")
                lines += [f"    {line}" for line in d.detail.splitlines()]
        elif item.status == "inputs-changed":
            lines.append(
                f"{what}: not verified, inputs changed since the build: "
                + ", ".join(item.changed_inputs)
            )
        else:
            lines.append(f"{what}: not verified, the rebuild failed")
            if item.error is not None:
                lines.append(f"  error: {item.error.message}")
                if item.error.hint:
                    lines.append(f"  hint: {item.error.hint}")
    if report.not_built:
        lines.append(f"not built (nothing to verify): {', '.join(report.not_built)}")
    if report.scratch:
        lines.append(f"rebuild kept in {report.scratch}")
    code = report.exit_code
    if code == 0:
        lines.append("reproducible: every artifact rebuilt byte for byte")
    elif code == 3:
        lines.append("NOT reproducible: the files above differ from their rebuild")
    else:
        statuses = {i.status for i in report.items}
        if "inputs-changed" in statuses:
            lines.append(
                "not fully verified: inputs changed since the build (not a reproducibility "
                "failure); build / bundle again, then verify"
            )
        else:
            lines.append("not fully verified: the rebuild failed (see above)")
    return "\n".join(lines)
