"""Record Orchestrix spans with OpenTelemetry (the ``opentelemetry`` extra).

Each :class:`~orchestrix.core.common.observability.TraceSpan` started by the
framework opens an OpenTelemetry span, current in its context, so spans the
application starts inside (a handler's HTTP call) become its children. When
the Orchestrix span ends, its attributes, status and error are copied over and
the OpenTelemetry span ends too.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import Status, StatusCode

from orchestrix.core.common.observability import TraceSpan, TracingProvider

__all__ = ["OpenTelemetryTracingProvider"]


class OpenTelemetryTracingProvider(TracingProvider):
    """A :class:`TracingProvider` backed by an OpenTelemetry tracer."""

    def __init__(self, tracer: trace.Tracer | None = None) -> None:
        self.tracer = tracer if tracer is not None else trace.get_tracer("orchestrix")
        self._open: dict[str, tuple[Any, object]] = {}
        self._lock = threading.Lock()

    def start_span(self, operation: str) -> TraceSpan:
        """Start an OpenTelemetry span and make it current until the span ends."""
        otel_span = self.tracer.start_span(operation)
        token = context.attach(trace.set_span_in_context(otel_span))
        context_ = otel_span.get_span_context()
        span = TraceSpan(
            operation=operation,
            span_id=format(context_.span_id, "016x"),
            trace_id=format(context_.trace_id, "032x"),
            provider=self,
        )
        with self._lock:
            self._open[span.span_id] = (otel_span, token)
        return span

    def end_span(self, span: TraceSpan) -> None:
        """Copy attributes and status to the OpenTelemetry span and end it."""
        with self._lock:
            entry = self._open.pop(span.span_id, None)
        if entry is None:
            return
        otel_span, token = entry
        for key, value in span.attributes.items():
            otel_span.set_attribute(
                key, value if isinstance(value, str | bool | int | float) else str(value)
            )
        if span.status == "error":
            otel_span.set_status(Status(StatusCode.ERROR, span.error))
        else:
            otel_span.set_status(Status(StatusCode.OK))
        otel_span.end()
        # Ended in another context than it started in (another thread), the
        # detach is refused and logged by OpenTelemetry; the span is ended anyway.
        context.detach(token)  # type: ignore[arg-type]
