"""Protobuf ⇄ Python value mappings, derived from the proto enum descriptors — written once.

A :class:`ProtoEnum` pairs a proto enum with the Python enum of the same values: member ``DNI``
of :class:`~onceonly.vocabulary.DocumentType` is ``DOCUMENT_TYPE_DNI`` on the wire. The pairing is
by name, checked when this module is imported: a value added on one side only fails at once,
never silently at run time. Value 0 (``…_UNSPECIFIED``) maps to nothing.
"""

from __future__ import annotations

import enum
import re
from typing import Any, Generic, TypeVar, cast

from google.protobuf import json_format
from google.protobuf.descriptor import EnumDescriptor
from google.protobuf.message import Message

from onceonly.fields import FieldType
from onceonly.v1 import broker_pb2, common_pb2, governance_pb2, oversight_pb2, provider_pb2
from onceonly.vocabulary import (
    AgreementAction,
    AgreementState,
    CheckStatus,
    Decision,
    DenialReason,
    Disclosure,
    DocumentType,
    LegalBasisKind,
    OfficerIdentification,
    OrganisationKind,
    UsageBucket,
    UsageDimension,
    UsageGrouping,
)

__all__ = [
    "AGREEMENT_ACTION",
    "AGREEMENT_STATE",
    "ATTEST_RESULT",
    "CHECK_STATUS",
    "DECISION",
    "DENIAL_REASON",
    "DISCLOSURE",
    "DOCUMENT_TYPE",
    "LEGAL_BASIS_KIND",
    "OFFICER_IDENTIFICATION",
    "ORGANISATION_KIND",
    "PARAMETER_TYPE",
    "USAGE_BUCKET",
    "USAGE_DIMENSION",
    "USAGE_GROUPING",
    "ProtoEnum",
    "short_enum_names",
]

E = TypeVar("E", bound=enum.Enum)
P = TypeVar("P", bound=int)


def enum_prefix(descriptor: EnumDescriptor) -> str:
    """The prefix of an enum's value names: ``DocumentType`` → ``DOCUMENT_TYPE_``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", descriptor.name).upper() + "_"


class ProtoEnum(Generic[E, P]):
    """One proto enum and the Python enum whose member names are its value names minus the prefix."""

    def __init__(self, proto: type[P], python: type[E]) -> None:
        descriptor: EnumDescriptor = proto.DESCRIPTOR  # type: ignore[attr-defined]
        self.descriptor = descriptor
        self.prefix = enum_prefix(descriptor)
        wire = {v.name.removeprefix(self.prefix): v.number for v in descriptor.values if v.number != 0}
        names = {m.name for m in python}
        if set(wire) != names:
            raise TypeError(
                f"{descriptor.full_name} and {python.__name__} differ: "
                f"only in the proto {sorted(set(wire) - names)}, only in Python {sorted(names - set(wire))}"
            )
        self._to_proto: dict[E, P] = {m: cast(P, wire[m.name]) for m in python}
        self._from_proto: dict[int, E] = {number: m for m, number in self._to_proto.items()}
        self.names: tuple[str, ...] = tuple(m.name for m in python)
        """Every value's one spelling, in declaration order (for messages: "must be DNI, NIE or …")."""

    def to_proto(self, member: E) -> P:
        return self._to_proto[member]

    def from_proto(self, number: int) -> E | None:
        """The Python member, or ``None`` for 0 (unspecified) and numbers this version does not know."""
        return self._from_proto.get(number)

    def name(self, number: int) -> str:
        """The one spelling of a wire value (``""`` for unspecified or unknown)."""
        member = self._from_proto.get(number)
        return member.name if member is not None else ""

    def number(self, name: str) -> P:
        """The wire number of a spelling, case-insensitive (0, unspecified, if it names nothing)."""
        for member, number in self._to_proto.items():
            if member.name == name.strip().upper():
                return number
        return cast(P, 0)

    def choices(self) -> str:
        """``DNI, NIE or PASSPORT``: for error messages."""
        return ", ".join(self.names[:-1]) + f" or {self.names[-1]}" if len(self.names) > 1 else self.names[0]


def short_enum_names(message: Message) -> dict[str, Any]:
    """A message as JSON-ready data, every enum value in its one spelling (``LAW``, not
    ``LEGAL_BASIS_KIND_LAW``): for ``--json`` output and other text a person or script reads."""
    data = json_format.MessageToDict(message)  # the proto3 JSON mapping: lowerCamelCase names
    return _shorten(message.DESCRIPTOR, data)


def _shorten(descriptor: Any, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the enum values of ``descriptor``'s fields (and nested messages') shortened."""
    for name, value in data.items():
        field = descriptor.fields_by_camelcase_name.get(name)
        if field is None:
            continue
        if field.enum_type is not None:
            prefix = enum_prefix(field.enum_type)
            data[name] = (
                [v.removeprefix(prefix) for v in value]
                if isinstance(value, list)
                else value.removeprefix(prefix)
            )
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            if isinstance(value, list):
                data[name] = [_shorten(field.message_type, v) if isinstance(v, dict) else v for v in value]
            elif isinstance(value, dict):
                data[name] = _shorten(field.message_type, value)
    return data


class AttestResult(enum.Enum):
    FOUND = "FOUND"
    SUBJECT_NOT_FOUND = "SUBJECT_NOT_FOUND"
    PENDING = "PENDING"
    """The agency answers later: ``Collect`` with the ticket from ``ready_at``."""


DOCUMENT_TYPE = ProtoEnum(common_pb2.DocumentType, DocumentType)
LEGAL_BASIS_KIND = ProtoEnum(common_pb2.LegalBasisKind, LegalBasisKind)
PARAMETER_TYPE = ProtoEnum(common_pb2.ParameterType, FieldType)
DENIAL_REASON = ProtoEnum(common_pb2.DenialReason, DenialReason)
CHECK_STATUS = ProtoEnum(broker_pb2.CheckStatus, CheckStatus)
DECISION = ProtoEnum(oversight_pb2.Decision, Decision)
USAGE_GROUPING = ProtoEnum(oversight_pb2.UsageGrouping, UsageGrouping)
USAGE_DIMENSION = ProtoEnum(oversight_pb2.UsageDimension, UsageDimension)
USAGE_BUCKET = ProtoEnum(oversight_pb2.UsageBucket, UsageBucket)
OFFICER_IDENTIFICATION = ProtoEnum(common_pb2.OfficerIdentification, OfficerIdentification)
ATTEST_RESULT = ProtoEnum(provider_pb2.AttestResponse.Result, AttestResult)
ORGANISATION_KIND = ProtoEnum(governance_pb2.OrganisationKind, OrganisationKind)
AGREEMENT_STATE = ProtoEnum(governance_pb2.AgreementState, AgreementState)
AGREEMENT_ACTION = ProtoEnum(governance_pb2.AgreementAction, AgreementAction)
DISCLOSURE = ProtoEnum(governance_pb2.Disclosure, Disclosure)
