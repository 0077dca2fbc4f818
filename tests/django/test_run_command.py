"""``orchestrix_run``: the in-process runner, with call_command, in a thread and as a process.

Every test runs on the database of the run (SQLite, PostgreSQL, MariaDB).
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connection, connections
from django.db.models import Sum
from django.test import override_settings

from orchestrix_django.models import EventRecord, ProjectionStateRecord
from orchestrix_django.projections import catch_up as catch_up_for_real
from orchestrix_django.projections import embedded as orchestrix_run
from orchestrix_django.projections import get_projection, projection_status, reset_projection
from orchestrix_django.projections.embedded import EmbeddedRunner
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.testapp import projections as testapp_projections
from tests.django.testapp.events import AccountOpened, MoneyDeposited
from tests.django.testapp.models import AccountBalance, AppliedEvent
from tests.django.waiting import wait_until, waiting_in

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_failures() -> Iterator[None]:
    testapp_projections.FAILING_AMOUNTS.clear()
    testapp_projections._attempts.clear()
    yield
    testapp_projections.FAILING_AMOUNTS.clear()


def open_account(account_id: str, deposits: list[int]) -> None:
    DjangoEventStore().save(
        account_id,
        [
            AccountOpened(account_id=account_id, owner="Ann", initial_deposit=10.0),
            *(MoneyDeposited(account_id=account_id, amount=Decimal(a)) for a in deposits),
        ],
    )


def run(*args: str, **options: Any) -> tuple[str, str]:
    """call_command("orchestrix_run", ...): its stdout and stderr."""
    out, err = StringIO(), StringIO()
    call_command("orchestrix_run", *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def run_failing(*args: str) -> tuple[CommandError, str]:
    out = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("orchestrix_run", *args, stdout=out, stderr=StringIO())
    return raised.value, out.getvalue()


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def log_ids(up_to: int | None = None) -> list[str]:
    records = EventRecord.objects.order_by("position")
    if up_to is not None:
        records = records.filter(position__lte=up_to)
    return list(records.values_list("event_id", flat=True))


def applied(projection: str) -> list[str]:
    rows = AppliedEvent.objects.filter(projection=projection).order_by("id")
    return list(rows.values_list("event_id", flat=True))


# ---------------------------------------------------------------- --once


def test_once_applies_pending_events_and_exits_0() -> None:
    open_account("A-1", [5, 6])
    open_account("A-2", [7])
    out, err = run("--once", "--projection", "test-balances")
    assert re.search(r"test-balances: applied 5 event\(s\) in 1 batch ", out), out
    head = DjangoEventStore().head_position()
    assert "caught up after" in out and f"position {head:,}/{head:,} (lag 0)" in out
    assert err == ""
    assert {(b.account_id, b.balance) for b in AccountBalance.objects.all()} == {
        ("A-1", Decimal("21.00")),
        ("A-2", Decimal("17.00")),
    }
    # Nothing pending: a second pass applies nothing and says nothing about it.
    out, _ = run("--once", "--projection", "test-balances")
    assert "applied" not in out.split("orchestrix_run: caught up")[0]
    # Every configured projection by default, all healthy: exit code 0.
    out, _ = run("--once")
    for pid in ("test-balances", "test-fragile", "test-continuing", "test-flaky"):
        assert projection_status(pid).lag == 0, pid
        assert f"  {pid}:" in out


def test_verbosity_1_sums_a_long_catch_up_and_verbosity_2_shows_every_turn() -> None:
    open_account("V-2", list(range(1, 20)))  # 20 events: five batches of test-fragile
    args = ("--once", "--projection", "test-fragile", "--batches-per-turn", "1")
    out, _ = run(*args)
    [line] = re.findall(r"test-fragile: applied .*", out)
    assert re.fullmatch(
        r"test-fragile: applied 20 event\(s\) in 5 batches \([\d.]+ s\), position [\d,]+, lag 0",
        line,
    )
    reset_projection(get_projection("test-fragile"))
    out, _ = run(*args, verbosity=2)
    assert len(re.findall(r"test-fragile: applied 4 event\(s\) in 1 batch ", out)) == 5


def test_once_prints_nothing_at_verbosity_0() -> None:
    open_account("V-1", [1])
    out, err = run("--once", verbosity=0)
    assert out == "" and err == ""
    assert projection_status("test-balances").lag == 0


def test_a_stopped_projection_makes_once_exit_1_while_the_others_advance() -> None:
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    open_account("B-1", [1, 13, 2])
    error, out = run_failing("--once")
    assert error.returncode == 1
    message = str(error)
    second = EventRecord.objects.get(stream_id="B-1", version=2).position
    assert f"test-fragile is stopped at position {second:,}: " in message
    assert "cannot handle a deposit of 13" in message
    # park-and-continue passed over the event: it needs an operator too.
    assert "test-continuing is unhealthy: it passed over 1 parked event(s)" in message
    # The others advanced to the head.
    assert projection_status("test-balances").lag == 0
    assert projection_status("test-flaky").lag == 0
    assert AccountBalance.objects.get(account_id="B-1").balance == Decimal("26.00")
    assert "test-balances: applied 4 event(s)" in out
    # The advice names the parked event and gives commands that work as written.
    hints = re.findall(r'python manage\.py shell -c "([^"]+)"', message)
    retry = next(h for h in hints if "retry_parked(get_projection('test-fragile')" in h)
    assert any("skip_parked(get_projection('test-fragile')" in h for h in hints)
    testapp_projections.FAILING_AMOUNTS.clear()  # the fix
    exec(retry, {})
    run("--once", "--projection", "test-fragile")  # exit code 0 now
    assert applied("fragile") == log_ids()


def test_a_projection_that_raises_does_not_stop_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    open_account("C-1", [1, 2])

    def catch_up(projection: Any, **kwargs: Any) -> Any:
        if projection.projection_id == "test-fragile":
            raise OperationalError("the read model's database is down")
        return catch_up_for_real(projection, **kwargs)

    monkeypatch.setattr(orchestrix_run, "catch_up", catch_up)
    out = StringIO()
    err = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("orchestrix_run", "--once", stdout=out, stderr=err)
    assert raised.value.returncode == 1
    assert "test-fragile failed: OperationalError: the read model's database is down" in str(
        raised.value
    )
    assert "test-fragile failed" in err.getvalue() and "migrate" in err.getvalue()
    for pid in ("test-balances", "test-continuing", "test-flaky"):
        assert projection_status(pid).lag == 0, pid
    assert projection_status("test-fragile").position == 0


def test_unknown_or_missing_projections_are_refused_with_what_to_do() -> None:
    error, _ = run_failing("--once", "--projection", "nope")
    assert error.returncode == 1
    assert "unknown projection 'nope'. Configured projections: test-balances, " in str(error)
    with override_settings(ORCHESTRIX={"EVENT_MODULES": ["tests.django.testapp.events"]}):
        error, _ = run_failing("--once")
    assert "no projection is configured" in str(error)
    assert "ORCHESTRIX['PROJECTIONS']" in str(error)


def test_a_paused_projection_is_a_note_not_a_failure() -> None:
    open_account("P-1", [1])
    call_command(
        "shell",
        command="from orchestrix_django.projections import get_projection, pause; "
        "pause(get_projection('test-balances'))",
    )
    out, _ = run("--once", "--projection", "test-balances")
    assert "test-balances is paused by an operator. Resume it with: python manage.py" in out
    assert AccountBalance.objects.count() == 0


def test_poll_interval_comes_from_the_settings_and_is_checked() -> None:
    from orchestrix_django.checks import check_configuration

    with override_settings(ORCHESTRIX={**settings.ORCHESTRIX, "POLL_INTERVAL": 0}):
        assert "orchestrix.E006" in [e.id for e in check_configuration()]
    with pytest.raises(CommandError, match="expected a number of seconds > 0"):
        call_command("orchestrix_run", "--once", "--poll-interval", "0")


# ---------------------------------------------------------------- the loop, in a thread


def start(runner: EmbeddedRunner) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            runner.run()
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors


def stop(runner: EmbeddedRunner, thread: threading.Thread, errors: list[BaseException]) -> None:
    runner.stop()
    thread.join(10)
    assert not thread.is_alive(), "the runner did not stop"
    assert not errors, errors


def test_a_commit_in_this_process_wakes_the_runner_at_once() -> None:
    balances = get_projection("test-balances")
    # A poll interval far longer than the test: only the signal can wake it.
    runner = EmbeddedRunner([balances], poll_interval=60)
    thread, errors = start(runner)
    try:
        assert wait_for(lambda: runner.passes >= 1)
        wait_until(
            lambda: waiting_in(thread, threading.Event.wait, EmbeddedRunner.run),
            "the runner waits for a commit after its first pass",
        )
        started = time.monotonic()
        open_account("W-1", [3])
        assert wait_for(lambda: AccountBalance.objects.filter(account_id="W-1").exists(), 10)
        assert time.monotonic() - started < 10
        assert wait_for(lambda: projection_status("test-balances").lag == 0, 10)
        assert runner.wakeups >= 1
    finally:
        stop(runner, thread, errors)
    assert runner.applied["test-balances"] == 2


def test_writes_it_is_not_told_about_are_found_by_polling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if the events were written by another process: no signal reaches the runner.
    monkeypatch.setattr(EmbeddedRunner, "listening", lambda self: nullcontext())
    runner = EmbeddedRunner([get_projection("test-balances")], poll_interval=0.1)
    thread, errors = start(runner)
    try:
        assert wait_for(lambda: runner.passes >= 1)
        open_account("W-2", [4])
        assert wait_for(lambda: projection_status("test-balances").lag == 0, 10)
        assert wait_for(lambda: runner.passes >= 2)
        assert runner.wakeups == 0
    finally:
        stop(runner, thread, errors)


def test_projections_take_turns_so_a_long_catch_up_holds_no_one_back() -> None:
    open_account("T-1", list(range(1, 20)))  # 20 events: five batches of test-fragile
    turns: list[tuple[str, int]] = []
    runner = EmbeddedRunner(
        [get_projection("test-fragile"), get_projection("test-balances")],
        poll_interval=1,
        batches_per_turn=1,
        on_turn=lambda turn: turns.append(
            (turn.projection_id, turn.result.applied if turn.result else -1)
        ),
    )
    runner.catch_up_all()
    # test-balances caught up in its first turn, after one batch of test-fragile.
    assert turns[:2] == [("test-fragile", 4), ("test-balances", 20)]
    assert [t for t in turns if t[0] == "test-fragile"][:5] == [("test-fragile", 4)] * 5
    assert projection_status("test-fragile").lag == 0
    assert applied("fragile") == log_ids()


# ---------------------------------------------------------------- a real process


def start_process(*args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ORCHESTRIX_WORKER_DB_NAME": str(connection.settings_dict["NAME"]),
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "django", "orchestrix_run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], 60)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("orchestrix_run"):
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"orchestrix_run did not start: {line!r} {err}")
    return process


def finish(process: subprocess.Popen[str], timeout: float = 10) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"orchestrix_run did not stop in {timeout} s: {out} {err}") from None
    return process.returncode, out, err


def wait_for_first_batch(process: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait until ``process`` committed a batch of test-fragile; else fail with its output."""
    if wait_for(lambda: projection_status("test-fragile").position > 0, timeout):
        return
    process.kill()
    out, err = process.communicate()
    raise AssertionError(
        f"orchestrix_run applied no batch of test-fragile in {timeout} s "
        f"(exit code {process.returncode}):\n{out[-3000:]}\n{err[-3000:]}"
    )


