"""The `owrt-vpn` command line: options, output format, errors -> exit codes.

Commands live in ``owrt_vpn.commands.*`` (one module per top-level command,
each with a ``register(app)``, registered in :data:`ORDER`); they import heavy
libraries lazily so that ``--help`` and no-op runs stay fast. The library
raises :mod:`owrt_vpn.errors`; this module is the only place that prints
``error:``/``hint:`` and picks the exit status.
"""

from __future__ import annotations

import errno
import importlib
import json
import logging
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from owrt_vpn import __version__
from owrt_vpn.errors import EXIT_FAILURE, EXIT_USAGE, OwrtVpnError, UsageError
from owrt_vpn.run import install_signal_handlers
from owrt_vpn.ui.help import workflow_group
from owrt_vpn.ui.state import State

EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT

GLOBAL_FLAGS = ("--json", "--verbose", "-v", "--quiet", "-q", "--debug")
GLOBAL_VALUED = ("--site",)


# The modules of owrt_vpn.commands, in the order of the workflow (first run to
# flashed router, then live routers, then the tools): `owrt-vpn --help` lists
# their commands in this order (ui/help.py), groups (pki, user, keys) included.
ORDER = (
    "init",
    "check",
    "pki",
    "user",
    "build",
    "bundle",
    "share",
    "flash",
    "push",
    "status",
    "verify",
    "matrix",
    "render",
    "packages",
    "keys",
    "doctor",
)


