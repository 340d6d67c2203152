"""The README's Quick start, run as written: init -> edit -> check -> pki init -> user add ->
build -> bundle -> flash --dry-run -> flash.

Every ``$ owrt-vpn ...`` line of the README's ``console`` blocks is run in a fresh folder,
on a pseudo-terminal like an admin's shell (``owrt-vpn`` = this checkout's CLI), and the
output lines the README shows under it must appear, in that order (``…`` stands for
what differs from run to run: times, passwords, paths). The only stand-ins are where
downloads and the router come from: the ImageBuilder double on a signed loopback mirror
(``$OWRT_VPN_MIRROR``, its key added with ``owrt-vpn keys add``), and an SSH test
router (dropbear in a namespace, tests/integration/sshrouter.py) whose address the
"edit" step writes into ``[routers.management]``, as step 3 tells the admin to.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from owrtcli import cli_env, owrt_argv, run_on_terminal, run_owrt
from requires import require

from .conftest import NAMESPACES, SSH_LAB_TOOLS
from .sshrouter import RouterSpec, SshLab

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def quickstart() -> str:
    """The README's Quick start section."""
    text = (REPO / "README.md").read_text()
    return text.split("<!-- section: quickstart -->")[1].split("<!-- /section: quickstart -->")[0]


def steps() -> list[tuple[str, list[str]]]:
    """``(command, the output lines shown under it)`` for every ``$`` line, in order."""
    out: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", quickstart(), flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], []))
            else:
                out[-1][1].append(line)
    return out


def pattern(shown: str) -> re.Pattern[str]:
    """A README output line as a regex: ``…`` is anything, runs of spaces are any spacing."""
    parts = [re.escape(p) for p in shown.strip().split("…")]
    return re.compile(re.sub(r"(\\ )+", r"\\s+", ".*".join(parts)))


def assert_shows(command: str, output: str, shown: list[str]) -> None:
    """Each line of ``shown`` matches a line of ``output``, in order."""
    lines = [ANSI.sub("", raw) for raw in output.replace("\r", "\n").splitlines()]
    i = 0
    for want in shown:
        rx = pattern(want)
        while i < len(lines) and not rx.fullmatch(lines[i].strip()):
            i += 1
        assert i < len(lines), f"`{command}`: README shows {want!r}; it printed:\n{output}"
        i += 1


def test_the_readme_lists_the_whole_workflow() -> None:
    commands = [shlex.split(c)[:2] for c, _ in steps()]
    assert [c[1] for c in commands] == [
        "init", "check", "pki", "user", "build", "bundle", "flash", "flash",
    ]  # fmt: skip
    assert all(c[0] == "owrt-vpn" for c in commands)
    section = quickstart()
    assert "make install && . .venv/bin/activate" in section
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[SshLab]:
    require(*SSH_LAB_TOOLS, root=NAMESPACES)
    lab = SshLab(tmp_path / "lab")
    try:
        lab.start()
        yield lab
    finally:
        lab.close()


def test_quickstart_as_written(lab: SshLab, tmp_path: Path) -> None:
    from imagebuilder_double.fixtures import start_served_mirror

    router = lab.add_router(RouterSpec("gw"))
    site = tmp_path / "admin"
    site.mkdir()
    served, server = start_served_mirror(tmp_path / "double", [("24.10.2", "bcm53xx", "generic")])
    env = {
        "OWRT_VPN_MIRROR": served.url,
        "OWRT_VPN_CACHE": str(tmp_path / "cache"),
        "OWRT_VPN_KEYS_DIR": str(tmp_path / "keys"),
        "OWRT_VPN_CA_PASSPHRASE": "a passphrase for the quick start",
    }
    try:
        run_owrt("keys", "add", served.key.public, cwd=site, env=env, check=True)
        for command, shown in steps():
            argv = shlex.split(command)
            assert argv[0] == "owrt-vpn"
            if argv[1] == "flash":
                # The router lives in the lab's namespace: so does the admin's shell here.
                proc = lab.run_in_mgmt(
                    owrt_argv(*argv[1:], "--timeout", "60"), env=cli_env(env), cwd=site
                )
                rc, output = proc.returncode, proc.stdout + proc.stderr
            else:
                rc, output = run_on_terminal(*argv[1:], cwd=site, env=env)
            assert rc == 0, f"`{command}` exited {rc}:\n{output}"
            assert_shows(command, output, shown)
            if argv[1] == "init":
                edit_like_step_3(site / "owrt-vpn.toml", router.address, lab)
                (site / "known_hosts").write_text(lab.known_hosts())
    finally:
        server.stop()
    # What the steps promise: a flashed router running the build, bundles for every device,
    # and `flash` again skips it.
    assert sorted(p.name for p in (site / "dist/home/clients").rglob("*.zip")) == [
        "alice-laptop.zip", "alice-phone.zip", "bob-phone.zip",
    ]  # fmt: skip
    assert router.etc_file("owrt-vpn/flashed.json").exists()
    again = lab.run_in_mgmt(owrt_argv("flash", "--timeout", "60"), env=cli_env(env), cwd=site)
    assert again.returncode == 0 and "skipped" in again.stdout, again.stdout + again.stderr


def edit_like_step_3(site_file: Path, address: str, lab: SshLab) -> None:
    """Step 3: the router's management address (and how to log in) in the site file."""
    text = site_file.read_text()
    for old, new in (
        ('address = "192.168.1.1"', f'address = "{address}"'),
        ('# identity_file = "~/.ssh/id_ed25519"', f'identity_file = "{lab.client_key}"'),
        ('# known_hosts = "~/.ssh/known_hosts"', 'known_hosts = "known_hosts"'),
    ):
        assert old in text, f"init's site file has no {old!r} to edit"
        text = text.replace(old, new)
    site_file.write_text(text)
