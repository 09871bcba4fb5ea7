from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DocumentType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOCUMENT_TYPE_UNSPECIFIED: _ClassVar[DocumentType]
    DOCUMENT_TYPE_DNI: _ClassVar[DocumentType]
    DOCUMENT_TYPE_NIE: _ClassVar[DocumentType]
    DOCUMENT_TYPE_PASSPORT: _ClassVar[DocumentType]

class LegalBasisKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEGAL_BASIS_KIND_UNSPECIFIED: _ClassVar[LegalBasisKind]
    LEGAL_BASIS_KIND_LAW: _ClassVar[LegalBasisKind]
    LEGAL_BASIS_KIND_CONSENT: _ClassVar[LegalBasisKind]
    LEGAL_BASIS_KIND_NO_OBJECTION: _ClassVar[LegalBasisKind]

class ParameterType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARAMETER_TYPE_UNSPECIFIED: _ClassVar[ParameterType]
    PARAMETER_TYPE_STRING: _ClassVar[ParameterType]
    PARAMETER_TYPE_INTEGER: _ClassVar[ParameterType]
    PARAMETER_TYPE_BOOLEAN: _ClassVar[ParameterType]
    PARAMETER_TYPE_DATE: _ClassVar[ParameterType]

class DenialReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DENIAL_REASON_UNSPECIFIED: _ClassVar[DenialReason]
    DENIAL_REASON_UNKNOWN_CONSUMER: _ClassVar[DenialReason]
    DENIAL_REASON_PROCEDURE_NOT_AUTHORISED: _ClassVar[DenialReason]
    DENIAL_REASON_CERTIFICATE_TYPE_NOT_COVERED: _ClassVar[DenialReason]
    DENIAL_REASON_LEGAL_BASIS_NOT_ALLOWED: _ClassVar[DenialReason]
    DENIAL_REASON_LEGAL_REFERENCE_NOT_IN_AGREEMENT: _ClassVar[DenialReason]
    DENIAL_REASON_CONSENT_REQUIRED: _ClassVar[DenialReason]
    DENIAL_REASON_AGREEMENT_NOT_IN_FORCE: _ClassVar[DenialReason]
    DENIAL_REASON_PROVIDER_VETO: _ClassVar[DenialReason]
    DENIAL_REASON_SELF_QUERY_FORBIDDEN: _ClassVar[DenialReason]
    DENIAL_REASON_OFFICER_NOT_AUTHENTICATED: _ClassVar[DenialReason]
    DENIAL_REASON_OFFICER_DOCUMENT_REQUIRED: _ClassVar[DenialReason]
    DENIAL_REASON_QUOTA_EXCEEDED: _ClassVar[DenialReason]
    DENIAL_REASON_NOT_REPRESENTED: _ClassVar[DenialReason]

class OfficerIdentification(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OFFICER_IDENTIFICATION_UNSPECIFIED: _ClassVar[OfficerIdentification]
    OFFICER_IDENTIFICATION_TOKEN: _ClassVar[OfficerIdentification]
    OFFICER_IDENTIFICATION_CERTIFICATE: _ClassVar[OfficerIdentification]
    OFFICER_IDENTIFICATION_INSECURE: _ClassVar[OfficerIdentification]
    OFFICER_IDENTIFICATION_AUTOMATED: _ClassVar[OfficerIdentification]
DOCUMENT_TYPE_UNSPECIFIED: DocumentType
DOCUMENT_TYPE_DNI: DocumentType
DOCUMENT_TYPE_NIE: DocumentType
DOCUMENT_TYPE_PASSPORT: DocumentType
LEGAL_BASIS_KIND_UNSPECIFIED: LegalBasisKind
LEGAL_BASIS_KIND_LAW: LegalBasisKind
LEGAL_BASIS_KIND_CONSENT: LegalBasisKind
LEGAL_BASIS_KIND_NO_OBJECTION: LegalBasisKind
PARAMETER_TYPE_UNSPECIFIED: ParameterType
PARAMETER_TYPE_STRING: ParameterType
PARAMETER_TYPE_INTEGER: ParameterType
PARAMETER_TYPE_BOOLEAN: ParameterType
PARAMETER_TYPE_DATE: ParameterType
DENIAL_REASON_UNSPECIFIED: DenialReason
DENIAL_REASON_UNKNOWN_CONSUMER: DenialReason
DENIAL_REASON_PROCEDURE_NOT_AUTHORISED: DenialReason
DENIAL_REASON_CERTIFICATE_TYPE_NOT_COVERED: DenialReason
DENIAL_REASON_LEGAL_BASIS_NOT_ALLOWED: DenialReason
DENIAL_REASON_LEGAL_REFERENCE_NOT_IN_AGREEMENT: DenialReason
DENIAL_REASON_CONSENT_REQUIRED: DenialReason
DENIAL_REASON_AGREEMENT_NOT_IN_FORCE: DenialReason
DENIAL_REASON_PROVIDER_VETO: DenialReason
DENIAL_REASON_SELF_QUERY_FORBIDDEN: DenialReason
DENIAL_REASON_OFFICER_NOT_AUTHENTICATED: DenialReason
DENIAL_REASON_OFFICER_DOCUMENT_REQUIRED: DenialReason
DENIAL_REASON_QUOTA_EXCEEDED: DenialReason
DENIAL_REASON_NOT_REPRESENTED: DenialReason
OFFICER_IDENTIFICATION_UNSPECIFIED: OfficerIdentification
OFFICER_IDENTIFICATION_TOKEN: OfficerIdentification
OFFICER_IDENTIFICATION_CERTIFICATE: OfficerIdentification
OFFICER_IDENTIFICATION_INSECURE: OfficerIdentification
OFFICER_IDENTIFICATION_AUTOMATED: OfficerIdentification

class Subject(_message.Message):
    __slots__ = ("document_type", "document_number")
    DOCUMENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    document_type: DocumentType
    document_number: str
    def __init__(self, document_type: _Optional[_Union[DocumentType, str]] = ..., document_number: _Optional[str] = ...) -> None: ...

class Consumer(_message.Message):
    __slots__ = ("organization_id", "unit", "officer_id", "officer_document")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    OFFICER_ID_FIELD_NUMBER: _ClassVar[int]
    OFFICER_DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    unit: str
    officer_id: str
    officer_document: Subject
    def __init__(self, organization_id: _Optional[str] = ..., unit: _Optional[str] = ..., officer_id: _Optional[str] = ..., officer_document: _Optional[_Union[Subject, _Mapping]] = ...) -> None: ...

class Purpose(_message.Message):
    __slots__ = ("procedure_code", "purpose_text", "case_file_id")
    PROCEDURE_CODE_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_TEXT_FIELD_NUMBER: _ClassVar[int]
    CASE_FILE_ID_FIELD_NUMBER: _ClassVar[int]
    procedure_code: str
    purpose_text: str
    case_file_id: str
    def __init__(self, procedure_code: _Optional[str] = ..., purpose_text: _Optional[str] = ..., case_file_id: _Optional[str] = ...) -> None: ...

class LegalBasis(_message.Message):
    __slots__ = ("kind", "reference")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    kind: LegalBasisKind
    reference: str
    def __init__(self, kind: _Optional[_Union[LegalBasisKind, str]] = ..., reference: _Optional[str] = ...) -> None: ...

class FieldSpec(_message.Message):
    __slots__ = ("name", "type", "required", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ParameterType
    required: bool
    description: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ParameterType, str]] = ..., required: _Optional[bool] = ..., description: _Optional[str] = ...) -> None: ...
