"""Fleets: the site file rule for --all, duplicate names, the CI matrix, job splitting,
batch exit codes (no ImageBuilder run: see integration/test_repro.py for builds)."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

import sitefile
from conftest import REPO, CliRunner
from owrt_vpn.build import fleet
from owrt_vpn.build.plan import BuildOptions
from owrt_vpn.errors import ConfigError, UsageError

ATH79 = sitefile.router(
    "branch",
    server_id="vpn2.example.org",
    release="23.05.5",
    target="ath79",
    device="tplink_archer-c7-v5",
    pool="10.10.20.0/24",
)


def write_site(folder: Path, name: str, *more_routers: str) -> Path:
    """The common site named ``name`` (router gw, alice), plus ``more_routers``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "owrt-vpn.toml"
    path.write_text(sitefile.site(name, routers=[sitefile.router(), *more_routers]))
    return path


def test_discovery_rule_any_depth_sorted_hidden_and_linked_folders_skipped(
    tmp_path: Path,
) -> None:
    root = tmp_path / "sites"
    b = write_site(root / "b", "b")
    a = write_site(root / "deep" / "er" / "a", "a")
    top = write_site(root, "top")
    write_site(root / ".git" / "x", "hidden")
    write_site(tmp_path / "elsewhere", "linked")
    os.symlink(tmp_path / "elsewhere", root / "link")
    (root / "c").mkdir()
    (root / "c" / "other.toml").write_text("")  # only owrt-vpn.toml counts
    assert fleet.discover_sites(root) == sorted([b, a, top])
    with pytest.raises(UsageError, match=r"no owrt-vpn\.toml in it"):
        fleet.discover_sites(root / "c")
    with pytest.raises(UsageError, match="not a directory"):
        fleet.discover_sites(tmp_path / "missing")


def test_duplicate_site_names_are_refused_naming_both_files(tmp_path: Path) -> None:
    write_site(tmp_path / "one", "home")
    write_site(tmp_path / "two", "home")
    with pytest.raises(ConfigError) as exc:
        fleet.load_fleet(tmp_path, strict=False)
    text = "\n".join(exc.value.lines())
    assert exc.value.hint == "each site needs its own [site] name (dist/<name>/)"
    assert "site.name: 'home' is also used by" in text
    assert "one/owrt-vpn.toml" in text and "two/owrt-vpn.toml" in text


def test_broken_site_strict_vs_lenient(tmp_path: Path) -> None:
    write_site(tmp_path / "good", "good")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "owrt-vpn.toml").write_text('[site]\nname = "bad"\nnmae = 1\n')
    entries = fleet.load_fleet(tmp_path, strict=False)
    assert [(e.site.name if e.site else None) for e in entries] == [None, "good"]
    assert entries[0].error is not None and "nmae" in entries[0].error.message
    assert entries[0].label.endswith("bad/owrt-vpn.toml")
    with pytest.raises(ConfigError) as exc:
        fleet.load_fleet(tmp_path, strict=True)
    assert any("bad/owrt-vpn.toml" in line and "nmae" in line for line in exc.value.lines())
    assert "[site] name" not in (exc.value.hint or "")  # no duplicate names here
    # Bad TOML: the file's own hint, not the duplicate-name one.
    (bad / "owrt-vpn.toml").write_text("[site\n")
    with pytest.raises(ConfigError) as exc:
        fleet.load_fleet(tmp_path, strict=True)
    assert "[site] name" not in (exc.value.hint or "")


