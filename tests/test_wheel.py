"""Packaging proof: the wheel built from the repo works outside the checkout.

The wheel is built from the repository (``python -m build --wheel
--no-isolation``: hatchling comes from the test extras, so no network), and
installed with ``--no-deps`` into a fresh venv in a temporary folder. The
venv borrows the *third-party* dependencies from the development venv through
a ``.pth`` line: that path is only appended to ``sys.path`` (its own ``.pth``
files, among them the editable install's pointer to the checkout, are not
processed), and the fresh venv's own site-packages comes first, so
``owrt_vpn`` and its data are the wheel's. The test asserts that, so a
wheel missing its data cannot pass by finding the checkout.
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _run(argv: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [os.fspath(a) for a in argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _base_python() -> str:
    """Debian's own python3 (3.11.2 on Debian 12) when it is this Python's minor version.

    Running the installed wheel on the distribution's interpreter proves the
    code works on the oldest 3.11 we promise; the borrowed dependencies are
    built for the same minor version, so they load there too.
    """
    system = Path("/usr/bin/python3")
    if system.exists():
        probe = subprocess.run(
            [system, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.split() == [str(n) for n in sys.version_info[:2]]:
            return str(system)
    return sys.executable


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from the repository."""
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, REPO], REPO)
    (whl,) = out.glob("owrt_vpn-*.whl")
    return whl


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (REPO / "profiles").rglob("*"):
        if shipped.is_file():
            rel = shipped.relative_to(REPO / "profiles").as_posix()
            assert f"owrt_vpn/_data/profiles/{rel}" in names
    for shipped in (REPO / "files-overlay").rglob("*"):
        if shipped.is_file():
            rel = shipped.relative_to(REPO / "files-overlay").as_posix()
            assert f"owrt_vpn/_data/files-overlay/{rel}" in names
    assert "owrt_vpn/cli.py" in names and "owrt_vpn/commands/check.py" in names
    assert not any(n.startswith(("tests/", "builder/")) for n in names)
    # The dependencies the wheel declares are the project's.
    dist_info = next(n for n in names if n.endswith(".dist-info/METADATA"))
    meta = email.parser.Parser().parsestr(zipfile.ZipFile(wheel).read(dist_info).decode())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    assert sorted(declared) == sorted(project["dependencies"])
    assert meta["Requires-Python"] == project["requires-python"]


def test_installed_wheel_runs_outside_checkout(
    wheel: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    venv = tmp_path_factory.mktemp("venv")
    work = tmp_path_factory.mktemp("work")
    assert REPO not in venv.parents and REPO not in work.parents
    _run([_base_python(), "-m", "venv", "--without-pip", venv], work)
    py = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", wheel],
        work,
    )
    purelib = Path(
        _run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work).strip()
    )
    (purelib / "zz_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "OWRT_VPN_"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin"
    probe = "import owrt_vpn, owrt_vpn.resources as r; print(owrt_vpn.__file__, r.profiles_dir())"
    if any(p.is_file() for p in (REPO / "files-overlay").rglob("*")):
        probe += "; print(r.templates_dir())"
    where = _run([py, "-c", probe], work, env).split()
    assert all(Path(p).is_relative_to(purelib / "owrt_vpn") for p in where), where
    assert Path(where[1]) == purelib / "owrt_vpn" / "_data" / "profiles"

    # The console script, run from a folder outside the checkout: `init`
    # reads profiles/site-template.toml, releases.toml and targets.toml.
    script = venv / "bin" / "owrt-vpn"
    out = _run([script, "init", "--offline", "--server-id", "203.0.113.9", "mysite"], work, env)
    assert out.startswith("wrote mysite/owrt-vpn.toml")
    site = work / "mysite" / "owrt-vpn.toml"
    assert tomllib.loads(site.read_text())["routers"][0]["server_id"] == "203.0.113.9"
    assert _run([script, "--site", site, "check"], work, env).startswith(f"{site}: ok")
    assert _run([py, "-m", "owrt_vpn", "--version"], work, env).startswith("owrt-vpn ")
    # The wheel's code also loads and runs on that interpreter as a whole.
    _run(
        [
            py,
            "-c",
            "import compileall, sys, owrt_vpn; sys.exit(not compileall.compile_dir("
            "owrt_vpn.__path__[0], quiet=1))",
        ],
        work,
        env,
    )
