"""One peer address cannot take every connection: calls on more connections than its cap are
refused before anything is done for them, while its other connections and other peers go on."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from onceonly.peers import PeerConnections, TooManyConnections, split_peer
from onceonly.v1 import broker_pb2, broker_pb2_grpc
from tests.broker.oversight_workload import failure_of
from tests.conftest import Platform


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_peer_strings() -> None:
    assert split_peer("ipv4:10.0.0.7:52114") == ("10.0.0.7", "52114")
    assert split_peer("ipv6:[::1]:50051") == ("::1", "50051")
    assert split_peer("ipv6:%5B::1%5D:50051") == ("::1", "50051")
    assert split_peer("unix:/tmp/socket") is None


def test_a_connection_counts_while_in_use_and_for_a_moment_after() -> None:
    clock = Clock()
    peers = PeerConnections(2, linger_s=5, clock=clock)
    a = peers.enter("ipv4:10.0.0.7:1")
    b = peers.enter("ipv4:10.0.0.7:2")
    with pytest.raises(TooManyConnections) as refused:
        peers.enter("ipv4:10.0.0.7:3")
    assert refused.value.reason == "TOO_MANY_CONNECTIONS" and "10.0.0.7" in refused.value.message
    peers.leave(peers.enter("ipv4:10.0.0.7:1"))  # more calls on a counted connection: always
    peers.leave(peers.enter("ipv4:10.0.0.8:1"))  # another address: its own count
    peers.leave(a)
    clock.now += 4
    with pytest.raises(TooManyConnections):
        peers.enter("ipv4:10.0.0.7:3")  # connection 1 ended 4 s ago: it may be about to call again
    peers.leave(peers.enter("ipv4:10.0.0.7:1"))  # (its second call ended just now)
    clock.now += 6
    assert peers.connections("10.0.0.7") == 1  # connection 2's call is still in flight
    c = peers.enter("ipv4:10.0.0.7:3")
    peers.leave(b)
    peers.leave(c)
    with pytest.raises(ValueError):
        PeerConnections(0)


async def test_one_address_cannot_hold_every_connection(platform: Platform) -> None:
    """The attack: one host opens connection after connection. Past its cap each new connection's
    calls are refused RESOURCE_EXHAUSTED, naming the rule, while its first connections and a caller
    from another address are served."""
    await platform.start_reference_providers()
    app = await platform.start_broker(listen="localhost:0", max_connections_per_peer=3)
    port = app.target.rsplit(":", 1)[1]
    request = broker_pb2.GetCatalogRequest()
    credentials = platform.pki.consumer("L01280796").channel_credentials()

    def connect(host: str) -> broker_pb2_grpc.BrokerAsyncStub:
        # One channel each, so one connection each (no sharing of subchannels between channels).
        channel = grpc.aio.secure_channel(
            f"{host}:{port}", credentials, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        platform._channels.append(channel)
        return broker_pb2_grpc.BrokerStub(channel)

    first = [connect("127.0.0.1") for _ in range(3)]
    for stub in first:
        await stub.GetCatalog(request, timeout=5)
    flood = connect("127.0.0.1")
    failure = await failure_of(flood.GetCatalog(request, timeout=5))
    assert failure.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert failure.info is not None and failure.info.reason == "TOO_MANY_CONNECTIONS"
    assert failure.info.metadata["max_connections_per_peer"] == "3"
    for stub in first:  # the connections already in use go on
        await stub.GetCatalog(request, timeout=5)
    other = connect("[::1]")  # another address (IPv6 loopback)
    assert (await other.GetCatalog(request, timeout=5)).certificate_types


async def test_a_connection_that_never_completes_its_handshake_is_dropped(platform: Platform) -> None:
    """A peer that opens TCP connections and never speaks TLS holds each only until the handshake
    deadline (10 s; gRPC's own default is 120 s)."""
    await platform.start_reference_providers()
    app = await platform.start_broker()
    host, port = app.target.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        assert await asyncio.wait_for(reader.read(1), timeout=30) == b"", "the server closed it"
    finally:
        writer.close()
