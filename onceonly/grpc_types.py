"""Names for the grpc.aio types the servers annotate with (the stubs make them generic)."""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

__all__ = ["Context", "Handler"]

Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"
"""The context of a call, whatever its message types."""
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
"""A method handler, whatever its message types."""
