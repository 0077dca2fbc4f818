"""Upcasting: chains v1→v2→v3, missing links, downcasts, sync and async read paths."""

import asyncio
from dataclasses import dataclass
from typing import ClassVar

import pytest

from orchestrix.core.common.exceptions import DowncastError, MissingUpcasterError, UpcastError
from orchestrix.core.eventsourcing.aggregate import AggregateRepository, AggregateRoot
from orchestrix.core.eventsourcing.versioning import (
    EventUpcaster,
    UpcasterRegistry,
    VersionedEvent,
)
from orchestrix.core.messaging.message import Event, EventRegistry
from orchestrix.infrastructure.memory import InMemoryAsyncEventStore, InMemoryEventStore


@dataclass(frozen=True, kw_only=True)
class CustomerRegisteredV1(Event):
    type: str = "CustomerRegistered"
    schema_version: ClassVar[int] = 1
    name: str


@dataclass(frozen=True, kw_only=True)
class CustomerRegisteredV2(Event):
    type: str = "CustomerRegistered"
    schema_version: ClassVar[int] = 2
    first_name: str
    last_name: str


@dataclass(frozen=True, kw_only=True)
class CustomerRegistered(Event):
    schema_version: ClassVar[int] = 3
    first_name: str
    last_name: str
    email: str | None


class SplitName(EventUpcaster[CustomerRegisteredV1, CustomerRegisteredV2]):
    async def upcast(self, event: Event) -> CustomerRegisteredV2:
        assert isinstance(event, CustomerRegisteredV1)
        first, _, last = event.name.partition(" ")
        return CustomerRegisteredV2(
            first_name=first, last_name=last, id=event.id, timestamp=event.timestamp
        )


class AddEmail(EventUpcaster[CustomerRegisteredV2, CustomerRegistered]):
    async def upcast(self, event: Event) -> CustomerRegistered:
        assert isinstance(event, CustomerRegisteredV2)
        return CustomerRegistered(
            first_name=event.first_name,
            last_name=event.last_name,
            email=None,
            id=event.id,
            timestamp=event.timestamp,
        )


class AwaitsIO(EventUpcaster[CustomerRegisteredV2, CustomerRegistered]):
    async def upcast(self, event: Event) -> CustomerRegistered:
        await asyncio.sleep(0)  # stands for a lookup in another service
        assert isinstance(event, CustomerRegisteredV2)
        return CustomerRegistered(
            first_name=event.first_name, last_name=event.last_name, email="looked@up", id=event.id
        )


def full_registry() -> UpcasterRegistry:
    registry = UpcasterRegistry()
    registry.register("CustomerRegistered", SplitName(1, 2))
    registry.register("CustomerRegistered", AddEmail(2, 3))
    return registry


def test_all_three_versions_share_one_type() -> None:
    old = CustomerRegisteredV1(name="Ada Lovelace")
    assert old.type == "CustomerRegistered"
    assert (
        CustomerRegistered(first_name="a", last_name="b", email=None).type == "CustomerRegistered"
    )


def test_chain_upcasts_v1_to_v3_keeping_identity() -> None:
    old = CustomerRegisteredV1(name="Ada Lovelace")
    upcast = asyncio.run(full_registry().upcast(old, "CustomerRegistered", 3))
    assert isinstance(upcast, CustomerRegistered)
    assert (upcast.first_name, upcast.last_name, upcast.email) == ("Ada", "Lovelace", None)
    assert upcast.id == old.id and upcast.timestamp == old.timestamp


def test_sync_path_gives_the_same_result() -> None:
    old = CustomerRegisteredV1(name="Ada Lovelace")
    assert full_registry().upcast_sync(old, "CustomerRegistered", 3) == asyncio.run(
        full_registry().upcast(old, "CustomerRegistered", 3)
    )


def test_upcasting_to_the_same_version_returns_the_event() -> None:
    event = CustomerRegisteredV2(first_name="a", last_name="b")
    assert asyncio.run(full_registry().upcast(event, "CustomerRegistered", 2)) is event


