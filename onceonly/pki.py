"""A small certificate authority for onceonly: who is who on the wire.

Every server speaks TLS with a certificate issued by the platform's CA, and every caller
presents a client certificate from the same CA. The identity is in the certificate subject:

* ``O``  — the organisation id (``L01280796`` for a city council, ``tax`` for a provider…)
* ``OU`` — the role: ``consumer``, ``oversight``, ``provider`` or ``broker``
* ``CN`` — a readable name (``housing-office``)

Keys are ECDSA P-256. A directory holds ``ca.pem`` and ``ca-key.pem`` and, for every
identity, ``<name>.pem`` and ``<name>-key.pem`` (keys are written with mode 0600)::

    onceonly pki init [--dir var/pki]
    onceonly pki issue --role consumer --org L01280796 --name housing-app [--dir var/pki]

Both are idempotent: an existing CA is reused, and so is an existing certificate that the CA
issued and that is not about to expire. This CA is meant for development, tests and the demo;
in production the agencies' certificates come from the platform's real CA, in the same shape.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from onceonly.errors import unauthenticated

log = logging.getLogger(__name__)

ROLES = (
    "consumer",
    "oversight",
    "provider",
    "broker",
    "operator",
    "consumer-admin",
    "provider-admin",
    "console",
)
"""The roles a certificate subject (``OU``) may carry. ``consumer`` and ``provider`` are applications
(they verify, they answer); ``consumer-admin`` and ``provider-admin`` are the people who decide on
agreements for their organisation (propose; approve or veto); ``operator`` registers organisations;
``console`` is the web console, which may only relay the people signed in to it (see
:func:`forwarded_identity`)."""

DEFAULT_PKI_DIR = Path("var/pki")
BROKER_ORGANISATION = "onceonly"
BROKER_NAME = "broker"
BROKER_SEAL_NAME = "broker-seal"
"""The broker's RSA seal (``broker-seal.pem``): it signs the broker's SCSP answers (WS-Security)."""
DEFAULT_PROVIDERS = ("registry", "tax", "employment")
DEMO_CONSUMER = ("L01280796", "housing-office")
"""The housing office of the demo: organisation id and certificate name."""
DEMO_OVERSIGHT = ("AEPD", "oversight")
DEMO_OPERATOR = ("SGAD", "operator")
DEMO_CONSUMER_ADMIN = (DEMO_CONSUMER[0], "housing-admin")
CONSOLE_NAME = "console"
"""The web console's certificate (``console.pem``, organisation ``SGAD``: the operator runs it): its
HTTPS server certificate, and its client certificate towards the broker."""
"""The housing office's administrators (``housing-admin.pem``): they propose its agreements. Each
provider's administrators are ``<provider>-admin.pem``: they approve or veto."""
"""The platform operator of the development CA (``operator.pem``): it registers organisations."""
"""The oversight body of the demo (a data-protection authority)."""

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(days=7)
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class PkiError(ValueError):
    """A certificate or key is missing or unusable; the message says what to run."""


@dataclass(frozen=True, slots=True)
class CertIdentity:
    """Who a certificate names: organisation (``O``), role (``OU``) and readable name (``CN``)."""

    organization_id: str
    role: str
    name: str
    serial: int = field(default=0, compare=False)
    """The certificate's serial number: what a revocation list names (not part of the identity)."""


@dataclass(frozen=True, slots=True)
class Issued:
    """Paths of one identity's certificate and key."""

    name: str
    cert: Path
    key: Path


# --- files ----------------------------------------------------------------------------------


def cert_path(directory: Path, name: str) -> Path:
    return directory / f"{name}.pem"