app = typer.Typer(
    name="owrt-vpn",
    cls=workflow_group(ORDER),
    help="Build OpenWrt firmware with a strongSwan IKEv2 road-warrior VPN, and client bundles.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich's help formatter (rich + markdown-it) costs ~90 ms
    # of imports on every `--help` and usage error.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"owrt-vpn {__version__}")
        raise typer.Exit()


@app.callback()
def _common(
    ctx: typer.Context,
    site: Annotated[
        Path | None,
        typer.Option(
            "--site",
            metavar="FILE",
            help="Site file [default: ./owrt-vpn.toml, or $OWRT_VPN_SITE]",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Machine-readable output on stdout.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show commands and build output.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and warnings.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Options accepted before or after any command name."""
    if site is None:
        env = os.environ.get("OWRT_VPN_SITE")
        display = env or "owrt-vpn.toml"
        site = Path(display)
    else:
        display = str(site)
    ctx.obj = State(
        site=site, site_display=display, json=json_out, verbose=verbose, quiet=quiet, debug=debug
    )
    level = logging.DEBUG if (verbose or debug) else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Move common options found after the command name in front of it.

    Lets ``owrt-vpn check --json`` mean the same as ``owrt-vpn --json check``.
    Everything after a literal ``--`` is left alone. UsageError for a
    trailing ``--site`` without its value.
    """
    front: list[str] = []
    rest: list[str] = []
    i = 0
    args = list(argv)
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        if a in GLOBAL_FLAGS or any(a.startswith(v + "=") for v in GLOBAL_VALUED):
            front.append(a)
        elif a in GLOBAL_VALUED:
            if i + 1 >= len(args):
                raise UsageError(f"option {a!r} requires an argument", hint="see `owrt-vpn --help`")
            front.extend(args[i : i + 2])
            i += 1
        else:
            rest.append(a)
        i += 1
    return front + rest


def _register_commands() -> None:
    """Call ``register(app)`` of every ``owrt_vpn.commands`` module, in :data:`ORDER`.

    RuntimeError naming the module(s) when a module is not in ORDER or ORDER
    names a module that does not exist: a command is never silently dropped.
    """
    import owrt_vpn.commands

    package = owrt_vpn.commands.__name__
    found = {m.name for m in pkgutil.iter_modules(owrt_vpn.commands.__path__)}
    unlisted = sorted(found - set(ORDER))
    if unlisted:
        names = ", ".join(f"{package}.{n}" for n in unlisted)
        raise RuntimeError(f"{names}: not in owrt_vpn.cli.ORDER (add it where --help lists it)")
    missing = [n for n in ORDER if n not in found]
    if missing:
        names = ", ".join(f"{package}.{n}" for n in missing)
        raise RuntimeError(f"{names}: named in owrt_vpn.cli.ORDER, but no such module")
    for name in ORDER:
        importlib.import_module(f"{package}.{name}").register(app)


def _front(args: Sequence[str]) -> list[str]:
    """The arguments before a literal ``--`` (where common options can be)."""
    return list(args[: args.index("--")]) if "--" in args else list(args)


def _symlink_loop(exc: Exception) -> str | None:
    """The path of a symlink loop ``exc`` reports, else None."""
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return str(exc.filename or "a path")
    if type(exc) is RuntimeError and str(exc).startswith("Symlink loop from "):
        return str(exc)[len("Symlink loop from ") :].strip("'")
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the app and map errors to exit codes."""
    raw = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in _front(raw)
    json_mode = "--json" in _front(raw)
    # SIGINT/SIGTERM end the children's process groups (make runs in its own)
    # and unwind as KeyboardInterrupt, so work trees and containers go too.
    install_signal_handlers()
    try:
        args = hoist_global_options(raw)
        rc = app(args=args, prog_name="owrt-vpn", standalone_mode=False)
    except OwrtVpnError as exc:
        if debug:
            traceback.print_exc()
        _print_error(exc, json_mode)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, EOFError):
        sys.stderr.write("error: aborted\n")
        sys.exit(EXIT_FAILURE)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if debug:
            traceback.print_exc()
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            # Click-style usage errors (typer vendors click, so match by
            # shape, not by class).
            _print_usage_error(exc, json_mode)
            sys.exit(EXIT_USAGE)
        loop = _symlink_loop(exc)
        if loop is not None:
            # A link that points back to itself (`dist -> dist`, `pki -> pki`):
            # a broken folder, not a bug (Python 3.11's resolve() raises
            # RuntimeError for it, open() raises ELOOP).
            problem = f"{loop}: a symlink loop (a link that points back to itself)"
            _print_error(UsageError(problem, hint="remove or fix that link"), json_mode)
            sys.exit(EXIT_USAGE)
        if isinstance(exc, OSError):
            # The environment, not a bug: a full disk, a permission, a
            # vanished file. Say what and where, without a traceback.
            where = f": {exc.filename}" if exc.filename else ""
            _print_error(OwrtVpnError(f"{exc.strerror or exc}{where}"), json_mode)
            sys.exit(EXIT_FAILURE)
        _print_error(
            OwrtVpnError(
                f"internal error: {type(exc).__name__}: {exc}",
                hint="run again with --debug for the traceback, and report it",
            ),
            json_mode,
        )
        sys.exit(EXIT_FAILURE)
    if rc == EXIT_INTERRUPTED:
        # Typer turns Ctrl-C into a silent exit status 130: say what happened.
        sys.stderr.write("error: interrupted\n")
    sys.exit(rc if isinstance(rc, int) else 0)


def _print_usage_error(exc: Exception, json_mode: bool) -> None:
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "owrt-vpn"
    message = str(exc.format_message()).strip()  # type: ignore[attr-defined]
    if type(exc).__name__ == "NoArgsIsHelpError":
        # A group run without a command: its help on stdout, a short error.
        if message:
            sys.stdout.write(message + "\n")
        message = "missing command"
    error = UsageError(f"{path}: {message}", hint=f"see `{path} --help`")
    _print_error(error, json_mode)


def _print_error(exc: OwrtVpnError, json_mode: bool) -> None:
    for line in exc.lines():
        sys.stderr.write(f"error: {line}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {exc.hint}\n")
    if json_mode:
        payload = {"ok": False, "exit_code": exc.exit_code, "errors": exc.lines(), "hint": exc.hint}
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True) + "\n")


_register_commands()
