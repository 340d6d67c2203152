"""Read access to the PKI directory (:class:`PkiReader`): never needs the CA passphrase."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from owrt_vpn.errors import PkiError
from owrt_vpn.pki import certs as pc
from owrt_vpn.pki.store import INIT_HINT, CertRecord, Index, read

if TYPE_CHECKING:
    from cryptography import x509


@dataclass(frozen=True)
class Revoked:
    """A revoked client certificate (listed in the CRL)."""

    serial: int
    user: str
    device: str
    identity: str
    revoked_at: str


class PkiReader:
    """Read access to the PKI directory: certificates, keys, PKCS#12, passwords, CRL.

    Reading never needs the CA passphrase. :class:`owrt_vpn.pki.authority.Pki` adds issuing.
    """

    def __init__(self, root: Path, index: Index) -> None:
        self.root = root
        self._index = index
        self._ca_cert: x509.Certificate | None = None

    @staticmethod
    def load_index(root: Path) -> Index:
        """Read ``<root>/index.json`` (an empty index when there is none yet)."""
        return PkiReader.parse_index(root, PkiReader.index_bytes(root))

    @staticmethod
    def index_bytes(root: Path) -> bytes:
        """The bytes of ``<root>/index.json`` (empty when there is none yet)."""
        path = root / "index.json"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            raise PkiError(f"{path}: cannot read: {exc.strerror}") from None

    @staticmethod
    def parse_index(root: Path, data: bytes) -> Index:
        """``index.json``'s bytes (from :meth:`index_bytes`) parsed."""
        return Index.from_bytes(data, str(root / "index.json")) if data else Index()

    @property
    def exists(self) -> bool:
        """True when the CA exists."""
        return (self.root / "ca.crt").is_file() and self._index.current("ca") is not None

    @property
    def ca_encrypted(self) -> bool:
        """False when the CA key was stored unencrypted (``--insecure-unencrypted-ca``)."""
        return self._index.ca_encrypted

    def _ca_kid(self) -> str:
        rec = self._index.current("ca")
        if rec is None or not (self.root / "ca.crt").is_file():
            raise PkiError(f"{self.root}: no CA", hint=INIT_HINT)
        return rec.ca

    def ca_record(self) -> CertRecord | None:
        """The index record of the current CA certificate."""
        return self._index.current("ca")

    def ca_certificate(self) -> x509.Certificate:
        """The CA certificate object."""
        if self._ca_cert is None:
            self._ca_kid()
            self._ca_cert = pc.load_cert(read(self.root / "ca.crt", INIT_HINT))
        return self._ca_cert

    def _server_path(self, router: str, ext: str) -> Path:
        return self.root / "servers" / f"{router}.{ext}"

    def _client_path(self, user: str, device: str, ext: str) -> Path:
        return self.root / "clients" / user / f"{device}.{ext}"

    def _eap_path(self, user: str) -> Path:
        return self.root / "eap" / f"{user}.password"

    # ------------------------------------------------------------------ reading

    def ca_cert_pem(self) -> bytes:
        """The CA certificate (PEM)."""
        return pc.cert_pem(self.ca_certificate())

    def ca_cert_der(self) -> bytes:
        """The CA certificate (DER), for Android/Windows imports."""
        from cryptography.hazmat.primitives import serialization

        return self.ca_certificate().public_bytes(serialization.Encoding.DER)

    def _server_rec(self, router: str) -> CertRecord:
        rec = self._index.current("server", router)
        if rec is None:
            raise PkiError(
                f"{self.root}: no server certificate for router {router!r}", hint=INIT_HINT
            )
        return rec

    def server_record(self, router: str) -> CertRecord | None:
        """The index record of the router's current server certificate."""
        return self._index.current("server", router)

    def server_cert_pem(self, router: str) -> bytes:
        """The router's server certificate (PEM)."""
        from owrt_vpn.pki.audit import verify_cert

        self._server_rec(router)
        path = self._server_path(router, "crt")
        data = read(path, INIT_HINT)
        verify_cert(path, self.ca_certificate(), data)  # nothing unverified is baked
        return data

    def server_key_pem(self, router: str) -> bytes:
        """The router's private key: unencrypted PKCS#8 PEM (it goes onto the router)."""
        from owrt_vpn.pki.audit import verify_key

        self._server_rec(router)
        path = self._server_path(router, "key")
        data = read(path, INIT_HINT)
        cert = pc.load_cert(self.server_cert_pem(router))
        verify_key(path, cert, data)
        return data

    def client_status(self, user: str, device: str) -> str:
        """``valid``, ``revoked`` or ``missing`` for the device's current certificate."""
        rec = self._index.current("client", user, device)
        if rec is None:
            return "missing"
        return rec.status

    def client_record(self, user: str, device: str) -> CertRecord | None:
        """The index record of the device's current certificate."""
        return self._index.current("client", user, device)

    def _client_rec(self, user: str, device: str) -> CertRecord:
        rec = self._index.current("client", user, device)
        if rec is None:
            raise PkiError(
                f"{self.root}: no certificate for {user}/{device}",
                hint="run `owrt-vpn pki init` (or any build) to issue it",
            )
        if rec.status == "revoked":
            raise PkiError(
                f"the certificate of {user}/{device} is revoked",
                hint=f"issue a new one with `owrt-vpn pki renew --user {user} --device {device}`",
            )
        return rec

    def client_cert_pem(self, user: str, device: str) -> bytes:
        """The device certificate (PEM); PkiError when missing or revoked."""
        self._client_rec(user, device)
        return read(self._client_path(user, device, "crt"), INIT_HINT)

    def client_key_pem(self, user: str, device: str) -> bytes:
        """The device's private key (unencrypted PKCS#8 PEM)."""
        self._client_rec(user, device)
        return read(self._client_path(user, device, "key"), INIT_HINT)

    def client_key_type(self, user: str, device: str) -> str:
        """``ecdsa-p256`` or ``rsa3072``."""
        return self._client_rec(user, device).key_type

    def p12(self, user: str, device: str) -> bytes:
        """The device's PKCS#12 (legacy 3DES/SHA-1 form, CA included)."""
        self._client_rec(user, device)
        return read(self._client_path(user, device, "p12"), INIT_HINT)

    def p12_password(self, user: str, device: str) -> str:
        """The password of the device's PKCS#12."""
        self._client_rec(user, device)
        return read(self._client_path(user, device, "p12.password"), INIT_HINT).decode().strip()

    def eap_status(self, user: str) -> str:
        """``active``, ``revoked`` or ``missing``."""
        status = self._index.eap.get(user)
        if status == "active" and not self._eap_path(user).is_file():
            return "missing"
        return status or "missing"

    def eap_password(self, user: str) -> str:
        """The user's EAP-MSCHAPv2 password; PkiError when missing or revoked."""
        if self._index.eap.get(user) == "revoked":
            raise PkiError(
                f"the EAP password of {user} is revoked",
                hint=f"set a new one with `owrt-vpn user passwd {user}`",
            )
        hint = f"run `owrt-vpn user passwd {user}` to set one"
        return read(self._eap_path(user), hint).decode().rstrip("\n")

    def crl_pem(self) -> bytes | None:
        """The CRL (PEM), or None when nothing was ever revoked."""
        path = self.root / "crl.pem"
        if self._index.crl is None or not path.is_file():
            if self.revoked():
                from owrt_vpn.pki.audit import verify_crl

                verify_crl(path, self.ca_certificate(), [], read(path, INIT_HINT))
            return None
        from owrt_vpn.pki.audit import verify_crl

        data = path.read_bytes()
        # Issuer, signature and completeness: a CRL from another CA, or one
        # that misses a revocation, must never be baked into firmware.
        verify_crl(path, self.ca_certificate(), [r.serial for r in self.revoked()], data)
        return data

    def crl_info(self) -> dict[str, object] | None:
        """The CRL's number and dates as recorded in the index."""
        return dict(self._index.crl) if self._index.crl else None

    def revoked(self) -> list[Revoked]:
        """The revoked client certificates of the current CA (what the CRL lists)."""
        if self._index.current("ca") is None:
            return []
        kid = self._ca_kid()
        return [
            Revoked(r.serial, r.user or "", r.device or "", r.identity or "", r.revoked_at or "")
            for r in sorted(self._index.certs, key=CertRecord.sort_key)
            if r.kind == "client" and r.status == "revoked" and r.ca == kid
        ]

    def records(self, *, all_records: bool = False) -> list[CertRecord]:
        """Index records (current ones unless ``all_records``), in index order."""
        return [
            r
            for r in sorted(self._index.certs, key=CertRecord.sort_key)
            if all_records or r.current
        ]

    def digest(self, router: str | None = None) -> str:
        """sha256 over the PKI files builds use: CA, CRL, server certificates/keys, EAP passwords.

        With ``router``, only that router's server files count, so renewing
        another router's certificate does not change this router's digest.
        """
        from owrt_vpn.pki.digest import pki_digest

        return pki_digest(self.root, router)
