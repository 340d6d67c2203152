"""The documented `--json` outputs (docs/json/*.schema.json): the real commands' output, the
documented examples and the code's vocabularies (statuses, stages) against the schemas."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conftest import REPO, CliRunner
from imagebuilder_double.fixtures import ServedMirror, served_mirror  # noqa: F401

DOCS = REPO / "docs" / "json"
COMMANDS = ("build", "verify", "bundle", "flash", "matrix", "error")


def schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DOCS / f"{name}.schema.json").read_text())
    return data


def check(name: str, document: Any) -> None:
    """Validate ``document`` against docs/json/<name>.schema.json (every error listed)."""
    validator = jsonschema.Draft202012Validator(schema(name))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
    assert errors == [], f"{name} output does not match its schema:\n" + "\n".join(errors)


def parsed(proc: subprocess.CompletedProcess[str], code: int = 0) -> Any:
    assert proc.returncode == code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout)


def test_schemas_are_valid_json_schema() -> None:
    for name in COMMANDS:
        jsonschema.Draft202012Validator.check_schema(schema(name))


def test_documented_examples_match_their_schemas() -> None:
    text = (DOCS / "README.md").read_text()
    examples = re.findall(r"<!-- example: (\w+) -->\n```json\n(.*?)\n```", text, re.S)
    assert sorted({name for name, _ in examples}) == sorted(COMMANDS)
    for name, body in examples:
        check(name, json.loads(body))


def test_schema_vocabularies_are_the_codes() -> None:
    from owrt_vpn.routers.flash import Stage, Status
    from owrt_vpn.site.model import AUTH_METHODS, PLATFORMS

    flash = schema("flash")
    assert set(flash["$defs"]["status"]["enum"]) == {s.value for s in Status}
    stage = flash["properties"]["routers"]["items"]["properties"]["stage"]["enum"]
    assert set(stage) == {s.value for s in Stage}
    device = schema("bundle")["properties"]["devices"]["items"]["properties"]
    assert set(device["platform"]["enum"]) == set(PLATFORMS)
    assert set(device["auth"]["enum"]) == set(AUTH_METHODS)


def test_every_flash_report_shape_matches() -> None:
    """Reports as the flasher fills them, for every status (SSH routers: test_flash.py)."""
    from owrt_vpn.routers.flash import RouterReport, Stage, Status

    reports = []
    for status in Status:
        r = RouterReport("shop-1", "gw", "root@192.0.2.10:22", status=status, stage=Stage.DONE)
        r.message, r.hint, r.board_name = "flashed", "none", "phicomm,k3"
        r.image, r.image_sha256 = "x.trx", "ab" * 32
        r.before = {"version": "23.05.5", "revision": "r24106"}
        r.after = {"version": "24.10.2", "revision": "r28739"}
        r.started, r.finished = 1700000000.0, 1700000090.5
        r.stages = [(str(Stage.CONNECTING), 1700000000.0), (str(Stage.DONE), 1700000090.5)]
        reports.append(r.to_json())
    doc = {"ok": False, "exit_code": 4, "dry_run": False, "counts": {"flashed": 1, "failed": 1}}
    check("flash", {**doc, "routers": reports})
    bad = {**doc, "routers": [{**reports[0], "status": "None"}]}
    with pytest.raises(AssertionError, match="status"):
        check("flash", bad)


# ------------------------------------------------------------------ the real commands


@pytest.fixture
def site(tmp_path: Path, cli: CliRunner, served_mirror: ServedMirror) -> Iterator[Path]:  # noqa: F811
    folder = tmp_path / "site"
    folder.mkdir()
    cli("init", "--server-id", "vpn.example.org", cwd=folder, check=True)
    yield folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connections to it are refused


@pytest.mark.integration
def test_real_outputs_match_the_schemas(
    site: Path,
    cli: CliRunner,
    served_mirror: ServedMirror,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = {"OWRT_VPN_CACHE": str(tmp_path / "cache"), "OWRT_VPN_KEYS_DIR": str(tmp_path / "k")}
    mirror = ["--mirror", served_mirror.url, "--trust-key", str(served_mirror.key.public)]

    def run(*args: str, cwd: Path = site) -> subprocess.CompletedProcess[str]:
        return cli("--json", *args, cwd=cwd, env=env)

    # build: built, then up to date; a failing one-router build: the error document.
    built = parsed(run("build", *mirror))
    check("build", built)
    assert [r["status"] for r in built["routers"]] == ["built"]
    again = parsed(run("build", *mirror))
    check("build", again)
    assert again["routers"][0]["status"] == "up-to-date"
    error = parsed(run("build", *mirror, "--device", "phicomm_k2", "--out", "x"), 2)
    check("error", error)
    assert error["exit_code"] == 2 and "phicomm_k2" in error["errors"][0]

    # bundle
    bundle = parsed(run("bundle"))
    check("bundle", bundle)
    assert {d["device"] for d in bundle["devices"]} == {"phone", "laptop"}

    # verify: identical, then an artifact differs.
    verified = parsed(run("verify", "--trust-key", str(served_mirror.key.public)))
    check("verify", verified)
    assert [i["status"] for i in verified["items"]] == ["identical", "identical"]
    (site / "dist/home/routers/gw/sha256sums").write_text("tampered\n")
    differs = parsed(run("verify", "--no-diffoscope", *mirror[2:]), 3)
    check("verify", differs)
    assert differs["items"][0]["differences"][0]["path"] == "home/routers/gw/sha256sums"

    # flash --dry-run to a router that refuses the connection: a failed report.
    (site / "known_hosts").write_text("")
    port = free_port()
    (site / "inventory.toml").write_text(
        '[[routers]]\nname = "shop-1"\nrouter = "gw"\naddress = "127.0.0.1"\n'
        f'port = {port}\nknown_hosts = "known_hosts"\n'
    )
    flash = parsed(
        run("flash", "--dry-run", "--inventory", "inventory.toml", "--connect-timeout", "5"), 1
    )
    check("flash", flash)
    assert flash["routers"][0]["status"] == "failed" and flash["counts"] == {"failed": 1}

    # build --all and matrix over a fleet of two sites.
    fleet = tmp_path / "fleet"
    for name in ("lyon", "paris"):
        (fleet / name).mkdir(parents=True)
        text = (site / "owrt-vpn.toml").read_text().replace('name = "home"', f'name = "{name}"')
        (fleet / name / "owrt-vpn.toml").write_text(text)
    fleet_doc = parsed(run("build", "--all", "fleet", "--jobs", "2", *mirror, cwd=tmp_path))
    check("build", fleet_doc)
    assert [s["site"] for s in fleet_doc["sites"]] == ["lyon", "paris"]
    matrix = parsed(cli("matrix", "--all", "fleet", cwd=tmp_path))
    check("matrix", matrix)
    assert [e["name"] for e in matrix["include"]] == ["lyon/gw", "paris/gw"]
