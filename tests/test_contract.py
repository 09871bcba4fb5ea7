"""The contract for every language: protos/ compiles alone, and reflection v1 describes every service."""

from __future__ import annotations

from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_tools import protoc

from tests.conftest import Platform

PROTOS = Path(__file__).resolve().parents[1] / "protos"


def test_protos_compile_with_only_the_repository_files(tmp_path: Path) -> None:
    """``protoc -I protos`` with no other include path: every import is shipped in protos/, and so
    are the error details the broker sends (``google/rpc/error_details.proto``)."""
    out = tmp_path / "contract.pb"
    files = sorted(str(p) for p in PROTOS.rglob("*.proto"))
    code = protoc.main(["protoc", f"-I{PROTOS}", "--include_imports", f"--descriptor_set_out={out}", *files])
    assert code == 0
    contract = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    names = {f.name for f in contract.file}
    # What a client needs to decode error details is part of the set.
    assert {"google/rpc/status.proto", "google/rpc/error_details.proto"} <= names
    assert {"onceonly/v1/broker.proto", "onceonly/v1/oversight.proto", "onceonly/v1/provider.proto"} <= names


async def _reflect(
    channel: grpc.aio.Channel, service: str, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    """Ask a reflection service (``v1`` or ``v1alpha``: the messages are the same on the wire)."""
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )(timeout=10)
    replies: list[reflection_pb2.ServerReflectionResponse] = []
    for request in requests:
        await call.write(request)
        reply = await call.read()
        assert isinstance(reply, reflection_pb2.ServerReflectionResponse)
        replies.append(reply)
    await call.done_writing()
    return replies


async def test_reflection_v1_lists_and_describes_every_service(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker()
    channel = platform.channel(app.target)
    for service in ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"):
        [listing] = await _reflect(channel, service, reflection_pb2.ServerReflectionRequest(list_services=""))
        names = {s.name for s in listing.list_services_response.service}
        assert {
            "onceonly.v1.Broker",
            "onceonly.v1.Oversight",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
        } <= names, service

    # Describe as a client would: fetch the file of each service, then build the descriptors.
    wanted = ["onceonly.v1.Broker", "onceonly.v1.Oversight", "grpc.reflection.v1.ServerReflection"]
    replies = await _reflect(
        channel,
        "grpc.reflection.v1.ServerReflection",
        *(reflection_pb2.ServerReflectionRequest(file_containing_symbol=name) for name in wanted),
    )
    pool = descriptor_pool.DescriptorPool()
    pending = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for reply in replies
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]
    # Add files once their imports are in (the server sends each file with its dependencies).
    added: set[str] = set()
    while pending:
        ready = [f for f in pending if set(f.dependency) <= added]
        assert ready, [f.name for f in pending]
        for f in ready:
            if f.name not in added:
                pool.Add(f)
                added.add(f.name)
            pending.remove(f)
    verify = pool.FindServiceByName("onceonly.v1.Broker").methods_by_name["Verify"]
    assert verify.input_type.full_name == "onceonly.v1.VerifyRequest"
    assert "ListTraces" in pool.FindServiceByName("onceonly.v1.Oversight").methods_by_name
    v1 = pool.FindServiceByName("grpc.reflection.v1.ServerReflection").methods_by_name["ServerReflectionInfo"]
    assert v1.input_type.full_name == "grpc.reflection.v1.ServerReflectionRequest"


async def test_reflection_carries_the_contracts_comments(platform: Platform) -> None:
    """A client that shows documentation (grpcurl describe) finds the proto comments: the file
    answered for ``onceonly.v1.Broker`` has its source information, the comment on ``Verify``
    among it, exactly as written in protos/."""
    await platform.start_reference_providers()
    app = await platform.start_broker()
    [reply] = await _reflect(
        platform.channel(app.target),
        "grpc.reflection.v1.ServerReflection",
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="onceonly.v1.Broker"),
    )
    files = {
        f.name: f
        for f in map(
            descriptor_pb2.FileDescriptorProto.FromString,
            reply.file_descriptor_response.file_descriptor_proto,
        )
    }
    broker = files["onceonly/v1/broker.proto"]
    [service_index] = [i for i, s in enumerate(broker.service) if s.name == "Broker"]
    [verify_index] = [i for i, m in enumerate(broker.service[service_index].method) if m.name == "Verify"]
    # The path of a method in a file: service (6), index, method (2), index.
    comments = {
        tuple(loc.path): loc.leading_comments
        for loc in broker.source_code_info.location
        if loc.leading_comments
    }
    assert comments[(6, service_index, 2, verify_index)].strip() == (
        "Verifies facts about one subject. Idempotent by (organisation, request_id)."
    )
    # Every contract file the reply carries is documented, the imports it shares included.
    assert files["onceonly/v1/common.proto"].source_code_info.location
