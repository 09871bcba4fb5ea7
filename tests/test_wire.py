"""Proto ⇄ Python values from the descriptors (onceonly.wire), validated once (onceonly.validation)."""

from __future__ import annotations

import enum
from typing import Any

import pytest

from onceonly import wire
from onceonly.errors import InvalidArgument
from onceonly.v1 import broker_pb2, common_pb2
from onceonly.validation import FieldErrors, validate_subject
from onceonly.vocabulary import DocumentType, LegalBasisKind, SubjectId

ALL = [getattr(wire, name) for name in wire.__all__ if name.isupper()]


@pytest.mark.parametrize("mapping", ALL, ids=lambda m: m.descriptor.name)
def test_every_value_round_trips_with_one_spelling(mapping: wire.ProtoEnum[Any, Any]) -> None:
    for value in mapping.descriptor.values:
        if value.number == 0:
            assert mapping.from_proto(0) is None and mapping.name(0) == ""
            continue
        member = mapping.from_proto(value.number)
        assert member is not None
        assert mapping.to_proto(member) == value.number
        assert value.name == mapping.prefix + mapping.name(value.number)
        assert mapping.number(mapping.name(value.number).lower()) == value.number


def test_a_value_on_one_side_only_fails_at_import() -> None:
    class Kind(enum.StrEnum):
        LAW = "LAW"
        CONSENT = "CONSENT"
        DECREE = "DECREE"

    with pytest.raises(TypeError, match=r"only in Python \['DECREE'\]"):
        wire.ProtoEnum(common_pb2.LegalBasisKind, Kind)


def test_unknown_numbers_and_names_map_to_nothing() -> None:
    assert wire.DOCUMENT_TYPE.from_proto(99) is None
    assert wire.DOCUMENT_TYPE.number("driving-licence") == 0
    assert wire.LEGAL_BASIS_KIND.choices() == "LAW, CONSENT or NO_OBJECTION"
    assert wire.LEGAL_BASIS_KIND.from_proto(common_pb2.LEGAL_BASIS_KIND_LAW) is LegalBasisKind.LAW


def test_json_output_uses_the_short_spelling() -> None:
    catalog = broker_pb2.Catalog(
        certificate_types=[
            broker_pb2.CertificateType(
                id="tax.compliance/v1",
                allowed_legal_bases=[common_pb2.LEGAL_BASIS_KIND_LAW, common_pb2.LEGAL_BASIS_KIND_CONSENT],
                parameters=[common_pb2.FieldSpec(name="year", type=common_pb2.PARAMETER_TYPE_INTEGER)],
            )
        ]
    )
    [entry] = wire.short_enum_names(catalog)["certificateTypes"]
    assert entry["allowedLegalBases"] == ["LAW", "CONSENT"]
    assert entry["parameters"] == [{"name": "year", "type": "INTEGER"}]


def test_one_subject_validator_names_the_bad_field() -> None:
    good = common_pb2.Subject(document_type=common_pb2.DOCUMENT_TYPE_DNI, document_number=" 12345678z ")
    assert validate_subject("subject", good) == SubjectId(DocumentType.DNI, "12345678Z")
    errors = FieldErrors()
    assert errors.subject("consumer.officer_document", common_pb2.Subject(document_number="x")) is None
    assert (
        errors.subject(
            "subject",
            common_pb2.Subject(document_type=common_pb2.DOCUMENT_TYPE_DNI, document_number="12345678A"),
        )
        is None
    )
    assert [(v.field, v.description) for v in errors.violations] == [
        ("consumer.officer_document.document_type", "must be DNI, NIE or PASSPORT"),
        ("subject.document_number", "DNI check letter does not match the number"),
    ]
    with pytest.raises(InvalidArgument) as caught:
        errors.raise_if_any()
    assert caught.value.metadata["field"] == "consumer.officer_document.document_type"
