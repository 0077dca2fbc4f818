"""Observability hooks: metrics, tracing and callbacks around the framework's work.

Stores, buses, projections and sagas report what they do to an
:class:`ObservabilityHooks` object (the process-wide one from
:func:`get_observability` unless they are given another). It forwards each
report to a :class:`MetricsProvider`, to callbacks registered with the
``on_…`` methods, and to the log. The providers default to no-ops; adapters
for Prometheus or OpenTelemetry implement the two small ABCs.

A failing metrics provider or callback never breaks the operation it
observes: the failure is logged and the operation goes on.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal

from orchestrix.core.common.clock import utc_now

__all__ = [
    "MetricType",
    "MetricValue",
    "MetricsProvider",
    "NoOpMetricsProvider",
    "NoOpTracingProvider",
    "ObservabilityHooks",
    "SpanStatus",
    "TraceSpan",
    "TracingProvider",
    "get_observability",
    "init_observability",
]


class MetricType(StrEnum):
    """What a measurement is: a counter increment, a gauge reading or a histogram sample."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


class SpanStatus(StrEnum):
    """How a span ended: not yet (``UNSET``), ``OK`` or with an ``ERROR``."""

    UNSET = "unset"
    OK = "ok"
    ERROR = "error"


Labels = dict[str, str]


@dataclass(frozen=True)
class MetricValue:
    """One measurement: a counter increment, a gauge reading or a histogram sample."""

    name: str
    value: float
    metric_type: MetricType = MetricType.COUNTER
    unit: str = ""
    labels: Labels = field(default_factory=dict)
    timestamp: datetime = field(default_factory=utc_now)


