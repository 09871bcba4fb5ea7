"""onceonly's error model: one root exception with structured fields, and its kinds.

Every error raised on purpose is an :class:`OnceOnlyError`: a stable ``reason`` (sent as
``google.rpc.ErrorInfo.reason`` in the domain :data:`ERROR_DOMAIN`), a ``message`` for people,
and ``metadata`` (``ErrorInfo.metadata``). Its kind — the subclass it derives from — decides the
gRPC status, and the fields a kind carries become the rich error details (field violations,
broken rules, the missing resource, when to retry). The table from kind to status and details
lives at the edge, in :mod:`onceonly.status`; nothing here knows gRPC, so the core (the broker's
service, policy, ledger and oversight) raises these and never a transport error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ERROR_DOMAIN = "onceonly.v1"
"""``google.rpc.ErrorInfo.domain`` of every error onceonly sends."""


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """A bad field of a request (``google.rpc.BadRequest.FieldViolation``)."""

    field: str
    description: str


@dataclass(frozen=True, slots=True)
class RuleViolation:
    """A broken rule (``google.rpc.PreconditionFailure.Violation``): which rule, about what, why."""

    rule: str
    subject: str
    description: str


class OnceOnlyError(Exception):
    """Root of the errors onceonly raises on purpose."""

    reason: str = "INTERNAL"
    """Stable machine-readable code (``ErrorInfo.reason``); each kind has a default."""

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class Internal(OnceOnlyError):
    """Something failed that the caller cannot fix; the message must reveal nothing."""


class InvalidArgument(OnceOnlyError):
    """The request is malformed; ``violations`` name each bad field (there is at least one)."""

    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        violations: Sequence[FieldViolation],
        *,
        message: str | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if not violations:
            raise ValueError("an invalid argument needs at least one field violation")
        self.violations = list(violations)
        first = self.violations[0]
        more = f" (and {len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
        super().__init__(
            message or f"invalid request: {first.field} {first.description}{more}",
            reason=reason,
            metadata={"field": first.field, **(metadata or {})},
        )


class MalformedMessage(OnceOnlyError):
    """The request's bytes are not a valid message of its type (no field can be named)."""

    reason = "MALFORMED_MESSAGE"

    def __init__(self, type_name: str) -> None:
        super().__init__(
            f"the request is not a valid {type_name} message", metadata={"message_type": type_name}
        )


class NotFound(OnceOnlyError):
    """A resource the request names does not exist (``google.rpc.ResourceInfo``)."""

    reason = "NOT_FOUND"

    def __init__(
        self,
        message: str,
        *,
        resource_type: str,
        resource_name: str,
        field: str = "",
        description: str = "not in the catalog",
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.resource_type = resource_type
        self.resource_name = resource_name
        self.field = field
        self.description = description
        super().__init__(
            message, reason=reason, metadata={**({"field": field} if field else {}), **(metadata or {})}
        )


class AlreadyExists(OnceOnlyError):
    """What the request would create exists already."""

    reason = "ALREADY_EXISTS"


class Unauthenticated(OnceOnlyError):
    """The caller is not (validly) authenticated."""

    reason = "UNAUTHENTICATED"


class PermissionDenied(OnceOnlyError):
    """The caller may not do this; ``violations`` name the rules that refused it, if any."""

    reason = "PERMISSION_DENIED"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[RuleViolation] = (),
    ) -> None:
        self.violations = list(violations)
        super().__init__(message, reason=reason, metadata=metadata)


class FailedPrecondition(OnceOnlyError):
    """The request is well-formed, but the state it acts on does not allow it (an agreement not in
    the state a transition needs, a rule of its master agreement); ``violations`` name the rules."""

    reason = "FAILED_PRECONDITION"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[RuleViolation] = (),
    ) -> None:
        self.violations = list(violations)
        super().__init__(message, reason=reason, metadata=metadata)


class Unavailable(OnceOnlyError):
    """A dependency cannot serve right now; the same call may succeed later."""

    reason = "UNAVAILABLE"


class ResourceExhausted(OnceOnlyError):
    """A capacity or quota is used up; ``retry_after_s`` says when to try again, if known."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        quota_violations: Sequence[FieldViolation] = (),
    ) -> None:
        self.retry_after_s = retry_after_s
        self.quota_violations = list(quota_violations)
        """The quotas used up (``google.rpc.QuotaFailure``): ``field`` is the quota's subject."""
        super().__init__(message, reason=reason, metadata=metadata)


def unauthenticated(reason: str, message: str, **metadata: str) -> Unauthenticated:
    """An :class:`Unauthenticated` with ``reason``."""
    return Unauthenticated(message, reason=reason, metadata=metadata)


def permission_denied(reason: str, message: str, **metadata: str) -> PermissionDenied:
    """A :class:`PermissionDenied` with ``reason``."""
    return PermissionDenied(message, reason=reason, metadata=metadata)


ROLE_WORDS = {
    "consumer": "a consumer application",
    "consumer-admin": "a consumer's administrator",
    "provider": "a provider application",
    "provider-admin": "a provider's administrator",
    "oversight": "an oversight body",
    "operator": "the platform operator",
    "console": "the console",
    "broker": "a broker",
    "resident": "a resident",
    "unauthenticated": "an unauthenticated caller",
}


def role_words(kind: str) -> str:
    """A role as a message says it, with its article: ``an oversight body``, never ``a oversight``."""
    return ROLE_WORDS.get(kind, f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}")
