"""WS-Security for SCSP: an X.509 ``BinarySecurityToken`` and an XML signature over the SOAP Body.

Signing and verifying are signxml's (exclusive canonicalisation, RSA-SHA256 by default); this
module only places the token and the signature where WS-Security puts them, and checks what
signxml cannot know: that the one signed element is the envelope's Body, that the token's
certificate comes from the platform CA, is valid now and is not revoked. What is processed
afterwards is the Body as signed, never the envelope as received.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)
from signxml.exceptions import SignXMLException
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, XMLVerifier

from onceonly.pki import CertIdentity, RevocationList, issued_identity
from onceonly.scsp import codes
from onceonly.scsp.soap import SOAP_NS, WSU_NS, Envelope, SoapError, short

WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
X509_TOKEN = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"

STRONG = SignatureConfiguration(
    expect_references=1,
    signature_methods=frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.RSA_SHA512}),
    digest_algorithms=frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA512}),
)
"""What is accepted by default: RSA with SHA-256 (or SHA-512)."""
WITH_SHA1 = SignatureConfiguration(
    expect_references=1,
    signature_methods=STRONG.signature_methods | {SignatureMethod.RSA_SHA1},
    digest_algorithms=STRONG.digest_algorithms | {DigestAlgorithm.SHA1},
)
"""RSA-SHA1 too, still seen in live SCSP traffic: only with ``ONCEONLY_SCSP_ALLOW_SHA1``."""


@dataclass(frozen=True)
class Seal:
    """A certificate and its RSA (or EC) private key, to sign envelopes with."""

    cert: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> Seal:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("a seal's key must be RSA or EC")
        return cls(x509.load_pem_x509_certificate(cert_pem), key)


def sign(root: etree._Element, seal: Seal, *, sha1: bool = False) -> etree._Element:
    """Sign the Body of the SOAP envelope ``root`` in place (and return it): a
    ``wsse:Security`` header with the seal's certificate as a ``BinarySecurityToken`` and a
    signature over the Body, exclusive c14n, RSA-SHA256 (RSA-SHA1 with ``sha1``)."""
    envelope = Envelope.of(root)
    header = envelope.header
    if header is None:
        header = etree.Element(f"{{{SOAP_NS}}}Header")
        root.insert(0, header)
    body_id = envelope.body.get(f"{{{WSU_NS}}}Id")
    if not body_id:
        body_id = f"Body-{secrets.token_hex(8)}"
        envelope.body.set(f"{{{WSU_NS}}}Id", body_id)
    token_id = f"X509-{secrets.token_hex(8)}"
    security = etree.SubElement(header, f"{{{WSSE_NS}}}Security", nsmap={"wsse": WSSE_NS, "wsu": WSU_NS})
    security.set(f"{{{SOAP_NS}}}mustUnderstand", "1")
    token = etree.SubElement(
        security, f"{{{WSSE_NS}}}BinarySecurityToken", EncodingType=BASE64, ValueType=X509_TOKEN
    )
    token.set(f"{{{WSU_NS}}}Id", token_id)
    token.text = base64.b64encode(seal.cert.public_bytes(serialization.Encoding.DER)).decode()
    key_info = etree.Element(f"{{{DS_NS}}}KeyInfo", nsmap={"ds": DS_NS})
    etree.SubElement(
        etree.SubElement(key_info, f"{{{WSSE_NS}}}SecurityTokenReference", nsmap={"wsse": WSSE_NS}),
        f"{{{WSSE_NS}}}Reference",
        URI=f"#{token_id}",
        ValueType=X509_TOKEN,
    )
    rsa_key = isinstance(seal.key, rsa.RSAPrivateKey)
    signer = (_LegacySigner if sha1 else XMLSigner)(
        method=SignatureConstructionMethod.detached,
        signature_algorithm=(
            (SignatureMethod.RSA_SHA1 if sha1 else SignatureMethod.RSA_SHA256)
            if rsa_key
            else SignatureMethod.ECDSA_SHA256
        ),
        digest_algorithm=DigestAlgorithm.SHA1 if sha1 else DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    signature = signer.sign(
        root, key=seal.key, reference_uri=f"#{body_id}", key_info=key_info, id_attribute="Id"
    )
    security.append(signature)
    return root


class _LegacySigner(XMLSigner):
    """signxml's signer with RSA-SHA1 allowed (signxml's documented way): for testing a broker that
    accepts SHA-1 (``onceonly scsp send --sha1``), never the broker's own answers."""

    def check_deprecated_methods(self) -> None:
        return None


@dataclass(frozen=True)
class Verified:
    """A verified envelope: who signed it, and its Body as signed."""

    identity: CertIdentity
    cert: x509.Certificate
    body: etree._Element


def verify(
    root: etree._Element,
    trusted: Sequence[x509.Certificate],
    revocations: RevocationList | None,
    now: dt.datetime,
    *,
    allow_sha1: bool = False,
    data: bytes | None = None,
) -> Verified:
    """Check the WS-Security signature of the envelope ``root``: ``SoapError`` 0307 when there is
    none, 0305 when it does not hold (bad signature, weak algorithm, a token not from the
    platform CA, expired or revoked, or a signature over anything but the Body). ``data``: the bytes
    ``root`` was parsed from, given to signxml as they are (it would otherwise serialise ``root``)."""
    envelope = Envelope.of(root)
    security = envelope.header.find(f"{{{WSSE_NS}}}Security") if envelope.header is not None else None
    signature = security.find(f"{{{DS_NS}}}Signature") if security is not None else None
    if security is None or signature is None:
        raise SoapError(codes.NO_SIGNATURE, "no WS-Security signature in the SOAP Header")
    tokens = security.findall(f"{{{WSSE_NS}}}BinarySecurityToken")
    if len(tokens) != 1:
        raise SoapError(codes.BAD_SIGNATURE, "the Security header must hold one BinarySecurityToken")
    references = signature.findall(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}Reference")
    body_id = envelope.body.get(f"{{{WSU_NS}}}Id")
    if len(references) != 1 or not body_id or references[0].get("URI") != f"#{body_id}":
        raise SoapError(codes.BAD_SIGNATURE, "the signature must cover the SOAP Body, and only it")
    try:
        der = base64.b64decode("".join((tokens[0].text or "").split()), validate=True)
    except ValueError:
        raise SoapError(codes.BAD_SIGNATURE, "the BinarySecurityToken is not base64") from None
    try:
        identity, cert = issued_identity(der, trusted, revocations, now, what="the signing certificate")
    except Exception as exc:  # Unauthenticated, with what is wrong with the certificate
        raise SoapError(codes.BAD_SIGNATURE, str(getattr(exc, "message", exc))) from None
    try:
        result = XMLVerifier().verify(
            root if data is None else data,
            x509_cert=cert,
            id_attribute="Id",
            expect_config=WITH_SHA1 if allow_sha1 else STRONG,
        )
    except etree.DocumentInvalid:  # the ds:Signature breaks the XML-DSig schema
        raise SoapError(
            codes.BAD_SIGNATURE, "the ds:Signature element is not a valid XML signature"
        ) from None
    except (SignXMLException, ValueError) as exc:
        raise SoapError(codes.BAD_SIGNATURE, f"the signature does not hold: {short(str(exc))}") from None
    signed = result[0] if isinstance(result, list) else result
    body = signed.signed_xml
    if body is None or body.tag != f"{{{SOAP_NS}}}Body" or body.get(f"{{{WSU_NS}}}Id") != body_id:
        raise SoapError(codes.BAD_SIGNATURE, "the signature must cover the SOAP Body")
    return Verified(identity, cert, body)
