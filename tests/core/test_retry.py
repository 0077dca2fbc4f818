"""Tests of orchestrix.core.common.retry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrix.core.common.retry import (
    ExponentialBackoff,
    FixedDelay,
    LinearBackoff,
    NoRetry,
    RetryPolicy,
    retry_async,
    retry_sync,
)


class Flaky:
    """Fails ``failures`` times (each time with a new, numbered error), then returns."""

    def __init__(self, failures: int, result: str = "done") -> None:
        self.failures = failures
        self.result = result
        self.calls: list[tuple[tuple[object, ...], dict[str, object]]] = []
        self.raised: list[Exception] = []

    def __call__(self, *args: object, **kwargs: object) -> str:
        self.calls.append((args, kwargs))
        if len(self.calls) <= self.failures:
            error = ConnectionError(f"failure {len(self.calls)}")
            self.raised.append(error)
            raise error
        return self.result


class AsyncFlaky(Flaky):
    """The coroutine-function twin of :class:`Flaky`."""

    async def call(self, *args: object, **kwargs: object) -> str:
        await asyncio.sleep(0)
        return self(*args, **kwargs)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace time.sleep and asyncio.sleep with recorders (zero-second sleeps pass)."""
    recorded: list[float] = []
    real_async_sleep = asyncio.sleep

    def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    async def fake_async_sleep(seconds: float) -> None:
        if seconds:
            recorded.append(seconds)
        await real_async_sleep(0)

    monkeypatch.setattr(time, "sleep", fake_sleep)
    monkeypatch.setattr(asyncio, "sleep", fake_async_sleep)
    return recorded


ALL_POLICIES: list[Callable[[int], RetryPolicy]] = [
    lambda n: ExponentialBackoff(max_retries=n, initial_delay=0, jitter=False),
    lambda n: ExponentialBackoff(max_retries=n, initial_delay=0),
    lambda n: LinearBackoff(max_retries=n, initial_delay=0, increment=0),
    lambda n: FixedDelay(max_retries=n, delay=0),
]


# -- should_retry ---------------------------------------------------------------------


@pytest.mark.parametrize("make", ALL_POLICIES)
@pytest.mark.parametrize("max_retries", [0, 1, 3, 5])
def test_should_retry_while_attempt_at_most_max_retries(
    make: Callable[[int], RetryPolicy], max_retries: int
) -> None:
    policy = make(max_retries)
    assert [policy.should_retry(n) for n in range(1, max_retries + 3)] == [
        n <= max_retries for n in range(1, max_retries + 3)
    ]
    assert policy.max_retries == max_retries


def test_no_retry_never_retries() -> None:
    policy = NoRetry()
    assert not any(policy.should_retry(n) for n in range(1, 10))
    assert policy.get_delay(1) == 0.0
    assert policy.max_retries == 0


def test_reference_defaults() -> None:
    exp = ExponentialBackoff()
    assert (exp.max_retries, exp.initial_delay, exp.max_delay, exp.multiplier, exp.jitter) == (
        3,
        1.0,
        60.0,
        2.0,
        True,
    )
    lin = LinearBackoff()
    assert (lin.max_retries, lin.initial_delay, lin.increment, lin.max_delay) == (3, 1.0, 1.0, 60.0)
    fixed = FixedDelay()
    assert (fixed.max_retries, fixed.delay) == (3, 1.0)


# -- delays ------------------------------------------------------------------------------


def test_first_retry_waits_the_initial_delay() -> None:
    assert ExponentialBackoff(initial_delay=0.5, jitter=False).get_delay(1) == 0.5
    assert LinearBackoff(initial_delay=0.5).get_delay(1) == 0.5
    assert FixedDelay(delay=0.5).get_delay(1) == 0.5


