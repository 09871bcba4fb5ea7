"""OpenTelemetry tracing for operators: spans, configured by the standard ``OTEL_*`` variables.

Tracing is off unless ``OTEL_TRACES_EXPORTER`` names an exporter (``console`` or ``otlp``);
when off, :func:`span` returns a shared null context, so the hot path pays one flag check.
Sampling follows ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` (read by the SDK), and
the OTLP exporter its own ``OTEL_EXPORTER_OTLP_*`` variables.

Span attributes say what was asked and why (procedure, legal basis, consumer, certificate
type) and never carry a document number or an attested value.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import context, propagate, trace

log = logging.getLogger(__name__)

_enabled = False
__all__ = [
    "configure_tracing",
    "disable",
    "enabled",
    "extracted",
    "inject_metadata",
    "set_attributes",
    "span",
    "trace",  # re-exported: callers name span kinds as telemetry.trace.SpanKind
    "use_tracer_provider",
]

_tracer: trace.Tracer = trace.get_tracer("onceonly")
_NULL = contextlib.nullcontext()


def enabled() -> bool:
    return _enabled


def configure_tracing(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install a tracer provider if ``OTEL_TRACES_EXPORTER`` asks for one; return whether it did."""
    global _enabled, _tracer
    env = os.environ if env is None else env
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "none").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    if not names:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    provider = TracerProvider(
        resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", service_name)})
    )
    for name in names:
        exporter: SpanExporter
        if name == "console":
            exporter = ConsoleSpanExporter()
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (known: console, otlp, none)")
        provider.add_span_processor(BatchSpanProcessor(exporter))
    use_tracer_provider(provider)
    return True


def use_tracer_provider(provider: trace.TracerProvider) -> None:
    """Trace through ``provider`` (tests pass one with an in-memory exporter)."""
    global _enabled, _tracer
    _tracer = provider.get_tracer("onceonly")
    _enabled = True


def disable() -> None:
    global _enabled
    _enabled = False


Attributes = Mapping[str, Any]


def span(
    name: str,
    attributes: Attributes | Callable[[], Attributes] | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
) -> contextlib.AbstractContextManager[Any]:
    """A span as a context manager, or a shared no-op when tracing is off.

    ``attributes`` may be a callable, so that building them costs nothing when tracing is off.
    """
    if not _enabled:
        return _NULL
    attrs = attributes() if callable(attributes) else attributes
    return _tracer.start_as_current_span(name, attributes=attrs, kind=kind)


def set_attributes(attributes: Mapping[str, Any]) -> None:
    """Add attributes to the current span (no-op when tracing is off)."""
    if _enabled:
        trace.get_current_span().set_attributes(attributes)


def inject_metadata() -> tuple[tuple[str, str], ...] | None:
    """W3C trace context of the current span as gRPC metadata, or None when tracing is off."""
    if not _enabled:
        return None
    carrier: MutableMapping[str, str] = {}
    propagate.inject(carrier)
    return tuple(carrier.items())


@contextlib.contextmanager
def extracted(metadata: Any) -> Iterator[None]:
    """Make the caller's trace context (from gRPC metadata) current while serving a call."""
    if not _enabled or not metadata:
        yield
        return
    token = context.attach(propagate.extract({k: v for k, v in metadata if isinstance(v, str)}))
    try:
        yield
    finally:
        context.detach(token)
