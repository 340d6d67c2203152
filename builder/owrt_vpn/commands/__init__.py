"""The commands: one module per top-level command of `owrt-vpn`, each with ``register(app)``.

``owrt_vpn.cli`` registers them in the order of its ``ORDER`` (that of
``owrt-vpn --help``); a module missing from ``ORDER`` is an error. Shared
helpers live in :mod:`owrt_vpn.ui`: a command module never imports another.

Keep imports at the top of these modules light (typer, pathlib, typing):
heavy libraries are imported inside the command functions, so that
``--help`` and no-op runs stay fast.
"""
