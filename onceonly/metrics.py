"""OpenTelemetry metrics for operators, configured by the standard ``OTEL_*`` variables.

Metrics are off unless ``OTEL_METRICS_EXPORTER`` names an exporter: ``otlp`` (to
``OTEL_EXPORTER_OTLP_ENDPOINT``, every ``OTEL_METRIC_EXPORT_INTERVAL`` ms), ``console``, or
``prometheus`` (a scrape endpoint on ``OTEL_EXPORTER_PROMETHEUS_HOST``:``OTEL_EXPORTER_PROMETHEUS_PORT``,
default 127.0.0.1:9464; the ``prometheus`` extra installs its exporter). When off, every
recording function returns after one flag check.

What is measured (attributes never carry a subject, a document number or an attested value):

=====================================  ===========  =================================================
``onceonly.requests``                  counter      requests decided, by ``decision`` and ``reason``
``onceonly.request.duration``          histogram    ms from receipt to answer, by ``decision``
``onceonly.checks``                    counter      checks, by ``provider`` and ``status``
``onceonly.check.duration``            histogram    ms of each provider call, by ``provider``
``onceonly.admission.rejected``        counter      calls refused for overload, by ``what``
``onceonly.ledger.batch_size``         histogram    trace records per ledger commit
``onceonly.ledger.commit.duration``    histogram    ms per ledger commit (durable)
``onceonly.breaker.open``              gauge        1 while a provider's circuit is open, by ``provider``
=====================================  ===========  =================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry import metrics

__all__ = [
    "admission_rejected",
    "check",
    "configure_metrics",
    "enabled",
    "ledger_commit",
    "observe_breakers",
    "request",
    "use_meter_provider",
]

_enabled = False
_instruments: dict[str, Any] = {}
_breakers: Callable[[], Mapping[str, bool]] | None = None


def enabled() -> bool:
    return _enabled


def configure_metrics(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Install a meter provider if ``OTEL_METRICS_EXPORTER`` asks for one; return whether it did."""
    env = os.environ if env is None else env
    names = [n.strip() for n in env.get("OTEL_METRICS_EXPORTER", "none").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    if not names:
        return False
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricReader,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.resources import Resource

    readers: list[MetricReader] = []
    for name in names:
        if name == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        elif name == "prometheus":
            readers.append(_prometheus_reader(env))
        else:
            raise ValueError(
                f"OTEL_METRICS_EXPORTER: unknown exporter {name!r} (known: console, otlp, prometheus, none)"
            )
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", service_name)})
    use_meter_provider(MeterProvider(resource=resource, metric_readers=readers))
    return True


def _prometheus_reader(env: Mapping[str, str]) -> Any:
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server
    except ImportError:
        raise ValueError(
            "OTEL_METRICS_EXPORTER=prometheus needs the Prometheus exporter: "
            "pip install 'onceonly[prometheus]' (opentelemetry-exporter-prometheus)"
        ) from None
    host = env.get("OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1")
    port = int(env.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464"))
    start_http_server(port, addr=host)
    return PrometheusMetricReader()


def use_meter_provider(provider: metrics.MeterProvider) -> None:
    """Record through ``provider`` (tests pass one with an in-memory reader)."""
    global _enabled
    meter = provider.get_meter("onceonly")
    _instruments.clear()
    _instruments.update(
        requests=meter.create_counter("onceonly.requests", unit="{request}", description="requests decided"),
        request_duration=meter.create_histogram(
            "onceonly.request.duration", unit="ms", description="from receipt to answer"
        ),
        checks=meter.create_counter("onceonly.checks", unit="{check}", description="checks made"),
        check_duration=meter.create_histogram(
            "onceonly.check.duration", unit="ms", description="each provider call"
        ),
        rejected=meter.create_counter(
            "onceonly.admission.rejected", unit="{call}", description="calls refused for overload"
        ),
        batch=meter.create_histogram(
            "onceonly.ledger.batch_size", unit="{record}", description="trace records per ledger commit"
        ),
        commit=meter.create_histogram(
            "onceonly.ledger.commit.duration", unit="ms", description="each durable ledger commit"
        ),
    )
    meter.create_observable_gauge(
        "onceonly.breaker.open",
        callbacks=[_observe_breakers],
        unit="1",
        description="1 while a provider's circuit breaker is open",
    )
    _enabled = True


def disable() -> None:
    global _enabled
    _enabled = False


def request(decision: str, reason: str, duration_ms: float) -> None:
    if not _enabled:
        return
    _instruments["requests"].add(1, {"decision": decision, "reason": reason or "-"})
    _instruments["request_duration"].record(duration_ms, {"decision": decision})


def check(provider: str, status: str, duration_ms: float) -> None:
    if not _enabled:
        return
    _instruments["checks"].add(1, {"provider": provider, "status": status})
    _instruments["check_duration"].record(duration_ms, {"provider": provider})


def admission_rejected(what: str) -> None:
    if _enabled:
        _instruments["rejected"].add(1, {"what": what})


def ledger_commit(records: int, duration_ms: float) -> None:
    if not _enabled:
        return
    _instruments["batch"].record(records)
    _instruments["commit"].record(duration_ms)


def observe_breakers(read: Callable[[], Mapping[str, bool]] | None) -> None:
    """Report whether each provider's circuit is open, read when metrics are collected."""
    global _breakers
    _breakers = read


def _observe_breakers(_options: Any) -> Iterable[metrics.Observation]:
    if _breakers is None:
        return []
    return [metrics.Observation(1 if is_open else 0, {"provider": p}) for p, is_open in _breakers().items()]
