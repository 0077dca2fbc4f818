"""Sagas: ordered steps, reverse compensation, retries, persistence and resume."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from orchestrix.core.common.exceptions import ConcurrencyError, SagaError
from orchestrix.core.common.observability import (
    MetricsProvider,
    MetricValue,
    ObservabilityHooks,
    TraceSpan,
    TracingProvider,
)
from orchestrix.core.common.retry import FixedDelay, NoRetry
from orchestrix.core.execution.saga import (
    InMemorySagaStateStore,
    Saga,
    SagaState,
    SagaStateStore,
    SagaStatus,
    SagaStep,
)
from orchestrix.core.execution.saga_state import StepRecord, StepStatus


class Crash(BaseException):
    """Stands in for a worker dying: not an ``Exception``, so nothing compensates it."""


class Journal:
    """Records every call of every step function, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def record(self, name: str, **arguments: Any) -> None:
        self.calls.append((name, arguments))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def count(self, name: str) -> int:
        return self.names.count(name)


def simple_steps(
    journal: Journal,
    names: list[str],
    fail: str | None = None,
    failing_compensations: tuple[str, ...] = (),
) -> list[SagaStep]:
    """Async steps that journal themselves; ``fail`` names a step that raises."""

    def action_for(name: str) -> Callable[..., Any]:
        async def action(**kwargs: Any) -> str:
            journal.record(name, **kwargs)
            if name == fail:
                raise RuntimeError(f"{name} broke")
            return f"{name}-done"

        return action

    def compensation_for(name: str) -> Callable[..., Any]:
        async def compensation(result: Any) -> None:
            journal.record(f"undo_{name}", result=result)
            if name in failing_compensations:
                raise ValueError(f"cannot undo {name}")

        return compensation

    return [SagaStep(n, action_for(n), compensation_for(n)) for n in names]


class CrashingStore(InMemorySagaStateStore):
    """Dies (after storing) the first time a saved state matches ``crash_after``."""

    def __init__(self, crash_after: Callable[[SagaState], bool]) -> None:
        super().__init__()
        self.crash_after: Callable[[SagaState], bool] | None = crash_after
        self.saves = 0

    async def save(self, state: SagaState) -> SagaState:
        saved = await super().save(state)
        self.saves += 1
        if self.crash_after is not None and self.crash_after(saved):
            self.crash_after = None
            raise Crash("worker died right after this save")
        return saved


