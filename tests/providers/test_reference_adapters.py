"""The reference adapters: catalog conformance, and answers that match the synthetic data."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from onceonly.fields import FieldSpec, FieldType
from onceonly.providers import synthetic
from onceonly.providers.reference import REFERENCE_ADAPTERS, reference_adapter
from onceonly.providers.sdk import ProviderAdapter, start_provider
from onceonly.providers.synthetic import LATEST_FISCAL_YEAR, Resident, find
from onceonly.v1 import common_pb2, provider_pb2, provider_pb2_grpc
from tests.conftest import broker_channel, provider_tls

CATALOG = Path(__file__).resolve().parents[2] / "broker" / "data" / "catalog.toml"
FOUND = provider_pb2.AttestResponse.RESULT_FOUND
NOT_FOUND = provider_pb2.AttestResponse.RESULT_SUBJECT_NOT_FOUND
_DOCUMENT_TYPES = {"DNI": common_pb2.DOCUMENT_TYPE_DNI, "NIE": common_pb2.DOCUMENT_TYPE_NIE}


def catalog() -> dict[str, Any]:
    with CATALOG.open("rb") as f:
        return tomllib.load(f)


def specs(entries: list[dict[str, Any]], *, claims: bool) -> tuple[FieldSpec, ...]:
    # Claims carry no `required` key in the catalog: every claim is required.
    return tuple(
        FieldSpec(
            e["name"], FieldType(e["type"]), True if claims else e["required"], e.get("description", "")
        )
        for e in entries
    )


@asynccontextmanager
async def stub_for(adapter: ProviderAdapter) -> AsyncIterator[provider_pb2_grpc.ProviderAsyncStub]:
    running = await start_provider(adapter, tls=provider_tls(adapter))
    channel = broker_channel(running.target)
    try:
        yield provider_pb2_grpc.ProviderStub(channel)
    finally:
        await channel.close()
        await running.stop(0)


def request(resident: Resident, certificate_type_id: str, **parameters: str) -> provider_pb2.AttestRequest:
    return provider_pb2.AttestRequest(
        request_id="req",
        trace_id="trace",
        certificate_type_id=certificate_type_id,
        subject=common_pb2.Subject(
            document_type=_DOCUMENT_TYPES[resident.document_type], document_number=resident.document_number
        ),
        parameters=parameters,
        legal_basis_kind=common_pb2.LEGAL_BASIS_KIND_CONSENT,
    )


@pytest.mark.parametrize("provider_id", sorted(REFERENCE_ADAPTERS))
def test_declarations_match_catalog(provider_id: str) -> None:
    data = catalog()
    adapter = reference_adapter(provider_id)
    [entry] = [p for p in data["providers"] if p["id"] == provider_id]
    assert (adapter.provider_id, adapter.name) == (entry["id"], entry["name"])
    expected = {
        ct["id"]: (specs(ct["parameters"], claims=False), specs(ct["claims"], claims=True))
        for ct in data["certificate_types"]
        if ct["provider"] == provider_id
    }
    declared = {s.certificate_type_id: (s.parameters, s.claims) for s in adapter.certificate_types()}
    assert declared == expected


@pytest.mark.parametrize("provider_id", sorted(REFERENCE_ADAPTERS))
async def test_describe_over_grpc(provider_id: str) -> None:
    adapter = reference_adapter(provider_id)
    async with stub_for(adapter) as stub:
        description = await stub.Describe(provider_pb2.DescribeRequest(), timeout=5)
    assert description.provider_id == provider_id
    assert description.name == adapter.name
    assert [t.certificate_type_id for t in description.certificate_types] == [
        s.certificate_type_id for s in adapter.certificate_types()
    ]


def test_reference_adapter_unknown_name_lists_known() -> None:
    with pytest.raises(KeyError, match="employment, registry, tax"):
        reference_adapter("police")


def test_constructors_take_population_keywords() -> None:
    for factory in REFERENCE_ADAPTERS.values():
        factory(population_size=50, seed=7)  # type: ignore[call-arg]


async def test_registry_answers() -> None:
    resident = find(lambda r: r.known_to_registry and r.municipality_code == "08019")
    async with stub_for(reference_adapter("registry")) as stub:
        here = await stub.Attest(request(resident, "registry.residence/v1", municipality_code="08019"))
        there = await stub.Attest(request(resident, "registry.residence/v1", municipality_code="28079"))
        household = await stub.Attest(request(resident, "registry.household/v1"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Attest(request(resident, "registry.residence/v1", municipality_code="Madrid"))
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.Attest(request(resident, "registry.residence/v1"))
    assert (here.result, dict(here.claims)) == (FOUND, {"registered": True})
    assert dict(there.claims) == {"registered": False}
    assert dict(household.claims) == {"household_size": resident.household_size}
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "municipality_code" in (caught.value.details() or "")
    assert missing.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "municipality_code" in (missing.value.details() or "")


async def test_tax_answers_income_below_threshold_without_income() -> None:
    residents = [r for r in synthetic.population() if r.known_to_tax][:40]
    async with stub_for(reference_adapter("tax")) as stub:
        for resident in residents:
            income = resident.income(2024)
            for threshold in (income, income + 1, 18_000):
                reply = await stub.Attest(
                    request(
                        resident,
                        "tax.income-below-threshold/v1",
                        threshold_eur=str(threshold),
                        fiscal_year="2024",
                    )
                )
                claims = dict(reply.claims)
                assert claims == {"below_threshold": income < threshold, "fiscal_year": 2024}
                assert set(claims) == {"below_threshold", "fiscal_year"}  # never the income itself
            latest = await stub.Attest(
                request(resident, "tax.income-below-threshold/v1", threshold_eur="18000")
            )
            assert dict(latest.claims) == {
                "below_threshold": resident.income(LATEST_FISCAL_YEAR) < 18_000,
                "fiscal_year": LATEST_FISCAL_YEAR,
            }
            compliance = await stub.Attest(request(resident, "tax.compliance/v1"))
            assert dict(compliance.claims) == {"compliant": resident.tax_compliant}


@pytest.mark.parametrize(
    ("parameters", "field"), [({"fiscal_year": "2019"}, "fiscal_year"), ({}, "threshold_eur")]
)
async def test_tax_rejects_bad_parameters(parameters: dict[str, str], field: str) -> None:
    resident = find(lambda r: r.known_to_tax)
    params = {"threshold_eur": "-5"} if field == "threshold_eur" else {"threshold_eur": "18000", **parameters}
    async with stub_for(reference_adapter("tax")) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Attest(request(resident, "tax.income-below-threshold/v1", **params))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")


async def test_employment_answers() -> None:
    unemployed = find(lambda r: r.known_to_employment and r.registered_unemployed)
    in_debt = find(lambda r: r.known_to_employment and not r.social_security_compliant)
    async with stub_for(reference_adapter("employment")) as stub:
        status = await stub.Attest(request(unemployed, "employment.unemployment-status/v1"))
        compliance = await stub.Attest(request(in_debt, "employment.social-security-compliance/v1"))
    assert dict(status.claims) == {"registered_unemployed": True}
    assert dict(compliance.claims) == {"compliant": False}


@pytest.mark.parametrize(
    ("provider_id", "certificate_type_id", "parameters"),
    [
        ("registry", "registry.household/v1", {}),
        ("tax", "tax.compliance/v1", {}),
        ("employment", "employment.unemployment-status/v1", {}),
    ],
)
async def test_subject_unknown_to_agency(
    provider_id: str, certificate_type_id: str, parameters: dict[str, str]
) -> None:
    stranger = find(lambda r: not getattr(r, f"known_to_{provider_id}"))
    async with stub_for(reference_adapter(provider_id)) as stub:
        reply = await stub.Attest(request(stranger, certificate_type_id, **parameters))
    assert reply.result == NOT_FOUND
    assert not reply.HasField("claims")


async def test_unknown_certificate_type_is_not_found() -> None:
    async with stub_for(reference_adapter("tax")) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Attest(request(find(lambda r: True), "registry.household/v1"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
