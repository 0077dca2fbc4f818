"""Modules (the core ``Module`` protocol) for the message bus tests, good and bad.

``ORCHESTRIX["MODULES"]`` names them by dotted path; what they receive is
kept in module-level lists that the tests clear (:func:`reset`).
"""

from __future__ import annotations

from typing import Any

from orchestrix.core.common.observability import ObservabilityHooks
from orchestrix.core.eventsourcing.event_store import EventStore
from orchestrix.core.messaging.message import Event
from orchestrix.core.messaging.message_bus import MessageBus
from orchestrix.infrastructure.memory.observability import InMemoryMetricsProvider
from tests.django.testapp.events import AccountOpened, MoneyDeposited

#: Where ``ORCHESTRIX["OBSERVABILITY"] = "tests.django.testapp.modules.hooks"`` reports.
metrics = InMemoryMetricsProvider()
hooks = ObservabilityHooks(metrics)

#: (module, bus, store) for every ``register`` call.
registrations: list[tuple[Any, MessageBus, EventStore]] = []
#: Events the modules' handlers received.
opened: list[AccountOpened] = []
deposits: list[MoneyDeposited] = []
everything: list[Event] = []


def reset() -> None:
    """Forget what the modules recorded (and the metrics)."""
    registrations.clear()
    opened.clear()
    deposits.clear()
    everything.clear()
    metrics.clear()


class AccountsModule:
    """A module named by its class: instantiated without arguments."""

    def register(self, bus: MessageBus, store: EventStore) -> None:
        """Subscribe to account openings, and to every event."""
        registrations.append((self, bus, store))
        bus.subscribe(AccountOpened, opened.append)
        bus.subscribe(Event, everything.append)


class DepositsModule:
    """A module named by an instance (below), with an async handler."""

    def register(self, bus: MessageBus, store: EventStore) -> None:
        """Subscribe the async handler to deposits."""
        registrations.append((self, bus, store))
        bus.subscribe(MoneyDeposited, self.on_deposit)

    async def on_deposit(self, event: MoneyDeposited) -> None:
        """Record the deposit."""
        deposits.append(event)


deposits_module = DepositsModule()


class NoRegister:
    """Not a module: it has no ``register`` method."""


not_a_module = object()


class NeedsArguments:
    """A module class that cannot be instantiated without arguments."""

    def __init__(self, name: str) -> None:
        self.name = name

    def register(self, bus: MessageBus, store: EventStore) -> None:
        """Never called."""
        raise AssertionError("NeedsArguments was instantiated")
