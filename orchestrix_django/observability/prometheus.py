"""Export Orchestrix metrics with ``prometheus-client`` (the ``prometheus`` extra).

Metric names become Prometheus names: ``orchestrix.events.stored`` is the
counter ``orchestrix_events_stored_total``, ``orchestrix.projections.lag`` the
gauge ``orchestrix_projections_lag``, ``orchestrix.projections.batch_duration``
the histogram ``orchestrix_projections_batch_duration_seconds``. A metric's
label names are fixed by its first use (Prometheus requires it); a later
report with other labels fills the missing ones with ``""`` and drops the
extra ones.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from orchestrix.core.common.observability import MetricsProvider, MetricValue

__all__ = ["PrometheusMetricsProvider"]

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_UNIT_SUFFIXES = {"s": "seconds", "ms": "milliseconds", "bytes": "bytes"}


def prometheus_name(name: str, unit: str = "") -> str:
    """``orchestrix.projections.batch_duration`` + ``s`` -> ``…_batch_duration_seconds``."""
    base = _INVALID.sub("_", name)
    suffix = _UNIT_SUFFIXES.get(unit, _INVALID.sub("_", unit))
    if suffix and not base.endswith(f"_{suffix}"):
        base = f"{base}_{suffix}"
    return base


class PrometheusMetricsProvider(MetricsProvider):
    """A :class:`MetricsProvider` that keeps Prometheus collectors up to date."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        buckets: tuple[float, ...] | None = None,
    ) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self.buckets = buckets
        self._metrics: dict[str, tuple[Any, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def record_metric(self, metric: MetricValue) -> None:
        """Apply one measurement to its collector (created on first use)."""
        name = prometheus_name(metric.name, metric.unit)
        collector, label_names = self._collector(name, metric)
        if label_names:
            labels = {key: str(metric.labels.get(key, "")) for key in label_names}
            collector = collector.labels(**labels)
        if metric.metric_type == "counter":
            collector.inc(metric.value)
        elif metric.metric_type == "gauge":
            collector.set(metric.value)
        else:
            collector.observe(metric.value)

    def _collector(self, name: str, metric: MetricValue) -> tuple[Any, tuple[str, ...]]:
        with self._lock:
            known = self._metrics.get(name)
            if known is not None:
                return known
            label_names = tuple(sorted(metric.labels))
            documentation = f"Orchestrix {metric.name}"
            collector: Any
            if metric.metric_type == "counter":
                collector = Counter(name, documentation, label_names, registry=self.registry)
            elif metric.metric_type == "gauge":
                collector = Gauge(name, documentation, label_names, registry=self.registry)
            else:
                options: dict[str, Any] = {"registry": self.registry}
                if self.buckets is not None:
                    options["buckets"] = self.buckets
                collector = Histogram(name, documentation, label_names, **options)
            self._metrics[name] = (collector, label_names)
            return collector, label_names