@dataclass(eq=False)
class TraceSpan:
    """A timed operation. Use it as a context manager, or call :meth:`end`.

    An exception leaving the ``with`` block marks the span as failed and is
    re-raised.
    """

    operation: str
    span_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    trace_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    parent_span_id: str | None = None
    start_time: datetime = field(default_factory=utc_now)
    end_time: datetime | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    status: SpanStatus = SpanStatus.UNSET
    error: str | None = None
    provider: TracingProvider | None = field(default=None, repr=False)
    _started: float = field(default_factory=time.perf_counter, repr=False)
    _duration: float | None = field(default=None, repr=False)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, once the span has ended."""
        return self._duration

    @property
    def ended(self) -> bool:
        """Whether :meth:`end` has been called."""
        return self.end_time is not None

    def set_attribute(self, key: str, value: Any) -> None:
        """Attach a key/value to the span (ids, counts, versions)."""
        self.attributes[key] = value

    def record_error(self, error: BaseException) -> None:
        """Mark the span failed with ``error``."""
        self.status = SpanStatus.ERROR
        self.error = f"{type(error).__name__}: {error}"

    def end(self) -> None:
        """End the span (once; later calls do nothing) and hand it to its provider."""
        if self.end_time is not None:
            return
        self._duration = time.perf_counter() - self._started
        self.end_time = utc_now()
        if self.status == SpanStatus.UNSET:
            self.status = SpanStatus.OK
        if self.provider is not None:
            self.provider.end_span(self)

    def __enter__(self) -> TraceSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.record_error(exc)
        self.end()


class MetricsProvider(ABC):
    """Receives metrics. Implement :meth:`record_metric`; the rest build on it."""

    @abstractmethod
    def record_metric(self, metric: MetricValue) -> None:
        """Record one measurement."""

    def counter(self, name: str, value: float = 1.0, labels: Labels | None = None) -> None:
        """Increment the counter ``name`` by ``value``."""
        self.record_metric(MetricValue(name, value, MetricType.COUNTER, "", dict(labels or {})))

    def gauge(self, name: str, value: float, labels: Labels | None = None) -> None:
        """Set the gauge ``name`` to ``value``."""
        self.record_metric(MetricValue(name, value, MetricType.GAUGE, "", dict(labels or {})))

    def histogram(
        self, name: str, value: float, unit: str = "", labels: Labels | None = None
    ) -> None:
        """Add a sample to the histogram ``name``."""
        self.record_metric(MetricValue(name, value, MetricType.HISTOGRAM, unit, dict(labels or {})))


class TracingProvider(ABC):
    """Creates and finishes spans."""

    @abstractmethod
    def start_span(self, operation: str) -> TraceSpan:
        """Start a span for ``operation``."""

    @abstractmethod
    def end_span(self, span: TraceSpan) -> None:
        """Called once when ``span`` ends."""


class NoOpMetricsProvider(MetricsProvider):
    """Discards every metric."""

    def record_metric(self, metric: MetricValue) -> None:
        """Do nothing."""

    def counter(self, name: str, value: float = 1.0, labels: Labels | None = None) -> None:
        """Do nothing (without building a MetricValue)."""

    def gauge(self, name: str, value: float, labels: Labels | None = None) -> None:
        """Do nothing."""

    def histogram(
        self, name: str, value: float, unit: str = "", labels: Labels | None = None
    ) -> None:
        """Do nothing."""


class NoOpTracingProvider(TracingProvider):
    """Spans that time themselves and go nowhere."""

    def start_span(self, operation: str) -> TraceSpan:
        """A span bound to no backend."""
        return TraceSpan(operation=operation, provider=self)

    def end_span(self, span: TraceSpan) -> None:
        """Do nothing."""


HookName = Literal[
    "event_stored",
    "event_loaded",
    "event_replayed",
    "snapshot_saved",
    "snapshot_loaded",
    "aggregate_error",
    "handler_error",
    "projection_processed",
    "projection_batch",
    "projection_error",
    "saga_started",
    "saga_completed",
    "saga_compensated",
    "saga_failed",
    "saga_step",
    "fault",
]

Callback = Callable[..., None]


class ObservabilityHooks:
    """Routes the framework's reports to metrics, callbacks and the log."""

    def __init__(
        self,
        metrics_provider: MetricsProvider | None = None,
        tracing_provider: TracingProvider | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.metrics: MetricsProvider = metrics_provider or NoOpMetricsProvider()
        self.tracing: TracingProvider = tracing_provider or NoOpTracingProvider()
        self.logger = logger or logging.getLogger("orchestrix.observability")
        self._callbacks: dict[str, list[Callback]] = {}
        self._lock = threading.Lock()

    # -- registration -------------------------------------------------------

    def on(self, hook: HookName, callback: Callback) -> Callback:
        """Call ``callback`` with the hook's arguments each time ``hook`` fires."""
        with self._lock:
            self._callbacks.setdefault(hook, []).append(callback)
        return callback

    def remove(self, hook: HookName, callback: Callback) -> None:
        """Stop calling ``callback`` for ``hook``."""
        with self._lock:
            callbacks = self._callbacks.get(hook, [])
            if callback in callbacks:
                callbacks.remove(callback)

    def on_event_stored(self, callback: Callback) -> Callback:
        """Register ``callback(aggregate_id, version)``."""
        return self.on("event_stored", callback)

    def on_event_loaded(self, callback: Callback) -> Callback:
        """Register ``callback(aggregate_id, count)``."""
        return self.on("event_loaded", callback)

    def on_event_replayed(self, callback: Callback) -> Callback:
        """Register ``callback(aggregate_id, event_type)``."""
        return self.on("event_replayed", callback)

    def on_snapshot_saved(self, callback: Callback) -> Callback:
        """Register ``callback(aggregate_id, version)``."""
        return self.on("snapshot_saved", callback)

    def on_snapshot_loaded(self, callback: Callback) -> Callback:
        """Register ``callback(aggregate_id, version)``."""
        return self.on("snapshot_loaded", callback)

    def on_aggregate_error(self, callback: Callback) -> Callback:
        """Register ``callback(aggregate_id, error)``."""
        return self.on("aggregate_error", callback)

    # -- reports ------------------------------------------------------------

    def _fire(self, hook: str, *args: Any) -> None:
        callbacks = self._callbacks.get(hook)
        if not callbacks:
            return
        for callback in list(callbacks):
            try:
                callback(*args)
            except Exception:
                self.logger.exception("observability callback %r for %s failed", callback, hook)

    def _count(self, name: str, value: float = 1.0, labels: Labels | None = None) -> None:
        try:
            self.metrics.counter(name, value, labels)
        except Exception:
            self.logger.exception("metrics provider failed to record %s", name)

    def _observe(self, name: str, value: float, unit: str, labels: Labels | None = None) -> None:
        try:
            self.metrics.histogram(name, value, unit, labels)
        except Exception:
            self.logger.exception("metrics provider failed to record %s", name)

    def gauge(self, name: str, value: float, labels: Labels | None = None) -> None:
        """Set a gauge (used for projection lag), never raising."""
        try:
            self.metrics.gauge(name, value, labels)
        except Exception:
            self.logger.exception("metrics provider failed to record %s", name)

    def record_event_stored(self, aggregate_id: str, version: int) -> None:
        """An event was appended to ``aggregate_id`` at ``version``."""
        self._count("orchestrix.events.stored")
        self._fire("event_stored", aggregate_id, version)

    def record_events_stored(self, aggregate_id: str, first_version: int, count: int) -> None:
        """``count`` events were appended in one save: one counter update, one hook each."""
        self._count("orchestrix.events.stored", count)
        if self._callbacks.get("event_stored"):
            for version in range(first_version, first_version + count):
                self._fire("event_stored", aggregate_id, version)

    def record_event_loaded(self, aggregate_id: str, count: int) -> None:
        """``count`` events of ``aggregate_id`` were read."""
        self._count("orchestrix.events.loaded", count)
        self._fire("event_loaded", aggregate_id, count)

    def record_event_replayed(self, aggregate_id: str, event_type: str) -> None:
        """An aggregate re-applied a stored event."""
        self._count("orchestrix.events.replayed", 1.0, {"event_type": event_type})
        self._fire("event_replayed", aggregate_id, event_type)

    def record_snapshot_saved(self, aggregate_id: str, version: int) -> None:
        """A snapshot of ``aggregate_id`` at ``version`` was stored."""
        self._count("orchestrix.snapshots.saved")
        self._fire("snapshot_saved", aggregate_id, version)

    def record_snapshot_loaded(self, aggregate_id: str, version: int) -> None:
        """A snapshot of ``aggregate_id`` at ``version`` was used."""
        self._count("orchestrix.snapshots.loaded")
        self._fire("snapshot_loaded", aggregate_id, version)

    def record_aggregate_error(self, aggregate_id: str, error: str) -> None:
        """Loading or changing ``aggregate_id`` failed."""
        self._count("orchestrix.aggregates.errors")
        self.logger.warning("aggregate %s: %s", aggregate_id, error)
        self._fire("aggregate_error", aggregate_id, error)

    def record_handler_error(self, message_type: str, handler_name: str, error: str) -> None:
        """A message handler failed (the bus still raises the error)."""
        self._count(
            "orchestrix.handlers.errors",
            1.0,
            {"message_type": message_type, "handler": handler_name},
        )
        self._fire("handler_error", message_type, handler_name, error)

    def record_projection_processed(self, projection_id: str, count: int, position: int) -> None:
        """A projection applied ``count`` events and reached ``position``."""
        self._count("orchestrix.projections.events", count, {"projection": projection_id})
        self._fire("projection_processed", projection_id, count, position)

    def record_projection_batch(self, projection_id: str, events: int, duration: float) -> None:
        """A runner read ``events`` events and applied them in ``duration`` seconds."""
        self._observe(
            "orchestrix.projections.batch_duration", duration, "s", {"projection": projection_id}
        )
        self._fire("projection_batch", projection_id, events, duration)

    def record_projection_error(self, projection_id: str, error: str) -> None:
        """A projection failed on an event."""
        self._count("orchestrix.projections.errors", 1.0, {"projection": projection_id})
        self._fire("projection_error", projection_id, error)

    def record_fault(self, component: str, name: str, kind: str) -> None:
        """Work of ``component`` (``name``: a projection id, a saga type) met a fault of ``kind``.

        A fault is an error of the infrastructure (a lost database connection,
        a deadlock), not of the code: the work is retried, never failed.
        """
        self._count("orchestrix.faults", 1.0, {"component": component, "name": name, "kind": kind})
        self._fire("fault", component, name, kind)

    def record_saga_started(self, saga_type: str, saga_id: str) -> None:
        """A saga began executing."""
        self._count("orchestrix.sagas.started", 1.0, {"saga_type": saga_type})
        self._fire("saga_started", saga_type, saga_id)

    def record_saga_completed(self, saga_type: str, saga_id: str) -> None:
        """A saga ran every step."""
        self._count("orchestrix.sagas.completed", 1.0, {"saga_type": saga_type})
        self._fire("saga_completed", saga_type, saga_id)

    def record_saga_compensated(self, saga_type: str, saga_id: str) -> None:
        """A failed saga undid its completed steps."""
        self._count("orchestrix.sagas.compensated", 1.0, {"saga_type": saga_type})
        self._fire("saga_compensated", saga_type, saga_id)

    def record_saga_failed(self, saga_type: str, saga_id: str, error: str) -> None:
        """A saga failed (its compensation outcome is in its state)."""
        self._count("orchestrix.sagas.failed", 1.0, {"saga_type": saga_type})
        self._fire("saga_failed", saga_type, saga_id, error)

    def record_saga_step(self, saga_type: str, step: str, duration: float, succeeded: bool) -> None:
        """A saga step (or compensation) finished after ``duration`` seconds."""
        labels = {"saga_type": saga_type, "step": step, "outcome": "ok" if succeeded else "error"}
        self._observe("orchestrix.sagas.step_duration", duration, "s", labels)
        self._fire("saga_step", saga_type, step, duration, succeeded)

    # -- tracing ------------------------------------------------------------

    def start_span(self, operation: str, /, **attributes: Any) -> TraceSpan:
        """Start a span with the tracing provider, never raising."""
        try:
            span = self.tracing.start_span(operation)
        except Exception:
            self.logger.exception("tracing provider failed to start %s", operation)
            span = TraceSpan(operation=operation)
        span.attributes.update(attributes)
        return span

    def start_event_store_operation(self, operation: str) -> TraceSpan:
        """A span around one event store operation (``save``, ``load``, …)."""
        return self.start_span(f"event_store.{operation}", operation=operation)


_current = ObservabilityHooks()
_current_lock = threading.Lock()


def init_observability(
    metrics_provider: MetricsProvider | None = None,
    tracing_provider: TracingProvider | None = None,
    logger: logging.Logger | None = None,
) -> ObservabilityHooks:
    """Install process-wide hooks (replacing the previous ones) and return them."""
    global _current
    with _current_lock:
        _current = ObservabilityHooks(metrics_provider, tracing_provider, logger)
        return _current


def get_observability() -> ObservabilityHooks:
    """The process-wide hooks (no-op providers until :func:`init_observability`)."""
    return _current
