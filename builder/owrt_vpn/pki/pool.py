"""Making many device certificates at once: key, certificate and PKCS#12 per device.

The work per device is CPU-bound ``cryptography`` calls that hold the GIL, so
a big batch (a new site with hundreds of users) is spread over forked worker
processes, while the parent writes the files of finished devices. Small
batches, single-CPU machines and callers with threads run in-process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from owrt_vpn.pki import certs as pc

log = logging.getLogger("owrt_vpn.pki.authority")

# Below this much work (in ECDSA devices, ~5 ms each) the pool's start-up
# costs more than it saves.
MIN_BATCH = 48
# What one RSA device costs in ECDSA devices: its key generation alone takes
# 0.1-0.3 s, so even a handful of Android (RSA-3072) devices is worth the pool.
RSA_WEIGHT = 40
MAX_WORKERS = 8
# A worker that has not delivered its next device in this long is taken as
# stalled (a worker lost or stuck, seen once under heavy load): the pool is
# ended and the rest is made in-process, slower but never a hung command.
# One RSA-4096 key takes seconds even on a loaded machine, never minutes.
STALL_SECONDS = 120.0


@dataclass(frozen=True)
class ClientSpec:
    """What one device certificate must contain."""

    user: str
    device: str
    identity: str
    key_type: str
    organization: str
    days: int
    shared_identity: str | None


@dataclass(frozen=True)
class ClientMaterial:
    """A freshly made device key, certificate and PKCS#12 (plain data: it crosses processes)."""

    spec: ClientSpec
    key_pem: bytes
    cert_pem: bytes
    p12: bytes
    password: str
    serial: int
    subject: str
    not_before: str
    not_after: str


def make_client(issuer: pc.Issuer, spec: ClientSpec) -> ClientMaterial:
    """Key, certificate and PKCS#12 (with a new random password) for one device."""
    key = pc.generate_key(spec.key_type)
    cert = pc.make_client(
        issuer, key, spec.identity, spec.organization, spec.days, spec.shared_identity
    )
    password = pc.random_password()
    return ClientMaterial(
        spec=spec,
        key_pem=pc.key_pem(key),
        cert_pem=pc.cert_pem(cert),
        p12=pc.make_p12(spec.identity, key, cert, issuer.cert, password),
        password=password,
        serial=cert.serial_number,
        subject=pc.subject_str(cert),
        not_before=pc.isoz(cert.not_valid_before_utc),
        not_after=pc.isoz(cert.not_valid_after_utc),
    )


# The issuer for forked workers: set in the parent just before the fork, so
# the CA key is inherited in memory and never pickled or written anywhere.
_ISSUER: pc.Issuer | None = None


def _work(spec: ClientSpec) -> ClientMaterial:
    assert _ISSUER is not None
    return make_client(_ISSUER, spec)


def _work_chunk(specs: tuple[ClientSpec, ...]) -> list[ClientMaterial]:
    return [_work(spec) for spec in specs]


def _workers(specs: Sequence[ClientSpec]) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    work = sum(RSA_WEIGHT if s.key_type.startswith("rsa") else 1 for s in specs)
    if (
        work < MIN_BATCH
        or len(specs) < 2
        or (cpus or 1) < 2
        or threading.active_count() > 1  # forking a threaded process is not safe
        or "fork" not in multiprocessing.get_all_start_methods()
    ):
        return 0
    return min(cpus or 1, MAX_WORKERS, len(specs))


def make_clients(issuer: pc.Issuer, specs: Sequence[ClientSpec]) -> Iterator[ClientMaterial]:
    """:func:`make_client` for every spec, in order; in worker processes for big batches."""
    global _ISSUER
    workers = _workers(specs)
    if not workers:
        for spec in specs:
            yield make_client(issuer, spec)
        return
    log.info("making %d device certificates in %d worker processes", len(specs), workers)
    _ISSUER = issuer
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            # Chunks of up to 8 ECDSA devices; RSA keys (slow) are handed out one by one.
            rsa = any(s.key_type.startswith("rsa") for s in specs)
            size = 1 if rsa else max(1, min(8, len(specs) // (workers * 8)))
            chunks = [tuple(specs[i : i + size]) for i in range(0, len(specs), size)]
            # Chunks are our own tasks (not imap's chunksize, whose iterator has no
            # timeout): each result can be waited for with one.
            results = pool.imap(_work_chunk, chunks)
            done = 0
            for _ in chunks:
                try:
                    made = results.next(timeout=STALL_SECONDS)
                except multiprocessing.TimeoutError:
                    log.warning(
                        "the certificate worker processes stalled; making the other %d here",
                        len(specs) - done,
                    )
                    pool.terminate()
                    for spec in specs[done:]:
                        yield make_client(issuer, spec)
                    return
                done += len(made)
                yield from made
    finally:
        _ISSUER = None
