"""Who is calling the broker: mutual TLS or an agency's bearer JWT, checked on every call.

* **Mutual TLS.** The caller presents a client certificate issued by the platform's CA; its
  subject names the organisation (``O``), the role (``OU``: consumer, oversight, provider,
  broker) and a readable name (``CN``). See :mod:`onceonly.pki`.
* **Bearer JWT.** ``authorization: Bearer <token>`` from an agency's identity provider,
  verified against that issuer's configured public keys (``ONCEONLY_JWT_ISSUERS``, a TOML
  file): signature, issuer, audience and expiry. The token names the organisation (claim
  ``org``) and the officer (claim ``sub``). An issuer vouches only for the organisations it
  is configured for. With a client certificate as well, both must name the same organisation.
* **Relayed by the console.** The web console (a client certificate with ``OU=console``) calls on
  behalf of the person signed in to it: with their bearer token (checked as above), or with the
  client certificate they presented to the console, DER in base64 in ``x-onceonly-forwarded-cert``
  (checked again here against the platform CA, its validity and the revocation list). The console
  itself may do nothing else; anyone else sending that header is refused (``FORWARDING_NOT_ALLOWED``).
* **Insecure** (local development only, loopback only, never a default): the caller is taken
  from ``x-onceonly-org`` / ``x-onceonly-officer`` / ``x-onceonly-role`` metadata.

Every call except health checking and reflection is authenticated by :class:`AuthInterceptor`
before the servicer runs; the servicer reads :func:`current_principal`. A call without valid
credentials ends ``UNAUTHENTICATED`` with an ``ErrorInfo`` reason (``UNAUTHENTICATED``,
``TOKEN_EXPIRED``, ``TOKEN_AUDIENCE``, ``TOKEN_ISSUER``, ``TOKEN_SIGNATURE``, …).
"""

from __future__ import annotations

import base64
import collections
import contextlib
import contextvars
import datetime as dt
import json
import logging
import threading
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from onceonly.errors import PermissionDenied, Unauthenticated, permission_denied, role_words, unauthenticated
from onceonly.grpc_types import Context
from onceonly.guard import (
    FORWARDED_CERT_HEADER,
    INSECURE_OFFICER_HEADER,
    INSECURE_ORG_HEADER,
    INSECURE_ROLE_HEADER,
    GuardInterceptor,
    metadata_value,
    peer_certificate,
)
from onceonly.peers import PeerConnections
from onceonly.pki import ROLES, RevocationList, certificate_identity, forwarded_identity
from onceonly.validation import parse_subject
from onceonly.vocabulary import OfficerIdentification, SubjectId

log = logging.getLogger(__name__)

DEFAULT_ALGORITHMS = ("ES256", "RS256", "PS256", "EdDSA")
"""Asymmetric algorithms only: a shared-secret (HS*) token could be minted by the broker itself."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one call."""

    kind: str
    """``consumer`` | ``oversight`` | ``provider`` | ``broker``"""
    organization_id: str
    officer_id: str | None
    """The officer named by a JWT (``None`` for a certificate, which names an application)."""
    via: str
    """``mtls`` | ``jwt`` | ``insecure`` | ``console`` (a certificate relayed by the console) |
    ``scsp`` (the certificate that signed an SCSP request)"""
    subject: SubjectId | None = None
    """A ``resident``: the person their identity provider vouches for (never logged)."""
    represents: tuple[SubjectId, ...] = ()
    """A ``resident``: the people their token says they represent (a minor, a ward)."""

    def __repr__(self) -> str:  # a resident's document never reaches a log line through a repr
        return f"Principal(kind={self.kind!r}, organization_id={self.organization_id!r}, via={self.via!r})"


_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "onceonly_principal", default=None
)


def current_principal() -> Principal | None:
    """The caller of the call being served (``None`` outside an authenticated call)."""
    return _principal.get()


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[None]:
    """Serve a call that did not come through gRPC (an SCSP request, whose signature named
    ``principal``) with the same rules as one that did."""
    token = _principal.set(principal)
    try:
        yield
    finally:
        _principal.reset(token)


