"""``orchestrix_replay`` (rebuild in place) and ``orchestrix_rebuild`` (zero downtime).

Every test runs on the database of the run (SQLite, PostgreSQL, MariaDB).
"""

from __future__ import annotations

import builtins
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from orchestrix.core.messaging.message import Event
from orchestrix_django.models import ActiveProjection, EventRecord
from orchestrix_django.projections import (
    CatchUpResult,
    DjangoProjection,
    NotCaughtUpError,
    RebuildError,
    active_projection,
    active_read_model,
    catch_up,
    get_projection,
    projection_status,
    projections,
    rebuild,
    switch_projection,
)
from orchestrix_django.storage.events import DjangoEventStore
from tests.django.testapp import projections as testapp_projections
from tests.django.testapp.events import AccountOpened, MoneyDeposited
from tests.django.testapp.models import AccountBalance, AppliedEvent

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]

# -- a new version of test-balances, for the rebuild tests: its own "table" (rows
# of AppliedEvent marked "balances-v2"), and a deposit it may fail on.

balances_v2 = DjangoProjection("test-balances-v2", batch_size=2)


@balances_v2.on(Event)
def record_v2(event: Event) -> None:
    if isinstance(event, MoneyDeposited) and event.amount in testapp_projections.FAILING_AMOUNTS:
        raise RuntimeError(f"v2 cannot handle a deposit of {event.amount}")
    AppliedEvent.objects.create(projection="balances-v2", event_id=event.id, position=0)


@balances_v2.on_reset
def clear_v2() -> None:
    AppliedEvent.objects.filter(projection="balances-v2").delete()


WITH_V2 = {
    **settings.ORCHESTRIX,
    "PROJECTIONS": [
        *settings.ORCHESTRIX["PROJECTIONS"],
        f"{__name__}.balances_v2",
    ],
}


@pytest.fixture(autouse=True)
def _no_failures() -> Iterator[None]:
    testapp_projections.FAILING_AMOUNTS.clear()
    yield
    testapp_projections.FAILING_AMOUNTS.clear()


@pytest.fixture
def with_v2() -> Iterator[None]:
    with override_settings(ORCHESTRIX=WITH_V2):
        yield