def read_model_matches_checkpoints() -> None:
    """Each read model holds exactly the events up to its checkpoint: no half batch."""
    fragile = projection_status("test-fragile").position
    assert applied("fragile") == log_ids(fragile)
    balances = projection_status("test-balances").position
    total = AccountBalance.objects.aggregate(events=Sum("events"))["events"] or 0
    assert total == EventRecord.objects.filter(position__lte=balances).count()


@pytest.mark.slow
def test_a_process_polls_for_writes_of_other_processes_and_stops_on_sigterm() -> None:
    process = start_process("--projection", "test-balances", "--poll-interval", "0.2")
    try:
        # The runner's first pass is over (its batch transaction made the checkpoint row).
        wait_until(
            lambda: ProjectionStateRecord.objects.filter(projection_id="test-balances").exists(),
            "the runner's first pass over test-balances",
        )
        open_account("X-1", [1, 2])  # written by this process: the runner only polls
        assert wait_for(lambda: projection_status("test-balances").lag == 0, 15)
        assert AccountBalance.objects.get(account_id="X-1").balance == Decimal("13.00")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code, out, err = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, err
    assert time.monotonic() - started < 5
    assert "SIGTERM received: stopping after the batch in hand" in err
    assert "orchestrix_run: stopped by SIGTERM after" in out
    assert "test-balances: applied 3 event(s)" in out
    head = DjangoEventStore().head_position()
    assert f"test-balances: 3 event(s) applied, position {head:,}/{head:,} (lag 0)" in out


