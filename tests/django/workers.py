"""Worker processes for the concurrency tests: real, separate database clients.

Run as ``python -m tests.django.workers <command> <json-arguments>`` with
``ORCHESTRIX_WORKER_DB_NAME`` naming the test database. A worker sets Django
up, connects, prints ``ready``, waits for a ``go`` line on stdin (so that all
workers start together), does its work and prints one JSON line with the
outcome.

Commands:

* ``race``: one save of one event to ``stream`` with ``expected_version``;
  prints ``{"outcome": "won" | "conflict" | "error", ...}``.
* ``save_batch``: one save of events with the given ``ids`` (a retried request
  when several workers send the same ids).
* ``write``: ``saves`` saves of ``batch`` events each to streams picked at
  random among ``streams``, each in its own transaction kept open for a random
  moment after the insert (so that commits would interleave if they could);
  prints the ids of the committed events, per stream, in version order.
* ``soak_write``: for ``seconds``, saves to streams picked at random among
  ``streams`` at the version just read (so writers contend), an
  ``AccountOpened`` to a new stream and ``batch`` deposits otherwise; starts
  an order saga every ``saga_every`` saves (0: none); sleeps ``pause``
  seconds between saves. A save that fails with a
  connection error is retried, with the same events and expected version,
  until it is stored or refused: what an application does (the store makes
  the retry idempotent). Prints the ids it committed, the sagas it started,
  and its conflicts and retries.
* ``soak_read``: for ``seconds``, loads random streams and reads pages of
  the log from random positions; prints how many, and any error.
* ``wait_caught_up``: waits (at most ``timeout`` seconds) until every
  projection's checkpoint is the head of the log; prints both.
* ``verify``: checks the log against the ids in ``committed_file`` (a JSON
  list), then replays every projection; prints what is missing or extra and
  the projections that differ from their replay.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import traceback
from decimal import Decimal
from typing import Any


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from django.db import connection

    connection.ensure_connection()


def _race(args: dict[str, Any]) -> dict[str, Any]:
    from orchestrix.core.common.exceptions import ConcurrencyError
    from orchestrix_django.storage.events import DjangoEventStore
    from tests.django.testapp.events import MoneyDeposited

    store = DjangoEventStore()
    event = MoneyDeposited(account_id=args["stream"], amount=Decimal(args["amount"]))
    try:
        store.save(args["stream"], [event], expected_version=args["expected_version"])
    except ConcurrencyError as error:
        return {
            "outcome": "conflict",
            "expected": error.expected_version,
            "actual": error.actual_version,
        }
    except Exception as error:
        return {"outcome": "error", "error": repr(error), "traceback": traceback.format_exc()}
    return {"outcome": "won", "event_id": event.id}


def _save_batch(args: dict[str, Any]) -> dict[str, Any]:
    from orchestrix_django.storage.events import DjangoEventStore
    from tests.django.testapp.events import MoneyDeposited

    events = [
        MoneyDeposited(id=event_id, account_id=args["stream"], amount=Decimal(i))
        for i, event_id in enumerate(args["ids"])
    ]
    try:
        DjangoEventStore().save(args["stream"], events, expected_version=args["expected_version"])
    except Exception as error:
        return {"outcome": "error", "error": repr(error), "traceback": traceback.format_exc()}
    return {"outcome": "saved"}


def _write(args: dict[str, Any]) -> dict[str, Any]:
    from django.db import transaction

    from orchestrix.core.common.exceptions import ConcurrencyError
    from orchestrix_django.storage.events import DjangoEventStore
    from tests.django.testapp.events import MoneyDeposited

    store = DjangoEventStore()
    rng = random.Random(args["seed"])
    committed: dict[str, list[str]] = {}
    conflicts = 0
    for n in range(args["saves"]):
        stream = rng.choice(args["streams"])
        events = [
            MoneyDeposited(account_id=stream, amount=Decimal(n * 100 + i))
            for i in range(args["batch"])
        ]
        try:
            with transaction.atomic():
                store.save(stream, events)
                # Hold the transaction open: without the append lock, another
                # writer's later position could commit before this one.
                time.sleep(rng.uniform(0, args["max_hold"]))
        except ConcurrencyError:
            conflicts += 1
            continue
        committed.setdefault(stream, []).extend(e.id for e in events)
    return {"outcome": "done", "committed": committed, "conflicts": conflicts}


def _connection_errors() -> tuple[type[BaseException], ...]:
    """Errors of a lost connection (a restarted server, a cut): worth a retry."""
    from django.db import InterfaceError, OperationalError

    return (OperationalError, InterfaceError)


def _reconnect(attempt: int) -> None:
    """Drop the broken connection (the next query opens a new one) and back off a little."""
    from django.db import connection

    connection.close()
    time.sleep(min(0.05 * attempt, 0.5))


def _retrying(action: Any, stats: dict[str, int], give_up_after: float = 60.0) -> Any:
    """``action()``, retried after connection errors for up to ``give_up_after`` seconds."""
    errors = _connection_errors()
    deadline = time.monotonic() + give_up_after
    attempt = 0
    while True:
        try:
            return action()
        except errors:
            attempt += 1
            stats["retries"] += 1
            if time.monotonic() > deadline:
                raise
            _reconnect(attempt)


def _soak_write(args: dict[str, Any]) -> dict[str, Any]:
    from orchestrix.core.common.exceptions import ConcurrencyError
    from orchestrix.core.messaging.message import Event
    from orchestrix_django.sagas import start_saga
    from orchestrix_django.storage.events import DjangoEventStore
    from tests.django.testapp.events import AccountOpened, MoneyDeposited

    store = DjangoEventStore()
    rng = random.Random(args["seed"])
    stats = {"saves": 0, "conflicts": 0, "retries": 0}
    committed: list[str] = []
    sagas: list[str] = []
    deadline = time.monotonic() + args["seconds"]
    n = 0
    while time.monotonic() < deadline:
        n += 1
        stream = rng.choice(args["streams"])
        version = _retrying(lambda s=stream: store.stream_version(s), stats)
        events: list[Event] = (
            [AccountOpened(account_id=stream, owner="Ann", initial_deposit=10.0)]
            if version == 0
            # Never 7: the flaky projection fails the first attempt on those.
            else [
                MoneyDeposited(account_id=stream, amount=Decimal(rng.choice([1, 2, 5, 10, 20])))
                for _ in range(args["batch"])
            ]
        )

        def save(s: str = stream, e: list[Event] = events, v: int = version) -> bool:
            try:
                store.save(s, e, expected_version=v)
            except ConcurrencyError:
                return False
            return True

        # The same events at the same expected version: a save that was stored
        # before the connection broke is recognised as a retry, not stored twice.
        if _retrying(save, stats):
            stats["saves"] += 1
            committed.extend(event.id for event in events)
        else:
            stats["conflicts"] += 1
        # A writer at full speed on two shared cores starves everything else.
        time.sleep(args.get("pause", 0.0))
        if args.get("saga_every") and n % args["saga_every"] == 0:
            k = n // args["saga_every"]
            saga_id = f"soak-{args['seed']}-{k}"
            # Declined payments (over 1000) and undeliverable orders (NOSHIP…)
            # are compensated; the others complete.
            order = f"NOSHIP-{saga_id}" if k % 5 == 0 else saga_id
            amount = 2000.0 if k % 3 == 0 else 25.0
            _retrying(
                lambda i=saga_id, o=order, a=amount: start_saga(
                    "order-fulfillment", saga_id=i, order_id=o, amount=a
                ),
                stats,
            )
            sagas.append(saga_id)
    return {"outcome": "done", "committed": committed, "sagas": sagas, **stats}


def _soak_read(args: dict[str, Any]) -> dict[str, Any]:
    from orchestrix_django.storage.events import DjangoEventStore

    store = DjangoEventStore()
    rng = random.Random(args["seed"])
    loads = pages = events = 0
    errors: list[str] = []
    deadline = time.monotonic() + args["seconds"]
    while time.monotonic() < deadline:
        try:
            events += len(store.load(rng.choice(args["streams"])))
            loads += 1
            head = store.head_position()
            events += len(store.read_all(after_position=rng.randint(0, head), limit=100))
            pages += 1
        except Exception:
            errors.append(traceback.format_exc())
        # Readers share two cores with everything else: a breath between reads.
        time.sleep(args.get("pause", 0.01))
    return {"outcome": "done", "loads": loads, "pages": pages, "events": events, "errors": errors}


def _wait_caught_up(args: dict[str, Any]) -> dict[str, Any]:
    """Wait until the projections are at the head (and the sagas ``args["sagas"]`` finished)."""
    from orchestrix.core.execution.saga import SagaStatus
    from orchestrix_django.models import SagaStateRecord
    from orchestrix_django.storage.events import DjangoEventStore
    from orchestrix_django.storage.projection_state import DjangoProjectionStateStore

    sagas = args.get("sagas", [])
    finished = [SagaStatus.COMPLETED.value, SagaStatus.FAILED.value]
    deadline = time.monotonic() + args["timeout"]
    while True:
        head = DjangoEventStore().head_position()
        positions = {
            s.projection_id: s.state.last_processed_position
            for s in DjangoProjectionStateStore().list_states()
        }
        done = SagaStateRecord.objects.filter(saga_id__in=sagas, status__in=finished).count()
        caught_up = all(positions.get(p) == head for p in args["projections"])
        caught_up = caught_up and done == len(sagas)
        if caught_up or time.monotonic() > deadline:
            return {"caught_up": caught_up, "head": head, "positions": positions}
        time.sleep(0.1)


def _verify(args: dict[str, Any]) -> dict[str, Any]:
    from orchestrix_django.models import EventRecord, SagaStateRecord
    from orchestrix_django.projections import projection_status
    from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue
    from tests.django.fault_helpers import lost_and_extra, replay_mismatches

    with open(args["committed_file"], encoding="utf-8") as file:
        committed = json.load(file)
    missing, extra = lost_and_extra(committed, ["AccountOpened", "MoneyDeposited"])
    statuses = [projection_status(p) for p in args["projections"]]
    sagas = SagaStateRecord.objects.filter(saga_id__in=args.get("sagas", []))
    return {
        "sagas": {saga.saga_id: [saga.status, saga.error] for saga in sagas},
        "parked": DjangoDeadLetterQueue().count(),
        "stopped": [s.projection_id for s in statuses if s.paused or not s.healthy],
        "events": EventRecord.objects.count(),
        "missing": missing,
        "extra": extra,
        "mismatches": replay_mismatches(args["projections"]),
    }


COMMANDS = {
    "race": _race,
    "save_batch": _save_batch,
    "write": _write,
    "soak_write": _soak_write,
    "soak_read": _soak_read,
    "wait_caught_up": _wait_caught_up,
    "verify": _verify,
}


def main() -> None:
    """Entry point: ``python -m tests.django.workers <command> <json>``."""
    command, raw = sys.argv[1], sys.argv[2]
    _setup()
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit("worker: expected 'go' on stdin")
    result = COMMANDS[command](json.loads(raw))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
