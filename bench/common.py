"""Pieces shared by the bench processes: the request shape, subjects, CPU accounting."""

from __future__ import annotations

import contextlib
import os
import platform
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from onceonly.broker.storage import create_engine, normalise_url
from onceonly.v1 import broker_pb2, common_pb2, provider_pb2
from onceonly.wire import DOCUMENT_TYPE

VERIFY_METHOD = "/onceonly.v1.Broker/Verify"
VERIFY_BULK_METHOD = "/onceonly.v1.Broker/VerifyBulk"
ATTEST_METHOD = "/onceonly.v1.Provider/Attest"

ORGANISATION = "L01280796"
UNIT = "Housing subsidies"
OFFICER = "officer-bench"
PROCEDURE = "HOUSING-RENT-SUBSIDY"
PURPOSE_TEXT = "Rent subsidy application (load test)"
LAW = "Ley 12/2023 art. 17"

# The request shape of the benchmark: three checks, one per reference provider.
CHECKS: tuple[tuple[str, dict[str, str]], ...] = (
    ("registry.residence/v1", {"municipality_code": "28079"}),
    ("tax.compliance/v1", {}),
    ("employment.unemployment-status/v1", {}),
)
DIRECT_CERTIFICATE_TYPE = "tax.compliance/v1"


def subjects(limit: int = 256) -> list[common_pb2.Subject]:
    """Residents of the synthetic population known to all three agencies."""
    from onceonly.providers.synthetic import population

    out = []
    for r in population():
        if r.known_to_registry and r.known_to_tax and r.known_to_employment:
            out.append(
                common_pb2.Subject(
                    document_type=DOCUMENT_TYPE.number(r.document_type), document_number=r.document_number
                )
            )
            if len(out) >= limit:
                break
    return out


def consumer() -> common_pb2.Consumer:
    return common_pb2.Consumer(organization_id=ORGANISATION, unit=UNIT, officer_id=OFFICER)


def purpose(case_file_id: str = "EXP-BENCH-0001") -> common_pb2.Purpose:
    return common_pb2.Purpose(procedure_code=PROCEDURE, purpose_text=PURPOSE_TEXT, case_file_id=case_file_id)


def legal_basis() -> common_pb2.LegalBasis:
    return common_pb2.LegalBasis(kind=common_pb2.LEGAL_BASIS_KIND_LAW, reference=LAW)


def checks() -> list[broker_pb2.Check]:
    return [broker_pb2.Check(certificate_type_id=t, parameters=p) for t, p in CHECKS]


def verify_templates(limit: int = 256) -> list[bytes]:
    """Serialized VerifyRequests without ``request_id``, one per subject.

    The load generator prepends field 1 (``request_id``) to one of these per call, so a call
    costs it no protobuf work: proto3 parsers accept fields in any order.
    """
    return [
        broker_pb2.VerifyRequest(
            consumer=consumer(), purpose=purpose(), legal_basis=legal_basis(), subject=s, checks=checks()
        ).SerializeToString()
        for s in subjects(limit)
    ]


def attest_templates(limit: int = 256) -> list[bytes]:
    """Serialized AttestRequests (tax.compliance/v1) without ``request_id``, one per subject."""
    return [
        provider_pb2.AttestRequest(
            trace_id="bench-direct",
            certificate_type_id=DIRECT_CERTIFICATE_TYPE,
            subject=s,
            consumer_organization_id=ORGANISATION,
            procedure_code=PROCEDURE,
            legal_basis_kind=common_pb2.LEGAL_BASIS_KIND_LAW,
        ).SerializeToString()
        for s in subjects(limit)
    ]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def with_request_id(template: bytes, request_id: str) -> bytes:
    """``template`` with field 1 (string ``request_id``) added: a valid serialized message."""
    rid = request_id.encode()
    return b"\x0a" + _varint(len(rid)) + rid + template


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by process ``pid`` (Linux ``/proc/<pid>/stat``)."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """User + system CPU time used so far by each thread of ``pid``, by OS thread id."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that just ended
            out[int(task.name)] = _stat_cpu_seconds(task / "stat")
    return out


def _stat_cpu_seconds(stat_path: Path) -> float:
    stat = stat_path.read_text("ascii")
    # The command name (field 2) may contain spaces; fields after it are space separated.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _CLK_TCK


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "implementation": platform.python_implementation()}
    for dist in ("onceonly", "grpcio", "protobuf", "uvloop", "cryptography", "sqlalchemy", "pyjwt"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def machine() -> dict[str, object]:
    cpu_model = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "platform": platform.platform(),
    }


class NotPostgreSQL(ValueError):
    """The database URL names another database than PostgreSQL."""


@contextlib.contextmanager
def throwaway_schema(database_url: str) -> Iterator[sa.Engine]:
    """An engine on a schema of its own on a PostgreSQL server, dropped afterwards
    (:class:`NotPostgreSQL` for another database)."""
    admin = create_engine(database_url, poolclass=NullPool)
    if admin.dialect.name != "postgresql":
        raise NotPostgreSQL("the benchmark runs on PostgreSQL")
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = normalise_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield create_engine(url, busy_timeout_ms=600_000)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