def test_matrix_has_the_effective_values_per_router(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_site(tmp_path / "fleet" / "paris", "paris", ATH79)
    write_site(tmp_path / "fleet" / "lyon", "lyon")
    entries = fleet.matrix(fleet.load_fleet(Path("fleet"), strict=True))
    assert entries == [
        {
            "name": "lyon/gw",
            "site_file": "fleet/lyon/owrt-vpn.toml",
            "site": "lyon",
            "router": "gw",
            "release": "24.10.2",
            "target": "bcm53xx",
            "subtarget": "generic",  # the target's default, from profiles/
            "device": "phicomm_k3",
        },
        {
            "name": "paris/gw",
            "site_file": "fleet/paris/owrt-vpn.toml",
            "site": "paris",
            "router": "gw",
            "release": "24.10.2",
            "target": "bcm53xx",
            "subtarget": "generic",
            "device": "phicomm_k3",
        },
        {
            "name": "paris/branch",
            "site_file": "fleet/paris/owrt-vpn.toml",
            "site": "paris",
            "router": "branch",
            "release": "23.05.5",
            "target": "ath79",
            "subtarget": "generic",
            "device": "tplink_archer-c7-v5",
        },
    ]


def test_matrix_cli_single_site_and_all(cli: CliRunner, tmp_path: Path) -> None:
    write_site(tmp_path / "fleet" / "a", "a", ATH79)
    write_site(tmp_path / "fleet" / "b", "b")
    one = cli("--site", "fleet/a/owrt-vpn.toml", "matrix", check=True)
    data = json.loads(one.stdout)
    assert [e["name"] for e in data["include"]] == ["a/gw", "a/branch"]
    assert data["include"][0]["site_file"] == "fleet/a/owrt-vpn.toml"
    every = json.loads(cli("matrix", "--all", "fleet", "--json", check=True).stdout)
    assert [e["name"] for e in every["include"]] == ["a/gw", "a/branch", "b/gw"]
    # An absolute DIR outside the working directory: absolute site file paths.
    (tmp_path / "ci").mkdir()
    outside = json.loads(
        cli("matrix", "--all", str(tmp_path / "fleet"), cwd=tmp_path / "ci").stdout
    )
    assert outside["include"][0]["site_file"] == str(tmp_path / "fleet/a/owrt-vpn.toml")
    missing = cli("matrix", "--all", "nowhere")
    assert missing.returncode == 2 and "not a directory" in missing.stderr


@pytest.mark.parametrize(
    ("jobs", "sites", "expected"),
    [
        (1, 5, (1, 1)),
        (2, 2, (2, 1)),
        (4, 2, (2, 2)),
        (2, 1, (1, 2)),
        (5, 2, (2, 2)),
        (3, 9, (3, 1)),
    ],
)
def test_split_jobs_never_exceeds_jobs(jobs: int, sites: int, expected: tuple[int, int]) -> None:
    at_once, per_site = fleet.split_jobs(jobs, sites)
    assert (at_once, per_site) == expected
    assert at_once * per_site <= jobs


@pytest.mark.parametrize(
    ("failed", "units", "code"), [(0, 3, 0), (1, 3, 4), (2, 3, 4), (3, 3, 1), (1, 1, 1)]
)
def test_batch_exit_code_as_for_flash(failed: int, units: int, code: int) -> None:
    assert fleet.batch_exit_code(failed, units) == code


def test_build_all_refuses_per_router_overrides(tmp_path: Path) -> None:
    entries = fleet.load_fleet(write_site(tmp_path / "a", "a").parent.parent, strict=False)
    for options in (BuildOptions(routers=("gw",)), BuildOptions(target="ath79")):
        with pytest.raises(UsageError, match="--all builds every router"):
            fleet.build_fleet(entries, options, fleet.SiteReporter(Recorder(), "a"))


class Recorder:
    """A build reporter that records what it is told."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def stage(self, router: str, message: str) -> None:
        self.lines.append(f"stage {router}: {message}")

    def progress(self, router: str, name: str) -> None:
        self.lines.append(f"progress {router}: {name}")

    def output(self, router: str, line: str) -> None:
        self.lines.append(f"output {router}: {line}")

    def warn(self, message: str) -> None:
        self.lines.append(f"warn {message}")


def test_site_reporter_names_routers_with_their_site() -> None:
    rec = Recorder()
    rep = fleet.SiteReporter(rec, "paris")
    rep.stage("gw", "building")
    rep.stage("paris", "created the CA")  # build() reports site-wide stages by site name
    rep.output("gw", "make ...")
    assert rep.progress("gw", "archive") is None
    rep.warn("--insecure-skip-signature")
    assert rec.lines == [
        "stage paris/gw: building",
        "stage paris: created the CA",
        "output paris/gw: make ...",
        "progress paris/gw: archive",
        "warn paris: --insecure-skip-signature",
    ]


def test_a_site_that_fails_to_load_counts_as_one_failed_unit(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "owrt-vpn.toml").write_text("not toml [")
    [entry] = fleet.load_fleet(tmp_path, strict=False)
    [outcome] = fleet.build_fleet([entry], BuildOptions(out=tmp_path / "dist"), Recorder())
    assert (outcome.failed, outcome.units) == (1, 1)
    data = fleet.fleet_json([outcome])
    assert data["ok"] is False and data["exit_code"] == 1
    assert data["sites"][0]["site"] is None and data["sites"][0]["routers"] == []
    assert data["sites"][0]["error"]


# ------------------------------------------------------------------ the CI example


def _workflow() -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load((REPO / "examples" / "github-actions.yml").read_text())
    return data


def _owrt_vpn_commands(script: str) -> list[list[str]]:
    """Every `owrt-vpn ...` command line in a shell step, expressions replaced by a word."""
    text = re.sub(r"\$\{\{.*?\}\}", "X", script).replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        if line.strip().startswith("pip install"):
            continue  # pip install "owrt-vpn @ git+...": checked on its own
        for m in re.finditer(r"owrt-vpn\s+([^)\n]*)", line):
            commands.append(shlex.split(m.group(1)))
    return commands


def test_github_actions_example_builds_the_matrix_with_a_kept_cache() -> None:
    flow = _workflow()
    plan, build = flow["jobs"]["plan"], flow["jobs"]["build"]
    matrix_step = next(s for s in plan["steps"] if s.get("id") == "matrix")
    assert "owrt-vpn matrix --all sites" in matrix_step["run"]
    assert build["needs"] == "plan"
    assert build["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    steps = {s.get("uses", s.get("name", "")).split("@")[0]: s for s in build["steps"]}
    cache = steps["actions/cache"]["with"]
    assert cache["path"].startswith("${{ env.OWRT_VPN_CACHE }}")
    assert "OWRT_VPN_CACHE" in flow["env"]
    upload = steps["actions/upload-artifact"]["with"]
    assert upload["path"] == "dist/${{ matrix.site }}/routers/${{ matrix.router }}/"
    runs = "\n".join(s.get("run", "") for s in build["steps"])
    assert "secrets.OWRT_VPN_PKI" in json.dumps(build["steps"])
    assert "secrets.OWRT_VPN_CA_PASSPHRASE" in json.dumps(build["steps"])
    assert "--locked" in runs and 'test -f "${{ steps.site.outputs.dir }}/pki/ca.crt"' in runs
    # The matrix keys the workflow reads are the ones `matrix` prints.
    used = set(re.findall(r"(?<![.\w])matrix\.(\w+)", json.dumps(flow)))
    schema = json.loads((REPO / "docs/json/matrix.schema.json").read_text())
    keys = schema["properties"]["include"]["items"]["required"]
    assert {"site_file", "router", "target"} <= used <= set(keys)


def test_github_actions_example_installs_a_pinned_git_revision() -> None:
    """Every job installs owrt-vpn from a git repository at a full commit id, never by a
    name from a package index (no such package; anybody could register it)."""
    from packaging.requirements import Requirement

    flow = _workflow()
    env = flow["env"]
    assert re.fullmatch(r"[0-9a-f]{40}", env["OWRT_VPN_REV"])
    assert env["OWRT_VPN_REPO"].startswith("https://")
    for name, job in flow["jobs"].items():
        installs = [s["run"] for s in job["steps"] if "pip install" in s.get("run", "")]
        assert installs == ['pip install "owrt-vpn @ git+${OWRT_VPN_REPO}@${OWRT_VPN_REV}"'], name
        spec = shlex.split(installs[0])[2]
        spec = spec.replace("${OWRT_VPN_REPO}", env["OWRT_VPN_REPO"])
        req = Requirement(spec.replace("${OWRT_VPN_REV}", env["OWRT_VPN_REV"]))
        assert (req.name, req.specifier, req.url) == (
            "owrt-vpn",
            req.specifier,
            f"git+{env['OWRT_VPN_REPO']}@{env['OWRT_VPN_REV']}",
        )
        assert not str(req.specifier)  # a URL, no version from an index
    text = (REPO / "examples" / "github-actions.yml").read_text()
    assert "owrt-vpn==" not in text


def test_github_actions_example_command_lines_parse() -> None:
    """Every owrt-vpn command in the workflow names real commands and options."""
    import typer

    from owrt_vpn.cli import app, hoist_global_options

    root = typer.main.get_command(app)
    scripts = [s.get("run", "") for job in _workflow()["jobs"].values() for s in job["steps"]]
    commands = [c for script in scripts for c in _owrt_vpn_commands(script)]
    assert [c[c.index("--site") + 2] if "--site" in c else c[0] for c in commands] == [
        "matrix",
        "build",
        "verify",
    ]
    for argv in commands:
        args = hoist_global_options(argv)
        i = 0
        while args[i].startswith("-"):
            i += 2 if args[i] == "--site" else 1
        ctx = root.make_context("owrt-vpn", args[: i + 1], resilient_parsing=False)
        sub = root.get_command(ctx, args[i])  # type: ignore[attr-defined]
        assert sub is not None, argv
        sub.make_context(args[i], args[i + 1 :], parent=ctx)  # raises on an unknown option
    # ... and a wrong option would be caught.
    ctx = root.make_context("owrt-vpn", ["build"], resilient_parsing=False)
    with pytest.raises(Exception, match="No such option"):
        root.get_command(ctx, "build").make_context(  # type: ignore[attr-defined]
            "build", ["--lockd"], parent=ctx
        )
