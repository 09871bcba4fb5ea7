"""Provider evidence: each provider signs its answer, and the broker checks it before attesting.

A provider signs with the key of its platform certificate (ES256). The certificate itself is
published once, in the provider's ``Describe``; each piece of evidence names it by its SHA-256
thumbprint (JWS header ``x5t#S256``), so evidence stays small. The broker accepts a provider's
certificate only if the platform CA issued it to that provider (role ``provider``,
organisation = provider id), and accepts evidence only if that certificate's key signed it over
exactly the request, certificate type, subject and answer it came with. The broker keeps the
evidence with its stored reply and puts its digest in the attestation: the answer is
non-repudiable.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import jose
from .jose import CompactSigner
from .pki import TlsConfig, identity_from_certificate

EVIDENCE_TYPE = "onceonly-evidence+jwt"


class EvidenceError(ValueError):
    """Evidence is missing, forged, from the wrong provider, or about something else."""


class UnknownEvidenceCertificate(EvidenceError):
    """Evidence names a certificate the provider has not published (yet): ask it again."""


def evidence_claims(
    *,
    request_id: str,
    trace_id: str,
    certificate_type_id: str,
    subject: str,
    parameters: Mapping[str, str],
    found: bool,
    claims: Mapping[str, Any],
) -> dict[str, Any]:
    """What a provider's signature covers: the question and its answer."""
    return {
        "request_id": request_id,
        "trace_id": trace_id,
        "certificate_type": certificate_type_id,
        "sub": subject,
        "parameters": dict(sorted(parameters.items())),
        "result": "FOUND" if found else "SUBJECT_NOT_FOUND",
        "claims": dict(claims),
    }


def thumbprint(der: bytes) -> str:
    """RFC 7515 ``x5t#S256``: base64url SHA-256 of the certificate's DER."""
    return jose.b64url(hashlib.sha256(der).digest()).decode("ascii")


class EvidenceSigner:
    """Signs a provider's answers with the key of its platform certificate."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate):
        der = certificate.public_bytes(serialization.Encoding.DER)
        self.certificate_b64 = base64.b64encode(der).decode("ascii")
        self._signer = CompactSigner(key, {"typ": EVIDENCE_TYPE, "x5t#S256": thumbprint(der)})

    @classmethod
    def from_tls(cls, tls: TlsConfig) -> EvidenceSigner:
        key = serialization.load_pem_private_key(Path(tls.key).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise EvidenceError(f"{tls.key} is not an EC key: evidence is signed with ES256")
        return cls(key, x509.load_pem_x509_certificate(Path(tls.cert).read_bytes()))

    def sign(self, claims: Mapping[str, Any]) -> str:
        return self._signer.sign({**claims, "iat": int(time.time())})


class EvidenceVerifier:
    """Checks provider evidence against the certificates providers published, issued by the platform CA."""

    def __init__(self, ca: x509.Certificate):
        self._ca = ca
        self._keys: dict[tuple[str, str], ec.EllipticCurvePublicKey] = {}  # (provider, x5t#S256) → key

    @classmethod
    def from_ca_file(cls, path: Path) -> EvidenceVerifier:
        return cls(x509.load_pem_x509_certificate(Path(path).read_bytes()))

    def register(self, provider_id: str, certificate_b64: str) -> None:
        """Accept ``provider_id``'s evidence certificate (from its ``Describe``), or raise saying why not."""
        if not certificate_b64:
            raise EvidenceError(f"provider {provider_id!r} publishes no evidence certificate")
        try:
            der = base64.b64decode(certificate_b64, validate=True)
            cert = x509.load_der_x509_certificate(der)
            cert.verify_directly_issued_by(self._ca)
        except Exception:
            raise EvidenceError("evidence certificate was not issued by the platform CA") from None
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise EvidenceError("evidence certificate is not valid now")
        identity = identity_from_certificate(cert)
        if identity.role != "provider" or identity.organization_id != provider_id:
            raise EvidenceError(
                f"evidence certificate belongs to {identity.role} {identity.organization_id!r}, "
                f"not provider {provider_id!r}"
            )
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise EvidenceError("evidence certificate does not hold an EC key")
        self._keys[(provider_id, thumbprint(der))] = key

    def verify(self, token: str, provider_id: str, expected: Mapping[str, Any]) -> None:
        """Raise :class:`EvidenceError` unless ``token`` is ``provider_id``'s signature over ``expected``."""
        if not token:
            raise EvidenceError("the provider sent no signed evidence")
        segment = token.split(".", 1)[0]
        try:
            header = _header(segment)
        except jose.JwsError:
            raise EvidenceError("evidence is not a JWS") from None
        if header.get("typ") != EVIDENCE_TYPE:
            raise EvidenceError("evidence is not an onceonly evidence JWS")
        key = self._keys.get((provider_id, str(header.get("x5t#S256"))))
        if key is None:
            raise UnknownEvidenceCertificate(
                f"evidence is not signed by a certificate provider {provider_id!r} published"
            )
        try:
            claims = jose.verify(token, key)[1]
        except jose.JwsError as exc:
            raise EvidenceError(f"evidence signature does not verify ({exc})") from None
        if not isinstance(claims.pop("iat", None), int):
            raise EvidenceError("evidence has no issue time")
        if claims != dict(expected):
            raise EvidenceError("evidence does not match the answer it came with")


@lru_cache(maxsize=64)
def _header(segment: str) -> dict[str, Any]:
    # A provider's header is the same on every answer: parse it once.
    return jose.parse(f"{segment}..")[0]


def evidence_digest(token: str) -> str:
    """A short reference to a piece of evidence, safe to keep where claims may not go."""
    # UTF-8, not ASCII: a compact JWS is ASCII, but an unverified token (insecure mode) may be anything.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
