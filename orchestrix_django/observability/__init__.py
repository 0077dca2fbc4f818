"""Adapters from Orchestrix's observability hooks to monitoring systems.

* :mod:`orchestrix_django.observability.prometheus` (extra ``prometheus``):
  a ``MetricsProvider`` that exports to ``prometheus-client``.
* :mod:`orchestrix_django.observability.opentelemetry` (extra ``opentelemetry``):
  a ``TracingProvider`` that records OpenTelemetry spans.

Install them with ``ORCHESTRIX["OBSERVABILITY"]`` pointing at hooks built
with them, e.g. in ``myproject/observability.py``::

    hooks = ObservabilityHooks(
        metrics_provider=PrometheusMetricsProvider(),
        tracing_provider=OpenTelemetryTracingProvider(),
    )
"""
