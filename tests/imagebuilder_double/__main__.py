"""``python -m imagebuilder_double serve DIR``: a throwaway signed mirror on loopback.

For ``make demo`` (run with ``PYTHONPATH=tests``): generates a signing key in
``DIR/keys`` and a mirror in ``DIR/mirror``, serves it on 127.0.0.1, prints
one JSON line ``{"url": ..., "public_key": ..., "builds": [...]}`` and serves
until interrupted (SIGINT/SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .fixtures import start_served_mirror


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m imagebuilder_double")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("serve", help="generate a signed mirror of doubles and serve it")
    sp.add_argument("dir", type=Path)
    sp.add_argument(
        "--build",
        action="append",
        metavar="VER/TARGET/SUBTARGET",
        help="e.g. 24.10.2/bcm53xx/generic (repeatable; default: 24.10.2 bcm53xx and ath79)",
    )
    args = ap.parse_args(argv)
    builds = None
    if args.build:
        builds = []
        for b in args.build:
            ver, target, subtarget = b.split("/")
            builds.append((ver, target, subtarget))
    served, server = start_served_mirror(args.dir.resolve(), builds)
    print(
        json.dumps(
            {
                "url": served.url,
                "public_key": str(served.key.public),
                "builds": ["/".join(b) for b in served.mirror.builds],
            }
        ),
        flush=True,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stop.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