class TTY(StringIO):
    """A stdout that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def open_account(account_id: str, deposits: list[int]) -> None:
    DjangoEventStore().save(
        account_id,
        [
            AccountOpened(account_id=account_id, owner="Ann", initial_deposit=10.0),
            *(MoneyDeposited(account_id=account_id, amount=Decimal(a)) for a in deposits),
        ],
    )


def balances() -> list[tuple[str, Decimal, int]]:
    rows = AccountBalance.objects.order_by("account_id")
    return list(rows.values_list("account_id", "balance", "events"))


def log_ids() -> list[str]:
    return list(EventRecord.objects.order_by("position").values_list("event_id", flat=True))


def v2_ids() -> list[str]:
    rows = AppliedEvent.objects.filter(projection="balances-v2").order_by("id")
    return list(rows.values_list("event_id", flat=True))


def command(name: str, *args: str, stdout: StringIO | None = None) -> str:
    out = stdout if stdout is not None else StringIO()
    call_command(name, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def failing(name: str, *args: str) -> CommandError:
    with pytest.raises(CommandError) as raised:
        call_command(name, *args, stdout=StringIO(), stderr=StringIO())
    return raised.value


# ---------------------------------------------------------------- orchestrix_replay


def test_replay_rebuilds_an_identical_read_model_and_reports_events_per_second() -> None:
    open_account("R-1", [5, 6])
    open_account("R-2", [7])
    catch_up(get_projection("test-balances"))
    before = balances()
    AccountBalance.objects.filter(account_id="R-1").update(balance=Decimal("999"))  # drifted
    out = command("orchestrix_replay", "test-balances", "--no-input")
    assert balances() == before
    assert re.search(
        r"Replayed test-balances: 5 event\(s\) in \d+\.\d s \([\d,]+ events/s\); "
        r"position [\d,]+, lag 0\.",
        out,
    ), out
    status = projection_status("test-balances")
    assert status.lag == 0 and status.healthy and status.events_processed == 5


def test_replay_prints_a_progress_line_every_n_batches_when_not_on_a_terminal() -> None:
    open_account("N-1", list(range(1, 10)))  # 10 events
    out = command(
        "orchestrix_replay",
        "test-balances",
        "--no-input",
        "--batch-size",
        "2",
        "--progress-every",
        "2",
    )
    lines = [line for line in out.splitlines() if line.startswith("test-balances: position")]
    # Five batches of two: a line after the 2nd and the 4th.
    assert len(lines) == 2, out
    assert re.fullmatch(
        r"test-balances: position [\d,]+/[\d,]+ \(40%\), 4 events applied, [\d,]+ events/s",
        lines[0],
    ), lines
    assert "\r" not in out
    assert get_projection("test-balances").batch_size == 500  # the override is undone


def test_replay_draws_a_progress_bar_on_a_terminal() -> None:
    open_account("T-1", list(range(1, 10)))
    out = command(
        "orchestrix_replay", "test-balances", "--no-input", "--batch-size", "3", stdout=TTY()
    )
    assert "\r" in out
    last_bar = out.split("\r")[-1].splitlines()[0]
    assert re.match(r"test-balances \[#{30}\] 100%  [\d,]+/[\d,]+  [\d,]+ events/s", last_bar), (
        last_bar
    )
    assert "Replayed test-balances: 10 event(s)" in out


def test_replay_refuses_an_unknown_projection_listing_the_configured_ones() -> None:
    error = failing("orchestrix_replay", "nope", "--no-input")
    assert error.returncode == 1
    known = ", ".join(sorted(projections()))
    assert known.startswith("test-balances, test-continuing, test-flaky, test-fragile")
    assert str(error) == (
        f"unknown projection 'nope'. Configured projections: {known}. "
        "(New ones must be listed in ORCHESTRIX['PROJECTIONS'].)"
    )


@pytest.mark.slow
def test_replay_exits_non_zero_from_the_command_line() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "ORCHESTRIX_WORKER_DB_NAME": str(connection.settings_dict["NAME"]),
    }
    process = subprocess.run(
        [sys.executable, "-m", "django", "orchestrix_replay", "nope", "--no-input"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert process.returncode == 1
    assert "unknown projection 'nope'. Configured projections: test-balances" in process.stderr


def test_replay_asks_for_confirmation_first(monkeypatch: pytest.MonkeyPatch) -> None:
    open_account("C-1", [1])
    catch_up(get_projection("test-balances"))
    before = balances()
    position = projection_status("test-balances").position
    questions: list[str] = []

    def answer(reply: str) -> Any:
        def ask(prompt: str) -> str:
            questions.append(prompt)
            return reply

        return ask

    AccountBalance.objects.update(balance=Decimal("999"))
    monkeypatch.setattr(builtins, "input", answer("no"))
    error = failing("orchestrix_replay", "test-balances")
    assert error.returncode == 1 and "cancelled: nothing was changed" in str(error)
    assert "clears the read model of projection 'test-balances'" in questions[0]
    assert "Type 'yes' to continue" in questions[0]
    assert projection_status("test-balances").position == position  # untouched
    assert AccountBalance.objects.get().balance == Decimal("999")

    def closed(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr(builtins, "input", closed)
    assert "pass --no-input" in str(failing("orchestrix_replay", "test-balances"))

    monkeypatch.setattr(builtins, "input", answer("yes"))
    command("orchestrix_replay", "test-balances")
    assert balances() == before


def test_replay_stopped_by_a_failing_handler_exits_1_saying_what_to_do() -> None:
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    open_account("F-1", [1, 13, 2])
    error = failing("orchestrix_replay", "test-fragile", "--no-input")
    assert error.returncode == 1
    message = str(error)
    assert "replay of test-fragile stopped (handler failed) at position" in message
    assert "retry_parked(get_projection('test-fragile')" in message


def test_replay_of_a_projection_whose_reset_fails_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fragile = get_projection("test-fragile")

    def broken() -> None:
        raise RuntimeError("cannot clear")

    monkeypatch.setattr(fragile, "_reset_hooks", [broken])
    error = failing("orchestrix_replay", "test-fragile", "--no-input")
    assert "the reset of test-fragile failed: RuntimeError: cannot clear" in str(error)
    assert "run the replay again" in str(error)


# ---------------------------------------------------------------- zero-downtime rebuild


@pytest.mark.usefixtures("with_v2")
def test_the_live_projection_serves_while_the_new_one_builds_and_the_switch_waits() -> None:
    for n in range(4):
        open_account(f"Z-{n}", [1, 2])  # 12 events: six batches of test-balances-v2
    live = get_projection("test-balances")
    new = get_projection("test-balances-v2")
    catch_up(live)
    seen: list[CatchUpResult] = []

    def during_the_build(progress: CatchUpResult) -> None:
        seen.append(progress)
        # Readers still use the live projection, which still advances.
        assert active_projection("test-balances") == "test-balances"
        assert not projection_status("test-balances").paused
        if len(seen) == 2:
            open_account("Z-late", [5])  # written while the new version builds
            assert catch_up(live).applied == 2
            assert AccountBalance.objects.get(account_id="Z-late").balance == Decimal("15.00")

    result = rebuild(new, replace=live, on_batch=during_the_build)
    assert result.switched is not None and result.stopped is None
    # The switch happened once the new version had caught up, the late events too.
    head = DjangoEventStore().head_position()
    assert result.switched.position == head and result.last.lag == 0
    assert seen[1].position < head
    assert [p.applied for p in seen] == sorted(p.applied for p in seen)
    assert v2_ids() == log_ids()
    assert active_projection("test-balances") == "test-balances-v2"
    assert active_read_model(
        "test-balances", {"test-balances": "v1 tables", "test-balances-v2": "v2 tables"}
    ) == ("v2 tables")
    # The old version is paused (its tables left as they were); the new one goes on.
    assert projection_status("test-balances").paused
    open_account("Z-after", [])
    assert catch_up(live).stopped == "paused"
    assert catch_up(new).applied == 1


@pytest.mark.usefixtures("with_v2")
def test_the_switch_is_refused_while_the_new_version_lags() -> None:
    open_account("L-1", [1, 2, 3, 4])  # 5 events
    live = get_projection("test-balances")
    new = get_projection("test-balances-v2")
    catch_up(new, max_batches=1)  # 2 of 5
    with pytest.raises(NotCaughtUpError, match="3 behind the head of the log"):
        switch_projection(new, replace=live)
    assert active_projection("test-balances") == "test-balances"
    assert not ActiveProjection.objects.exists()
    assert not projection_status("test-balances").paused
    switch_projection(new, replace=live, max_lag=3)  # within the allowed lag
    assert active_projection("test-balances") == "test-balances-v2"


@pytest.mark.usefixtures("with_v2")
def test_rebuild_command_switches_and_switches_back() -> None:
    open_account("K-1", list(range(1, 8)))  # 8 events
    catch_up(get_projection("test-balances"))
    out = command(
        "orchestrix_rebuild",
        "test-balances-v2",
        "--replace",
        "test-balances",
        "--no-input",
        "--batch-size",
        "3",
        "--progress-every",
        "1",
    )
    assert re.search(r"test-balances-v2: position [\d,]+/[\d,]+ \(\d+%\), 3 events applied", out)
    assert re.search(r"Built test-balances-v2: 8 event\(s\) in [\d.]+ s \([\d,]+ events/s\)", out)
    assert "Switched read model 'test-balances' from test-balances to test-balances-v2" in out
    assert "to switch back: python manage.py orchestrix_rebuild test-balances --replace " in out
    assert active_projection("test-balances") == "test-balances-v2"
    assert get_projection("test-balances-v2").batch_size == 2  # the override is undone
    # The retired version is a note for orchestrix_run, not a failure.
    run_out = command("orchestrix_run", "--once", "--projection", "test-balances")
    assert "test-balances is retired: read model 'test-balances' is served by" in run_out
    # Events written since then, and switching back: the old version resumes,
    # catches up and serves again.
    open_account("K-2", [1])
    command("orchestrix_rebuild", "test-balances", "--replace", "test-balances-v2", "--no-input")
    assert active_projection("test-balances") == "test-balances"
    assert projection_status("test-balances").lag == 0
    assert AccountBalance.objects.get(account_id="K-2").balance == Decimal("11.00")
    assert projection_status("test-balances-v2").paused
    assert ActiveProjection.objects.get().replaced_projection_id == "test-balances-v2"
    run_out = command("orchestrix_run", "--once", "--projection", "test-balances-v2")
    assert (
        "test-balances-v2 is retired: read model 'test-balances' is served by 'test-balances'"
        in run_out
    )


@pytest.mark.usefixtures("with_v2")
def test_rebuild_refuses_what_it_cannot_do() -> None:
    error = failing("orchestrix_rebuild", "test-balances-v2", "--replace", "nope", "--no-input")
    assert error.returncode == 1 and "Configured projections: test-balances, " in str(error)
    error = failing(
        "orchestrix_rebuild", "test-balances", "--replace", "test-balances", "--no-input"
    )
    assert "--replace names the projection being built" in str(error)
    command("orchestrix_rebuild", "test-balances-v2", "--replace", "test-balances", "--no-input")
    # test-balances no longer serves: replacing it is refused, saying what serves.
    error = failing(
        "orchestrix_rebuild", "test-fragile", "--replace", "test-balances", "--no-input"
    )
    assert str(error) == (
        "read model 'test-balances' is served by 'test-balances-v2', not 'test-balances': "
        "replace 'test-balances-v2' instead"
    )
    error = failing(
        "orchestrix_rebuild", "test-balances-v2", "--replace", "test-fragile", "--no-input"
    )
    assert "already serves read model 'test-balances'" in str(error)


@pytest.mark.usefixtures("with_v2")
def test_an_interrupted_or_failing_rebuild_switches_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    open_account("I-1", [1, 13, 2])
    live = get_projection("test-balances")
    new = get_projection("test-balances-v2")
    stopped = rebuild(new, replace=live, should_stop=lambda: True)
    assert stopped.switched is None and stopped.stopped == "asked to stop"
    timed_out = rebuild(new, replace=live, timeout=1e-9)
    assert timed_out.switched is None and timed_out.stopped == "timed out"
    error = failing(
        "orchestrix_rebuild",
        "test-balances-v2",
        "--replace",
        "test-balances",
        "--no-input",
        "--timeout",
        "0.000001",
    )
    assert "not switched" in str(error) and "--timeout" in str(error)
    assert "test-balances still serves. Run the command again to continue" in str(error)
    # A handler of the new version fails: nothing switched, the advice says what to do.
    testapp_projections.FAILING_AMOUNTS.add(Decimal(13))
    error = failing(
        "orchestrix_rebuild", "test-balances-v2", "--replace", "test-balances", "--no-input"
    )
    assert "not switched: test-balances-v2 stopped (handler failed)" in str(error)
    assert "retry_parked(get_projection('test-balances-v2')" in str(error)
    assert active_projection("test-balances") == "test-balances"
    assert not projection_status("test-balances").paused
    # Until its parked event is dealt with, it is not switched to.
    with pytest.raises(RebuildError, match="unhealthy"):
        rebuild(new, replace=live)
    # --reset starts it over; with the fix, it builds and switches.
    testapp_projections.FAILING_AMOUNTS.clear()
    monkeypatch.setattr(builtins, "input", lambda prompt: "yes")
    out = command("orchestrix_rebuild", "test-balances-v2", "--replace", "test-balances", "--reset")
    assert "Switched read model 'test-balances'" in out
    assert v2_ids() == log_ids()
