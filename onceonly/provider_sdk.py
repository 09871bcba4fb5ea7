"""The public provider SDK: put an agency's own system behind the onceonly ``Provider`` service.

    from onceonly.provider_sdk import AttestQuery, CertificateTypeSupport, ProviderAdapter

Subclass :class:`ProviderAdapter`, describe what it serves with :class:`CertificateTypeSupport`
(parameters and claims as :class:`FieldSpec`), answer :meth:`ProviderAdapter.attest`, and run it
with :func:`serve_provider` (or :func:`start_provider` inside your own event loop). The modules
behind it (``onceonly.providers.…``) may change without notice.
"""

from onceonly.fields import FieldSpec, FieldType
from onceonly.pki import TlsConfig
from onceonly.providers.sdk import (
    AttestQuery,
    CertificateTypeSupport,
    Deferred,
    InvalidQuery,
    ProviderAdapter,
    SubjectNotFound,
    parse_parameters,
    serve_provider,
    start_provider,
)

__all__ = [
    "AttestQuery",
    "CertificateTypeSupport",
    "Deferred",
    "FieldSpec",
    "FieldType",
    "InvalidQuery",
    "ProviderAdapter",
    "SubjectNotFound",
    "TlsConfig",
    "parse_parameters",
    "serve_provider",
    "start_provider",
]