def key_path(directory: Path, name: str) -> Path:
    return directory / f"{name}-key.pem"


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` atomically, the file created with ``mode`` from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
KEY_TYPES = ("ec", "rsa")
"""A certificate's key: ECDSA P-256 (the default), or RSA 2048 (SCSP seals: WS-Security RSA-SHA256)."""


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = _load_any_key(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path}: not an ECDSA private key")
    return key


def _load_any_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"{path}: not an ECDSA or RSA private key")
    return key


# --- the CA ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    directory: Path

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.pem"

    @classmethod
    def load_or_create(cls, directory: Path, name: str = "onceonly development CA") -> CertificateAuthority:
        """The CA in ``directory``; created (self-signed, 10 years) when there is none."""
        ca_cert, ca_key = directory / "ca.pem", directory / "ca-key.pem"
        if ca_cert.exists() and ca_key.exists():
            return cls(x509.load_pem_x509_certificate(ca_cert.read_bytes()), _load_key(ca_key), directory)
        if ca_cert.exists() or ca_key.exists():
            raise PkiError(f"{directory}: ca.pem and ca-key.pem must both exist (or neither)")
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, BROKER_ORGANISATION),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write(ca_key, _key_pem(key), 0o600)
        _write(ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return cls(cert, key, directory)

    def revoke(self, name: str) -> int:
        """Add the certificate ``name`` to the CA's revocation list (``crl.pem``); its serial."""
        cert = x509.load_pem_x509_certificate(_read(cert_path(self.directory, name), "certificate"))
        if not self.issued(cert):
            raise PkiError(f"{name} was not issued by this CA")
        crl_path = self.directory / CRL_FILE
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now)
            .next_update(now + CRL_VALIDITY)
        )
        if crl_path.exists():
            for entry in x509.load_pem_x509_crl(crl_path.read_bytes()):
                if entry.serial_number != cert.serial_number:
                    builder = builder.add_revoked_certificate(entry)
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number).revocation_date(now).build()
        )
        crl = builder.sign(self.key, hashes.SHA256())
        _write(crl_path, crl.public_bytes(serialization.Encoding.PEM), 0o644)
        return cert.serial_number

    def issued(self, cert: x509.Certificate) -> bool:
        """Whether ``cert`` was signed by this CA."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except Exception:  # wrong issuer name, bad signature, unsupported key: not ours
            return False
        return True

    def issue(
        self,
        name: str,
        *,
        role: str,
        organization_id: str,
        common_name: str | None = None,
        server_names: Sequence[str] = (),
        server: bool = False,
        client: bool = True,
        validity: dt.timedelta = LEAF_VALIDITY,
        reuse: bool = True,
        key_type: str = "ec",
    ) -> Issued:
        """Write ``<name>.pem`` and ``<name>-key.pem``; reuse a valid one this CA issued to the same subject.

        A server certificate names ``localhost``, ``127.0.0.1`` and ``::1`` plus ``server_names``.
        """
        if role not in ROLES:
            raise PkiError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if not organization_id or not name:
            raise PkiError("a certificate needs an organisation id and a name")
        if "/" in name or name.startswith(".") or name in ("ca", "ca-key"):
            raise PkiError(f"not a usable certificate name: {name!r}")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization_id),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name or name),
            ]
        )
        names = tuple(dict.fromkeys((*LOOPBACK_NAMES, *server_names))) if server else ()
        paths = Issued(name, cert_path(self.directory, name), key_path(self.directory, name))
        if key_type not in KEY_TYPES:
            raise PkiError(f"key type must be one of {', '.join(KEY_TYPES)}, got {key_type!r}")
        if reuse and self._reusable(paths, subject, names, key_type):
            return paths
        key: PrivateKey = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if key_type == "rsa"
            else ec.generate_private_key(ec.SECP256R1())
        )
        now = _now()
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(min(now + validity, self.cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        _write(paths.key, _key_pem(key), 0o600)
        _write(paths.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return paths

    def _reusable(self, paths: Issued, subject: x509.Name, names: tuple[str, ...], key_type: str) -> bool:
        if not (paths.cert.exists() and paths.key.exists()):
            return False
        try:
            cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
            key = _load_any_key(paths.key)
        except (ValueError, PkiError):
            return False
        if isinstance(key, rsa.RSAPrivateKey) != (key_type == "rsa"):
            return False
        if cert.subject != subject or not self.issued(cert):
            return False
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
            return False
        if cert.not_valid_after_utc - RENEW_BEFORE < _now():
            return False
        if names:
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            except x509.ExtensionNotFound:
                return False
            if set(san) != set(_san(names)):
                return False
        return True


def _san(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def init_pki(
    directory: Path = DEFAULT_PKI_DIR,
    *,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
    server_names: Sequence[str] = (),
) -> dict[str, Issued]:
    """The CA, the broker's certificate (server and client), one server certificate per provider,
    the demo housing office's client certificate, an oversight body's, the platform operator's, and
    the administrators' of the housing office and of each provider. Idempotent."""
    ca = CertificateAuthority.load_or_create(directory)
    issued = {
        BROKER_NAME: ca.issue(
            BROKER_NAME,
            role="broker",
            organization_id=BROKER_ORGANISATION,
            server=True,
            client=True,
            server_names=server_names,
        )
    }
    for provider in providers:
        issued[provider] = ca.issue(
            provider,
            role="provider",
            organization_id=provider,
            server=True,
            server_names=server_names,
        )
    org, name = DEMO_CONSUMER
    issued[name] = ca.issue(name, role="consumer", organization_id=org)
    org, name = DEMO_OVERSIGHT
    issued[name] = ca.issue(name, role="oversight", organization_id=org)
    org, name = DEMO_OPERATOR
    issued[name] = ca.issue(name, role="operator", organization_id=org)
    # The people who decide on agreements: the housing office's administrators, and each provider's.
    org, name = DEMO_CONSUMER_ADMIN
    issued[name] = ca.issue(name, role="consumer-admin", organization_id=org)
    for provider in providers:
        issued[f"{provider}-admin"] = ca.issue(
            f"{provider}-admin", role="provider-admin", organization_id=provider
        )
    # SCSP seals (RSA, as SCSP's WS-Security uses): the housing office signs its SCSP requests with
    # one, and the broker signs its SCSP answers with its own.
    org, name = DEMO_CONSUMER
    issued[f"{name}-seal"] = ca.issue(f"{name}-seal", role="consumer", organization_id=org, key_type="rsa")
    issued[BROKER_SEAL_NAME] = ca.issue(
        BROKER_SEAL_NAME, role="broker", organization_id=BROKER_ORGANISATION, key_type="rsa"
    )
    issued[CONSOLE_NAME] = ca.issue(
        CONSOLE_NAME,
        role="console",
        organization_id=DEMO_OPERATOR[0],
        server=True,
        client=True,
        server_names=server_names,
    )
    return issued


def export_pkcs12(directory: Path, name: str, password: bytes) -> Path:
    """``name``'s certificate and key as ``NAME.p12`` beside them (mode 0600), for importing into a
    browser to sign in to the console."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    cert = x509.load_pem_x509_certificate(_read(cert_path(directory, name), "certificate"))
    key = serialization.load_pem_private_key(_read(key_path(directory, name), "key"), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{name}'s key is not an EC key")
    data = pkcs12.serialize_key_and_certificates(
        name.encode(), key, cert, None, serialization.BestAvailableEncryption(password)
    )
    out = directory / f"{name}.p12"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return out


# --- reading identities ---------------------------------------------------------------------


@lru_cache(maxsize=1024)
def identity_from_pem(pem: bytes) -> CertIdentity:
    """The identity in a certificate's subject; ``ValueError`` if it names none.

    Cached: a connection presents the same certificate on every call.
    """
    cert = x509.load_pem_x509_certificate(pem)
    return identity_from_certificate(cert)


def identity_from_certificate(cert: x509.Certificate) -> CertIdentity:
    def one(oid: x509.ObjectIdentifier, label: str) -> str:
        values = cert.subject.get_attributes_for_oid(oid)
        if len(values) != 1:
            raise ValueError(f"certificate subject must carry exactly one {label}")
        value = values[0].value
        return value.decode() if isinstance(value, bytes) else str(value)

    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise ValueError("a CA certificate (basicConstraints CA:TRUE) cannot identify a caller")
    org = one(NameOID.ORGANIZATION_NAME, "O (organisation id)")
    role = one(NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)")
    if role not in ROLES:
        raise ValueError(f"certificate role (OU) must be one of {', '.join(ROLES)}, got {role!r}")
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else ""
    return CertIdentity(org, role, name, cert.serial_number)


# --- revocation -------------------------------------------------------------------------------

CRL_FILE = "crl.pem"
CRL_VALIDITY = dt.timedelta(days=30)


class RevocationList:
    """The platform CA's certificate revocation list (``crl.pem`` beside ``ca.pem``), as servers use it.

    Read again when the file changes (looked at no more than once a second), so that a revocation
    takes effect without a restart. Only a list signed by the CA counts: a file that is not one
    is logged and the last good list stays in force. No file: nothing is revoked.
    """

    def __init__(self, path: Path, ca: Path, *, recheck_s: float = 1.0) -> None:
        self.path = path
        self._ca = ca
        self._recheck_s = recheck_s
        self._serials: frozenset[int] = frozenset()
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        self._checked_at = -recheck_s
        self._lock = threading.Lock()

    @classmethod
    def beside(cls, ca: Path) -> RevocationList:
        return cls(ca.parent / CRL_FILE, ca)

    def is_revoked(self, serial: int) -> bool:
        self._refresh()
        return serial in self._serials

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self._recheck_s:
            return
        with self._lock:
            self._checked_at = now
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._serials, self._seen = frozenset(), None
                return
            if self._seen == (st.st_mtime_ns, st.st_size):
                return
            self._seen = (st.st_mtime_ns, st.st_size)
            try:
                crl = x509.load_pem_x509_crl(self.path.read_bytes())
                ca = x509.load_pem_x509_certificate(self.ca_bytes())
                if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
                    raise ValueError("not signed by the platform CA")
            except (ValueError, OSError) as exc:
                log.error(
                    "certificate revocation list refused; the last good one stays",
                    extra={"path": str(self.path), "error": str(exc)},
                )
                return
            self._serials = frozenset(r.serial_number for r in crl)

    def ca_bytes(self) -> bytes:
        return _read(self._ca, "CA certificate")


def certificate_identity(pem: bytes, revocations: RevocationList | None) -> CertIdentity:
    """The identity a peer's certificate carries, or ``Unauthenticated``: ``CERTIFICATE_IDENTITY``
    (no usable identity, or a CA certificate) or ``CERTIFICATE_REVOKED``."""
    try:
        identity = identity_from_pem(pem)
    except ValueError as exc:
        raise unauthenticated("CERTIFICATE_IDENTITY", str(exc)) from None
    if revocations is not None and revocations.is_revoked(identity.serial):
        raise unauthenticated(
            "CERTIFICATE_REVOKED",
            f"the client certificate (serial {identity.serial:x}) has been revoked by the platform CA",
        )
    return identity


def forwarded_identity(
    der: bytes, trusted: Sequence[x509.Certificate], revocations: RevocationList | None, now: dt.datetime
) -> CertIdentity:
    """The identity of a certificate the console relays for the person signed in to it (who presented
    it to the console's HTTPS port); ``Unauthenticated`` (``FORWARDED_CERTIFICATE``) unless it was
    issued by a trusted CA, is valid now, is a client certificate and names an identity, or
    ``CERTIFICATE_REVOKED``. The console's TLS server checked the same, but the broker does not take
    the console's word for it."""
    return issued_identity(der, trusted, revocations, now)[0]


def issued_identity(
    der: bytes,
    trusted: Sequence[x509.Certificate],
    revocations: RevocationList | None,
    now: dt.datetime,
    *,
    what: str = "the forwarded certificate",
) -> tuple[CertIdentity, x509.Certificate]:
    """The identity and certificate of ``der`` (a certificate someone presented other than in the
    TLS handshake: relayed by the console, or an SCSP signature's token); ``Unauthenticated``
    (``FORWARDED_CERTIFICATE``, naming ``what``) unless it was issued by a trusted CA, is valid
    now, is a client certificate and names an identity, or ``CERTIFICATE_REVOKED``."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise unauthenticated("FORWARDED_CERTIFICATE", f"{what} is not DER X.509") from None
    issuer = next((ca for ca in trusted if _issued_by(cert, ca)), None)
    if issuer is None:
        raise unauthenticated("FORWARDED_CERTIFICATE", f"{what} is not from the platform CA")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise unauthenticated("FORWARDED_CERTIFICATE", f"{what} is not valid now")
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
        raise unauthenticated("FORWARDED_CERTIFICATE", f"{what} is not a client certificate")
    return certificate_identity(cert.public_bytes(serialization.Encoding.PEM), revocations), cert


@lru_cache(maxsize=4096)
def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca`` signed ``cert`` (remembered: a certificate presented on every request, such as
    an SCSP seal, is checked once; its validity and revocation are checked each time)."""
    return _check_issued_by(cert, ca)


def _check_issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # another issuer, a bad signature, an unsupported key: not this CA's
        return False
    return True


# --- TLS configuration for servers and channels ---------------------------------------------


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PkiError(
            f"{what} {path} does not exist: run `onceonly pki init --dir {path.parent}` "
            "(or point --tls-dir / ONCEONLY_TLS_DIR at your certificates)"
        ) from None


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """A server's certificate and key, and the CA its callers' certificates must come from."""

    cert: Path
    key: Path
    ca: Path
    require_client_cert: bool = True

    @classmethod
    def from_dir(cls, directory: Path, name: str, *, require_client_cert: bool = True) -> TlsConfig:
        return cls(
            cert_path(directory, name), key_path(directory, name), directory / "ca.pem", require_client_cert
        )

    def check(self) -> None:
        """Raise :class:`PkiError` naming the first missing file."""
        for path, what in ((self.ca, "CA certificate"), (self.cert, "certificate"), (self.key, "key")):
            _read(path, what)

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(_read(self.key, "key"), _read(self.cert, "certificate"))],
            root_certificates=_read(self.ca, "CA certificate"),
            require_client_auth=self.require_client_cert,
        )


@dataclass(frozen=True, slots=True)
class ClientTls:
    """What a channel needs: the CA that issued the server's certificate and, for mutual TLS,
    the caller's own certificate and key (``cert``/``key`` may be ``None`` for server-only TLS)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def from_dir(cls, directory: Path, name: str | None) -> ClientTls:
        if name is None:
            return cls(directory / "ca.pem")
        return cls(directory / "ca.pem", cert_path(directory, name), key_path(directory, name))

    def channel_credentials(self) -> grpc.ChannelCredentials:
        chain = _read(self.cert, "client certificate") if self.cert else None
        key = _read(self.key, "client key") if self.key else None
        if (chain is None) != (key is None):
            raise PkiError("a client certificate needs its key (and a key its certificate)")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "CA certificate"), private_key=key, certificate_chain=chain
        )

    def identity(self) -> CertIdentity | None:
        """The identity the client certificate carries (``None`` without one)."""
        if self.cert is None:
            return None
        return identity_from_pem(_read(self.cert, "client certificate"))


# --- command line ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``onceonly pki init|issue|revoke|export`` (also ``python -m onceonly.pki``)."""
    parser = argparse.ArgumentParser(prog="onceonly pki")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="pki_command", required=True)
    default_dir = Path(os.environ.get("ONCEONLY_TLS_DIR") or DEFAULT_PKI_DIR)
    init = sub.add_parser("init", help="a CA and the certificates of the broker, providers and demo callers")
    init.add_argument("--dir", type=Path, default=default_dir, help="ONCEONLY_TLS_DIR; default %(default)s")
    init.add_argument(
        "--provider",
        action="append",
        default=None,
        help="provider id to issue a server certificate for, repeatable (default: the reference three)",
    )
    init.add_argument(
        "--server-name",
        action="append",
        default=[],
        help="extra DNS name or IP for the server certificates, repeatable",
    )
    issue = sub.add_parser("issue", help="issue one certificate from the existing (or a new) CA")
    issue.add_argument("--dir", type=Path, default=default_dir, help="ONCEONLY_TLS_DIR; default %(default)s")
    issue.add_argument("--role", required=True, choices=ROLES)
    issue.add_argument("--org", required=True, help="organisation id (certificate O)")
    issue.add_argument("--name", required=True, help="file name and readable name (certificate CN)")
    issue.add_argument("--server", action="store_true", help="also a server certificate")
    issue.add_argument(
        "--server-name", action="append", default=[], help="extra DNS name or IP (with --server)"
    )
    issue.add_argument("--days", type=int, default=LEAF_VALIDITY.days, help="validity in days")
    issue.add_argument(
        "--key",
        choices=KEY_TYPES,
        default="ec",
        help="key type: ec (P-256, the default) or rsa (2048: an SCSP seal for WS-Security)",
    )
    revoke = sub.add_parser(
        "revoke", help="revoke a certificate: servers refuse it from their next call (crl.pem)"
    )
    revoke.add_argument("name", help="the certificate's NAME (NAME.pem in --dir)")
    revoke.add_argument("--dir", type=Path, default=default_dir, help="ONCEONLY_TLS_DIR; default %(default)s")
    export = sub.add_parser(
        "export",
        help="copy one service's certificate and key (and its seal's, if named too), the CA certificate "
        "and the revocation list — never the CA's key — into a directory of its own",
    )
    export.add_argument(
        "name", nargs="+", help="the certificate's NAME (NAME.pem in --dir); more: e.g. broker broker-seal"
    )
    export.add_argument("--dir", type=Path, default=default_dir, help="the CA directory; default %(default)s")
    export.add_argument("--to", type=Path, required=True, help="the service's own directory")


def export_service(directory: Path, name: str, to: Path, *also: str) -> list[Path]:
    """Copy what service ``name`` needs — its certificate and key (and those named in ``also``, such
    as the broker's SCSP seal), the CA certificate, the CRL if any — and nothing else (never the
    CA's key) into ``to``; the files copied."""
    wanted = [directory / "ca.pem"]
    for each in (name, *also):
        wanted += [cert_path(directory, each), key_path(directory, each)]
    if (directory / CRL_FILE).exists():
        wanted.append(directory / CRL_FILE)
    for path in wanted:
        _read(path, "file")  # a missing one is named, with the command that makes it
    to.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in wanted:
        target = to / path.name
        target.write_bytes(path.read_bytes())
        if path.name.endswith("-key.pem"):
            target.chmod(0o600)
        copied.append(target)
    return copied


def run(args: argparse.Namespace) -> int:
    try:
        if args.pki_command == "export":
            for path in export_service(args.dir, args.name[0], args.to, *args.name[1:]):
                print(path)
            return 0
        if args.pki_command == "init":
            issued = init_pki(
                args.dir,
                providers=args.provider or DEFAULT_PROVIDERS,
                server_names=args.server_name,
            )
            print(f"CA: {args.dir / 'ca.pem'}")
            for name, paths in issued.items():
                print(f"{name}: {paths.cert}  {paths.key}")
            return 0
        ca = CertificateAuthority.load_or_create(args.dir)
        if args.pki_command == "revoke":
            serial = ca.revoke(args.name)
            print(f"revoked {args.name} (serial {serial:x}) in {args.dir / CRL_FILE}")
            return 0
        paths = ca.issue(
            args.name,
            role=args.role,
            organization_id=args.org,
            server=args.server,
            server_names=args.server_name,
            validity=dt.timedelta(days=args.days),
            key_type=args.key,
        )
        print(f"{paths.name}: {paths.cert}  {paths.key}")
        return 0
    except (PkiError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
