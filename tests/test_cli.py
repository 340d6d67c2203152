"""The CLI's common behaviour: options anywhere, --json, exit codes, init/check."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from owrtcli import CliRunner, cli_env
from test_bad_input import BASE

NEXT_PKI = "next: `owrt-vpn pki init` (creates the CA and the certificates)\n"

BAD = BASE.replace('"home"', '"Home"', 1)


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    """A folder holding a valid `owrt-vpn.toml` and a broken `bad.toml`."""
    (tmp_path / "owrt-vpn.toml").write_text(BASE)
    (tmp_path / "bad.toml").write_text(BAD)
    return tmp_path


@pytest.mark.parametrize(
    "argv",
    [
        ["--site", "bad.toml", "check"],
        ["check", "--site", "bad.toml"],
        ["check", "--site=bad.toml"],
        ["--site=bad.toml", "check"],
    ],
)
def test_site_option_before_or_after(argv: list[str], cli: CliRunner, site_dir: Path) -> None:
    proc = cli(*argv)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: bad.toml: site.name: 'Home' is not a valid name")


def test_site_default_and_env(cli: CliRunner, site_dir: Path) -> None:
    ok = cli("check")
    assert (ok.returncode, ok.stdout) == (
        0,
        "owrt-vpn.toml: ok (1 router(s), 2 user(s))\n" + NEXT_PKI,
    )
    env = cli("check", env={"OWRT_VPN_SITE": "bad.toml"})
    assert env.returncode == 2 and env.stderr.startswith("error: bad.toml: site.name: ")
    # --site wins over the environment.
    both = cli("check", "--site", "owrt-vpn.toml", env={"OWRT_VPN_SITE": "bad.toml"})
    assert both.returncode == 0, both.stderr


def test_site_in_another_folder(
    cli: CliRunner, site_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("cwd")
    proc = cli("check", "--site", site_dir / "owrt-vpn.toml", "--json", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["site_file"] == str(site_dir / "owrt-vpn.toml")


@pytest.mark.parametrize("argv", [["--json", "check"], ["check", "--json"]])
def test_json_before_or_after(argv: list[str], cli: CliRunner, site_dir: Path) -> None:
    proc = cli(*argv)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "ok": True,
        "site": "home",
        "site_file": "owrt-vpn.toml",
        "routers": ["gw"],
        "users": ["alice", "bob"],
        "warnings": [],
        "unchecked": [
            "router gw: whether the mirror has release 24.10.2 (no earlier download of it)"
        ],
    }


def test_json_error_payload(cli: CliRunner, site_dir: Path) -> None:
    proc = cli("check", "--site", "bad.toml", "--json")
    assert proc.returncode == 2
    payload = json.loads(proc.stdout)
    assert payload["ok"] is False and payload["exit_code"] == 2
    assert payload["errors"][0].startswith("bad.toml: site.name: 'Home'")
    assert "owrt-vpn check" in payload["hint"]
    usage = cli("--json", "check", "--xyzzy")  # (no close option: click adds no suggestion)
    assert usage.returncode == 2
    assert json.loads(usage.stdout)["errors"] == ["owrt-vpn check: No such option: --xyzzy"]


@pytest.mark.parametrize("argv", [["--quiet", "check"], ["check", "-q"]])
def test_quiet(argv: list[str], cli: CliRunner, site_dir: Path) -> None:
    proc = cli(*argv)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    # Errors still show under --quiet.
    bad = cli(*argv, "--site", "bad.toml")
    assert bad.returncode == 2 and "error: bad.toml: site.name" in bad.stderr


@pytest.mark.parametrize("argv", [["--verbose", "check"], ["check", "-v"], ["check", "--debug"]])
def test_verbose_and_debug_accepted(argv: list[str], cli: CliRunner, site_dir: Path) -> None:
    proc = cli(*argv)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "owrt-vpn.toml: ok (1 router(s), 2 user(s))\n" + NEXT_PKI


@pytest.mark.parametrize("argv", [["--debug", "check"], ["check", "--debug"]])
def test_debug_shows_traceback(argv: list[str], cli: CliRunner, site_dir: Path) -> None:
    proc = cli(*argv, "--site", "bad.toml")
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ConfigError" in proc.stderr
    assert "error: bad.toml: site.name: " in proc.stderr
    plain = cli("check", "--site", "bad.toml")
    assert "Traceback" not in plain.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["frobnicate"], "error: owrt-vpn: No such command 'frobnicate'."),
        (["--frobnicate", "check"], "error: owrt-vpn: No such option: --frobnicate"),
        (["check", "--xyzzy"], "error: owrt-vpn check: No such option: --xyzzy"),
        (["init", "a", "b"], "error: owrt-vpn init: Got unexpected extra argument(s) (b)"),
        ([], "error: owrt-vpn: missing command"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, cli: CliRunner) -> None:
    proc = cli(*argv)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == message
    assert proc.stderr.splitlines()[1].startswith("hint: see `owrt-vpn")
    assert "Traceback" not in proc.stderr


def test_help_and_version(cli: CliRunner) -> None:
    top = cli("--help")
    assert top.returncode == 0
    for word in ("init", "check", "--site", "--json", "--quiet", "--verbose", "--debug"):
        assert word in top.stdout
    sub = cli("init", "--help")
    assert sub.returncode == 0 and "--server-id" in sub.stdout and "--force" in sub.stdout
    bare = cli()  # no command: the help on stdout, exit 2
    assert bare.returncode == 2 and bare.stdout.startswith("Usage: owrt-vpn [OPTIONS] COMMAND")
    version = cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("owrt-vpn 0.")


def test_console_script_and_module(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "owrt-vpn"
    for argv in ([str(script), "--version"], [sys.executable, "-m", "owrt_vpn", "--version"]):
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, check=False)
        assert (proc.returncode, proc.stdout.split()[0]) == (0, "owrt-vpn"), proc.stderr


def test_help_imports_no_heavy_libraries(tmp_path: Path) -> None:
    # `--help` must stay fast: heavy libraries are imported inside commands.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "owrt_vpn", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_env(),
        check=False,
    )
    assert proc.returncode == 0
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    heavy = {"pydantic", "cryptography", "jinja2", "requests", "tomlkit", "zstandard", "docker"}
    heavy |= {"rich", "markdown_it"}  # typer's rich help formatter: ~90 ms
    assert imported & heavy == set()
    assert "typer" in imported  # the probe works


# --- init


def test_init_writes_a_file_check_accepts(cli: CliRunner, tmp_path: Path) -> None:
    proc = cli("init")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("wrote owrt-vpn.toml\n")
    assert proc.stdout.splitlines()[-1] == "next: edit it, then run `owrt-vpn check`"
    text = (tmp_path / "owrt-vpn.toml").read_text()
    assert text.startswith("# owrt-vpn site file")
    data = tomllib.loads(text)
    assert data["routers"][0]["server_id"] == "vpn.example.org"
    check = cli("check")
    assert check.returncode == 0, check.stderr
    assert check.stdout == "owrt-vpn.toml: ok (1 router(s), 1 user(s))\n" + NEXT_PKI


def test_init_refuses_to_overwrite(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "owrt-vpn.toml").write_text("# my own site\n")
    proc = cli("init")
    assert proc.returncode == 2
    assert proc.stderr == (
        "error: owrt-vpn.toml: already exists\nhint: use --force to overwrite it\n"
    )
    assert (tmp_path / "owrt-vpn.toml").read_text() == "# my own site\n"
    forced = cli("init", "--force", "--server-id", "vpn.example.net")
    assert forced.returncode == 0, forced.stderr
    assert 'server_id = "vpn.example.net"' in (tmp_path / "owrt-vpn.toml").read_text()


@pytest.mark.parametrize("server_id", ["203.0.113.5", "2001:db8::5"])
def test_init_with_ip_server_id(server_id: str, cli: CliRunner, tmp_path: Path) -> None:
    proc = cli("init", "--server-id", server_id, "site-a", "--json")
    assert proc.returncode == 0, proc.stderr
    dest = tmp_path / "site-a" / "owrt-vpn.toml"
    data = json.loads(proc.stdout)
    assert data.pop("release_source").startswith("the pinned default")  # no mirror in tests
    assert data == {
        "ok": True,
        "site_file": str(Path("site-a", "owrt-vpn.toml")),
        "server_id": server_id,
        "release": "24.10.2",
    }
    assert tomllib.loads(dest.read_text())["routers"][0]["server_id"] == server_id
    check = cli("--json", "--site", dest, "check")
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["routers"] == ["gw"]


@pytest.mark.parametrize("server_id", ["not a host", "vpn..example.org", "300.1.2.3.4", "x\ny"])
def test_init_with_garbage_server_id(server_id: str, cli: CliRunner, tmp_path: Path) -> None:
    proc = cli("init", "--server-id", server_id, "out")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --server-id: ")
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_os_error_is_a_failure_without_traceback(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    proc = cli("init", "afile/sub")
    assert (proc.returncode, proc.stderr) == (1, "error: Not a directory: afile/sub\n")
    debug = cli("init", "afile/sub", "--debug")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "NotADirectoryError" in debug.stderr
    assert debug.stderr.endswith("error: Not a directory: afile/sub\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_debug_keeps_the_usage_exit_status(cli: CliRunner) -> None:
    proc = cli("--debug", "check", "--xyzzy")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert "error: owrt-vpn check: No such option: --xyzzy" in proc.stderr


def test_help_lists_the_workflow_in_full(cli: CliRunner) -> None:
    """`--help`: commands in workflow order (cli.ORDER), whole descriptions, real placeholders."""
    from owrt_vpn.cli import ORDER

    out = cli("--help").stdout
    listed = re.findall(r"^  ([a-z]+)  ", out.split("Commands:")[1], flags=re.M)
    assert listed == list(ORDER)
    assert ORDER[:6] == ("init", "check", "pki", "user", "build", "bundle")
    assert "...\n" not in out.split("Commands:")[1]  # nothing cut short
    assert "Rebuild the site's routers and bundles found in dist/ and compare" in out
    add = cli("user", "add", "--help").stdout
    assert "Usage: owrt-vpn user add [OPTIONS] NAME\n" in add
    assert "--auth [pubkey|eap-tls|eap-mschapv2|pubkey+eap-mschapv2]" in add
    assert "android-strongswan" in add.split("--device NAME:PLATFORM")[1]
    assert "{" not in add and "<str>" not in add
    bundle = cli("bundle", "--help").stdout
    assert "Usage: owrt-vpn bundle [OPTIONS] [USER]...\n" in bundle
    assert "<list[str]>" not in bundle and "[[USER]" not in bundle


def _command_paths() -> list[list[str]]:
    """Every command and subcommand of the CLI, as argv prefixes (the root first)."""
    import typer

    from owrt_vpn.cli import app

    def walk(cmd: Any, path: list[str]) -> Iterator[list[str]]:
        yield path
        if hasattr(cmd, "list_commands"):
            ctx = typer.Context(cmd)
            for name in cmd.list_commands(ctx):
                yield from walk(cmd.get_command(ctx, name), [*path, name])

    return list(walk(typer.main.get_command(app), []))


def test_every_help_shows_real_placeholders_and_whole_descriptions() -> None:
    """No typer type tags (`<str>`, `<int range>`), `{name}` or `[[DIR]]` in any --help, and
    each group lists its commands with the whole first paragraph of their description."""
    import inspect

    import typer
    from typer.testing import CliRunner as TyperRunner

    from owrt_vpn.cli import app

    paths = _command_paths()
    assert ["user", "add"] in paths and ["keys", "remove"] in paths
    runner = TyperRunner()
    tag = re.compile(r"<(?:str|int|float|bool|path|text|int range|float range|list\[.*?\])>")
    for path in paths:
        out = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"}).output
        assert out.startswith("Usage: "), (path, out)
        assert not tag.search(out) and not re.search(r"\{\w+\}|\[\[", out), (path, out)
        cmd = typer.main.get_command(app)
        for name in path:
            cmd = cmd.get_command(typer.Context(cmd), name)  # type: ignore[attr-defined]
        if not hasattr(cmd, "list_commands"):
            continue
        # Compared without white space: click wraps the rows (also after a hyphen).
        listing = "".join(out.split("Commands:")[1].split())
        for name in cmd.list_commands(typer.Context(cmd)):
            sub = cmd.get_command(typer.Context(cmd), name)
            first = "".join(inspect.cleandoc(sub.help or "").split("\n\n")[0].split())
            assert name + first in listing, (path, name, listing)