def test_exponential_growth_and_cap() -> None:
    policy = ExponentialBackoff(max_retries=10, initial_delay=1, max_delay=60, jitter=False)
    assert [policy.get_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    tripled = ExponentialBackoff(initial_delay=0.1, multiplier=3, max_delay=100, jitter=False)
    assert [round(tripled.get_delay(n), 9) for n in range(1, 5)] == [0.1, 0.3, 0.9, 2.7]


def test_exponential_huge_attempt_is_capped_not_an_overflow() -> None:
    policy = ExponentialBackoff(max_delay=30, jitter=False)
    assert policy.get_delay(100_000) == 30


def test_linear_growth_and_cap() -> None:
    policy = LinearBackoff(max_retries=10, initial_delay=1, increment=2, max_delay=8)
    assert [policy.get_delay(n) for n in range(1, 7)] == [1, 3, 5, 7, 8, 8]


def test_fixed_delay_is_constant() -> None:
    policy = FixedDelay(max_retries=5, delay=2.5)
    assert {policy.get_delay(n) for n in range(1, 20)} == {2.5}


def test_jitter_stays_within_a_quarter_and_varies() -> None:
    policy = ExponentialBackoff(max_retries=5, initial_delay=4, max_delay=60)
    for attempt, base in [(1, 4.0), (2, 8.0), (3, 16.0)]:
        samples = [policy.get_delay(attempt) for _ in range(2000)]
        assert all(0.75 * base <= s <= 1.25 * base for s in samples), (attempt, min(samples))
        # Both directions are used: the spread covers most of ±25 %.
        assert min(samples) < 0.8 * base
        assert max(samples) > 1.2 * base
        assert len(set(samples)) > 1000


def test_jitter_never_exceeds_max_delay() -> None:
    policy = ExponentialBackoff(max_retries=10, initial_delay=40, max_delay=50)
    samples = [policy.get_delay(n) for n in (1, 2, 3, 9) for _ in range(1000)]
    assert max(samples) <= 50
    assert min(samples) >= 0.75 * 40
    # At the cap, jitter can only move the delay down.
    capped = [policy.get_delay(3) for _ in range(1000)]
    assert all(37.5 <= s <= 50 for s in capped)
    assert min(capped) < 40


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    initial=st.floats(min_value=0, max_value=100),
    max_delay=st.floats(min_value=0, max_value=1000),
    multiplier=st.floats(min_value=1, max_value=10),
    jitter=st.booleans(),
)
def test_exponential_delay_is_always_between_zero_and_max(
    attempt: int, initial: float, max_delay: float, multiplier: float, jitter: bool
) -> None:
    policy = ExponentialBackoff(
        initial_delay=initial, max_delay=max_delay, multiplier=multiplier, jitter=jitter
    )
    assert 0 <= policy.get_delay(attempt) <= max_delay


@pytest.mark.parametrize(
    "policy",
    [ExponentialBackoff(), LinearBackoff(), FixedDelay()],
    ids=["exponential", "linear", "fixed"],
)
@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_are_numbered_from_one(policy: RetryPolicy, attempt: int) -> None:
    with pytest.raises(ValueError, match="numbered from 1"):
        policy.get_delay(attempt)
    assert not policy.should_retry(attempt)


