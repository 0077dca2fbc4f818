"""The Prometheus and OpenTelemetry adapters, fed by the framework's real reports."""

from __future__ import annotations

from decimal import Decimal

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry

from orchestrix.core.common.observability import ObservabilityHooks
from orchestrix.infrastructure.memory import InMemoryEventStore
from orchestrix_django.observability.opentelemetry import OpenTelemetryTracingProvider
from orchestrix_django.observability.prometheus import PrometheusMetricsProvider, prometheus_name
from tests.django.testapp.events import MoneyDeposited


def test_names_follow_prometheus_conventions() -> None:
    assert prometheus_name("orchestrix.events.stored") == "orchestrix_events_stored"
    assert (
        prometheus_name("orchestrix.projections.batch_duration", "s")
        == "orchestrix_projections_batch_duration_seconds"
    )


def test_prometheus_counts_what_the_store_reports() -> None:
    registry = CollectorRegistry()
    hooks = ObservabilityHooks(metrics_provider=PrometheusMetricsProvider(registry))
    store = InMemoryEventStore(observability=hooks)
    store.save("acc-1", [MoneyDeposited(account_id="acc-1", amount=Decimal(1)) for _ in range(3)])
    store.load("acc-1")
    assert registry.get_sample_value("orchestrix_events_stored_total") == 3
    assert registry.get_sample_value("orchestrix_events_loaded_total") == 3


def test_prometheus_gauges_histograms_and_labels() -> None:
    registry = CollectorRegistry()
    hooks = ObservabilityHooks(metrics_provider=PrometheusMetricsProvider(registry))
    hooks.gauge("orchestrix.projections.lag", 42, {"projection": "balances"})
    hooks.gauge("orchestrix.projections.lag", 7, {"projection": "balances"})
    hooks.record_projection_batch("balances", 100, 0.25)
    hooks.record_projection_batch("balances", 100, 0.75)
    assert registry.get_sample_value("orchestrix_projections_lag", {"projection": "balances"}) == 7
    labels = {"projection": "balances"}
    assert (
        registry.get_sample_value("orchestrix_projections_batch_duration_seconds_count", labels)
        == 2
    )
    assert registry.get_sample_value(
        "orchestrix_projections_batch_duration_seconds_sum", labels
    ) == pytest.approx(1.0)
    # Other label sets later: missing labels are filled, extra ones dropped.
    hooks.gauge("orchestrix.projections.lag", 1, {"projection": "x", "extra": "dropped"})
    assert registry.get_sample_value("orchestrix_projections_lag", {"projection": "x"}) == 1


@pytest.fixture
def spans() -> tuple[OpenTelemetryTracingProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OpenTelemetryTracingProvider(provider.get_tracer("test")), exporter


def test_opentelemetry_spans_carry_attributes_and_errors(
    spans: tuple[OpenTelemetryTracingProvider, InMemorySpanExporter],
) -> None:
    tracing, exporter = spans
    hooks = ObservabilityHooks(tracing_provider=tracing)
    store = InMemoryEventStore(observability=hooks)
    store.save("acc-2", [MoneyDeposited(account_id="acc-2", amount=Decimal(1))])
    with pytest.raises(RuntimeError), hooks.start_span("custom", step="charge"):
        raise RuntimeError("card declined")
    finished = {span.name: span for span in exporter.get_finished_spans()}
    save = finished["event_store.save"]
    assert save.attributes["aggregate_id"] == "acc-2"
    assert save.status.status_code == StatusCode.OK
    failed = finished["custom"]
    assert failed.attributes["step"] == "charge"
    assert failed.status.status_code == StatusCode.ERROR
    assert "card declined" in (failed.status.description or "")


def test_spans_nest_in_the_opentelemetry_context(
    spans: tuple[OpenTelemetryTracingProvider, InMemorySpanExporter],
) -> None:
    tracing, exporter = spans
    outer = tracing.start_span("outer")
    inner = tracing.start_span("inner")
    inner.end()
    outer.end()
    finished = {span.name: span for span in exporter.get_finished_spans()}
    assert finished["inner"].parent is not None
    assert finished["inner"].parent.span_id == finished["outer"].context.span_id
    assert inner.trace_id == outer.trace_id