def fill_log(events: int) -> None:
    store = DjangoEventStore()
    per_stream = 500
    for n in range(events // per_stream):
        stream = f"L-{n}"
        store.save(
            stream,
            [AccountOpened(account_id=stream, owner="Ann", initial_deposit=1.0)]
            + [MoneyDeposited(account_id=stream, amount=Decimal(1)) for _ in range(per_stream - 1)],
        )


@pytest.mark.slow
def test_sigterm_in_the_middle_of_a_catch_up_commits_or_rolls_back_whole_batches() -> None:
    fill_log(6000)  # test-fragile needs 1,500 batches of 4
    process = start_process("--projection", "test-fragile", "--projection", "test-balances")
    try:
        wait_for_first_batch(process)
        process.send_signal(signal.SIGTERM)
        code, out, err = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, err
    assert "orchestrix_run: stopped by SIGTERM" in out
    assert projection_status("test-fragile").lag > 0  # it stopped early...
    read_model_matches_checkpoints()  # ...after a whole batch


@pytest.mark.slow
def test_a_second_signal_stops_at_once_and_the_batch_in_hand_is_rolled_back() -> None:
    fill_log(6000)
    process = start_process("--projection", "test-fragile", "--projection", "test-balances")
    try:
        wait_for_first_batch(process)
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGTERM)
        code, _, err = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    # Usually the second signal arrives while the first batch is still in hand.
    assert code in (0, 128 + signal.SIGTERM), err
    if code:
        assert "SIGTERM again: stopping now; the batch in hand is rolled back." in err
    read_model_matches_checkpoints()


