"""Attestations: compact JWS signed by the broker, verifiable offline against its JWKS.

Keys are Ed25519 (JWS ``alg`` EdDSA). Each key's ``kid`` is its RFC 7638 JWK thumbprint.
Keys live as PEM files in one directory; the newest is the active signing key and every
key in the directory is published, so attestations signed before a rotation still verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from onceonly.jose import CompactSigner

ATTESTATION_TYPE = "onceonly-attestation+jwt"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The public JWK of an Ed25519 key, with ``kid`` set to its RFC 7638 thumbprint."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    members = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
    # RFC 7638: the required members, lexicographic order, no whitespace.
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode("utf-8")
    kid = _b64url(hashlib.sha256(canonical).digest())
    return {**members, "kid": kid, "alg": "EdDSA", "use": "sig"}


@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey
    jwk: Mapping[str, str]

    @property
    def kid(self) -> str:
        return self.jwk["kid"]


class KeyRing:
    """The broker's signing keys: one active, all published."""

    def __init__(self, keys: list[SigningKey], directory: Path | None = None):
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._keys = keys
        self._directory = directory
        self._listing = _listing(directory) if directory else ()

    def refresh(self) -> bool:
        """Re-read the key directory if keys were added (``onceonly keys rotate``); return whether it changed.

        Keys are only ever added: every public key stays in the JWKS, so attestations signed
        before a rotation keep verifying for as long as the directory keeps their key.
        """
        if self._directory is None or _listing(self._directory) == self._listing:
            return False
        fresh = KeyRing.from_directory(self._directory)
        self._keys, self._listing = fresh._keys, fresh._listing
        return True

    @property
    def active(self) -> SigningKey:
        return self._keys[-1]

    def sign(self, payload: Mapping[str, Any], typ: str) -> str:
        """Compact JWS over ``payload`` with the active key (``kid`` set, ``typ`` as given)."""
        key = self.active
        return CompactSigner(key.private_key, {"kid": key.kid, "typ": typ}).sign(payload)

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every key's public half by ``kid``, to verify what this ring signed."""
        return {k.kid: k.private_key.public_key() for k in self._keys}

    def jwks(self) -> dict[str, Any]:
        """RFC 7517 key set with every public key, newest first."""
        return {"keys": [dict(k.jwk) for k in reversed(self._keys)]}

    @classmethod
    def generate(cls) -> KeyRing:
        """A key ring with one fresh key held only in memory (tests, benchmarks)."""
        key = Ed25519PrivateKey.generate()
        return cls([SigningKey(key, public_jwk(key.public_key()))])

    @classmethod
    def from_directory(cls, directory: Path) -> KeyRing:
        """Load the PEM keys in ``directory``, creating a first key if there is none."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = sorted(directory.glob("*.pem"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        if not paths:
            paths = [cls.add_key(directory)]
        keys = []
        for path in paths:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{path} is not an Ed25519 private key")
            keys.append(SigningKey(key, public_jwk(key.public_key())))
        return cls(keys, directory)

    @staticmethod
    def add_key(directory: Path) -> Path:
        """Generate a new key into ``directory`` (mode 0600); it becomes the active one."""
        directory.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        kid = public_jwk(key.public_key())["kid"]
        path = directory / f"{kid}.pem"
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        return path


def _listing(directory: Path) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in directory.glob("*.pem")))


class AttestationSigner:
    """Signs attestation payloads with the key ring's active key."""

    def __init__(self, keys: KeyRing, issuer: str):
        self.keys = keys
        self.issuer = issuer
        self._signer: tuple[str, CompactSigner] | None = None

    def sign(self, payload: Mapping[str, Any]) -> str:
        """Compact JWS over ``payload`` with ``iss`` added."""
        active = self.keys.active
        if self._signer is None or self._signer[0] != active.kid:  # first use, or after a rotation
            self._signer = (
                active.kid,
                CompactSigner(active.private_key, {"kid": active.kid, "typ": ATTESTATION_TYPE}),
            )
        return self._signer[1].sign({"iss": self.issuer, **payload})