class RecordingMetrics(MetricsProvider):
    def __init__(self) -> None:
        self.metrics: list[MetricValue] = []

    def record_metric(self, metric: MetricValue) -> None:
        self.metrics.append(metric)

    def counters(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for metric in self.metrics:
            if metric.metric_type == "counter":
                counts[metric.name] += int(metric.value)
        return counts

    def step_samples(self) -> list[tuple[str, str]]:
        return [
            (m.labels["step"], m.labels["outcome"])
            for m in self.metrics
            if m.name == "orchestrix.sagas.step_duration"
        ]


class RecordingTracer(TracingProvider):
    def __init__(self) -> None:
        self.ended: list[TraceSpan] = []

    def start_span(self, operation: str) -> TraceSpan:
        return TraceSpan(operation=operation, provider=self)

    def end_span(self, span: TraceSpan) -> None:
        self.ended.append(span)


class JsonSyncStore:
    """A synchronous store keeping JSON rows, as a database store would."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def save(self, state: SagaState) -> SagaState:
        current = self.rows.get(state.saga_id)
        actual = 0 if current is None else int(current["version"])
        if actual != state.version:
            raise ConcurrencyError(state.saga_id, state.version, actual)
        row = json.loads(json.dumps(state.to_dict()))
        row["version"] = actual + 1
        self.rows[state.saga_id] = row
        return SagaState.from_dict(row)

    def load(self, saga_id: str) -> SagaState | None:
        row = self.rows.get(saga_id)
        return None if row is None else SagaState.from_dict(row)

    def list(
        self, *, status: SagaStatus | None = None, saga_type: str | None = None
    ) -> list[SagaState]:
        states = [SagaState.from_dict(row) for row in self.rows.values()]
        return [
            s
            for s in states
            if (status is None or s.status is status)
            and (saga_type is None or s.saga_type == saga_type)
        ]


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


# ---------------------------------------------------------------- the reference


def test_the_reference_example_runs_as_written() -> None:
    journal = Journal()

    async def reserve_inventory(order_id: str) -> dict[str, str]:
        journal.record("reserve_inventory", order_id=order_id)
        return {"reservation_id": f"R-{order_id}"}

    async def release_inventory(order_id: str, result: dict[str, str]) -> None:
        journal.record("release_inventory", order_id=order_id, result=result)

    async def charge_payment(order_id: str, amount: float) -> str:
        journal.record("charge_payment", order_id=order_id, amount=amount)
        return "PAY-1"

    async def refund_payment(order_id: str, amount: float) -> None:
        journal.record("refund_payment", order_id=order_id, amount=amount)

    async def ship_order(order_id: str) -> None:
        journal.record("ship_order", order_id=order_id)

    async def main() -> Saga:
        state_store = InMemorySagaStateStore()

        saga = Saga(
            saga_type="order-fulfillment",
            steps=[
                SagaStep(
                    name="reserve_inventory",
                    action=reserve_inventory,
                    compensation=release_inventory,
                ),
                SagaStep(
                    name="charge_payment",
                    action=charge_payment,
                    compensation=refund_payment,
                ),
                SagaStep(name="ship_order", action=ship_order),
            ],
            state_store=state_store,
        )

        await saga.initialize()
        await saga.execute(order_id="ORD-001", amount=99.99)
        assert saga.is_successful()
        return saga

    saga = run(main())
    assert journal.calls == [
        ("reserve_inventory", {"order_id": "ORD-001"}),
        ("charge_payment", {"order_id": "ORD-001", "amount": 99.99}),
        ("ship_order", {"order_id": "ORD-001"}),
    ]
    state = saga.get_state()
    assert state.status is SagaStatus.COMPLETED
    assert saga.is_completed()
    assert state.completed_steps == ["reserve_inventory", "charge_payment", "ship_order"]
    assert state.results == {
        "reserve_inventory": {"reservation_id": "R-ORD-001"},
        "charge_payment": "PAY-1",
        "ship_order": None,
    }
    assert state.kwargs == {"order_id": "ORD-001", "amount": 99.99}
    assert state.error is None
    assert state.current_step is None
    assert all(r.attempts == 1 for r in state.steps)
    assert state.created_at.tzinfo is not None


def test_a_failing_charge_releases_the_inventory_and_nothing_else() -> None:
    journal = Journal()

    async def reserve_inventory(order_id: str) -> dict[str, str]:
        journal.record("reserve_inventory", order_id=order_id)
        return {"reservation_id": "R-1"}

    async def release_inventory(order_id: str, result: dict[str, str]) -> None:
        journal.record("release_inventory", order_id=order_id, result=result)

    async def charge_payment(order_id: str, amount: float) -> str:
        journal.record("charge_payment", order_id=order_id, amount=amount)
        raise RuntimeError("card declined")

    async def refund_payment(order_id: str, amount: float) -> None:
        journal.record("refund_payment")

    async def ship_order(order_id: str) -> None:
        journal.record("ship_order")

    store = InMemorySagaStateStore()
    saga = Saga(
        saga_type="order-fulfillment",
        steps=[
            SagaStep("reserve_inventory", reserve_inventory, release_inventory),
            SagaStep("charge_payment", charge_payment, refund_payment),
            SagaStep("ship_order", ship_order),
        ],
        state_store=store,
    )

    async def main() -> SagaState:
        await saga.initialize()
        return await saga.execute(order_id="ORD-001", amount=99.99)

    state = run(main())
    assert journal.names == ["reserve_inventory", "charge_payment", "release_inventory"]
    assert journal.calls[-1] == (
        "release_inventory",
        {"order_id": "ORD-001", "result": {"reservation_id": "R-1"}},
    )
    assert state.status is SagaStatus.FAILED
    assert saga.is_completed()
    assert not saga.is_successful()
    assert state.error == "step 'charge_payment' failed: RuntimeError: card declined"
    assert state.failed_step == "charge_payment"
    assert state.step("charge_payment").status == StepStatus.FAILED
    assert state.step("charge_payment").error == "RuntimeError: card declined"
    assert state.step("reserve_inventory").status == StepStatus.COMPENSATED
    assert state.step("reserve_inventory").compensated_at is not None
    assert state.step("ship_order").status == StepStatus.PENDING
    assert state.compensated_steps == ["reserve_inventory"]
    assert state.fully_compensated
    # What the store holds is the same final state.
    stored = run(store.load(state.saga_id))
    assert stored == state


# ---------------------------------------------------------------- compensation


def test_compensation_runs_in_reverse_order() -> None:
    journal = Journal()
    steps = simple_steps(journal, ["a", "b", "c", "d", "e"], fail="e")
    state = run(Saga("t", steps, InMemorySagaStateStore()).execute(x=1))
    assert journal.names == ["a", "b", "c", "d", "e", "undo_d", "undo_c", "undo_b", "undo_a"]
    assert state.compensated_steps == ["a", "b", "c", "d"]
    assert state.status is SagaStatus.FAILED


def test_a_failing_compensation_is_recorded_and_the_others_still_run() -> None:
    journal = Journal()
    steps = simple_steps(journal, ["a", "b", "c", "d"], fail="d", failing_compensations=("b",))
    state = run(Saga("t", steps, InMemorySagaStateStore()).execute())
    assert journal.names == ["a", "b", "c", "d", "undo_c", "undo_b", "undo_a"]
    assert state.status is SagaStatus.FAILED
    assert state.failed_compensations == ["b"]
    assert state.compensated_steps == ["a", "c"]
    assert state.step("b").status == StepStatus.COMPENSATION_FAILED
    assert state.step("b").compensation_error == "ValueError: cannot undo b"
    assert state.step("b").compensated_at is None
    assert not state.fully_compensated
    assert state.error == "step 'd' failed: RuntimeError: d broke"


def test_the_failed_step_itself_is_not_compensated() -> None:
    journal = Journal()
    steps = simple_steps(journal, ["a", "b"], fail="a")
    state = run(Saga("t", steps, InMemorySagaStateStore()).execute())
    assert journal.names == ["a"]
    assert state.status is SagaStatus.FAILED
    assert state.fully_compensated
    assert state.step("b").status == StepStatus.PENDING


def test_a_step_without_compensation_counts_as_compensated() -> None:
    journal = Journal()

    async def log_only() -> str:
        journal.record("log_only")
        return "logged"

    steps = [SagaStep("log_only", log_only), *simple_steps(journal, ["b"], fail="b")]
    state = run(Saga("t", steps, InMemorySagaStateStore()).execute())
    assert journal.names == ["log_only", "b"]
    assert state.step("log_only").status == StepStatus.COMPENSATED
    assert state.fully_compensated


# ---------------------------------------------------------------- arguments


def test_each_callable_receives_only_what_its_signature_declares() -> None:
    seen: dict[str, Any] = {}

    def positional(order_id, amount):  # type: ignore[no-untyped-def]
        seen["positional"] = (order_id, amount)
        return {"total": amount * 2}

    async def keyword_only(*, order_id: str, missing: str = "default") -> str:
        seen["keyword_only"] = (order_id, missing)
        return "kw"

    def takes_all(**kwargs: Any) -> None:
        seen["takes_all"] = kwargs

    def with_context(
        order_id: str, saga_id: str, idempotency_key: str, results: dict[str, Any]
    ) -> None:
        seen["with_context"] = (order_id, saga_id, idempotency_key, dict(results))

    def positional_only(order_id: str, /, amount: float) -> None:
        seen["positional_only"] = (order_id, amount)

    def nothing() -> int:
        seen["nothing"] = True
        return 7

    def fails(results: dict[str, Any]) -> None:
        raise RuntimeError("stop")

    def undo_positional(result: dict[str, Any], order_id: str, **rest: Any) -> None:
        seen["undo_positional"] = (result, order_id, rest)

    def undo_keyword_only(result: str, idempotency_key: str) -> None:
        seen["undo_keyword_only"] = (result, idempotency_key)

    def undo_nothing(result: int) -> None:
        seen["undo_nothing"] = result

    steps = [
        SagaStep("positional", positional, undo_positional),
        SagaStep("keyword_only", keyword_only, undo_keyword_only),
        SagaStep("takes_all", takes_all),
        SagaStep("with_context", with_context),
        SagaStep("positional_only", positional_only),
        SagaStep("nothing", nothing, undo_nothing),
        SagaStep("fails", fails),
    ]
    saga = Saga("args", steps, InMemorySagaStateStore(), saga_id="S-1")
    run(saga.execute(order_id="O-1", amount=5))

    assert seen["positional"] == ("O-1", 5)
    assert seen["keyword_only"] == ("O-1", "default")
    # **kwargs gets the saga kwargs, never the context arguments.
    assert seen["takes_all"] == {"order_id": "O-1", "amount": 5}
    assert seen["with_context"] == (
        "O-1",
        "S-1",
        "S-1:with_context",
        {"positional": {"total": 10}, "keyword_only": "kw", "takes_all": None},
    )
    assert seen["positional_only"] == ("O-1", 5)
    assert seen["nothing"] is True
    assert seen["undo_nothing"] == 7
    assert seen["undo_keyword_only"] == ("kw", "S-1:keyword_only")
    assert seen["undo_positional"] == ({"total": 10}, "O-1", {"amount": 5})


def test_a_saga_kwarg_wins_over_a_context_name_but_not_over_a_compensation_result() -> None:
    seen: dict[str, Any] = {}

    def act(saga_id: str, result: str) -> str:
        seen["act"] = (saga_id, result)
        return "from-action"

    def undo(saga_id: str, result: str) -> None:
        seen["undo"] = (saga_id, result)

    def fail() -> None:
        raise RuntimeError("x")

    steps = [SagaStep("act", act, undo), SagaStep("fail", fail)]
    run(Saga("t", steps, InMemorySagaStateStore()).execute(saga_id="mine", result="kwarg"))
    assert seen["act"] == ("mine", "kwarg")
    assert seen["undo"] == ("mine", "from-action")


def test_sync_and_async_callables_and_callable_objects_all_work() -> None:
    class AsyncCallable:
        async def __call__(self, n: int) -> int:
            await asyncio.sleep(0)
            return n + 1

    def sync_step(n: int) -> int:
        return n * 10

    steps = [SagaStep("obj", AsyncCallable()), SagaStep("sync", sync_step)]
    state = run(Saga("t", steps, InMemorySagaStateStore()).execute(n=1))
    assert state.results == {"obj": 2, "sync": 10}


def test_run_sync_moves_sync_callables_and_sync_stores_off_the_loop() -> None:
    threads: list[str] = []
    main_thread = threading.current_thread().name

    def sync_step() -> None:
        threads.append(threading.current_thread().name)

    async def runner(function: Callable[[], Any]) -> Any:
        return await asyncio.to_thread(function)

    saga = Saga("t", [SagaStep("s", sync_step)], InMemorySagaStateStore(), run_sync=runner)
    state = run(saga.execute())
    assert state.status is SagaStatus.COMPLETED
    assert threads
    assert main_thread not in threads


def test_a_missing_required_argument_fails_the_step() -> None:
    def needs(order_id: str) -> None:
        raise AssertionError("must not be called")

    state = run(Saga("t", [SagaStep("needs", needs)], InMemorySagaStateStore()).execute())
    assert state.status is SagaStatus.FAILED
    assert state.step("needs").error is not None
    assert "order_id" in state.step("needs").error


# ---------------------------------------------------------------- retries


def test_a_step_is_retried_per_its_policy() -> None:
    calls: list[str] = []

    def flaky(idempotency_key: str) -> str:
        calls.append(idempotency_key)
        if len(calls) < 3:
            raise ConnectionError("try again")
        return "ok"

    step = SagaStep("flaky", flaky, retry_policy=FixedDelay(max_retries=2, delay=0))
    state = run(Saga("t", [step], InMemorySagaStateStore(), saga_id="S").execute())
    assert state.status is SagaStatus.COMPLETED
    assert calls == ["S:flaky"] * 3  # the key is stable across retries
    assert state.step("flaky").attempts == 3
    assert state.step("flaky").error is None


def test_a_step_that_exhausts_its_retries_fails() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise ConnectionError("down")

    step = SagaStep("broken", broken, retry_policy=FixedDelay(max_retries=2, delay=0))
    state = run(Saga("t", [step], InMemorySagaStateStore()).execute())
    assert len(calls) == 3
    assert state.status is SagaStatus.FAILED
    assert state.step("broken").attempts == 3
    assert state.step("broken").error == "ConnectionError: down"


def test_no_retry_by_default_and_for_unretryable_errors() -> None:
    calls: list[str] = []

    class OnlyConnectionErrors(FixedDelay):
        def is_retryable(self, error: BaseException) -> bool:
            return isinstance(error, ConnectionError)

    def once() -> None:
        calls.append("once")
        raise ConnectionError("x")

    def typed() -> None:
        calls.append("typed")
        raise TypeError("bug")

    run(Saga("t", [SagaStep("once", once)], InMemorySagaStateStore()).execute())
    step = SagaStep("typed", typed, retry_policy=OnlyConnectionErrors(max_retries=5, delay=0))
    run(Saga("t", [step], InMemorySagaStateStore()).execute())
    assert calls == ["once", "typed"]


def test_the_retry_delay_comes_from_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    attempts: list[int] = []

    def flaky() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError

    step = SagaStep("flaky", flaky, retry_policy=FixedDelay(max_retries=3, delay=0.25))
    run(Saga("t", [step], InMemorySagaStateStore()).execute())
    assert delays == [0.25, 0.25]


def test_compensations_are_retried_per_their_policy() -> None:
    undo_calls: list[int] = []

    def act() -> str:
        return "r"

    def undo(result: str) -> None:
        undo_calls.append(1)
        if len(undo_calls) < 2:
            raise ConnectionError("later")

    def fail() -> None:
        raise RuntimeError("no")

    steps = [
        SagaStep("act", act, undo, compensation_retry_policy=FixedDelay(max_retries=1, delay=0)),
        SagaStep("fail", fail),
    ]
    state = run(Saga("t", steps, InMemorySagaStateStore()).execute())
    assert len(undo_calls) == 2
    assert state.step("act").status == StepStatus.COMPENSATED
    assert state.step("act").compensation_attempts == 2
    assert state.fully_compensated


def test_default_policies_are_none_meaning_no_retry() -> None:
    step = SagaStep("s", lambda: None)
    assert step.retry_policy is None
    assert step.compensation_retry_policy is None
    assert NoRetry().should_retry(1) is False


# ---------------------------------------------------------------- persistence and resume


def test_state_is_persisted_before_and_after_every_step() -> None:
    snapshots: list[tuple[str, dict[str, str]]] = []

    class Spy(InMemorySagaStateStore):
        async def save(self, state: SagaState) -> SagaState:
            snapshots.append((state.status.value, {r.name: r.status.value for r in state.steps}))
            return await super().save(state)

    journal = Journal()
    run(Saga("t", simple_steps(journal, ["a", "b"]), Spy()).execute())
    assert snapshots == [
        ("pending", {"a": "pending", "b": "pending"}),
        ("in_progress", {"a": "pending", "b": "pending"}),
        ("in_progress", {"a": "running", "b": "pending"}),
        ("in_progress", {"a": "completed", "b": "pending"}),
        ("in_progress", {"a": "completed", "b": "running"}),
        ("in_progress", {"a": "completed", "b": "completed"}),
        ("completed", {"a": "completed", "b": "completed"}),
    ]


def test_a_crash_after_a_completed_step_resumes_with_the_remaining_steps() -> None:
    journal = Journal()
    store = CrashingStore(crash_after=lambda s: s.step("b").status == StepStatus.COMPLETED)
    names = ["a", "b", "c", "d"]
    first = Saga("t", simple_steps(journal, names), store, saga_id="S-1")
    with pytest.raises(Crash):
        run(first.execute(order_id="O-1"))
    stored = run(store.load("S-1"))
    assert stored.status is SagaStatus.IN_PROGRESS
    assert stored.completed_steps == ["a", "b"]

    async def resume() -> SagaState:
        second = Saga("t", simple_steps(journal, names), store)
        await second.initialize("S-1")
        return await second.execute()  # the stored kwargs are used

    state = run(resume())
    assert state.status is SagaStatus.COMPLETED
    assert journal.names == ["a", "b", "c", "d"]  # every step exactly once
    assert all(arguments == {"order_id": "O-1"} for _, arguments in journal.calls)


def test_a_step_interrupted_mid_call_runs_again_with_the_same_idempotency_key() -> None:
    keys: list[str] = []
    crash = [True]

    async def pay(idempotency_key: str) -> str:
        keys.append(idempotency_key)
        if crash[0]:
            crash[0] = False
            raise Crash("killed mid-payment")
        return "paid"

    journal = Journal()
    store = InMemorySagaStateStore()

    def build() -> Saga:
        steps = [*simple_steps(journal, ["reserve"]), SagaStep("pay", pay)]
        return Saga("t", steps, store, saga_id="S-2")

    with pytest.raises(Crash):
        run(build().execute(amount=1))
    stored = run(store.load("S-2"))
    assert stored.step("pay").status == StepStatus.RUNNING  # known to be interrupted
    assert stored.step("pay").attempts == 1
    assert stored.current_step == "pay"

    state = run(build().execute())  # auto-initialize loads the stored saga
    assert state.status is SagaStatus.COMPLETED
    assert keys == ["S-2:pay", "S-2:pay"]
    assert journal.count("reserve") == 1
    assert state.step("pay").attempts == 2


def test_a_crash_during_compensation_resumes_the_remaining_compensations() -> None:
    journal = Journal()
    store = CrashingStore(crash_after=lambda s: s.step("c").status == StepStatus.COMPENSATED)
    names = ["a", "b", "c", "d"]
    with pytest.raises(Crash):
        run(Saga("t", simple_steps(journal, names, fail="d"), store, saga_id="S-3").execute())
    stored = run(store.load("S-3"))
    assert stored.status is SagaStatus.COMPENSATING
    assert stored.compensated_steps == ["c"]

    async def resume() -> SagaState:
        saga = Saga("t", simple_steps(journal, names, fail="d"), store)
        await saga.initialize("S-3")
        return await saga.execute()

    state = run(resume())
    assert state.status is SagaStatus.FAILED
    assert state.fully_compensated
    assert journal.names == ["a", "b", "c", "d", "undo_c", "undo_b", "undo_a"]


def test_resume_does_not_retry_a_compensation_that_already_failed() -> None:
    journal = Journal()
    store = CrashingStore(
        crash_after=lambda s: s.step("c").status == StepStatus.COMPENSATION_FAILED
    )
    names = ["a", "b", "c", "d"]

    def build() -> Saga:
        steps = simple_steps(journal, names, fail="d", failing_compensations=("c",))
        return Saga("t", steps, store, saga_id="S-4")

    with pytest.raises(Crash):
        run(build().execute())
    state = run(build().execute())
    assert journal.names == ["a", "b", "c", "d", "undo_c", "undo_b", "undo_a"]
    assert state.failed_compensations == ["c"]


def test_resuming_from_a_hand_built_state() -> None:
    journal = Journal()
    store = InMemorySagaStateStore()
    state = SagaState(
        saga_id="S-5",
        saga_type="t",
        status=SagaStatus.IN_PROGRESS,
        steps=[
            StepRecord("a", StepStatus.COMPLETED, attempts=1, result="from-before"),
            StepRecord("b", StepStatus.RUNNING, attempts=1),
            StepRecord("c"),
        ],
        kwargs={"order_id": "O-9"},
    )
    run(store.save(state))
    seen: dict[str, Any] = {}

    def c(results: dict[str, Any]) -> None:
        seen.update(results)

    steps = [*simple_steps(journal, ["a", "b"]), SagaStep("c", c)]
    final = run(Saga("t", steps, store, saga_id="S-5").execute())
    assert final.status is SagaStatus.COMPLETED
    assert journal.names == ["b"]
    assert seen == {"a": "from-before", "b": "b-done"}


def test_resuming_with_different_kwargs_is_refused() -> None:
    store = CrashingStore(crash_after=lambda s: s.status is SagaStatus.IN_PROGRESS)
    journal = Journal()
    with pytest.raises(Crash):
        run(Saga("t", simple_steps(journal, ["a"]), store, saga_id="S-6").execute(x=1))
    with pytest.raises(SagaError, match="stored kwargs"):
        run(Saga("t", simple_steps(journal, ["a"]), store, saga_id="S-6").execute(x=2))
    state = run(Saga("t", simple_steps(journal, ["a"]), store, saga_id="S-6").execute(x=1))
    assert state.status is SagaStatus.COMPLETED


def test_a_step_added_to_the_definition_runs_on_resume_and_a_removed_one_is_refused() -> None:
    journal = Journal()
    store = InMemorySagaStateStore()
    run(
        store.save(
            SagaState(
                saga_id="S-7",
                saga_type="t",
                status=SagaStatus.IN_PROGRESS,
                steps=[StepRecord("a", StepStatus.COMPLETED, attempts=1)],
            )
        )
    )
    state = run(Saga("t", simple_steps(journal, ["a", "b"]), store, saga_id="S-7").execute())
    assert journal.names == ["b"]
    assert state.status is SagaStatus.COMPLETED

    run(
        store.save(
            SagaState(
                saga_id="S-8",
                saga_type="t",
                status=SagaStatus.IN_PROGRESS,
                steps=[StepRecord("gone", StepStatus.COMPLETED)],
            )
        )
    )
    with pytest.raises(SagaError, match="no longer defines"):
        run(Saga("t", simple_steps(journal, ["a"]), store).initialize("S-8"))


def test_initialize_refuses_a_saga_of_another_type() -> None:
    store = InMemorySagaStateStore()
    run(Saga("one", [], store, saga_id="S-9").initialize())
    with pytest.raises(SagaError, match="'one' saga"):
        run(Saga("two", [], store).initialize("S-9"))


def test_initialize_creates_a_pending_state_with_correlation() -> None:
    store = InMemorySagaStateStore()
    saga = Saga("t", simple_steps(Journal(), ["a"]), store)

    state = run(saga.initialize(correlation_id="corr", causation_id="cause", trace_id="trace"))
    assert state.status is SagaStatus.PENDING
    assert state.version == 1
    assert saga.saga_id == state.saga_id
    assert (state.correlation_id, state.causation_id, state.trace_id) == (
        "corr",
        "cause",
        "trace",
    )
    assert [r.name for r in state.steps] == ["a"]
    assert run(store.load(state.saga_id)) == state
    assert not saga.is_completed()
    assert not saga.is_successful()


def test_initialize_twice_with_another_id_is_refused() -> None:
    saga = Saga("t", [], InMemorySagaStateStore())
    run(saga.initialize("x"))
    assert run(saga.initialize("x")).saga_id == "x"
    with pytest.raises(SagaError, match="already initialized"):
        run(saga.initialize("y"))


def test_execute_without_initialize_initializes() -> None:
    store = InMemorySagaStateStore()
    saga = Saga("t", simple_steps(Journal(), ["a"]), store)
    state = run(saga.execute())
    assert state.status is SagaStatus.COMPLETED
    assert saga.saga_id is not None
    assert run(store.load(saga.saga_id)) is not None


def test_get_state_before_initialize_is_an_error() -> None:
    saga = Saga("t", [], InMemorySagaStateStore())
    with pytest.raises(SagaError, match="not initialized"):
        saga.get_state()
    assert not saga.is_completed()


def test_get_state_returns_a_copy() -> None:
    saga = Saga("t", simple_steps(Journal(), ["a"]), InMemorySagaStateStore())
    run(saga.execute())
    saga.get_state().steps.clear()
    assert len(saga.get_state().steps) == 1


def test_an_empty_saga_completes() -> None:
    state = run(Saga("t", [], InMemorySagaStateStore()).execute())
    assert state.status is SagaStatus.COMPLETED


@pytest.mark.parametrize("fail", [None, "b"])
def test_re_executing_a_finished_saga_is_a_no_op(fail: str | None) -> None:
    journal = Journal()
    store = InMemorySagaStateStore()
    saga = Saga("t", simple_steps(journal, ["a", "b"], fail=fail), store)

    async def main() -> tuple[SagaState, SagaState]:
        first = await saga.execute(x=1)
        second = await saga.execute(x=2)
        return first, second

    first, second = run(main())
    calls = list(journal.names)
    assert first == second
    again = run(
        Saga("t", simple_steps(journal, ["a", "b"]), store, saga_id=first.saga_id).execute()
    )
    assert journal.names == calls
    assert again.status is first.status


def test_a_second_saga_object_sees_the_first_ones_progress() -> None:
    store = InMemorySagaStateStore()
    journal = Journal()

    async def main() -> SagaState:
        one = Saga("t", simple_steps(journal, ["a"]), store, saga_id="S-10")
        two = Saga("t", simple_steps(journal, ["a"]), store, saga_id="S-10")
        await one.initialize()
        await two.initialize()
        await one.execute()
        return await two.execute()  # reloads: already completed

    state = run(main())
    assert state.status is SagaStatus.COMPLETED
    assert journal.names == ["a"]


def test_a_concurrent_writer_stops_the_saga_with_concurrency_error() -> None:
    store = InMemorySagaStateStore()

    async def main() -> None:
        saga = Saga("t", [SagaStep("a", interfere)], store, saga_id="S-11")
        await saga.execute()

    async def interfere() -> None:
        stolen = await store.load("S-11")
        assert stolen is not None
        await store.save(stolen)  # another worker wrote meanwhile

    with pytest.raises(ConcurrencyError) as raised:
        run(main())
    assert raised.value.aggregate_id == "S-11"


def test_executing_the_same_saga_object_concurrently_is_refused() -> None:
    async def slow() -> None:
        await asyncio.sleep(0.01)

    async def main() -> None:
        saga = Saga("t", [SagaStep("slow", slow)], InMemorySagaStateStore())
        await saga.initialize()
        await asyncio.gather(saga.execute(), saga.execute())

    with pytest.raises(SagaError, match="already executing"):
        run(main())


def test_a_sync_store_works() -> None:
    store = JsonSyncStore()
    journal = Journal()
    store_saga = Saga("t", simple_steps(journal, ["a", "b"], fail="b"), store, saga_id="S-12")
    state = run(store_saga.execute(amount=Decimal("1.10")))
    assert state.status is SagaStatus.FAILED
    loaded = store.load("S-12")
    assert loaded is not None
    assert loaded.kwargs == {"amount": Decimal("1.10")}
    assert loaded.compensated_steps == ["a"]


# ---------------------------------------------------------------- definition errors


def test_duplicate_step_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate step name 'a'"):
        Saga("t", [SagaStep("a", lambda: 1), SagaStep("a", lambda: 2)], InMemorySagaStateStore())


def test_bad_steps_and_types_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        SagaStep("", lambda: 1)
    with pytest.raises(TypeError, match="action must be callable"):
        SagaStep("a", "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="compensation must be callable"):
        SagaStep("a", lambda: 1, 42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="saga_type"):
        Saga("", [], InMemorySagaStateStore())
    with pytest.raises(TypeError, match="must be SagaStep"):
        Saga("t", [lambda: 1], InMemorySagaStateStore())  # type: ignore[list-item]


def test_the_in_memory_store_satisfies_the_protocol() -> None:
    assert isinstance(InMemorySagaStateStore(), SagaStateStore)


# ---------------------------------------------------------------- observability


def test_metrics_and_hooks_report_a_successful_saga() -> None:
    metrics = RecordingMetrics()
    hooks = ObservabilityHooks(metrics_provider=metrics)
    events: list[tuple[Any, ...]] = []
    hooks.on("saga_started", lambda *a: events.append(("started", *a)))
    hooks.on("saga_completed", lambda *a: events.append(("completed", *a)))
    hooks.on("saga_step", lambda t, step, duration, ok: events.append(("step", step, ok)))
    saga = Saga(
        "orders",
        simple_steps(Journal(), ["a", "b"]),
        InMemorySagaStateStore(),
        observability=hooks,
        saga_id="S-20",
    )
    run(saga.execute())
    assert metrics.counters() == {"orchestrix.sagas.started": 1, "orchestrix.sagas.completed": 1}
    assert metrics.step_samples() == [("a", "ok"), ("b", "ok")]
    assert events == [
        ("started", "orders", "S-20"),
        ("step", "a", True),
        ("step", "b", True),
        ("completed", "orders", "S-20"),
    ]
    durations = [m.value for m in metrics.metrics if m.metric_type == "histogram"]
    assert all(d >= 0 for d in durations)


def test_metrics_report_failure_and_compensation() -> None:
    metrics = RecordingMetrics()
    hooks = ObservabilityHooks(metrics_provider=metrics)
    failures: list[tuple[str, str, str]] = []
    hooks.on("saga_failed", lambda *a: failures.append(a))
    steps = simple_steps(Journal(), ["a", "b"], fail="b")
    steps[1].retry_policy = FixedDelay(max_retries=1, delay=0)
    saga = Saga("orders", steps, InMemorySagaStateStore(), observability=hooks, saga_id="S-21")
    run(saga.execute())
    assert metrics.counters() == {
        "orchestrix.sagas.started": 1,
        "orchestrix.sagas.compensated": 1,
        "orchestrix.sagas.failed": 1,
    }
    assert metrics.step_samples() == [
        ("a", "ok"),
        ("b", "error"),
        ("b", "error"),
        ("a:compensation", "ok"),
    ]
    assert failures == [("orders", "S-21", "step 'b' failed: RuntimeError: b broke")]


def test_a_partly_compensated_saga_is_failed_but_not_compensated() -> None:
    metrics = RecordingMetrics()
    steps = simple_steps(Journal(), ["a", "b"], fail="b", failing_compensations=("a",))
    saga = Saga(
        "o",
        steps,
        InMemorySagaStateStore(),
        observability=ObservabilityHooks(metrics_provider=metrics),
    )
    run(saga.execute())
    assert metrics.counters() == {"orchestrix.sagas.started": 1, "orchestrix.sagas.failed": 1}


def test_each_attempt_is_wrapped_in_a_span() -> None:
    tracer = RecordingTracer()
    steps = simple_steps(Journal(), ["a", "b"], fail="b")
    saga = Saga("orders", steps, InMemorySagaStateStore(), tracer, saga_id="S-22")
    run(saga.initialize(correlation_id="corr-9"))
    run(saga.execute())
    spans = [(s.operation, s.attributes["saga.step"], s.status) for s in tracer.ended]
    assert spans == [
        ("saga.step", "a", "ok"),
        ("saga.step", "b", "error"),
        ("saga.compensation", "a", "ok"),
    ]
    first = tracer.ended[0]
    assert first.attributes["saga.id"] == "S-22"
    assert first.attributes["saga.type"] == "orders"
    assert first.attributes["saga.attempt"] == 1
    assert first.attributes["saga.correlation_id"] == "corr-9"
    assert tracer.ended[1].error == "RuntimeError: b broke"


# ---------------------------------------------------------------- the state


def test_state_to_dict_is_json_and_round_trips() -> None:
    journal = Journal()
    saga = Saga("t", simple_steps(journal, ["a", "b"], fail="b"), InMemorySagaStateStore())
    state = run(saga.execute(amount=Decimal("2.50"), tags={"x", "y"}))
    data = json.loads(json.dumps(state.to_dict()))
    again = SagaState.from_dict(data)
    assert again == state
    assert again.kwargs["amount"] == Decimal("2.50")
    assert data["status"] == "failed"
    assert data["steps"][0]["status"] == "compensated"


def test_status_values() -> None:
    assert [s.name for s in SagaStatus] == [
        "PENDING",
        "IN_PROGRESS",
        "COMPLETED",
        "COMPENSATING",
        "FAILED",
    ]
    assert SagaStatus("in_progress") is SagaStatus.IN_PROGRESS
    assert StepStatus("compensation_failed") is StepStatus.COMPENSATION_FAILED
    assert isinstance(StepStatus.COMPENSATED, str)  # a StrEnum: compares equal to its value


def test_state_helpers() -> None:
    state = SagaState(
        saga_id="s",
        saga_type="t",
        status=SagaStatus.COMPENSATING,
        steps=[
            StepRecord("a", StepStatus.COMPENSATED, result=1),
            StepRecord("b", StepStatus.COMPENSATION_FAILED, result=2),
            StepRecord("c", StepStatus.COMPLETED, result=3),
            StepRecord("d", StepStatus.FAILED),
            StepRecord("e"),
        ],
    )
    assert state.completed_steps == ["a", "b", "c"]
    assert state.compensated_steps == ["a"]
    assert state.failed_compensations == ["b"]
    assert state.failed_step == "d"
    assert state.results == {"a": 1, "b": 2, "c": 3}
    assert not state.fully_compensated
    assert not state.is_finished
    with pytest.raises(KeyError):
        state.step("zzz")
