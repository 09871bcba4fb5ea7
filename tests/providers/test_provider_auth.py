"""A provider adapter answers the broker, and only the broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from onceonly.pki import CertificateAuthority, ClientTls
from onceonly.providers import synthetic
from onceonly.providers.reference import reference_adapter
from onceonly.providers.sdk import start_provider
from onceonly.serving import RunningServer
from onceonly.v1 import common_pb2, provider_pb2, provider_pb2_grpc
from tests.conftest import (
    CountingAdapter,
    health_stub,
    known_everywhere,
    provider_tls,
    rpc_failure,
    session_pki,
)


def attest_request() -> provider_pb2.AttestRequest:
    r = synthetic.find(known_everywhere)
    doc = common_pb2.DOCUMENT_TYPE_DNI if r.document_type == "DNI" else common_pb2.DOCUMENT_TYPE_NIE
    return provider_pb2.AttestRequest(
        request_id="req-1",
        trace_id="trace-1",
        certificate_type_id="tax.compliance/v1",
        subject=common_pb2.Subject(document_type=doc, document_number=r.document_number),
        consumer_organization_id="L01280796",
        procedure_code="HOUSING-RENT-SUBSIDY",
        legal_basis_kind=common_pb2.LEGAL_BASIS_KIND_LAW,
    )


@asynccontextmanager
async def tax_provider(*, insecure: bool = False) -> AsyncIterator[tuple[RunningServer, CountingAdapter]]:
    adapter = CountingAdapter(reference_adapter("tax"))
    if insecure:
        running = await start_provider(adapter, insecure=True)
    else:
        running = await start_provider(adapter, tls=provider_tls(adapter))
    try:
        yield running, adapter
    finally:
        await running.stop(0)


async def attest_as(target: str, tls: ClientTls | None, metadata: tuple[tuple[str, str], ...] = ()) -> object:
    channel = (
        grpc.aio.insecure_channel(target)
        if tls is None
        else grpc.aio.secure_channel(target, tls.channel_credentials())
    )
    async with channel:
        return await provider_pb2_grpc.ProviderStub(channel).Attest(
            attest_request(), timeout=5, metadata=metadata
        )


async def test_the_broker_certificate_is_answered() -> None:
    async with tax_provider() as (running, adapter):
        reply = await attest_as(running.target, session_pki().broker)

    assert reply.result == provider_pb2.AttestResponse.RESULT_FOUND  # type: ignore[attr-defined]
    assert adapter.calls == 1


@pytest.mark.parametrize("who", ["consumer", "oversight"])
async def test_a_provider_called_directly_with_another_certificate_is_refused(who: str) -> None:
    pki = session_pki()
    tls = pki.consumer() if who == "consumer" else ClientTls.from_dir(pki.dir, "oversight")
    async with tax_provider() as (running, adapter):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await attest_as(running.target, tls)
        with pytest.raises(grpc.aio.AioRpcError) as described:
            async with grpc.aio.secure_channel(running.target, tls.channel_credentials()) as channel:
                await provider_pb2_grpc.ProviderStub(channel).Describe(
                    provider_pb2.DescribeRequest(), timeout=5
                )

    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "CALLER_NOT_BROKER" in (caught.value.details() or "")
    assert described.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert adapter.calls == 0


async def test_another_provider_may_not_call_a_provider() -> None:
    async with tax_provider() as (running, adapter):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await attest_as(running.target, ClientTls.from_dir(session_pki().dir, "registry"))

    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert adapter.calls == 0


async def test_a_broker_certificate_from_another_ca_fails_the_handshake(tmp_path: Path) -> None:
    rogue = CertificateAuthority.load_or_create(tmp_path / "rogue")
    rogue.issue("broker", role="broker", organization_id="onceonly")
    tls = ClientTls(
        session_pki().dir / "ca.pem", tmp_path / "rogue/broker.pem", tmp_path / "rogue/broker-key.pem"
    )
    async with tax_provider() as (running, adapter):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await attest_as(running.target, tls)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert adapter.calls == 0


async def test_no_client_certificate_or_plaintext_fails_the_handshake() -> None:
    async with tax_provider() as (running, adapter):
        for tls in (session_pki().ca_only, None):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await attest_as(running.target, tls)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert adapter.calls == 0


async def test_health_is_open_to_any_peer_of_the_platform_ca() -> None:
    async with (
        tax_provider() as (running, _),
        grpc.aio.secure_channel(running.target, session_pki().consumer().channel_credentials()) as ch,
    ):
        reply = await health_stub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_insecure_mode_answers_only_a_caller_naming_itself_the_broker() -> None:
    async with tax_provider(insecure=True) as (running, adapter):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await attest_as(running.target, None)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        reply = await attest_as(running.target, None, (("x-onceonly-role", "broker"),))
    assert reply.result == provider_pb2.AttestResponse.RESULT_FOUND  # type: ignore[attr-defined]
    assert adapter.calls == 1


async def test_a_provider_needs_tls_or_an_explicit_insecure_mode() -> None:
    with pytest.raises(ValueError, match="insecure=True"):
        await start_provider(reference_adapter("tax"))


async def test_a_revoked_broker_certificate_is_refused_without_a_restart() -> None:
    pki = session_pki()
    tls = pki.issue("broker-to-revoke", role="broker", org="onceonly")
    async with tax_provider() as (running, adapter):
        await attest_as(running.target, tls)
        pki.ca.revoke("broker-to-revoke")
        await asyncio.sleep(1.2)  # a server looks at the list again at most once a second
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await attest_as(running.target, tls)
        # The broker's own certificate is not affected.
        await attest_as(running.target, ClientTls.from_dir(pki.dir, "broker"))
    failure = rpc_failure(caught.value)
    assert failure.code == grpc.StatusCode.UNAUTHENTICATED
    assert failure.info is not None and failure.info.reason == "CERTIFICATE_REVOKED"
    assert adapter.calls == 2