# --- JWT issuers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JwtIssuer:
    """An agency identity provider whose tokens the broker accepts."""

    issuer: str
    audience: str
    keys: tuple[tuple[str | None, Any], ...]
    """``(kid, public key)`` pairs; ``kid`` ``None`` for keys given as PEM files."""
    organizations: tuple[str, ...]
    """The organisations this issuer may vouch for; a token naming another is refused."""
    org_claim: str = "org"
    officer_claim: str = "sub"
    kind_claim: str = "role"
    kinds: tuple[str, ...] = ("consumer",)
    """Roles a token of this issuer may carry; absent claim means the first one."""
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway_s: float = 30.0
    max_lifetime_s: float = 3600.0
    """Longest validity a token may have: from ``iat`` (or now, without one) to ``exp``."""
    residents: bool = False
    """An eID provider: its tokens name residents (role ``resident``), by their identity document."""
    document_claim: str = "document"
    """A resident's document, ``TYPE:NUMBER`` (``DNI:12345678Z``)."""
    represents_claim: str = "represents"
    """The documents of the people a resident represents (a list; absent: nobody)."""

    def __post_init__(self) -> None:
        if not self.issuer or not self.audience:
            raise ValueError("a JWT issuer needs 'issuer' and 'audience'")
        if not self.keys:
            raise ValueError(f"JWT issuer {self.issuer!r} has no keys")
        if self.residents:
            return
        if not self.organizations:
            raise ValueError(f"JWT issuer {self.issuer!r} must list the 'organizations' it vouches for")
        if not self.kinds or any(k not in ROLES for k in self.kinds):
            raise ValueError(f"JWT issuer {self.issuer!r}: 'roles' must be among {', '.join(ROLES)}")
        if self.max_lifetime_s <= 0:
            raise ValueError(f"JWT issuer {self.issuer!r}: 'max_token_lifetime_s' must be positive")
        if any(a.upper().startswith("HS") or a.lower() == "none" for a in self.algorithms):
            raise ValueError(f"JWT issuer {self.issuer!r}: only asymmetric algorithms are accepted")

    def candidate_keys(self, kid: str | None) -> list[Any]:
        named = [key for key_id, key in self.keys if kid is not None and key_id == kid]
        return named or [key for key_id, key in self.keys if key_id is None or kid is None]


def keys_from_jwks(data: Mapping[str, Any]) -> tuple[tuple[str | None, Any], ...]:
    return tuple((k.key_id, k.key) for k in jwt.PyJWKSet.from_dict(dict(data)).keys)


def keys_from_pem(pem: bytes) -> tuple[tuple[str | None, Any], ...]:
    return ((None, serialization.load_pem_public_key(pem)),)


_ISSUER_FIELDS = {
    "issuer",
    "audience",
    "jwks",
    "public_keys",
    "organizations",
    "org_claim",
    "officer_claim",
    "role_claim",
    "roles",
    "algorithms",
    "leeway_s",
    "max_token_lifetime_s",
    "residents",
    "document_claim",
    "represents_claim",
}


def load_jwt_issuers(path: Path) -> list[JwtIssuer]:
    """Read the issuers TOML file; ``ValueError`` names the bad entry.

    ::

        [[issuer]]
        issuer = "https://idp.madrid.example"
        audience = "onceonly-broker"
        jwks = "madrid-jwks.json"         # or: public_keys = ["madrid.pem"] (paths relative to this file)
        organizations = ["L01280796"]     # whom this issuer may vouch for
        # org_claim = "org", officer_claim = "sub", role_claim = "role", roles = ["consumer"]
        # algorithms = ["ES256", "RS256", "PS256", "EdDSA"], leeway_s = 30
        # max_token_lifetime_s = 3600         # a token valid for longer is refused (TOKEN_LIFETIME)
    """
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    unknown_top = set(data) - {"issuer"}
    if unknown_top:
        raise ValueError(f"{path}: unknown keys {sorted(unknown_top)} (expected [[issuer]] tables)")
    issuers: list[JwtIssuer] = []
    for i, entry in enumerate(data.get("issuer", [])):
        where = f"{path}: issuer[{i}]"
        unknown = set(entry) - _ISSUER_FIELDS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        keys: list[tuple[str | None, Any]] = []
        try:
            if "jwks" in entry:
                keys += keys_from_jwks(json.loads((path.parent / entry["jwks"]).read_text()))
            for pem in entry.get("public_keys", []):
                keys += keys_from_pem((path.parent / pem).read_bytes())
            issuers.append(
                JwtIssuer(
                    issuer=str(entry.get("issuer", "")),
                    audience=str(entry.get("audience", "")),
                    keys=tuple(keys),
                    organizations=tuple(entry.get("organizations", ())),
                    org_claim=entry.get("org_claim", "org"),
                    officer_claim=entry.get("officer_claim", "sub"),
                    kind_claim=entry.get("role_claim", "role"),
                    kinds=tuple(entry.get("roles", ("consumer",))),
                    algorithms=tuple(entry.get("algorithms", DEFAULT_ALGORITHMS)),
                    leeway_s=float(entry.get("leeway_s", 30.0)),
                    max_lifetime_s=float(entry.get("max_token_lifetime_s", 3600.0)),
                    residents=bool(entry.get("residents", False)),
                    document_claim=entry.get("document_claim", "document"),
                    represents_claim=entry.get("represents_claim", "represents"),
                )
            )
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    names = [i.issuer for i in issuers]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: an issuer is listed twice")
    return issuers