# -- constructor validation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: ExponentialBackoff(max_retries=-1), "max_retries must be >= 0"),
        (lambda: ExponentialBackoff(initial_delay=-0.1), "initial_delay must be >= 0"),
        (lambda: ExponentialBackoff(max_delay=-1), "max_delay must be >= 0"),
        (lambda: ExponentialBackoff(multiplier=0.5), "multiplier must be >= 1"),
        (lambda: LinearBackoff(max_retries=-2), "max_retries must be >= 0"),
        (lambda: LinearBackoff(initial_delay=-1), "initial_delay must be >= 0"),
        (lambda: LinearBackoff(increment=-1), "increment must be >= 0"),
        (lambda: LinearBackoff(max_delay=-1), "max_delay must be >= 0"),
        (lambda: FixedDelay(max_retries=-1), "max_retries must be >= 0"),
        (lambda: FixedDelay(delay=-1), "delay must be >= 0"),
    ],
)
def test_constructors_reject_bad_arguments(factory: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def test_policies_compare_by_value() -> None:
    assert ExponentialBackoff(max_retries=2) == ExponentialBackoff(max_retries=2)
    assert hash(FixedDelay(1, 0.5)) == hash(FixedDelay(1, 0.5))
    assert ExponentialBackoff() != ExponentialBackoff(max_retries=4)
    assert FixedDelay(delay=1) != LinearBackoff(initial_delay=1, increment=0)
    assert repr(FixedDelay(2, 0.5)) == "FixedDelay(max_retries=2, delay=0.5)"


# -- retry_sync ---------------------------------------------------------------------------


def test_retry_sync_returns_the_result_after_failures(sleeps: list[float]) -> None:
    func = Flaky(failures=2)
    result = retry_sync(func, "a", 1, policy=FixedDelay(max_retries=3, delay=0), key="v")
    assert result == "done"
    assert len(func.calls) == 3
    assert func.calls == [(("a", 1), {"key": "v"})] * 3
    assert sleeps == []


def test_retry_sync_first_success_calls_once() -> None:
    func = Flaky(failures=0, result="first")
    assert retry_sync(func, policy=FixedDelay(max_retries=3, delay=0)) == "first"
    assert len(func.calls) == 1


def test_retry_sync_reraises_the_last_error_when_giving_up() -> None:
    func = Flaky(failures=10)
    with pytest.raises(ConnectionError, match="failure 3") as info:
        retry_sync(func, policy=FixedDelay(max_retries=2, delay=0))
    assert len(func.calls) == 3  # the call plus two retries
    assert info.value is func.raised[-1]


def test_retry_sync_with_no_retry_calls_once() -> None:
    func = Flaky(failures=1)
    with pytest.raises(ConnectionError, match="failure 1"):
        retry_sync(func, policy=NoRetry())
    assert len(func.calls) == 1


def test_retry_sync_waits_the_policy_delays_in_order(sleeps: list[float]) -> None:
    func = Flaky(failures=3)
    policy = LinearBackoff(max_retries=3, initial_delay=1, increment=2)
    assert retry_sync(func, policy=policy) == "done"
    assert sleeps == [1, 3, 5]


def test_retry_sync_default_policy_is_exponential_backoff(sleeps: list[float]) -> None:
    func = Flaky(failures=10)
    with pytest.raises(ConnectionError, match="failure 4"):
        retry_sync(func)
    assert len(func.calls) == 4  # ExponentialBackoff() retries 3 times
    assert len(sleeps) == 3
    for delay, base in zip(sleeps, [1, 2, 4], strict=True):
        assert 0.75 * base <= delay <= 1.25 * base


class OnlyConnectionErrors(FixedDelay):
    """Retries connection errors only."""

    def is_retryable(self, error: BaseException) -> bool:
        return isinstance(error, ConnectionError)


def test_retry_sync_gives_up_at_once_on_a_non_retryable_error() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise KeyError("permanent")

    with pytest.raises(KeyError, match="permanent"):
        retry_sync(broken, policy=OnlyConnectionErrors(max_retries=5, delay=0))
    assert calls == [1]


def test_retry_sync_retries_retryable_errors_of_a_custom_policy() -> None:
    func = Flaky(failures=2)
    assert retry_sync(func, policy=OnlyConnectionErrors(max_retries=5, delay=0)) == "done"
    assert len(func.calls) == 3


def test_retry_sync_does_not_retry_base_exceptions() -> None:
    calls: list[int] = []

    def interrupted() -> None:
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        retry_sync(interrupted, policy=FixedDelay(max_retries=3, delay=0))
    assert calls == [1]


# -- retry_async -------------------------------------------------------------------------


def test_retry_async_returns_the_result_after_failures(sleeps: list[float]) -> None:
    func = AsyncFlaky(failures=2)
    result = asyncio.run(
        retry_async(func.call, "x", policy=FixedDelay(max_retries=3, delay=0), flag=True)
    )
    assert result == "done"
    assert func.calls == [(("x",), {"flag": True})] * 3
    assert sleeps == []


def test_retry_async_reraises_the_last_error_when_giving_up() -> None:
    func = AsyncFlaky(failures=10)
    with pytest.raises(ConnectionError, match="failure 4") as info:
        asyncio.run(retry_async(func.call, policy=FixedDelay(max_retries=3, delay=0)))
    assert len(func.calls) == 4
    assert info.value is func.raised[-1]


def test_retry_async_waits_the_policy_delays(sleeps: list[float]) -> None:
    func = AsyncFlaky(failures=2)
    policy = ExponentialBackoff(max_retries=3, initial_delay=0.5, jitter=False)
    assert asyncio.run(retry_async(func.call, policy=policy)) == "done"
    assert sleeps == [0.5, 1.0]


def test_retry_async_honours_is_retryable() -> None:
    calls: list[int] = []

    async def broken() -> None:
        calls.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        asyncio.run(retry_async(broken, policy=OnlyConnectionErrors(max_retries=5, delay=0)))
    assert calls == [1]


def test_retry_async_with_no_retry_calls_once() -> None:
    func = AsyncFlaky(failures=1)
    with pytest.raises(ConnectionError):
        asyncio.run(retry_async(func.call, policy=NoRetry()))
    assert len(func.calls) == 1
