"""`init` writes a .gitignore for the site's secrets; `check` warns when git tracks one."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import CliRunner
from requires import require


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(folder), *args], capture_output=True, text=True, check=False
    )


def test_init_writes_a_gitignore_that_git_honours(cli: CliRunner, tmp_path: Path) -> None:
    require("git")
    assert _git(tmp_path, "init", "-q").returncode == 0
    assert cli("init", check=True).stdout.splitlines()[1].startswith("wrote ")
    for secret in ("pki/ca.key", "dist/home/routers/gw/overlay.tar", "laptop.p12",
                   "eap/bob.password", "alice/phone.mobileconfig"):  # fmt: skip
        assert _git(tmp_path, "check-ignore", "-q", secret).returncode == 0, secret
    assert _git(tmp_path, "check-ignore", "-q", "owrt-vpn.toml").returncode == 1


def test_init_keeps_an_existing_gitignore(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.swp\n")
    cli("init", check=True)
    text = (tmp_path / ".gitignore").read_text()
    assert text.startswith("*.swp\n\n# owrt-vpn: ")
    cli("init", "--force", check=True)
    assert (tmp_path / ".gitignore").read_text() == text  # not appended twice


def test_check_warns_about_tracked_secrets(cli: CliRunner, tmp_path: Path) -> None:
    require("git")
    assert _git(tmp_path, "init", "-q").returncode == 0
    cli("init", check=True)
    cli("pki", "init", check=True)
    assert _warnings(cli("check", check=True).stderr) == []
    assert _git(tmp_path, "add", "-f", "pki/ca.key", "pki/ca.crt", "owrt-vpn.toml").returncode == 0
    proc = cli("check", check=True)
    warned = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: ")]
    assert warned == [
        "warning: git tracks secrets of this site: pki/ca.key; untrack them with "
        "`git rm --cached`, add them to .gitignore (`owrt-vpn init` writes one) and "
        "replace the keys and passwords the history holds"
    ]
    # Untracked again: nothing to say.
    assert _git(tmp_path, "rm", "-q", "--cached", "pki/ca.key").returncode == 0
    assert _warnings(cli("check", check=True).stderr) == []


def test_check_names_only_the_secret_files_of_dist(cli: CliRunner, tmp_path: Path) -> None:
    require("git")
    assert _git(tmp_path, "init", "-q").returncode == 0
    cli("init", check=True)
    cli("pki", "init", check=True)
    cli("bundle", check=True)
    dist = [p for p in (tmp_path / "dist").rglob("*") if p.is_file()]
    public = [p for p in dist if p.name in ("README.md", "ca.crt")]
    zips = sorted(str(p.relative_to(tmp_path)) for p in dist if p.suffix == ".zip")
    assert public and zips
    assert _git(tmp_path, "add", "-f", "dist").returncode == 0
    [warned] = _warnings(cli("check", check=True).stderr)
    assert "README.md" not in warned and "ca.crt" not in warned, warned
    assert zips[0] in warned, warned
    # Only public files tracked: nothing to say.
    assert _git(tmp_path, "rm", "-rq", "--cached", "dist").returncode == 0
    assert _git(tmp_path, "add", "-f", *map(str, public)).returncode == 0
    assert _warnings(cli("check", check=True).stderr) == []


def _warnings(stderr: str) -> list[str]:
    """`check`'s warnings (its "not checked offline" notes are not warnings)."""
    return [ln for ln in stderr.splitlines() if ln.startswith("warning: ")]
