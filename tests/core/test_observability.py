"""Tests of orchestrix.core.common.observability and the in-memory providers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from orchestrix.core.common import observability
from orchestrix.core.common.observability import (
    MetricsProvider,
    MetricValue,
    NoOpMetricsProvider,
    NoOpTracingProvider,
    ObservabilityHooks,
    TraceSpan,
    TracingProvider,
    get_observability,
    init_observability,
)
from orchestrix.infrastructure.memory.observability import (
    InMemoryMetricsProvider,
    InMemoryTracingProvider,
)

LOGGER_NAME = "orchestrix.tests.observability"


@pytest.fixture
def metrics() -> InMemoryMetricsProvider:
    """A fresh metrics recorder."""
    return InMemoryMetricsProvider()


@pytest.fixture
def tracing() -> InMemoryTracingProvider:
    """A fresh span recorder."""
    return InMemoryTracingProvider()


@pytest.fixture
def hooks(
    metrics: InMemoryMetricsProvider,
    tracing: InMemoryTracingProvider,
    caplog: pytest.LogCaptureFixture,
) -> ObservabilityHooks:
    """Hooks reporting to the recorders, logging to a logger caplog captures."""
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    return ObservabilityHooks(metrics, tracing, logging.getLogger(LOGGER_NAME))


@pytest.fixture
def restore_global_hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[ObservabilityHooks]:
    """Let a test replace the process-wide hooks; put the original back afterwards."""
    original = get_observability()
    # monkeypatch restores the module global when the test ends.
    monkeypatch.setattr(observability, "_current", original)
    yield original
    monkeypatch.undo()
    assert get_observability() is original


class Recorder:
    """A callback that records its arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)


# -- hooks: metrics and callbacks ------------------------------------------------------

# (register method, record method, arguments, metric name, expected counter value, labels)
HOOKS: list[tuple[str, str, tuple[Any, ...], str, float, dict[str, str]]] = [
    ("on_event_stored", "record_event_stored", ("acc-1", 3), "orchestrix.events.stored", 1, {}),
    ("on_event_loaded", "record_event_loaded", ("acc-1", 7), "orchestrix.events.loaded", 7, {}),
    (
        "on_event_replayed",
        "record_event_replayed",
        ("acc-1", "AccountOpened"),
        "orchestrix.events.replayed",
        1,
        {"event_type": "AccountOpened"},
    ),
    (
        "on_snapshot_saved",
        "record_snapshot_saved",
        ("acc-1", 50),
        "orchestrix.snapshots.saved",
        1,
        {},
    ),
    (
        "on_snapshot_loaded",
        "record_snapshot_loaded",
        ("acc-1", 50),
        "orchestrix.snapshots.loaded",
        1,
        {},
    ),
    (
        "on_aggregate_error",
        "record_aggregate_error",
        ("acc-1", "boom"),
        "orchestrix.aggregates.errors",
        1,
        {},
    ),
]


@pytest.mark.parametrize(
    ("register", "record", "args", "metric", "value", "labels"),
    HOOKS,
    ids=[h[1] for h in HOOKS],
)
def test_hook_updates_metrics_and_calls_callbacks(
    hooks: ObservabilityHooks,
    metrics: InMemoryMetricsProvider,
    register: str,
    record: str,
    args: tuple[Any, ...],
    metric: str,
    value: float,
    labels: dict[str, str],
) -> None:
    first, second = Recorder(), Recorder()
    assert getattr(hooks, register)(first) is first  # usable as a decorator
    getattr(hooks, register)(second)
    getattr(hooks, record)(*args)
    assert first.calls == [args]
    assert second.calls == [args]
    assert metrics.total(metric) == value
    assert [m.labels for m in metrics.metrics] == [labels]
    assert metrics.metrics[0].metric_type == "counter"


def test_callbacks_only_fire_for_their_hook(hooks: ObservabilityHooks) -> None:
    stored, loaded = Recorder(), Recorder()
    hooks.on_event_stored(stored)
    hooks.on_event_loaded(loaded)
    hooks.record_event_stored("a", 1)
    assert stored.calls == [("a", 1)]
    assert loaded.calls == []


def test_removed_callback_is_not_called(hooks: ObservabilityHooks) -> None:
    callback = Recorder()
    hooks.on_event_stored(callback)
    hooks.remove("event_stored", callback)
    hooks.record_event_stored("a", 1)
    assert callback.calls == []


def test_aggregate_error_is_logged(
    hooks: ObservabilityHooks, caplog: pytest.LogCaptureFixture
) -> None:
    hooks.record_aggregate_error("acc-9", "cannot apply Foo")
    warnings = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert warnings[0].getMessage() == "aggregate acc-9: cannot apply Foo"


def test_events_stored_counts_once_and_fires_per_version(
    hooks: ObservabilityHooks, metrics: InMemoryMetricsProvider
) -> None:
    callback = Recorder()
    hooks.on_event_stored(callback)
    hooks.record_events_stored("s", first_version=4, count=3)
    assert metrics.total("orchestrix.events.stored") == 3
    assert len(metrics.metrics) == 1
    assert callback.calls == [("s", 4), ("s", 5), ("s", 6)]