@pytest.mark.slow
def test_once_interrupted_by_a_signal_exits_1() -> None:
    fill_log(6000)
    process = start_process("--once", "--projection", "test-fragile")
    try:
        wait_for_first_batch(process)
        process.send_signal(signal.SIGINT)
        code, _, err = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 1, err
    assert "interrupted (stopped by SIGINT) before every projection caught up" in err
    read_model_matches_checkpoints()


@pytest.mark.slow
def test_four_writers_and_two_embedded_runners_build_what_a_replay_builds() -> None:
    """The embedded mode's version of the Celery test: several `orchestrix_run`
    processes, four writer processes, and at the end every projection equals
    what a clean replay builds."""
    from tests.django.test_celery_projections import (
        ALL,
        all_caught_up,
        assert_applied_exactly_once,
        open_accounts,
        read_model,
        wait_until,
    )
    from tests.django.worker_pool import run_workers

    streams = [f"E-{n}" for n in range(8)]
    open_accounts(streams)
    runners = [start_process("--poll-interval", "0.1") for _ in range(2)]
    try:
        results = run_workers(
            [
                (
                    "write",
                    {"seed": seed, "saves": 40, "batch": 3, "streams": streams, "max_hold": 0.01},
                )
                for seed in range(4)
            ]
        )
        assert all(r["outcome"] == "done" for r in results), results
        wait_until(all_caught_up, 120, "the embedded runners catch up")
    finally:
        for runner in runners:
            runner.send_signal(signal.SIGTERM)
        outcomes = [finish(runner) for runner in runners]
    assert [code for code, _, _ in outcomes] == [0, 0], outcomes
    assert_applied_exactly_once()
    live = {projection_id: read_model(projection_id) for projection_id in ALL}
    for projection_id in ALL:
        projection = get_projection(projection_id)
        reset_projection(projection)
        catch_up_for_real(projection)
        assert read_model(projection_id) == live[projection_id], projection_id
