"""Validating request fields at the edge: one collector for every service.

:class:`FieldErrors` gathers every bad field of a request before the call is refused, so a caller
fixes them all at once; :meth:`FieldErrors.raise_if_any` raises one
:class:`~onceonly.errors.InvalidArgument` naming each. The formats and limits here are the ones
documented in the proto comments and the README.
"""

from __future__ import annotations

import re

from onceonly import identity
from onceonly.errors import FieldViolation, InvalidArgument
from onceonly.v1 import common_pb2
from onceonly.vocabulary import DocumentType, SubjectId
from onceonly.wire import DOCUMENT_TYPE

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
"""Ids (request, organisation, officer, case file, certificate type): printable and log-safe."""
CODE_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9_.-]*$")
"""Procedure codes: upper-case letters, digits, ``_ . -``."""
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_DOCUMENT_NUMBER = 32

_VALIDATORS = {
    DocumentType.DNI: identity.validate_dni,
    DocumentType.NIE: identity.validate_nie,
    DocumentType.PASSPORT: identity.validate_passport,
}


class FieldErrors:
    """The bad fields of one request, in the order they were found."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def text(
        self,
        field: str,
        value: str,
        *,
        max_len: int,
        required: bool = True,
        pattern: re.Pattern[str] | None = None,
    ) -> str:
        """``value`` stripped; notes a missing, overlong, control-character or off-pattern value."""
        if not value.strip():
            if required:
                self.add(field, "is required")
            return value
        if len(value) > max_len:
            self.add(field, f"is longer than {max_len} characters")
        elif CONTROL.search(value):
            self.add(field, "contains control characters")
        elif pattern is not None and not pattern.match(value):
            self.add(field, f"has characters outside {pattern.pattern}")
        return value.strip()

    def no_identifiers(self, field: str, value: str, *, passports: bool = False) -> str:
        """``value``, noting it if it carries an identity document number: free text is stored in
        traces and exported to spans, where a resident must never be named."""
        kind = identity.find_document_number(value, passports=passports)
        if kind is not None and not any(v.field == field for v in self.violations):
            self.add(field, f"must not contain a {kind} number: name the resident only in subject")
        return value

    def subject(self, field: str, msg: common_pb2.Subject) -> SubjectId | None:
        """The validated subject of a ``Subject`` message, or ``None`` (and a violation)."""
        doc_type = DOCUMENT_TYPE.from_proto(msg.document_type)
        if doc_type is None:
            self.add(f"{field}.document_type", f"must be {DOCUMENT_TYPE.choices()}")
            return None
        if len(msg.document_number) > MAX_DOCUMENT_NUMBER:
            self.add(f"{field}.document_number", f"is longer than {MAX_DOCUMENT_NUMBER} characters")
            return None
        try:
            number = _VALIDATORS[doc_type](msg.document_number)
        except identity.InvalidDocument as exc:
            self.add(f"{field}.document_number", str(exc))
            return None
        return SubjectId(doc_type, number)

    def raise_if_any(self) -> None:
        """Raise :class:`InvalidArgument` naming every bad field, if there is one."""
        if self.violations:
            raise InvalidArgument(self.violations)


def validate_subject(field: str, msg: common_pb2.Subject) -> SubjectId:
    """The validated subject, or :class:`InvalidArgument` naming the bad field."""
    errors = FieldErrors()
    subject = errors.subject(field, msg)
    errors.raise_if_any()
    assert subject is not None
    return subject


def parse_subject(text: str) -> SubjectId:
    """``TYPE:NUMBER`` (``DNI:12345678Z``) as a validated subject; ``ValueError`` (never repeating
    the number) if it is not one."""
    kind, sep, number = text.partition(":")
    doc_type = DocumentType.__members__.get(kind.strip().upper())
    if not sep or doc_type is None:
        raise ValueError("not TYPE:NUMBER with TYPE one of DNI, NIE, PASSPORT")
    if len(number) > MAX_DOCUMENT_NUMBER:
        raise ValueError(f"the number is longer than {MAX_DOCUMENT_NUMBER} characters")
    try:
        return SubjectId(doc_type, _VALIDATORS[doc_type](number))
    except identity.InvalidDocument as exc:
        raise ValueError(str(exc)) from None
