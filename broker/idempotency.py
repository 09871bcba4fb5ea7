"""Idempotency: a request id answered once is answered the same way every time.

The answer that stands for ``(organisation, request id)`` is a :class:`StoredReply`, written in the
same transaction as the trace (the ledger's unique key makes the first writer win). This module
keeps recent answers in memory, lets a retry that arrives while the first call is still being
decided wait for it, and turns a stored answer back into the result (or the denial) it was.
Stored answers are encoded with named fields (:func:`encode_result`); the positional form of
earlier versions is still read.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from onceonly.broker.domain import (
    CheckOutcome,
    CheckStatus,
    DenialReason,
    StoredReply,
    VerificationRequest,
    VerifyResult,
    Violation,
)
from onceonly.broker.errors import DuplicateRequest, denied

__all__ = ["RecentReplies", "decode_result", "denial_reply", "encode_result", "replay", "result_reply"]

Key = tuple[str, str]


def encode_result(result: VerifyResult) -> bytes:
    """The stored form of a result: JSON with named fields."""
    return orjson.dumps(
        {
            "request_id": result.request_id,
            "trace_id": result.trace_id,
            "decided_at": result.decided_at.isoformat(),
            "outcomes": [
                {
                    "certificate_type_id": o.certificate_type_id,
                    "provider_id": o.provider_id,
                    "status": o.status.value,
                    "claims": o.claims,
                    "attestation": o.attestation,
                    "evidence": o.evidence,
                    "detail": o.detail,
                    "latency_ms": o.latency_ms,
                }
                for o in result.outcomes
            ],
        }
    )


def _outcome(entry: Any) -> CheckOutcome:
    if isinstance(entry, list):  # the positional form of earlier versions
        cid, pid, status, claims, attestation, evidence, detail, latency = entry
        entry = {
            "certificate_type_id": cid,
            "provider_id": pid,
            "status": status,
            "claims": claims,
            "attestation": attestation,
            "evidence": evidence,
            "detail": detail,
            "latency_ms": latency,
        }
    return CheckOutcome(
        certificate_type_id=entry["certificate_type_id"],
        provider_id=entry["provider_id"],
        status=CheckStatus(entry["status"]),
        claims=entry["claims"],
        attestation=entry["attestation"],
        detail=entry["detail"],
        latency_ms=entry["latency_ms"],
        evidence=entry["evidence"],
    )


def decode_result(data: Mapping[str, Any]) -> VerifyResult:
    """The result a stored payload encodes."""
    return VerifyResult(
        data["request_id"],
        data["trace_id"],
        tuple(_outcome(o) for o in data["outcomes"]),
        datetime.fromisoformat(data["decided_at"]),
    )


def result_reply(request: VerificationRequest, result: VerifyResult) -> StoredReply:
    """What is stored for a request that was answered."""
    return StoredReply(
        request.consumer.organization_id,
        request.request_id,
        request.digest,
        "response",
        encode_result(result),
    )


def denial_reply(request: VerificationRequest, trace_id: str, violations: list[Violation]) -> StoredReply:
    """What is stored for a request that policy denied."""
    payload = {
        "trace_id": trace_id,
        "violations": [
            {"reason": v.reason.value, "subject": v.subject, "description": v.description} for v in violations
        ],
    }
    return StoredReply(
        request.consumer.organization_id, request.request_id, request.digest, "denied", orjson.dumps(payload)
    )


def _violation(entry: Any) -> Violation:
    if isinstance(entry, list):  # the positional form of earlier versions
        return Violation(DenialReason(entry[0]), entry[1], entry[2])
    return Violation(DenialReason(entry["reason"]), entry["subject"], entry["description"])


def replay(stored: StoredReply, request: VerificationRequest) -> VerifyResult:
    """The answer ``stored`` stands for; ``DuplicateRequest`` if ``request`` has another body,
    ``PolicyDenied`` (``QuotaExceeded`` for a quota) if the request was denied."""
    if stored.request_digest != request.digest:
        raise DuplicateRequest(request.request_id)
    return stored_result(stored)


def stored_result(stored: StoredReply) -> VerifyResult:
    """The answer ``stored`` holds; ``PolicyDenied`` if the request was denied."""
    data = orjson.loads(stored.payload)
    if stored.kind == "denied":
        raise denied([_violation(v) for v in data["violations"]], data["trace_id"])
    return decode_result(data)


class RecentReplies:
    """Answers of recent request ids in memory, and the ids being decided right now."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._recent: OrderedDict[Key, StoredReply] = OrderedDict()
        self._inflight: dict[Key, asyncio.Future[None]] = {}

    def get(self, key: Key) -> StoredReply | None:
        return self._recent.get(key)

    async def settled(self, key: Key) -> StoredReply | None:
        """The answer for ``key``, waiting for it if the same id is being decided right now."""
        stored = self._recent.get(key)
        if stored is None and key in self._inflight:
            await asyncio.shield(self._inflight[key])
            stored = self._recent.get(key)
        return stored

    def begin(self, key: Key) -> None:
        """``key`` is being decided: a retry meanwhile waits for its answer."""
        self._inflight[key] = asyncio.get_running_loop().create_future()

    def end(self, key: Key) -> None:
        self._inflight.pop(key).set_result(None)

    def remember(self, reply: StoredReply) -> None:
        key = (reply.organization_id, reply.request_id)
        self._recent[key] = reply
        self._recent.move_to_end(key)
        while len(self._recent) > self._capacity:
            self._recent.popitem(last=False)
