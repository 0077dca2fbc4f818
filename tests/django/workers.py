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
    from orchestrix_django.store import DjangoEventStore
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
    from orchestrix_django.store import DjangoEventStore
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
    from orchestrix_django.store import DjangoEventStore
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


COMMANDS = {"race": _race, "save_batch": _save_batch, "write": _write}


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
