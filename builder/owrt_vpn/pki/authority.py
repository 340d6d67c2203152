"""The site's PKI: one CA, a server certificate per router, a certificate per device.

:class:`Pki` reads the state in the PKI directory (no passphrase needed to
read; see :class:`owrt_vpn.pki.store.PkiReader`) and issues what the site
needs and is missing. It signs only when something is missing, so the CA
passphrase is needed only then. Existing material is always reused; renewal
is explicit (:meth:`Pki.renew`), and so is revocation (:meth:`Pki.revoke`).

Everything is done with ``cryptography`` (:mod:`owrt_vpn.pki.certs`); the
directory layout and index live in :mod:`owrt_vpn.pki.store`.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from owrt_vpn.errors import ConfigError, PkiError, Problem, UsageError
from owrt_vpn.pki import certs as pc
from owrt_vpn.pki import store as ps
from owrt_vpn.pki.audit import loose_modes
from owrt_vpn.pki.policy import (
    EnsureReport,
    RevokeResult,
    check_password,
    client_key_type_for,
    find_device,
    needs_certs,
    site_unchanged,
)
from owrt_vpn.pki.pool import ClientSpec, make_clients
from owrt_vpn.pki.reader import PkiReader
from owrt_vpn.pki.store import INIT_HINT, CertRecord, Index
from owrt_vpn.site.keys import user_key
from owrt_vpn.site.model import (
    CERT_AUTH,
    EAP_PASSWORD_AUTH,
    Device,
    Router,
    Site,
    User,
    device_identity,
)

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger("owrt_vpn.pki.authority")


class Pki(PkiReader):
    """The PKI state of one site (see the module docstring)."""

    def __init__(self, root: Path, index: Index) -> None:
        super().__init__(root, index)
        self._issuer: pc.Issuer | None = None
        self._lock = threading.RLock()
        # index.json's bytes when this object last read or wrote it (None: unknown).
        self._synced: bytes | None = None

    @classmethod
    def open(cls, site: Site) -> Pki:
        """Read the PKI state of ``site`` (an empty state when the directory is new)."""
        data = cls.index_bytes(site.pki_path)
        pki = cls(site.pki_path, cls.parse_index(site.pki_path, data))
        pki._synced = data
        return pki

    @contextlib.contextmanager
    def _mutating(self) -> Iterator[None]:
        """Lock the directory, pick up other processes' changes, save the index on the way out."""
        with self._lock, ps.locked(self.root):
            data = self.index_bytes(self.root)
            if data == self._synced:
                # Nobody changed the file since we read or wrote it: the state in
                # memory is what it holds (no parse and compare of 1,000s of records).
                before = data or self._index.to_bytes()
            else:
                on_disk = self.parse_index(self.root, data)
                before = on_disk.to_bytes()
                if before != self._index.to_bytes():
                    self._index, self._ca_cert, self._issuer = on_disk, None, None
            try:
                yield
                # Every write leaves secrets 0600 in 0700 folders where we own
                # them: a `chmod 644 ca.key` does not outlive the next command.
                for warning in loose_modes(self.root, repair=True):
                    log.warning("warning: %s", warning)
            finally:
                # Saved even when a later step failed: files written so far stay recorded.
                after = self._index.to_bytes()
                self._synced = None
                if after != before:
                    ps.sync()  # the files first, then the index that records them
                    ps.put(self.root / "index.json", after, ps.PUBLIC_MODE, sync=True)
                self._synced = after if after != before else data

    # ------------------------------------------------------------------ the CA

    def unlock(self) -> None:
        """Decrypt the CA key now (needs the passphrase): later signing cannot fail on it."""
        self._get_issuer()

    def _get_issuer(self) -> pc.Issuer:
        if self._issuer is None:
            cert = self.ca_certificate()
            data = ps.read(self.root / "ca.key", "restore ca.key from a backup")
            secret = ps.passphrase() if self._index.ca_encrypted else None
            try:
                key = pc.load_key(data, secret)
            except (ValueError, TypeError):
                raise PkiError(
                    f"{self.root / 'ca.key'}: cannot decrypt the CA key (wrong passphrase?)",
                    hint=f"check {ps.PASSPHRASE_ENV}",
                ) from None
            if not pc.same_public_key(key, cert):
                raise PkiError(f"{self.root / 'ca.key'}: does not belong to ca.crt")
            self._issuer = pc.Issuer(cert, key)
        return self._issuer

    def _store_ca(self, cert: x509.Certificate, key: pc.PrivateKey, secret: bytes | None) -> None:
        """Write the CA (its key encrypted with ``secret``, unencrypted when None)."""
        encrypt = secret is not None
        ps.put(self.root / "ca.key", pc.key_pem(key, secret), ps.SECRET_MODE)
        ps.put(self.root / "ca.crt", pc.cert_pem(cert), ps.PUBLIC_MODE)
        self._index.ca_encrypted = encrypt
        self._index.add(self._record("ca", cert, pc.key_id(cert.public_key()), pc.key_type_of(key)))
        self._ca_cert = cert
        self._issuer = pc.Issuer(cert, key)

    def init(self, site: Site, *, encrypt: bool = True) -> EnsureReport:
        """Create the CA unless it exists, then issue everything the site needs."""
        with self._mutating():
            report = EnsureReport()
            if not self.exists:
                # The passphrase first (a short one is refused, the prompt comes
                # at once): then the slow key generation, then the first write.
                secret = ps.passphrase(new=True) if encrypt else None
                key = pc.generate_key(pc.CA_KEY_TYPE)
                org = site.settings.organization or site.name
                cert = pc.make_ca(key, pc.name(f"{site.name} VPN CA", org), site.settings.ca_days)
                self._store_ca(cert, key, secret)
                report.issued.append("ca")
            self._ensure(site, site.routers, site.users, report, clients=True)
            return report

    def import_ca(
        self, site: Site, cert: x509.Certificate, key: pc.PrivateKey, *, force: bool = False
    ) -> EnsureReport:
        """Adopt an existing CA (e.g. one made with the guide's script), then issue what is missing.

        Certificates issued under a previous CA are re-issued by the imported one.
        """
        if not pc.is_ca(cert):
            raise ConfigError("the certificate is not a CA certificate (basicConstraints CA:TRUE)")
        if not pc.same_public_key(key, cert):
            raise ConfigError("the private key does not belong to the CA certificate")
        with self._mutating():
            report = EnsureReport()
            if not (self.exists and pc.cert_pem(cert) == self.ca_cert_pem()):
                if self.exists and not force:
                    raise UsageError(
                        f"{self.root}: a CA exists already",
                        hint="pass --force to replace it (every certificate is then re-issued)",
                    )
                self._store_ca(cert, key, ps.passphrase(new=True))
                report.issued.append("ca (imported)")
            self._ensure(site, site.routers, site.users, report, clients=True)
            return report

    # ------------------------------------------------------------------ ensure

    def _issuing_for(self, site: Site) -> contextlib.AbstractContextManager[None]:
        """The site file's lock, the site on disk checked, then the PKI's (policy.py)."""
        return site_unchanged(site, self._mutating)

    def ensure(self, site: Site) -> EnsureReport:
        """Issue whatever the site needs and is missing (servers, clients, EAP passwords, CRL)."""
        with self._issuing_for(site):
            report = EnsureReport()
            self._ensure(site, site.routers, site.users, report, clients=True)
            return report

    def ensure_router(self, site: Site, router: Router | str) -> EnsureReport:
        """Only what one router's overlay needs: its server certificate, EAP passwords, CRL."""
        r = site.router(router) if isinstance(router, str) else router
        with self._issuing_for(site):
            report = EnsureReport()
            self._ensure(site, (r,), site.router_users(r), report, clients=False)
            return report

    def ensure_user(self, site: Site, user: User | str) -> EnsureReport:
        """Only one user's material: device certificates, PKCS#12 files, EAP password."""
        u = site.user(user) if isinstance(user, str) else user
        with self._issuing_for(site):
            report = EnsureReport()
            self._ensure(site, (), (u,), report, clients=True)
            return report

    def _ensure(
        self,
        site: Site,
        routers: Sequence[Router],
        users: Sequence[User],
        report: EnsureReport,
        *,
        clients: bool,
    ) -> None:
        needs_ca = bool(routers) or (clients and any(u.auth in CERT_AUTH for u in users))
        kid = self._ca_kid() if needs_ca else ""
        for r in routers:
            rec = self._index.current("server", r.name)
            if (
                rec is None
                or rec.ca != kid
                or rec.server_id != r.server_id
                or rec.key_type != site.settings.server_key
                or not self._server_path(r.name, "crt").is_file()
                or not self._server_path(r.name, "key").is_file()
            ):
                self._issue_server(site, r)
                report.issued.append(f"server {r.name}")
        todo: list[ClientSpec] = []
        for u in users:
            if clients and u.auth in CERT_AUTH:
                for d in u.devices:
                    if self._ensure_client(site, u, d, kid, report):
                        todo.append(self._client_spec(site, u, d))
                        report.issued.append(f"client {u.name}/{d.name}")
            if u.auth in EAP_PASSWORD_AUTH:
                self._ensure_eap(u, report)
        self._issue_clients(todo)
        if needs_ca:
            crl = self._index.crl
            if any(r.status == "revoked" and r.ca == kid for r in self._index.certs) and (
                crl is None or crl.get("ca") != kid or not (self.root / "crl.pem").is_file()
            ):
                self._sign_crl(site)

    def _ensure_client(
        self, site: Site, u: User, d: Device, kid: str, report: EnsureReport
    ) -> bool:
        """True when the device needs a new certificate (issued in one batch by the caller)."""
        rec = self._index.current("client", u.name, d.name)
        if rec is not None and rec.ca == kid and rec.status == "revoked":
            report.skipped.append(
                f"{u.name}/{d.name}: certificate revoked, not re-issued "
                f"(run `owrt-vpn pki renew --user {u.name} --device {d.name}` for a new one)"
            )
            return False

        def path(ext: str) -> Path:
            return self._client_path(u.name, d.name, ext)

        shared = site.settings.shared_identity if d.shared_identity else None
        if (
            rec is None
            or rec.ca != kid
            or rec.identity != device_identity(site, u, d)
            or rec.shared_identity != shared
            or rec.key_type != client_key_type_for(d)
            or not path("crt").is_file()
            or not path("key").is_file()
        ):
            return True
        if not path("p12").is_file() or not path("p12.password").is_file():
            # The certificate is fine, only its PKCS#12 is gone: rebuild it (no CA key needed).
            cert = pc.load_cert(path("crt").read_bytes())
            key = pc.load_key(path("key").read_bytes())
            self._write_p12(u.name, d.name, rec.identity or "", key, cert)
            report.issued.append(f"p12 {u.name}/{d.name}")
        return False

    def _ensure_eap(self, u: User, report: EnsureReport) -> None:
        if self._index.eap.get(u.name) == "revoked":
            report.skipped.append(
                f"{u.name}: EAP password revoked "
                f"(set a new one with `owrt-vpn user passwd {u.name}`)"
            )
            return
        if not self._eap_path(u.name).is_file():
            password = pc.random_password()
            ps.put(self._eap_path(u.name), (password + "\n").encode(), ps.SECRET_MODE)
            report.passwords[u.name] = password
        self._index.eap[u.name] = "active"

    # ------------------------------------------------------------------ issuing

    def _record(self, kind: str, cert: x509.Certificate, kid: str, key_type: str) -> CertRecord:
        return CertRecord(
            serial=cert.serial_number,
            kind=kind,
            subject=pc.subject_str(cert),
            not_before=pc.isoz(cert.not_valid_before_utc),
            not_after=pc.isoz(cert.not_valid_after_utc),
            ca=kid,
            key_type=key_type,
        )

    def _issue_server(self, site: Site, r: Router) -> None:
        issuer = self._get_issuer()
        key = pc.generate_key(site.settings.server_key)
        org = site.settings.organization or site.name
        cert = pc.make_server(issuer, key, r.server_id, org, site.settings.server_days)
        ps.put(self._server_path(r.name, "key"), pc.key_pem(key), ps.SECRET_MODE)
        ps.put(self._server_path(r.name, "crt"), pc.cert_pem(cert), ps.PUBLIC_MODE)
        rec = self._record("server", cert, self._ca_kid(), site.settings.server_key)
        rec.router, rec.server_id = r.name, r.server_id
        self._index.add(rec)

    def _client_spec(self, site: Site, u: User, d: Device) -> ClientSpec:
        return ClientSpec(
            user=u.name,
            device=d.name,
            identity=device_identity(site, u, d),
            key_type=client_key_type_for(d),
            organization=site.settings.organization or site.name,
            days=site.settings.client_days,
            shared_identity=site.settings.shared_identity if d.shared_identity else None,
        )

    def _issue_clients(self, specs: Sequence[ClientSpec]) -> None:
        """Issue new keys, certificates and PKCS#12 files (a new password with each key)."""
        if not specs:
            return
        kid = self._ca_kid()
        for m in make_clients(self._get_issuer(), specs):
            s = m.spec
            for ext, data, mode in (
                ("key", m.key_pem, ps.SECRET_MODE),
                ("crt", m.cert_pem, ps.PUBLIC_MODE),
                ("p12.password", (m.password + "\n").encode(), ps.SECRET_MODE),
                ("p12", m.p12, ps.SECRET_MODE),
            ):
                ps.put(self._client_path(s.user, s.device, ext), data, mode)
            self._index.add(
                CertRecord(
                    serial=m.serial,
                    kind="client",
                    subject=m.subject,
                    not_before=m.not_before,
                    not_after=m.not_after,
                    ca=kid,
                    key_type=s.key_type,
                    user=s.user,
                    device=s.device,
                    identity=s.identity,
                    shared_identity=s.shared_identity,
                )
            )

    def _write_p12(
        self, user: str, device: str, identity: str, key: pc.PrivateKey, cert: x509.Certificate
    ) -> None:
        # Written once and reused: a PKCS#12 has a random salt, so making it
        # again would change the bytes on every run.
        pw_path = self._client_path(user, device, "p12.password")
        if pw_path.is_file():
            password = pw_path.read_text().strip()
        else:
            password = pc.random_password()
            ps.put(pw_path, (password + "\n").encode(), ps.SECRET_MODE)
        data = pc.make_p12(identity, key, cert, self.ca_certificate(), password)
        ps.put(self._client_path(user, device, "p12"), data, ps.SECRET_MODE)

    def _sign_crl(self, site: Site) -> None:
        from cryptography.hazmat.primitives import serialization

        issuer = self._get_issuer()
        kid = self._ca_kid()
        entries = [
            pc.RevokedEntry(r.serial, pc.parse_isoz(r.revoked_at or r.not_before))
            for r in self._index.certs
            if r.status == "revoked" and r.ca == kid
        ]
        number = int((self._index.crl or {}).get("number", 0)) + 1
        crl = pc.make_crl(issuer, entries, number, site.settings.crl_days)
        ps.put(self.root / "crl.pem", crl.public_bytes(serialization.Encoding.PEM), ps.PUBLIC_MODE)
        self._index.crl = {
            "ca": kid,
            "number": number,
            "this_update": pc.isoz(crl.last_update_utc),
            "next_update": pc.isoz(crl.next_update_utc or crl.last_update_utc),
        }

    # ------------------------------------------------------------------ renew

    def renew(
        self,
        site: Site,
        *,
        routers: Sequence[str] = (),
        user: str | None = None,
        device: str | None = None,
        crl: bool = False,
        ca: bool = False,
    ) -> list[str]:
        """Issue new certificates (new keys) even though the old ones are still valid.

        ``ca`` renews the CA certificate with the same key and subject, so
        everything issued before keeps verifying. Returns what was renewed.
        """
        rs = [site.router(r) for r in routers]
        ds: list[Device] = []
        u = None
        if user is not None:
            u = site.user(user)
            needs_certs(site, u)
            ds = [find_device(site, u, device)] if device is not None else list(u.devices)
        elif device is not None:
            raise UsageError("--device needs --user")
        with self._mutating():
            self._get_issuer()
            done: list[str] = []
            if ca:
                issuer = self._get_issuer()
                cert = pc.renew_ca(issuer.key, issuer.cert, site.settings.ca_days)
                ps.put(self.root / "ca.crt", pc.cert_pem(cert), ps.PUBLIC_MODE)
                self._index.add(
                    self._record("ca", cert, self._ca_kid(), pc.key_type_of(issuer.key))
                )
                self._ca_cert, self._issuer = cert, pc.Issuer(cert, issuer.key)
                done.append("ca")
            for r in rs:
                self._issue_server(site, r)
                done.append(f"server {r.name}")
            if u is not None:
                self._issue_clients([self._client_spec(site, u, d) for d in ds])
                done += [f"client {u.name}/{d.name}" for d in ds]
            if (crl or ca) and any(r.status == "revoked" for r in self._index.certs):
                self._sign_crl(site)
                done.append("crl")
            return done

    # ------------------------------------------------------------------ revoke

    def revoke(self, site: Site, user: str, device: str | None = None) -> RevokeResult:
        """Revoke the user's (or one device's) certificates and, for a whole user, the EAP password.

        The user stays in the site file; the CRL is signed again. No CA: UsageError, nothing made.
        """
        u = site.user(user)
        if device is not None:
            needs_certs(site, u)
            find_device(site, u, device)
        if not self.exists and (device is not None or self._index.eap.get(u.name) != "active"):
            raise UsageError(f"{self.root}: no CA yet, nothing to revoke", hint=INIT_HINT)
        with self._mutating():
            return self._revoke(site, u.name, device, eap=device is None)

    def _revoke(self, site: Site, user: str, device: str | None, *, eap: bool) -> RevokeResult:
        result = RevokeResult()
        todo = [
            r
            for r in self._index.certs
            if r.kind == "client"
            and r.user == user
            and r.status == "valid"
            and (device is None or r.device == device)
        ]
        ca_rec = self._index.current("ca")
        kid = ca_rec.ca if ca_rec is not None else None
        if any(r.ca == kid for r in todo):
            self._get_issuer()  # fail on the passphrase before changing anything
        when = pc.isoz(pc.now())
        for r in todo:
            r.status, r.revoked_at = "revoked", when
        result.certs = todo
        if eap and self._index.eap.get(user) == "active":
            self._eap_path(user).unlink(missing_ok=True)
            self._index.eap[user] = "revoked"
            result.eap = True
        if any(r.ca == kid for r in todo):
            self._sign_crl(site)
        return result

    def remove_user(self, site: Site, user: str) -> RevokeResult:
        """Revoke everything of ``user`` and delete their keys, PKCS#12 files and password.

        Their certificates stay in the index (and in the CRL) as revoked.
        """
        site.user(user)
        with self._mutating():
            result = self._revoke(site, user, None, eap=True)
            for r in list(self._index.certs):
                if r.kind == "client" and r.user == user and r.current:
                    self._index.retire(r)
            self._index.eap.pop(user, None)
            self._eap_path(user).unlink(missing_ok=True)
            if (self.root / "clients" / user).is_dir():
                shutil.rmtree(self.root / "clients" / user)
            return result

    # ------------------------------------------------------------------ passwords

    def set_eap_password(self, site: Site, user: str, password: str | None = None) -> str:
        """Set (or generate, when None) the user's EAP password; re-enables a revoked one."""
        u = site.user(user)
        if u.auth not in EAP_PASSWORD_AUTH:
            raise ConfigError(
                [
                    Problem(
                        site.path.name,
                        f"{user_key(u)}.auth",
                        f"user {u.name!r} uses {u.auth!r}, which has no EAP password",
                    )
                ]
            )
        if password is None:
            password = pc.random_password()
        check_password(password, "password")
        with self._mutating():
            ps.put(self._eap_path(u.name), (password + "\n").encode(), ps.SECRET_MODE)
            self._index.eap[u.name] = "active"
        return password