def test_labelled_hooks(hooks: ObservabilityHooks, metrics: InMemoryMetricsProvider) -> None:
    hooks.record_handler_error("OrderPlaced", "send_mail", "SMTPError")
    hooks.record_projection_processed("order-summary", 5, 42)
    hooks.record_saga_started("fulfilment", "saga-1")
    hooks.record_saga_step("fulfilment", "charge", 0.25, succeeded=False)
    hooks.gauge("orchestrix.projections.lag", 12, {"projection": "order-summary"})
    assert metrics.total("orchestrix.handlers.errors", handler="send_mail") == 1
    assert metrics.total("orchestrix.handlers.errors", handler="other") == 0
    assert metrics.total("orchestrix.projections.events", projection="order-summary") == 5
    assert metrics.total("orchestrix.sagas.started", saga_type="fulfilment") == 1
    (step,) = [m for m in metrics.metrics if m.name == "orchestrix.sagas.step_duration"]
    assert (step.metric_type, step.value, step.unit) == ("histogram", 0.25, "s")
    assert step.labels == {"saga_type": "fulfilment", "step": "charge", "outcome": "error"}
    assert metrics.values("orchestrix.projections.lag") == [12]


# -- a failing callback or provider never breaks the observed operation ----------------


def test_raising_callback_is_logged_and_others_still_run(
    hooks: ObservabilityHooks, metrics: InMemoryMetricsProvider, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("callback bug")

    after = Recorder()
    hooks.on_snapshot_saved(broken)
    hooks.on_snapshot_saved(after)
    hooks.record_snapshot_saved("acc-1", 10)  # does not raise
    assert after.calls == [("acc-1", 10)]
    assert metrics.total("orchestrix.snapshots.saved") == 1
    errors = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert "snapshot_saved" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert errors[0].exc_info[0] is RuntimeError


class BrokenMetrics(MetricsProvider):
    """A metrics backend that is down."""

    def record_metric(self, metric: MetricValue) -> None:
        raise ConnectionError("statsd unreachable")


def test_raising_metrics_provider_is_logged_and_callbacks_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    hooks = ObservabilityHooks(BrokenMetrics(), logger=logging.getLogger(LOGGER_NAME))
    callback = Recorder()
    hooks.on_event_loaded(callback)
    hooks.record_event_loaded("acc-1", 2)
    hooks.record_saga_step("s", "step", 0.1, succeeded=True)
    hooks.gauge("g", 1.0)
    assert callback.calls == [("acc-1", 2)]
    errors = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert [r.getMessage() for r in errors] == [
        "metrics provider failed to record orchestrix.events.loaded",
        "metrics provider failed to record orchestrix.sagas.step_duration",
        "metrics provider failed to record g",
    ]
    assert all(r.exc_info is not None and r.exc_info[0] is ConnectionError for r in errors)


class BrokenTracing(TracingProvider):
    """A tracing backend that cannot start spans."""

    def start_span(self, operation: str) -> TraceSpan:
        raise ConnectionError("collector unreachable")

    def end_span(self, span: TraceSpan) -> None:
        raise AssertionError("never started")


def test_raising_tracing_provider_falls_back_to_a_local_span(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    hooks = ObservabilityHooks(
        tracing_provider=BrokenTracing(), logger=logging.getLogger(LOGGER_NAME)
    )
    with hooks.start_span("projection.catch_up", projection="p") as span:
        pass
    assert span.operation == "projection.catch_up"
    assert span.attributes == {"projection": "p"}
    assert span.status == "ok"
    errors = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert [r.getMessage() for r in errors] == [
        "tracing provider failed to start projection.catch_up"
    ]


# -- spans -------------------------------------------------------------------------------


def test_span_context_manager_records_success_and_duration(
    hooks: ObservabilityHooks, tracing: InMemoryTracingProvider
) -> None:
    with hooks.start_span("bus.publish", message_type="OrderPlaced") as span:
        assert span.provider is tracing
        assert not span.ended
        assert tracing.spans == []  # only finished spans are kept
        time.sleep(0.02)
    assert tracing.spans == [span]
    assert span.ended
    assert span.status == "ok"
    assert span.error is None
    assert span.duration is not None
    assert span.duration >= 0.02
    assert span.end_time is not None
    assert span.end_time >= span.start_time
    assert span.end_time.utcoffset() is not None
    assert span.attributes == {"message_type": "OrderPlaced"}


def test_span_records_errors_and_reraises(
    hooks: ObservabilityHooks, tracing: InMemoryTracingProvider
) -> None:
    with pytest.raises(ValueError, match="bad event"), hooks.start_span("projection.apply"):
        raise ValueError("bad event")
    (span,) = tracing.spans
    assert span.status == "error"
    assert span.error == "ValueError: bad event"
    assert span.duration is not None
    assert span.duration >= 0


def test_event_store_operation_span(
    hooks: ObservabilityHooks, tracing: InMemoryTracingProvider
) -> None:
    with hooks.start_event_store_operation("save") as span:
        span.set_attribute("aggregate_id", "acc-1")
    assert tracing.find("event_store.save") == [span]
    assert span.attributes == {"operation": "save", "aggregate_id": "acc-1"}
    assert span.status == "ok"


def test_span_ends_once(tracing: InMemoryTracingProvider) -> None:
    span = tracing.start_span("op")
    span.end()
    first_end = span.end_time
    span.end()
    assert tracing.spans == [span]
    assert span.end_time == first_end


def test_noop_providers_accept_everything() -> None:
    noop = NoOpMetricsProvider()
    noop.counter("c")
    noop.gauge("g", 1)
    noop.histogram("h", 1, "s")
    noop.record_metric(MetricValue("m", 1))
    hooks = ObservabilityHooks()
    assert isinstance(hooks.metrics, NoOpMetricsProvider)
    assert isinstance(hooks.tracing, NoOpTracingProvider)
    hooks.record_event_stored("a", 1)
    with hooks.start_span("x") as span:
        pass
    assert span.status == "ok"
    assert span.duration is not None


# -- the in-memory providers -------------------------------------------------------------


def test_metrics_provider_builds_metric_values(metrics: InMemoryMetricsProvider) -> None:
    labels = {"queue": "default"}
    metrics.counter("jobs", 2, labels)
    labels["queue"] = "mutated"  # the recorded labels are a copy
    metrics.gauge("depth", 5.0)
    metrics.histogram("latency", 0.3, "s", {"route": "/x"})
    assert [(m.name, m.value, m.metric_type, m.unit, m.labels) for m in metrics.metrics] == [
        ("jobs", 2, "counter", "", {"queue": "default"}),
        ("depth", 5.0, "gauge", "", {}),
        ("latency", 0.3, "histogram", "s", {"route": "/x"}),
    ]
    assert all(m.timestamp.utcoffset() is not None for m in metrics.metrics)


def test_total_sums_matching_counters_only(metrics: InMemoryMetricsProvider) -> None:
    metrics.counter("hits", 1, {"route": "a", "method": "GET"})
    metrics.counter("hits", 2, {"route": "a", "method": "POST"})
    metrics.counter("hits", 4, {"route": "b", "method": "GET"})
    metrics.gauge("hits", 100)  # not a counter
    metrics.counter("misses", 8)
    assert metrics.total("hits") == 7
    assert metrics.total("hits", route="a") == 3
    assert metrics.total("hits", route="a", method="GET") == 1
    assert metrics.total("hits", route="c") == 0
    assert metrics.total("nothing") == 0
    assert metrics.values("hits") == [1, 2, 4, 100]
    assert metrics.values("hits", method="GET") == [1, 4]
    metrics.clear()
    assert metrics.metrics == []
    assert metrics.total("hits") == 0


def test_metrics_provider_is_thread_safe(metrics: InMemoryMetricsProvider) -> None:
    def work() -> None:
        for _ in range(2000):
            metrics.counter("n")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.total("n") == 16_000
    assert len(metrics.metrics) == 16_000


def test_tracing_provider_keeps_finished_spans_in_end_order(
    tracing: InMemoryTracingProvider,
) -> None:
    outer = tracing.start_span("outer")
    inner = tracing.start_span("inner")
    assert outer.provider is tracing
    inner.end()
    outer.end()
    assert tracing.spans == [inner, outer]
    assert tracing.find("outer") == [outer]
    assert tracing.find("missing") == []
    tracing.clear()
    assert tracing.spans == []


# -- the process-wide hooks ----------------------------------------------------------------


def test_init_observability_replaces_the_global_hooks(
    restore_global_hooks: ObservabilityHooks,
    metrics: InMemoryMetricsProvider,
    tracing: InMemoryTracingProvider,
) -> None:
    assert get_observability() is restore_global_hooks
    installed = init_observability(metrics, tracing)
    assert get_observability() is installed
    assert installed is not restore_global_hooks
    assert installed.metrics is metrics
    assert installed.tracing is tracing
    get_observability().record_event_stored("acc", 1)
    assert metrics.total("orchestrix.events.stored") == 1


def test_init_observability_defaults_to_no_ops(
    restore_global_hooks: ObservabilityHooks,
) -> None:
    logger = logging.getLogger("custom")
    installed = init_observability(logger=logger)
    assert isinstance(installed.metrics, NoOpMetricsProvider)
    assert isinstance(installed.tracing, NoOpTracingProvider)
    assert installed.logger is logger
    assert get_observability() is installed


def test_global_hooks_exist_before_any_init() -> None:
    hooks = get_observability()
    assert isinstance(hooks, ObservabilityHooks)
    assert isinstance(hooks.metrics, MetricsProvider)
    assert isinstance(hooks.tracing, TracingProvider)


# Keep the parametrised table honest: every registration method of the reference.
def test_every_reference_hook_is_covered() -> None:
    reference = {
        "on_event_stored",
        "on_event_loaded",
        "on_event_replayed",
        "on_snapshot_saved",
        "on_snapshot_loaded",
        "on_aggregate_error",
    }
    assert {h[0] for h in HOOKS} == reference
    for name in reference:
        method: Callable[..., Any] = getattr(ObservabilityHooks, name)
        assert callable(method)
