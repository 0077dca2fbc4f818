"""Messages: frozen, keyword-only, CloudEvents fields, generated id and UTC timestamp."""

import dataclasses
import pickle
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from orchestrix.core.messaging.message import Command, Event, Message, causal_fields


@dataclasses.dataclass(frozen=True, kw_only=True)
class UserCreated(Event):
    user_id: str
    email: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class CreateUser(Command):
    user_id: str
    email: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Renamed(Event):
    type: str = "users.renamed"
    name: str = ""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Validated(Command):
    amount: int

    def __post_init__(self) -> None:
        if self.amount <= 0:
            raise ValueError("amount must be positive")


def test_defaults_follow_cloudevents() -> None:
    event = UserCreated(user_id="u1", email="a@example.com")
    assert uuid.UUID(event.id).version == 4
    assert event.specversion == "1.0"
    assert event.type == "UserCreated"
    assert event.source == "orchestrix"
    assert event.timestamp.tzinfo is not None
    assert event.timestamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - event.timestamp) < timedelta(seconds=5)
    assert event.subject is None and event.data is None
    assert event.correlation_id is None and event.causation_id is None and event.trace_id is None


def test_ids_are_unique() -> None:
    assert len({UserCreated(user_id="u", email="e").id for _ in range(1000)}) == 1000


def test_messages_are_frozen_and_keyword_only() -> None:
    event = UserCreated(user_id="u1", email="e")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.email = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        UserCreated("u1", "e")  # type: ignore[misc]


def test_explicit_type_wins_and_class_default_type() -> None:
    assert UserCreated(user_id="u", email="e", type="custom").type == "custom"
    assert Renamed(name="x").type == "users.renamed"


def test_type_is_derived_even_when_a_subclass_overrides_post_init() -> None:
    command = Validated(amount=3)
    assert command.type == "Validated"
    with pytest.raises(ValueError, match="positive"):
        Validated(amount=0)


def test_timestamp_is_normalised_to_utc_and_naive_is_refused() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = UserCreated(user_id="u", email="e", timestamp=datetime(2024, 1, 1, 12, tzinfo=plus_two))
    assert event.timestamp == datetime(2024, 1, 1, 10, tzinfo=UTC)
    assert event.timestamp.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="timezone-aware"):
        UserCreated(user_id="u", email="e", timestamp=datetime(2024, 1, 1))


def test_equality_and_hash_by_value() -> None:
    event = UserCreated(user_id="u", email="e")
    same = dataclasses.replace(event)
    assert same == event and hash(same) == hash(event)
    assert UserCreated(user_id="u", email="e") != event  # another id


def test_caused_by_derives_correlation_causation_and_trace() -> None:
    command = CreateUser(user_id="u1", email="e", trace_id="t-1")
    event = UserCreated.caused_by(command, user_id=command.user_id, email=command.email)
    assert event.correlation_id == command.id  # the command started the conversation
    assert event.causation_id == command.id
    assert event.trace_id == "t-1"
    follow_up = UserCreated.caused_by(event, user_id="u2", email="e2")
    assert follow_up.correlation_id == command.id
    assert follow_up.causation_id == event.id


def test_caused_by_lets_explicit_values_win() -> None:
    command = CreateUser(user_id="u1", email="e", correlation_id="c-9")
    event = UserCreated.caused_by(command, user_id="u1", email="e", trace_id="mine")
    assert event.correlation_id == "c-9"
    assert event.trace_id == "mine"
    assert causal_fields(command) == {
        "correlation_id": "c-9",
        "causation_id": command.id,
        "trace_id": None,
    }


def test_correlated_with_copies_the_message() -> None:
    command = CreateUser(user_id="u1", email="e")
    event = UserCreated(user_id="u1", email="e")
    linked = event.correlated_with(command)
    assert linked.id == event.id
    assert (linked.correlation_id, linked.causation_id) == (command.id, command.id)


def test_messages_pickle() -> None:
    event = UserCreated(user_id="u", email="e", correlation_id="c")
    assert pickle.loads(pickle.dumps(event)) == event


def test_base_classes() -> None:
    assert issubclass(Command, Message) and issubclass(Event, Message)
    assert Event.schema_version == 1
