"""Compact JWS (RFC 7515) for the hot path: EdDSA and ES256, signed and checked directly.

PyJWT spends more time on JSON options, key checks and claim validation than the signature
itself takes; attestations and provider evidence are made and checked on every check of every
request, so these few lines do only what those need. The tokens are ordinary compact JWS that
any JOSE library verifies (the tests check them with joserfc).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

_ECDSA = ec.ECDSA(hashes.SHA256())


class JwsError(ValueError):
    """A token that is malformed or whose signature does not verify."""


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(data: str | bytes) -> bytes:
    try:
        if isinstance(data, str):
            data = data.encode("ascii")  # UnicodeEncodeError (a ValueError) for anything else
        return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        raise JwsError("not base64url") from None


def _json(value: Mapping[str, Any]) -> bytes:
    return orjson.dumps(value)


class CompactSigner:
    """Signs payloads with one key under one fixed protected header."""

    def __init__(self, key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey, header: Mapping[str, Any]):
        if isinstance(key, Ed25519PrivateKey):
            alg = "EdDSA"
        elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
            alg = "ES256"
        else:
            raise ValueError("only Ed25519 (EdDSA) and P-256 (ES256) keys are supported")
        self.alg = alg
        self._key = key
        self._header = b64url(_json({"alg": alg, **header})) + b"."

    def sign(self, payload: Mapping[str, Any]) -> str:
        signing_input = self._header + b64url(_json(payload))
        if isinstance(self._key, Ed25519PrivateKey):
            signature = self._key.sign(signing_input)
        else:
            r, s = decode_dss_signature(self._key.sign(signing_input, _ECDSA))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return (signing_input + b"." + b64url(signature)).decode("ascii")


def parse(token: str) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """Split a compact JWS into (header, payload bytes, signing input, signature) without verifying."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwsError("a compact JWS has three parts")
    try:
        header = orjson.loads(b64url_decode(parts[0]))
    except (ValueError, UnicodeDecodeError):
        raise JwsError("the JWS header is not JSON") from None
    if not isinstance(header, dict):
        raise JwsError("the JWS header is not an object")
    return header, b64url_decode(parts[1]), f"{parts[0]}.{parts[1]}".encode("ascii"), b64url_decode(parts[2])


def verify(
    token: str, key: Ed25519PublicKey | ec.EllipticCurvePublicKey
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify ``token`` with ``key`` (the algorithm follows the key); return (header, payload)."""
    header, payload, signing_input, signature = parse(token)
    expected = "EdDSA" if isinstance(key, Ed25519PublicKey) else "ES256"
    if header.get("alg") != expected:
        raise JwsError(f"algorithm {header.get('alg')!r} where {expected} is required")
    try:
        if isinstance(key, Ed25519PublicKey):
            key.verify(signature, signing_input)
        else:
            if len(signature) != 64:
                raise JwsError("an ES256 signature is 64 bytes")
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            key.verify(der, signing_input, _ECDSA)
    except InvalidSignature:
        raise JwsError("signature does not verify") from None
    try:
        claims = orjson.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise JwsError("the JWS payload is not JSON") from None
    if not isinstance(claims, dict):
        raise JwsError("the JWS payload is not an object")
    return header, claims
