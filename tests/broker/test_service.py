"""The verification and oversight services on in-memory fakes of their ports: no sockets, no database.

The same behaviours are tested end to end over gRPC elsewhere; here each one is pinned on the
core itself, which is what a new port implementation (another database, another transport)
must keep.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import orjson
import pytest

from onceonly import jose
from onceonly.broker import idempotency
from onceonly.broker.attestation import AttestationSigner, KeyRing
from onceonly.broker.auth import Principal
from onceonly.broker.catalog import Catalog
from onceonly.broker.domain import (
    Agreement,
    CheckRequest,
    CheckStatus,
    ConsumerRef,
    Decision,
    DenialReason,
    DocumentType,
    LegalBasis,
    LegalBasisKind,
    Organisation,
    PolicySnapshot,
    PurposeRef,
    StoredReply,
    SubjectId,
    VerificationRequest,
)
from onceonly.broker.errors import DuplicateRequest, LedgerUnavailable, PolicyDenied
from onceonly.broker.oversight import OversightService, Scope
from onceonly.broker.policy import Policy
from onceonly.broker.providers import ProvidedType
from onceonly.broker.service import ServiceSettings, VerificationService
from onceonly.broker.traces import TraceFilter
from onceonly.broker.usage import Grouping
from tests.broker.fakes import FakeProvider, MemoryLedger, MemoryTraceQueries, TaggedPseudonyms

ORG, OTHER = "L01280796", "L08019030"
RESIDENCE, TAX = "registry.residence/v1", "tax.compliance/v1"
LAW_REF = "Ley 39/2015 art. 28"
SUBJECT = SubjectId(DocumentType.DNI, "12345678Z")
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def served(catalog: Catalog, provider_id: str) -> dict[str, ProvidedType]:
    return {
        d.id: ProvidedType(d.id, tuple(d.parameters), tuple(d.claims)) for d in catalog.served_by(provider_id)
    }


@dataclasses.dataclass
class Core:
    service: VerificationService
    ledger: MemoryLedger
    providers: dict[str, FakeProvider]
    keys: KeyRing


@pytest.fixture
def core(catalog: Catalog) -> Core:
    snapshot = PolicySnapshot(
        organisations={ORG: Organisation(ORG, "Madrid — Housing Office")},
        agreements=(
            Agreement(
                id="agr-1",
                organization_id=ORG,
                procedure_codes=frozenset({"HOUSING-RENT-SUBSIDY"}),
                certificate_type_ids=frozenset({RESIDENCE, TAX}),
                legal_bases=frozenset({LegalBasisKind.LAW}),
                legal_references=frozenset({LAW_REF}),
                consent_required=False,
                valid_from=datetime(2025, 1, 1, tzinfo=UTC),
                valid_until=None,
            ),
        ),
        vetoes=(),
    )
    policy = Policy(snapshot, catalog)
    providers = {
        "registry": FakeProvider("registry", served(catalog, "registry"), {RESIDENCE: {"registered": True}}),
        "tax": FakeProvider("tax", served(catalog, "tax"), {TAX: {"compliant": False}}),
        "employment": FakeProvider("employment", served(catalog, "employment")),
    }
    ledger = MemoryLedger()
    keys = KeyRing.generate()
    service = VerificationService(
        catalog=catalog,
        policy=lambda: policy,
        providers=providers,
        signer=AttestationSigner(keys, "onceonly-test"),
        ledger=ledger,
        pseudonymiser=TaggedPseudonyms(),
        settings=ServiceSettings(provider_timeout_s=0.5),
        clock=lambda: NOW,
    )
    return Core(service, ledger, providers, keys)


def request(
    request_id: str = "req-1", *checks: str, procedure: str = "HOUSING-RENT-SUBSIDY"
) -> VerificationRequest:
    wanted = checks or (RESIDENCE, TAX)
    return VerificationRequest(
        request_id=request_id,
        consumer=ConsumerRef(ORG, "Rent subsidies", "officer-7"),
        purpose=PurposeRef(procedure, "Rent subsidy application", "EXP-2026-001"),
        legal_basis=LegalBasis(LegalBasisKind.LAW, LAW_REF),
        subject=SUBJECT,
        checks=tuple(
            CheckRequest(c, {"municipality_code": "28079"} if c == RESIDENCE else {}) for c in wanted
        ),
        digest=f"digest-of-{request_id}-{procedure}-{'-'.join(wanted)}",
    )


async def test_granted_request_is_attested_and_traced_before_it_returns(core: Core) -> None:
    result = await core.service.verify(request())

    assert [(o.certificate_type_id, o.status) for o in result.outcomes] == [
        (RESIDENCE, CheckStatus.VERIFIED),
        (TAX, CheckStatus.VERIFIED),
    ]
    public = core.keys.public_keys()
    for outcome in result.outcomes:
        assert outcome.attestation is not None
        kid = jose.parse(outcome.attestation)[0]["kid"]
        _, payload = jose.verify(outcome.attestation, public[kid])
        assert payload["sub"] == "DNI:12345678Z" and payload["trace_id"] == result.trace_id
        assert payload["claims"] == outcome.claims
    [record] = core.ledger.records
    assert (record.trace_id, record.decision) == (result.trace_id, Decision.GRANTED)
    assert SUBJECT.document_number not in repr(record)  # a pseudonym, never the document number
    assert [o.status for o in record.outcomes] == [CheckStatus.VERIFIED, CheckStatus.VERIFIED]


async def test_a_denial_is_traced_and_no_provider_is_asked(core: Core) -> None:
    with pytest.raises(PolicyDenied) as denied:
        await core.service.verify(request("req-2", procedure="SOMETHING-ELSE"))

    assert denied.value.denial_reason is DenialReason.PROCEDURE_NOT_AUTHORISED
    [record] = core.ledger.records
    assert (record.decision, record.denial_reason) == (Decision.DENIED, DenialReason.PROCEDURE_NOT_AUTHORISED)
    assert record.trace_id == denied.value.trace_id
    assert all(not p.calls for p in core.providers.values())


async def test_a_retry_gets_the_same_answer_and_another_body_is_refused(core: Core) -> None:
    first = await core.service.verify(request("req-3", RESIDENCE))
    again = await core.service.verify(request("req-3", RESIDENCE))
    assert again == first
    assert len(core.providers["registry"].calls) == 1 and len(core.ledger.records) == 1
    with pytest.raises(DuplicateRequest):
        await core.service.verify(request("req-3", TAX))


async def test_concurrent_duplicates_are_decided_once(core: Core) -> None:
    results = await asyncio.gather(*(core.service.verify(request("req-4")) for _ in range(5)))
    assert len({r.trace_id for r in results}) == 1
    assert len(core.providers["tax"].calls) == 1 and len(core.ledger.records) == 1


async def test_a_retry_after_a_restart_is_answered_from_the_ledger(core: Core, catalog: Catalog) -> None:
    first = await core.service.verify(request("req-5", TAX))
    restarted = dataclasses.replace(core, service=_same_wiring(core, catalog))
    again = await restarted.service.verify(request("req-5", TAX))
    assert again.trace_id == first.trace_id
    assert len(core.providers["tax"].calls) == 2  # asked again, but the first answer stands
    assert len(core.ledger.records) == 1


def _same_wiring(core: Core, catalog: Catalog) -> VerificationService:
    old = core.service
    return VerificationService(
        catalog=catalog,
        policy=old._policy,
        providers=core.providers,
        signer=AttestationSigner(core.keys, "onceonly-test"),
        ledger=core.ledger,
        pseudonymiser=TaggedPseudonyms(),
        clock=lambda: NOW,
    )


async def test_no_answer_leaves_without_its_trace(core: Core) -> None:
    core.ledger.broken = True
    with pytest.raises(LedgerUnavailable):
        await core.service.verify(request("req-6"))
    assert core.ledger.records == []


async def test_a_silent_provider_fails_its_own_check_only(core: Core) -> None:
    core.providers["tax"].stall = True
    result = await core.service.verify(request("req-7"))
    assert [o.status for o in result.outcomes] == [CheckStatus.VERIFIED, CheckStatus.TIMEOUT]
    assert result.outcomes[1].attestation is None


async def test_a_provider_that_disagrees_with_the_catalog_is_not_used(core: Core) -> None:
    core.providers["tax"].say_i_am = "customs"
    result = await core.service.verify(request("req-8", TAX))
    [outcome] = result.outcomes
    assert outcome.status is CheckStatus.ERROR and "catalog" in outcome.detail
    assert core.providers["tax"].calls == []
    with pytest.raises(Exception, match="customs"):
        await core.service.check_providers()


async def test_a_malformed_answer_is_an_error_not_an_attestation(core: Core) -> None:
    core.providers["tax"].claims = {TAX: {"compliant": "perhaps"}}
    result = await core.service.verify(request("req-9", TAX))
    assert result.outcomes[0].status is CheckStatus.ERROR and result.outcomes[0].attestation is None


def test_replies_stored_in_the_positional_form_of_earlier_versions_still_replay() -> None:
    req = request("req-10", TAX)
    legacy = orjson.dumps(
        {
            "request_id": "req-10",
            "trace_id": "t" * 32,
            "decided_at": NOW.isoformat(),
            "outcomes": [[TAX, "tax", "VERIFIED", {"compliant": True}, "jws", "", "", 12]],
        }
    )
    result = idempotency.replay(StoredReply(ORG, "req-10", req.digest, "response", legacy), req)
    assert result.outcomes[0].claims == {"compliant": True} and result.outcomes[0].latency_ms == 12
    denied = orjson.dumps({"trace_id": "t" * 32, "violations": [["PROVIDER_VETO", TAX, "vetoed"]]})
    with pytest.raises(PolicyDenied) as caught:
        idempotency.replay(StoredReply(ORG, "req-10", req.digest, "denied", denied), req)
    assert caught.value.denial_reason is DenialReason.PROVIDER_VETO


async def test_oversight_on_fakes_scopes_a_provider_to_its_own_checks(core: Core) -> None:
    await core.service.verify(request("req-11"))
    queries = MemoryTraceQueries(core.ledger, {ORG: "Madrid — Housing Office"})
    oversight = OversightService(queries, core.ledger, TaggedPseudonyms())

    page = await oversight.list_traces(TraceFilter(), Scope(provider_id="tax"))
    [entry] = page.entries
    assert [o.provider_id for o in entry.record.outcomes] == ["tax"]
    assert entry.record.certificate_type_ids == (TAX,)
    usage = await oversight.usage(Grouping.PROVIDER, Scope(provider_id="tax"))
    assert [(row.key, row.total) for row in usage.rows] == [("tax", 1)]

    principal = Principal("oversight", "AEPD", None, "mtls")
    report = await oversight.resident_report(
        principal, SUBJECT, "complaint 2026/17", LegalBasis(LegalBasisKind.LAW, "RGPD art. 58")
    )
    assert [a.organisation_name for a in report.accesses] == ["Madrid — Housing Office"]
    assert core.ledger.records[-1].trace_id == report.report_trace_id  # the lookup itself is traced
