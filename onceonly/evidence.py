"""Provider evidence: each provider signs its answer, and the broker checks it before attesting.

A provider signs with the key of its platform certificate (ES256) and puts that certificate in
the JWS header (``x5c``), so the broker — or anyone holding the platform CA — can tell which
provider said what about which request, long after the fact: the answer is non-repudiable.
The broker refuses evidence that is not signed by a certificate of the platform CA naming the
provider that was asked (role ``provider``, organisation = provider id), or that does not bind
the request, the certificate type, the subject and the answer it came with.
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

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .pki import TlsConfig, identity_from_certificate

EVIDENCE_TYPE = "onceonly-evidence+jwt"


class EvidenceError(ValueError):
    """Evidence is missing, forged, from the wrong provider, or about something else."""


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


class EvidenceSigner:
    """Signs a provider's answers with the key of its platform certificate."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate: x509.Certificate):
        self._key = key
        der = certificate.public_bytes(serialization.Encoding.DER)
        self._headers = {"typ": EVIDENCE_TYPE, "x5c": [base64.b64encode(der).decode("ascii")]}

    @classmethod
    def from_tls(cls, tls: TlsConfig) -> EvidenceSigner:
        key = serialization.load_pem_private_key(Path(tls.key).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise EvidenceError(f"{tls.key} is not an EC key: evidence is signed with ES256")
        return cls(key, x509.load_pem_x509_certificate(Path(tls.cert).read_bytes()))

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(
            {**claims, "iat": int(time.time())}, self._key, algorithm="ES256", headers=self._headers
        )


class EvidenceVerifier:
    """Checks provider evidence against the platform CA."""

    def __init__(self, ca: x509.Certificate):
        self._ca = ca
        self._signers = lru_cache(maxsize=256)(self._signer)

    @classmethod
    def from_ca_file(cls, path: Path) -> EvidenceVerifier:
        return cls(x509.load_pem_x509_certificate(Path(path).read_bytes()))

    def _signer(self, x5c: str) -> tuple[ec.EllipticCurvePublicKey, str, str]:
        """The public key, role and organisation of a certificate from an ``x5c`` header."""
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(x5c, validate=True))
            cert.verify_directly_issued_by(self._ca)
        except Exception:
            raise EvidenceError("evidence certificate was not issued by the platform CA") from None
        now = dt.datetime.now(dt.UTC)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise EvidenceError("evidence certificate is not valid now")
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise EvidenceError("evidence certificate does not hold an EC key")
        identity = identity_from_certificate(cert)
        return key, identity.role, identity.organization_id

    def verify(self, token: str, provider_id: str, expected: Mapping[str, Any]) -> None:
        """Raise :class:`EvidenceError` unless ``token`` is ``provider_id``'s signature over ``expected``."""
        if not token:
            raise EvidenceError("the provider sent no signed evidence")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise EvidenceError("evidence is not a JWS") from None
        chain = header.get("x5c")
        if header.get("typ") != EVIDENCE_TYPE or not isinstance(chain, list) or not chain:
            raise EvidenceError("evidence has no certificate")
        key, role, organisation = self._signers(str(chain[0]))
        if role != "provider" or organisation != provider_id:
            raise EvidenceError(
                f"evidence is signed by {role} {organisation!r}, not provider {provider_id!r}"
            )
        try:
            claims = jwt.decode(token, key, algorithms=["ES256"], options={"require": ["iat"]})
        except jwt.InvalidTokenError as exc:
            raise EvidenceError(f"evidence signature does not verify ({exc})") from None
        claims.pop("iat")
        if claims != dict(expected):
            raise EvidenceError("evidence does not match the answer it came with")


def evidence_digest(token: str) -> str:
    """A short reference to a piece of evidence, safe to keep where claims may not go."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()
