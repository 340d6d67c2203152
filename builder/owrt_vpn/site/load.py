"""Reading a site file: parse, validate every rule, and build the :class:`Site`."""

from __future__ import annotations

from pathlib import Path

from owrt_vpn.errors import ConfigError
from owrt_vpn.site.model import Site
from owrt_vpn.site.rules import validate_document


def parse_site(text: str, path: Path, display: str | None = None) -> Site:
    """Validate site file ``text`` (read from ``path``); raise ConfigError with every problem."""
    file = display or path.name
    settings, routers, users = validate_document(text, file)
    return Site(path=path, settings=settings, routers=routers, users=users)


def load_site(path: Path, display: str | None = None) -> Site:
    """Read and validate the site file at ``path``."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{shown}: site file not found",
            hint="create one with `owrt-vpn init`, or pass --site FILE",
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{shown}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read the site file: {exc.strerror}") from None
    return parse_site(text, path, shown)
