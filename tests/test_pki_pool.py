"""When the PKI makes device certificates in worker processes (pki_pool._workers)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CliRunner
from owrt_vpn.pki import certs as pc
from owrt_vpn.pki import pool as pki_pool
from owrt_vpn.pki.pool import ClientSpec


def _specs(n: int, key_type: str) -> list[ClientSpec]:
    return [ClientSpec(f"u{i}", "d", f"u{i}+d@home", key_type, "home", 825, None) for i in range(n)]


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pki_pool.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(pki_pool.threading, "active_count", lambda: 1)


@pytest.mark.usefixtures("two_cpus")
def test_ecdsa_batches_below_the_threshold_stay_in_process() -> None:
    assert pki_pool._workers(_specs(pki_pool.MIN_BATCH - 1, "ecdsa-p256")) == 0
    assert pki_pool._workers(_specs(pki_pool.MIN_BATCH, "ecdsa-p256")) == 2


@pytest.mark.usefixtures("two_cpus")
def test_a_few_rsa_devices_are_worth_the_workers() -> None:
    # RSA key generation dominates (0.1-0.3 s each): two devices already use both CPUs.
    assert pki_pool._workers(_specs(2, "rsa3072")) == 2
    assert pki_pool._workers(_specs(1, "rsa3072")) == 0  # nothing to share
    mixed = _specs(1, "rsa3072") + _specs(10, "ecdsa-p256")
    assert pki_pool._workers(mixed) == 2


def test_never_with_threads_or_one_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pki_pool.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(pki_pool.threading, "active_count", lambda: 1)
    assert pki_pool._workers(_specs(100, "rsa3072")) == 0
    monkeypatch.setattr(pki_pool.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(pki_pool.threading, "active_count", lambda: 2)
    assert pki_pool._workers(_specs(100, "rsa3072")) == 0


def test_rsa_devices_from_workers_verify(cli: CliRunner, tmp_path: Path) -> None:
    """Three Android (RSA-3072) devices through the CLI: made by workers, valid chains."""
    cli("init", "--server-id", "vpn.example.org", check=True)
    site = tmp_path / "owrt-vpn.toml"
    head = site.read_text().split("[[users]]")[0]
    users = "".join(
        f'[[users]]\nname = "u{i}"\n[[users.devices]]\nname = "d"\nplatform = "android"\n\n'
        for i in range(3)
    )
    site.write_text(head + users)
    proc = cli("pki", "init", "--verbose", check=True)
    if len(os.sched_getaffinity(0)) > 1:
        assert "making 3 device certificates in 2 worker processes" in proc.stderr
    crts = [str(tmp_path / "pki" / "clients" / f"u{i}" / "d.crt") for i in range(3)]
    out = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tmp_path / "pki" / "ca.crt"), *crts],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.count(": OK\n") == 3
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", crts[0]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Public-Key: (3072 bit)" in text


_WORK = pki_pool._work


def _stalling_work(spec: ClientSpec) -> pki_pool.ClientMaterial:
    """A worker that never delivers u2's device (as a lost or stuck worker would)."""
    if spec.user == "u2":
        time.sleep(3600)
    return _WORK(spec)


def _issuer() -> pc.Issuer:
    key = pc.generate_key("ecdsa-p256")
    return pc.Issuer(pc.make_ca(key, pc.name("stall test CA", "home"), 30), key)


@pytest.mark.usefixtures("two_cpus")
@pytest.mark.parametrize(("count", "before"), [(6, 2), (40, 2)])  # chunks of 1 and of 2
def test_a_stalled_worker_pool_is_ended_and_the_rest_made_in_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, count: int, before: int
) -> None:
    monkeypatch.setattr(pki_pool, "STALL_SECONDS", 1.0)
    monkeypatch.setattr(pki_pool, "MIN_BATCH", 2)
    # The forked workers resolve the pickled function name to this stalling one.
    monkeypatch.setattr(pki_pool, "_work", _stalling_work)
    specs = _specs(count, "ecdsa-p256")
    issuer = _issuer()
    with caplog.at_level("INFO", logger="owrt_vpn.pki.authority"):
        made = list(pki_pool.make_clients(issuer, specs))
    assert [m.spec for m in made] == specs  # every device, in order, u2 included
    assert f"making {count} device certificates in 2 worker processes" in caplog.text
    assert f"worker processes stalled; making the other {count - before} here" in caplog.text
    assert len({m.serial for m in made}) == count