class TokenVerifier:
    """Verifies bearer tokens against the configured issuers; remembers good ones until they expire."""

    def __init__(self, issuers: Iterable[JwtIssuer], *, cache_size: int = 4096) -> None:
        self._issuers = {i.issuer: i for i in issuers}
        self._cache: collections.OrderedDict[str, tuple[Principal, float]] = collections.OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    @property
    def issuers(self) -> Sequence[str]:
        return tuple(self._issuers)

    def verify(self, token: str) -> Principal:
        """The principal a token names; ``Unauthenticated`` with the reason otherwise."""
        now = time.time()
        with self._lock:
            hit = self._cache.get(token)
            if hit is not None and now < hit[1]:
                self._cache.move_to_end(token)
                return hit[0]
        principal, expires = self._verify(token)
        with self._lock:
            self._cache[token] = (principal, expires)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise unauthenticated("TOKEN_INVALID", "the bearer token is not a well-formed JWT") from None
        claimed_issuer = unverified.get("iss")
        issuer = self._issuers.get(claimed_issuer) if isinstance(claimed_issuer, str) else None
        if issuer is None:
            raise unauthenticated(
                "TOKEN_ISSUER", "the token's issuer (iss) is not an identity provider this broker trusts"
            )
        alg = header.get("alg")
        if alg not in issuer.algorithms:
            raise unauthenticated("TOKEN_ALGORITHM", f"algorithm {alg!r} is not accepted for this issuer")
        claims = self._decode(token, issuer, header.get("kid"))
        issued = claims.get("iat")
        start = (
            float(issued) if isinstance(issued, int | float) and not isinstance(issued, bool) else time.time()
        )
        if float(claims["exp"]) - start > issuer.max_lifetime_s + issuer.leeway_s:
            raise unauthenticated(
                "TOKEN_LIFETIME",
                f"the bearer token is valid for longer than issuer {issuer.issuer!r} allows "
                f"({issuer.max_lifetime_s:.0f} s)",
            )
        if issuer.residents:
            return _resident(issuer, claims), float(claims["exp"]) + issuer.leeway_s
        # The organisation is always named by the token, even for an issuer that vouches for one.
        org = claims.get(issuer.org_claim)
        if not isinstance(org, str) or not org:
            raise unauthenticated(
                "TOKEN_CLAIMS", f"the token has no {issuer.org_claim!r} (organisation) claim"
            )
        if org not in issuer.organizations:
            raise unauthenticated(
                "TOKEN_ORGANISATION", f"issuer {issuer.issuer!r} may not vouch for organisation {org!r}"
            )
        kind = claims.get(issuer.kind_claim, issuer.kinds[0])
        if kind not in issuer.kinds:
            raise unauthenticated(
                "TOKEN_ROLE", f"role {kind!r} may not be asserted by issuer {issuer.issuer!r}"
            )
        officer = claims.get(issuer.officer_claim)
        if not isinstance(officer, str) or not officer:
            raise unauthenticated(
                "TOKEN_CLAIMS", f"the token has no {issuer.officer_claim!r} (officer) claim"
            )
        return Principal(str(kind), org, officer, "jwt"), float(claims["exp"]) + issuer.leeway_s

    @staticmethod
    def _decode(token: str, issuer: JwtIssuer, kid: str | None) -> dict[str, Any]:
        candidates = issuer.candidate_keys(kid)
        if not candidates:
            raise unauthenticated("TOKEN_SIGNATURE", f"no key {kid!r} for issuer {issuer.issuer!r}")
        for key in candidates:
            try:
                return dict(
                    jwt.decode(
                        token,
                        key,
                        algorithms=list(issuer.algorithms),
                        audience=issuer.audience,
                        issuer=issuer.issuer,
                        leeway=issuer.leeway_s,
                        options={"require": ["exp", "iss", "aud"]},
                    )
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise unauthenticated("TOKEN_EXPIRED", "the bearer token has expired") from None
            except jwt.InvalidAudienceError:
                raise unauthenticated(
                    "TOKEN_AUDIENCE", "the bearer token is not meant for this broker (aud)"
                ) from None
            except jwt.InvalidIssuerError:
                raise unauthenticated("TOKEN_ISSUER", "the token's issuer does not match") from None
            except jwt.ImmatureSignatureError:
                raise unauthenticated("TOKEN_NOT_YET_VALID", "the bearer token is not valid yet") from None
            except jwt.MissingRequiredClaimError as exc:
                raise unauthenticated("TOKEN_CLAIMS", f"the token has no {exc.claim!r} claim") from None
            except (jwt.PyJWTError, ValueError, TypeError):
                raise unauthenticated("TOKEN_INVALID", "the bearer token could not be verified") from None
        raise unauthenticated("TOKEN_SIGNATURE", "the bearer token's signature does not verify")


RESIDENT_ROLE = "resident"
RESIDENTS_ORG = "residents"
"""The organisation a resident's principal names: residents belong to none."""
MAX_REPRESENTED = 20


def _document(value: object, claim: str) -> SubjectId:
    """``TYPE:NUMBER`` as a validated subject; ``Unauthenticated`` naming the claim (never its value)."""
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        return parse_subject(value)
    except ValueError:
        raise unauthenticated(
            "TOKEN_CLAIMS", f"the token's {claim!r} claim is not an identity document (TYPE:NUMBER)"
        ) from None


def _resident(issuer: JwtIssuer, claims: Mapping[str, Any]) -> Principal:
    subject = _document(claims.get(issuer.document_claim), issuer.document_claim)
    listed = claims.get(issuer.represents_claim, [])
    if not isinstance(listed, list) or len(listed) > MAX_REPRESENTED:
        raise unauthenticated(
            "TOKEN_CLAIMS",
            f"the token's {issuer.represents_claim!r} claim must list at most {MAX_REPRESENTED} documents",
        )
    represents = tuple(dict.fromkeys(_document(d, issuer.represents_claim) for d in listed))
    return Principal(RESIDENT_ROLE, RESIDENTS_ORG, None, "jwt", subject, represents)


# --- the interceptor ------------------------------------------------------------------------


def bearer_token(context: Context) -> str | None:
    """The token of an ``authorization: Bearer …`` header; ``Unauthenticated`` for another scheme."""
    value = metadata_value(context, "authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("UNAUTHENTICATED", "the authorization header must be 'Bearer <token>'")
    return token.strip()


CONSOLE_ROLE = "console"


@dataclass
class BrokerAuthenticator:
    """Establishes the :class:`Principal` of a call, or refuses it."""

    tokens: TokenVerifier | None = None
    insecure: bool = False
    revocations: RevocationList | None = None
    trusted: Sequence[x509.Certificate] = ()
    """The CA certificates a relayed certificate must come from."""

    def __call__(self, context: Context, method: str) -> Principal:
        token = bearer_token(context)
        pem = peer_certificate(context)
        from_cert: Principal | None = None
        if pem is not None:
            identity = certificate_identity(pem, self.revocations)
            from_cert = Principal(identity.role, identity.organization_id, None, "mtls")
        forwarded = metadata_value(context, FORWARDED_CERT_HEADER)
        relayed = from_cert is not None and from_cert.kind == CONSOLE_ROLE
        if forwarded is not None:
            if not relayed:
                raise permission_denied(
                    "FORWARDING_NOT_ALLOWED",
                    "rule FORWARDING_NOT_ALLOWED: only the console relays certificates in "
                    + FORWARDED_CERT_HEADER,
                )
            if token is not None:
                raise unauthenticated(
                    "IDENTITY_CONFLICT", "the console relays a certificate or a token, not both"
                )
            try:
                der = base64.b64decode(forwarded, validate=True)
            except ValueError:
                raise unauthenticated(
                    "FORWARDED_CERTIFICATE", "the forwarded certificate is not base64"
                ) from None
            person = forwarded_identity(der, self.trusted, self.revocations, dt.datetime.now(dt.UTC))
            if person.role == CONSOLE_ROLE:
                raise unauthenticated(
                    "FORWARDED_CERTIFICATE", "the console cannot relay a console certificate"
                )
            return Principal(person.role, person.organization_id, None, "console")
        if token is not None:
            if self.tokens is None:
                raise unauthenticated("TOKEN_ISSUER", "this broker is configured to accept no bearer tokens")
            from_token = self.tokens.verify(token)
            if relayed:
                return from_token  # the person signed in to the console with this token
            if from_cert is not None and (
                from_cert.organization_id != from_token.organization_id or from_cert.kind != from_token.kind
            ):
                raise unauthenticated(
                    "IDENTITY_CONFLICT",
                    "the client certificate and the bearer token name different organisations or roles",
                )
            return from_token
        if from_cert is not None:
            return from_cert
        if self.insecure:
            org = metadata_value(context, INSECURE_ORG_HEADER)
            if not org:
                raise unauthenticated(
                    "UNAUTHENTICATED", f"insecure mode: name the caller in {INSECURE_ORG_HEADER} metadata"
                )
            kind = metadata_value(context, INSECURE_ROLE_HEADER) or "consumer"
            if kind not in ROLES:
                raise unauthenticated("UNAUTHENTICATED", f"{INSECURE_ROLE_HEADER} must be one of {ROLES}")
            return Principal(kind, org, metadata_value(context, INSECURE_OFFICER_HEADER), "insecure")
        raise unauthenticated(
            "UNAUTHENTICATED", "no credentials: present a client certificate or a bearer token"
        )


def AuthInterceptor(
    tokens: TokenVerifier | None = None,
    *,
    insecure: bool = False,
    revocations: RevocationList | None = None,
    peers: PeerConnections | None = None,
    trusted: Sequence[x509.Certificate] = (),
) -> GuardInterceptor[Principal]:
    """The broker's interceptor: every call but health and reflection needs a :class:`Principal`
    (and, with ``peers``, a connection within its address's cap)."""
    return GuardInterceptor(
        BrokerAuthenticator(tokens, insecure, revocations, trusted), _principal, peers=peers
    )


# --- rules of the Broker service ------------------------------------------------------------


_IDENTIFIED_BY = {
    "jwt": OfficerIdentification.TOKEN,
    "mtls": OfficerIdentification.CERTIFICATE,
    "console": OfficerIdentification.CERTIFICATE,
    "insecure": OfficerIdentification.INSECURE,
    "scsp": OfficerIdentification.CERTIFICATE,
}


def officer_identification() -> OfficerIdentification:
    """How the officer of the call being served is known: authenticated by a token (which names
    the officer), or asserted by the application whose certificate made the call."""
    principal = current_principal()
    if principal is None:
        raise unauthenticated("UNAUTHENTICATED", "the call is not authenticated")
    return _IDENTIFIED_BY[principal.via]


def authorise_consumer(
    organization_id: str, officer_id: str, rpc: str
) -> Unauthenticated | PermissionDenied | None:
    """Refusal (or ``None``) for a call that verifies on behalf of ``organization_id``/``officer_id``.

    Only consumer principals verify; the organisation they authenticated as must be the one the
    request names, and an officer named by a token must be the officer the request names. A
    mismatch is a security event: it is logged (structured) and refused before anything else.
    """
    principal = current_principal()
    if principal is None:
        return unauthenticated("UNAUTHENTICATED", "the call is not authenticated")
    claimed_org = organization_id.strip()
    claimed_officer = officer_id.strip()
    refusal: PermissionDenied | None = None
    if principal.kind != "consumer":
        refusal = permission_denied(
            "ROLE_NOT_PERMITTED",
            f"rule ROLE_NOT_PERMITTED: {role_words(principal.kind)} may not call {rpc}; "
            "only consumers verify",
            role=principal.kind,
        )
    elif principal.organization_id != claimed_org:
        refusal = permission_denied(
            "CONSUMER_MISMATCH",
            "rule CONSUMER_MISMATCH: consumer.organization_id must be the organisation the caller "
            f"authenticated as ({principal.organization_id})",
            field="consumer.organization_id",
        )
    elif principal.officer_id is not None and principal.officer_id != claimed_officer:
        refusal = permission_denied(
            "OFFICER_MISMATCH",
            "rule OFFICER_MISMATCH: consumer.officer_id must be the officer named by the bearer token",
            field="consumer.officer_id",
        )
    if refusal is not None:
        log.warning(
            "spoofing attempt refused",
            extra={
                "event": "security",
                "rule": refusal.reason,
                "rpc": rpc,
                "org": principal.organization_id,
                "claimed_org": claimed_org[:64],
                "officer": principal.officer_id or "",
                "claimed_officer": claimed_officer[:64],
                "role": principal.kind,
                "via": principal.via,
            },
        )
    return refusal