def test_versioned_event_wrapper_supplies_the_version() -> None:
    plain = CustomerRegisteredV1(name="A B")
    wrapped = VersionedEvent(event=plain, version=1, event_type="CustomerRegistered")
    result = asyncio.run(full_registry().upcast(wrapped, "CustomerRegistered", 2))  # type: ignore[arg-type]
    assert isinstance(result, CustomerRegisteredV2)


def test_missing_link_is_a_clear_error() -> None:
    registry = UpcasterRegistry()
    registry.register("CustomerRegistered", SplitName(1, 2))
    with pytest.raises(MissingUpcasterError, match="from schema version 2") as caught:
        registry.upcast_sync(CustomerRegisteredV1(name="A B"), "CustomerRegistered", 3)
    assert caught.value.chain == [(1, 2)]


def test_downcast_is_refused() -> None:
    event = CustomerRegistered(first_name="a", last_name="b", email=None)
    with pytest.raises(DowncastError, match="cannot downcast"):
        asyncio.run(full_registry().upcast(event, "CustomerRegistered", 1))
    with pytest.raises(DowncastError):
        SplitName(2, 1)


def test_registry_rejects_a_second_upcaster_for_one_step() -> None:
    registry = full_registry()
    with pytest.raises(ValueError, match="already has an upcaster"):
        registry.register("CustomerRegistered", SplitName(1, 2))
    with pytest.raises(TypeError):
        registry.register("CustomerRegistered", object())  # type: ignore[arg-type]


def test_get_upcaster_and_chain_info() -> None:
    registry = full_registry()
    assert registry.get_chain_info("CustomerRegistered") == [(1, 2), (2, 3)]
    assert isinstance(registry.get_upcaster("CustomerRegistered", 1, 2), SplitName)
    assert registry.get_upcaster("CustomerRegistered", 1, 3) is None
    assert registry.get_chain_info("Unknown") == []


def test_can_upcast_checks_the_source_version() -> None:
    assert asyncio.run(SplitName(1, 2).can_upcast(CustomerRegisteredV1(name="x")))
    assert not asyncio.run(AddEmail(2, 3).can_upcast(CustomerRegisteredV1(name="x")))


def test_upcaster_that_awaits_io_works_async_only() -> None:
    registry = UpcasterRegistry()
    registry.register("CustomerRegistered", AwaitsIO(2, 3))
    event = CustomerRegisteredV2(first_name="a", last_name="b")
    assert asyncio.run(registry.upcast(event, "CustomerRegistered", 3)).email == "looked@up"  # type: ignore[attr-defined]
    with pytest.raises(UpcastError, match="awaits I/O"):
        registry.upcast_sync(event, "CustomerRegistered", 3)


def test_check_finds_broken_chains_for_registered_classes() -> None:
    events = EventRegistry()
    for cls in (CustomerRegisteredV1, CustomerRegisteredV2, CustomerRegistered):
        events.register(cls)
    assert full_registry().check(events) == []
    partial = UpcasterRegistry()
    partial.register("CustomerRegistered", AddEmail(2, 3))
    problems = partial.check(events)
    assert len(problems) == 1 and "from schema version 1" in str(problems[0])


@dataclass
class Customer(AggregateRoot):
    first_name: str = ""
    email: str | None = None

    def _when_customer_registered(self, event: CustomerRegistered) -> None:
        assert isinstance(event, CustomerRegistered), "aggregates only see the latest version"
        self.first_name = event.first_name
        self.email = event.email


def test_stores_upcast_old_events_on_every_read_path() -> None:
    store = InMemoryEventStore(upcasters=full_registry())
    store.save("C-1", [CustomerRegisteredV1(name="Ada Lovelace")])
    assert isinstance(store.load("C-1")[0], CustomerRegistered)
    assert isinstance(store.read_all()[0].event, CustomerRegistered)
    assert AggregateRepository(event_store=store).load(Customer, "C-1").first_name == "Ada"

    async def async_path() -> Customer:
        async_store = InMemoryAsyncEventStore(upcasters=full_registry())
        await async_store.save("C-1", [CustomerRegisteredV1(name="Grace Hopper")])
        assert isinstance((await async_store.read_all())[0].event, CustomerRegistered)
        return await AggregateRepository(event_store=async_store).load_async(Customer, "C-1")

    assert asyncio.run(async_path()).first_name == "Grace"
