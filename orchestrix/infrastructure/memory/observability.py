"""In-memory metrics and tracing providers, for tests and local inspection.

They keep everything they receive in plain lists so a test can assert on
what the framework reported::

    metrics, tracing = InMemoryMetricsProvider(), InMemoryTracingProvider()
    hooks = ObservabilityHooks(metrics, tracing)
    ...
    assert metrics.total("orchestrix.events.stored") == 2
    assert [s.operation for s in tracing.spans] == ["event_store.save"]

Both are thread-safe: stores and buses may report from several threads.
"""

from __future__ import annotations

import threading

from orchestrix.core.common.observability import (
    MetricsProvider,
    MetricType,
    MetricValue,
    TraceSpan,
    TracingProvider,
)

__all__ = ["InMemoryMetricsProvider", "InMemoryTracingProvider"]


def _labels_match(metric: MetricValue, labels: dict[str, str]) -> bool:
    """Whether ``metric`` carries every label in ``labels`` (it may carry more)."""
    return all(metric.labels.get(key) == value for key, value in labels.items())


class InMemoryMetricsProvider(MetricsProvider):
    """Records every metric in :attr:`metrics`, in arrival order."""

    def __init__(self) -> None:
        self.metrics: list[MetricValue] = []
        self._lock = threading.Lock()

    def record_metric(self, metric: MetricValue) -> None:
        """Append ``metric`` to :attr:`metrics`."""
        with self._lock:
            self.metrics.append(metric)

    def _snapshot(self) -> list[MetricValue]:
        with self._lock:
            return list(self.metrics)

    def total(self, name: str, **labels: str) -> float:
        """The sum of the counter ``name`` over the increments carrying ``labels``.

        With no labels every increment of ``name`` counts; with labels, only
        those whose labels include all of them (0.0 when there are none).
        """
        return sum(
            (
                metric.value
                for metric in self._snapshot()
                if metric.name == name
                and metric.metric_type == MetricType.COUNTER
                and _labels_match(metric, labels)
            ),
            0.0,
        )

    def values(self, name: str, **labels: str) -> list[float]:
        """Every recorded value of ``name`` (any metric type) carrying ``labels``, in order."""
        return [
            metric.value
            for metric in self._snapshot()
            if metric.name == name and _labels_match(metric, labels)
        ]

    def clear(self) -> None:
        """Forget every recorded metric."""
        with self._lock:
            self.metrics.clear()


class InMemoryTracingProvider(TracingProvider):
    """Hands out spans and keeps each finished one in :attr:`spans`, in end order."""

    def __init__(self) -> None:
        self.spans: list[TraceSpan] = []
        self._lock = threading.Lock()

    def start_span(self, operation: str) -> TraceSpan:
        """A new span for ``operation`` that reports to this provider when it ends."""
        return TraceSpan(operation=operation, provider=self)

    def end_span(self, span: TraceSpan) -> None:
        """Record the finished ``span``."""
        with self._lock:
            self.spans.append(span)

    def find(self, operation: str) -> list[TraceSpan]:
        """The finished spans of ``operation``, in end order."""
        with self._lock:
            return [span for span in self.spans if span.operation == operation]

    def clear(self) -> None:
        """Forget every finished span."""
        with self._lock:
            self.spans.clear()
