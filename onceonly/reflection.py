"""Server reflection, ``grpc.reflection.v1`` beside the deprecated ``v1alpha``.

grpcio-reflection implements only ``v1alpha``. The ``v1`` service has the same messages under
another package name — same fields, same numbers, so the same bytes on the wire — and clients
such as grpcurl try ``v1`` first. One servicer answers both: calls to ``v1`` are decoded and
encoded with the ``v1alpha`` message classes. The ``v1`` file descriptor is added to the pool as
well, so that a client can describe the reflection service itself.

The descriptors compiled into the generated code carry no comments, so the contract's files are
answered with their source information (``onceonly/v1/contract.binpb``, written by
``scripts/gen_protos.py`` beside the code): a client that shows comments (``grpcurl describe``,
Postman, Kreya) shows the contract's documentation.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
_V1_FILE = "grpc/reflection/v1/reflection.proto"
_V1ALPHA_PREFIX = ".grpc.reflection.v1alpha."
_V1_PREFIX = ".grpc.reflection.v1."
Reply = reflection_pb2.ServerReflectionResponse


def _v1_file() -> descriptor_pb2.FileDescriptorProto:
    """The v1 reflection file: the v1alpha file under the v1 package."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = _V1_FILE
    proto.package = "grpc.reflection.v1"
    proto.ClearField("options")

    def renamed(type_name: str) -> str:
        return _V1_PREFIX + type_name.removeprefix(_V1ALPHA_PREFIX)

    for message in proto.message_type:
        for f in message.field:
            if f.type_name:  # set only where there is one: an empty type name still counts as set
                f.type_name = renamed(f.type_name)
    for service in proto.service:
        for method in service.method:
            method.input_type = renamed(method.input_type)
            method.output_type = renamed(method.output_type)
    return proto


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(_V1_FILE)
    except KeyError:
        pool.AddSerializedFile(_v1_file().SerializeToString())


@functools.cache
def contract_source_info() -> Mapping[str, descriptor_pb2.SourceCodeInfo]:
    """Each contract file's source information (comments and spans), by file name."""
    raw = resources.files("onceonly.v1").joinpath("contract.binpb").read_bytes()
    return {f.name: f.source_code_info for f in descriptor_pb2.FileDescriptorSet.FromString(raw).file}


def with_source_info(
    reply: reflection_pb2.ServerReflectionResponse,
) -> reflection_pb2.ServerReflectionResponse:
    """``reply`` with the contract's comments in every file it carries."""
    if not reply.HasField("file_descriptor_response"):
        return reply
    known = contract_source_info()
    files = reply.file_descriptor_response.file_descriptor_proto
    for i, raw in enumerate(files):
        proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
        info = known.get(proto.name)
        if info is not None and not proto.HasField("source_code_info"):
            proto.source_code_info.CopyFrom(info)
            files[i] = proto.SerializeToString()
    return reply


def _commented(servicer: reflection.aio.ReflectionServicer) -> Callable[..., AsyncIterator[Reply]]:
    """The library's servicer, answering the contract's files with their comments."""

    async def server_reflection_info(
        request_iterator: AsyncIterator[reflection_pb2.ServerReflectionRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[Reply]:
        replies: Any = servicer.ServerReflectionInfo(request_iterator, context)  # an async generator
        async for reply in replies:
            yield with_source_info(reply)

    return server_reflection_info


def enable_server_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection (v1 and v1alpha) for ``service_names`` and for itself."""
    pool = descriptor_pool.Default()
    _add_v1_descriptor(pool)
    names = (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    servicer = reflection.aio.ReflectionServicer(names, pool=pool)
    handler = grpc.stream_stream_rpc_method_handler(
        _commented(servicer),
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(V1ALPHA_SERVICE_NAME, {"ServerReflectionInfo": handler}),
            grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {"ServerReflectionInfo": handler}),
        )
    )
