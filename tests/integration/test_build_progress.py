"""What `owrt-vpn build` shows on a terminal: one line per stage, the download's own line with
its size from the start and never wider than the terminal, nothing redrawn after the
download; Ctrl-C says "interrupted" and exits 130. The real CLI on a pseudo-terminal,
against the ImageBuilder double on a loopback mirror."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

import sitefile
from owrtcli import cli_env, owrt_argv

pytestmark = pytest.mark.integration
COLUMNS = 60


class Terminal:
    """The CLI with stdin/stdout/stderr on a pseudo-terminal of COLUMNS columns."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            owrt_argv(*args), cwd=cwd, env=cli_env({"COLUMNS": str(COLUMNS), **env}),
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.out = b""

    def read_until(self, pattern: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text):
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.text}"
            if not self._read(0.5):
                assert self.proc.poll() is None, f"exited before {pattern!r}:\n{self.text}"
        return self.text

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:
            return False
        self.out += chunk
        return bool(chunk)

    def finish(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self._read(0.2)
        while self._read(0.1):
            pass
        os.close(self.master)
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    @property
    def text(self) -> str:
        return self.out.decode(errors="replace")


def screen_lines(text: str) -> list[str]:
    """What each terminal line finally shows (a CR redraws the line, ESC[K clears its end)."""
    lines = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        lines.append(raw.split("\r")[-1].replace("\x1b[K", ""))
    return lines


def test_download_line_then_interrupt(tmp_path: Path) -> None:
    from imagebuilder_double.fixtures import start_served_mirror

    served, server = start_served_mirror(tmp_path / "double", [("24.10.2", "bcm53xx", "generic")])
    (tmp_path / "site").mkdir()
    (tmp_path / "site/owrt-vpn.toml").write_text(sitefile.site())
    env = {"OWRT_VPN_CACHE": str(tmp_path / "cache"), "OWRT_VPN_KEYS_DIR": str(tmp_path / "k")}
    argv = ["build", "--no-bundles", "--mirror", served.url, "--trust-key", str(served.key.public)]
    archive = served.archive_path("24.10.2", "bcm53xx", "generic")
    try:
        # The first chunk arrives, then the mirror stalls: Ctrl-C in the middle.
        server.slow(archive, delay=60)
        term = Terminal(tmp_path / "site", env, *argv)
        term.read_until(r"\d+%")
        term.proc.send_signal(signal.SIGINT)
        rc = term.finish()
        lines = screen_lines(term.text)
        assert rc == 130, term.text
        assert "error: interrupted" in lines, term.text
        (download,) = [line for line in lines if "gw: downloaded " in line]
        # The size is known from the first byte on: never "0/?".
        assert re.search(r"\d+/\d+ KiB +\d+%", download), download
        assert "?" not in term.text
        assert len(download) < COLUMNS  # redrawn in place: it must never wrap

        # The same build, not stalled: every stage its own line, the download
        # line ends before extraction starts and nothing redraws after it.
        server.clear_faults()
        term = Terminal(tmp_path / "site", env, *argv)
        assert term.finish() == 0, term.text
        lines = [line for line in screen_lines(term.text) if line]
        stages = [
            line.split(": ", 1)[1] for line in lines if re.match(r"\[ *\d+\.\ds\] gw: ", line)
        ]
        i = next(i for i, s in enumerate(stages) if s.startswith("extracting the ImageBuilder"))
        assert stages[i - 2].startswith("downloading openwrt-imagebuilder-24.10.2-bcm53xx"), stages
        assert re.fullmatch(r"downloaded (\d+)/\1 KiB 100% \([\d.]+ (K|M)iB/s\)", stages[i - 1]), (
            stages
        )
        tail = term.text.split("extracting the ImageBuilder", 1)[1]
        assert "\r" not in tail.replace("\r\n", "\n"), tail
    finally:
        server.stop()
