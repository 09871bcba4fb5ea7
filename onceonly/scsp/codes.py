"""The SCSP status codes onceonly answers with (``Estado/CodigoEstado``).

``0002`` and ``0003`` are states of a petition; every other code is an error, carried in a SOAP
fault's ``sf:Atributos/Estado`` (and its faultstring, ``[code] text``), or in a transmission's own
``DatosEspecificos/Estado`` when one subject of an asynchronous petition failed.
"""

from __future__ import annotations

PENDING = "0002"
"""Petición en proceso: an asynchronous petition is taken, or not done yet."""
DONE = "0003"
"""Tramitada: every transmission is answered."""

UNKNOWN_CONSUMER = "0301"
NOT_COVERED = "0314"
LEGAL_BASIS = "0236"
CONSENT_REQUIRED = "0318"
VETOED = "0319"
NOT_IN_FORCE = "0320"
SELF_QUERY = "0256"
UNKNOWN_CERTIFICATE = "0234"
BAD_DNI = "0231"
BAD_NIE = "0240"
MALFORMED = "0401"
SCHEMA_INVALID = "0402"
DUPLICATE_PETITION = "0229"
SYNC_MANY = "0415"
COUNT_MISMATCH = "0414"
DUPLICATE_SOLICITUD = "0419"
BAD_SIGNATURE = "0305"
NO_SIGNATURE = "0307"
CERTIFICATE_NOT_REQUESTER = "0235"
PROVIDER_TIMEOUT = "0227"
PROVIDER_UNAVAILABLE = "0242"
OVERLOADED = "0901"
LEDGER_UNAVAILABLE = "0512"
ASYNC_UNKNOWN = "0244"
ASYNC_WAS_SYNC = "0245"
ASYNC_EXPIRED = "0241"
ASYNC_OTHER_ORGANISATION = "0317"
ASYNC_COUNT = "0237"
INTERNAL = "0502"
"""An error of the platform itself (nothing of it is told to the caller but this code)."""

LITERALS = {
    PENDING: "Petición en proceso",
    DONE: "Tramitada",
    UNKNOWN_CONSUMER: "Organismo solicitante desconocido",
    NOT_COVERED: "Procedimiento o certificado no autorizado para el organismo solicitante",
    LEGAL_BASIS: "Base legal no admitida",
    CONSENT_REQUIRED: "Se requiere el consentimiento del titular",
    VETOED: "El emisor ha vetado el acuerdo",
    NOT_IN_FORCE: "El acuerdo no está en vigor",
    SELF_QUERY: "El funcionario no puede consultar sus propios datos",
    UNKNOWN_CERTIFICATE: "Código de certificado desconocido",
    BAD_DNI: "Documento DNI/NIF incorrecto",
    BAD_NIE: "Documento NIE incorrecto",
    MALFORMED: "La estructura del mensaje no es correcta",
    SCHEMA_INVALID: "El mensaje no se ajusta al esquema",
    DUPLICATE_PETITION: "La petición ya ha sido tramitada o ya existe en el sistema",
    SYNC_MANY: "Una petición síncrona solo admite una solicitud",
    COUNT_MISMATCH: "El número de elementos no coincide con las solicitudes",
    DUPLICATE_SOLICITUD: "Identificador de solicitud repetido",
    BAD_SIGNATURE: "Firma no válida",
    NO_SIGNATURE: "La petición no está firmada",
    CERTIFICATE_NOT_REQUESTER: "El certificado firmante no corresponde al solicitante",
    PROVIDER_TIMEOUT: "El emisor no respondió a tiempo",
    PROVIDER_UNAVAILABLE: "El emisor no está disponible",
    OVERLOADED: "Servicio saturado: reintente más tarde",
    LEDGER_UNAVAILABLE: "No se puede registrar la traza: reintente más tarde",
    ASYNC_UNKNOWN: "Petición asíncrona desconocida",
    ASYNC_WAS_SYNC: "La petición fue síncrona",
    ASYNC_EXPIRED: "La respuesta ha caducado",
    ASYNC_OTHER_ORGANISATION: "La petición pertenece a otro organismo",
    ASYNC_COUNT: "El número de elementos no coincide con la petición",
    INTERNAL: "Error interno",
}
