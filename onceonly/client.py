"""The public Python client of onceonly: verify facts through the broker, and oversee it.

    from onceonly.client import BrokerClient, Check, ClientTls, Consumer, LegalBasis, Purpose, Subject

Everything a caseworker application or an oversight tool needs is importable from here; the
modules behind it (``onceonly.consumers.…``) may change without notice.
"""

from onceonly.consumers.client import (
    AlreadyExists,
    BrokerClient,
    BrokerError,
    BulkItem,
    Check,
    Consumer,
    Denied,
    Exhausted,
    InsecureIdentity,
    InvalidArgument,
    LegalBasis,
    NotFound,
    Outcome,
    Purpose,
    Subject,
    Unauthenticated,
    Unavailable,
    Verification,
    VerificationJob,
    verify_attestation,
)
from onceonly.consumers.oversight import (
    Access,
    OversightClient,
    ResidentReport,
    Trace,
    TracedCheck,
    TraceQuery,
    Usage,
    UsageRow,
)
from onceonly.pki import ClientTls

__all__ = [
    "Access",
    "AlreadyExists",
    "BrokerClient",
    "BrokerError",
    "BulkItem",
    "Check",
    "ClientTls",
    "Consumer",
    "Denied",
    "Exhausted",
    "InsecureIdentity",
    "InvalidArgument",
    "LegalBasis",
    "NotFound",
    "Outcome",
    "OversightClient",
    "Purpose",
    "ResidentReport",
    "Subject",
    "Trace",
    "TraceQuery",
    "TracedCheck",
    "Unauthenticated",
    "Unavailable",
    "Usage",
    "UsageRow",
    "Verification",
    "VerificationJob",
    "verify_attestation",
]
