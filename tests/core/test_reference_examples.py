"""The examples of the core API reference, run as written, and every documented import.

Each example's code is kept verbatim; only the definitions the reference leaves
to the reader (``AccountOpened``, ``UserAggregate``, ``CreateUser``) are added.
"""

import importlib
from dataclasses import dataclass

import pytest

# -- every name of the reference, from its documented path ---------------------------

DOCUMENTED_IMPORTS = {
    "orchestrix.core.messaging.message": ["Message", "Command", "Event"],
    "orchestrix.core.messaging.message_bus": ["MessageBus", "AsyncMessageBus"],
    "orchestrix.core.messaging.command_handler": ["CommandHandler"],
    "orchestrix.core.eventsourcing.event_store": ["EventStore", "AsyncEventStore"],
    "orchestrix.core.eventsourcing.aggregate": ["AggregateRoot", "AggregateRepository"],
    "orchestrix.infrastructure.memory.store": ["InMemoryEventStore"],
    "orchestrix.infrastructure.memory": [
        "InMemoryEventStore",
        "InMemoryAsyncEventStore",
        "InMemoryMessageBus",
        "InMemoryAsyncMessageBus",
    ],
    "orchestrix.core.eventsourcing.projection": [
        "ProjectionEngine",
        "InMemoryProjectionStateStore",
        "ProjectionState",
        "ProjectionStateStore",
    ],
    "orchestrix.core.execution.saga": [
        "Saga",
        "SagaStep",
        "SagaState",
        "SagaStatus",
        "InMemorySagaStateStore",
        "SagaStateStore",
    ],
    "orchestrix.core.eventsourcing.versioning": [
        "EventUpcaster",
        "UpcasterRegistry",
        "VersionedEvent",
    ],
    "orchestrix.core.common.validation": [
        "ValidationError",
        "validate_not_empty",
        "validate_positive",
        "validate_non_negative",
        "validate_min_length",
        "validate_max_length",
        "validate_in_range",
        "validate_one_of",
    ],
    "orchestrix.core.common.retry": [
        "RetryPolicy",
        "ExponentialBackoff",
        "LinearBackoff",
        "FixedDelay",
        "NoRetry",
        "retry_sync",
    ],
    "orchestrix.core.common.module": ["Module"],
    "orchestrix.core.common.observability": [
        "ObservabilityHooks",
        "init_observability",
        "get_observability",
        "MetricsProvider",
        "TracingProvider",
        "NoOpMetricsProvider",
        "NoOpTracingProvider",
        "MetricValue",
        "TraceSpan",
    ],
    "orchestrix.core.common.logging": ["get_logger", "StructuredLogger"],
    "orchestrix.core.common.exceptions": ["OrchestrixError", "HandlerError", "ConcurrencyError"],
    "orchestrix.core.eventsourcing.snapshot": ["Snapshot"],
}


@pytest.mark.parametrize(
    ("module", "name"),
    [(module, name) for module, names in DOCUMENTED_IMPORTS.items() for name in names],
)
def test_every_documented_name_imports_from_its_path(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


# -- Messages: "Custom event with domain fields" --------------------------------------

from dataclasses import dataclass  # noqa: E402, F811

from orchestrix.core.messaging.message import Event  # noqa: E402


@dataclass(frozen=True, kw_only=True)
class UserCreated(Event):
    user_id: str
    email: str


def test_message_example() -> None:
    event = UserCreated(user_id="u-1", email="ada@example.com")
    assert event.type == "UserCreated"
    assert event.specversion == "1.0" and event.source == "orchestrix"


# -- Command handler ------------------------------------------------------------------

from orchestrix.core.eventsourcing.aggregate import AggregateRoot  # noqa: E402
from orchestrix.core.eventsourcing.event_store import EventStore  # noqa: E402
from orchestrix.core.messaging.command_handler import CommandHandler  # noqa: E402
from orchestrix.core.messaging.message import Command  # noqa: E402
from orchestrix.core.messaging.message_bus import MessageBus  # noqa: E402


@dataclass(frozen=True, kw_only=True)
class CreateUser(Command):
    user_id: str
    email: str


@dataclass
class UserAggregate(AggregateRoot):
    email: str = ""

    def _when_user_created(self, event: UserCreated) -> None:
        self.email = event.email


class CreateUserHandler:
    def __init__(self, bus: MessageBus, store: EventStore) -> None:
        self.bus = bus
        self.store = store

    def handle(self, command: CreateUser) -> None:
        user = UserAggregate(aggregate_id=command.user_id)
        user._apply_event(UserCreated(user_id=command.user_id, email=command.email))
        self.store.save(command.user_id, user.uncommitted_events)
        for event in user.uncommitted_events:
            self.bus.publish(event)
        user.mark_events_committed()


def test_command_handler_example() -> None:
    from orchestrix.infrastructure.memory import InMemoryEventStore, InMemoryMessageBus

    bus = InMemoryMessageBus()
    store = InMemoryEventStore()
    published: list[UserCreated] = []
    bus.subscribe(UserCreated, published.append)
    handler: CommandHandler = CreateUserHandler(bus, store)
    handler.handle(CreateUser(user_id="u-1", email="ada@example.com"))
    assert [e.email for e in store.load("u-1")] == ["ada@example.com"]
    assert [e.user_id for e in published] == ["u-1"]


# -- Aggregates: BankAccount and the repository example --------------------------------


@dataclass(frozen=True, kw_only=True)
class AccountOpened(Event):
    account_id: str
    owner: str
    initial_deposit: float


from dataclasses import dataclass  # noqa: E402

from orchestrix.core.eventsourcing.aggregate import AggregateRoot  # noqa: E402


@dataclass
class BankAccount(AggregateRoot):
    balance: float = 0.0
    owner: str = ""

    def open(self, owner: str, initial_deposit: float) -> None:
        self._apply_event(
            AccountOpened(
                account_id=self.aggregate_id,
                owner=owner,
                initial_deposit=initial_deposit,
            )
        )

    def _when_account_opened(self, event: AccountOpened) -> None:
        self.owner = event.owner
        self.balance = event.initial_deposit


def test_repository_example() -> None:
    from orchestrix.core.eventsourcing.aggregate import AggregateRepository
    from orchestrix.infrastructure.memory.store import InMemoryEventStore

    store = InMemoryEventStore()
    repo = AggregateRepository(event_store=store)

    # Save
    account = BankAccount(aggregate_id="ACC-001")
    account.open("Alice", 1000.0)
    repo.save(account)

    # Load
    loaded = repo.load(BankAccount, "ACC-001")
    assert loaded.balance == 1000.0


def test_repository_is_generic_over_the_aggregate_type() -> None:
    from orchestrix.core.eventsourcing.aggregate import AggregateRepository
    from orchestrix.infrastructure.memory.store import InMemoryEventStore

    repo: AggregateRepository[BankAccount] = AggregateRepository[BankAccount](
        event_store=InMemoryEventStore()
    )
    account = BankAccount(aggregate_id="ACC-002")
    account.open("Bob", 5.0)
    repo.save(account)
    assert repo.load(BankAccount, "ACC-002").owner == "Bob"


# The examples' event classes share their names with the Django test app's
# (the same reference examples); the in-memory store never decodes through
# the process-wide registry, so they leave it to keep the two suites runnable
# in one process.
from orchestrix.core.messaging.message import default_registry  # noqa: E402

for _example_event in (UserCreated, AccountOpened):
    default_registry.unregister(_example_event)
