"""Type-checked encoding: a store keeps only what it gives back equal.

Every save encodes its events through the codec, which checks each field
against its annotation by the rules the decoder reads it back with: an event
that would not load back equal is refused with :class:`EncodeError` (naming
the event type, the field's path, what the annotation takes and what it
got) and nothing of the save is stored. The property test draws event
classes with a field of every supported annotation (nested in containers,
optionals and unions) and values of that annotation or of any other: the
save then loads back an equal event, or raises and stores nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, fields, is_dataclass, make_dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrix.core.common.exceptions import EncodeError, ValidationError
from orchestrix.core.messaging.message import Event, default_registry
from orchestrix.core.serialization.event_codec import EncodedEvent, EventCodec
from orchestrix.core.serialization.values import encode_value
from orchestrix.infrastructure.memory import InMemoryAsyncEventStore, InMemoryEventStore
from tests.core.test_codec_properties import (
    LEAVES,
    Colour,
    Level,
    Money,
    Word,
    through_json,
    through_postgresql,
    typed_values,
    untyped_values,
)

# ---------------------------------------------------------------- the rules, one by one


@dataclass(frozen=True)
class Line:
    sku: str
    price: Decimal


@dataclass(frozen=True, kw_only=True)
class TypedOrderPlaced(Event):
    count: int = 0
    ratio: float = 0.0
    flag: bool = False
    price: Decimal = Decimal(0)
    ref: uuid.UUID | None = None
    placed_at: datetime | None = None
    due_on: date | None = None
    name: str = ""
    colour: Colour | None = None
    lines: list[Line] | None = None
    tags: tuple[str, ...] = ()
    by_code: dict[int, str] | None = None
    either: int | str = 0
    extra: Any = None


def encodes(**values: Any) -> TypedOrderPlaced:
    """The event with ``values``, after a round trip through the codec and JSON."""
    codec = EventCodec()
    event = TypedOrderPlaced(**values)
    encoded = codec.encode(event)
    stored = EncodedEvent(
        encoded.event_id,
        encoded.event_type,
        encoded.schema_version,
        encoded.timestamp,
        through_json(encoded.data),
        through_json(encoded.metadata),
    )
    decoded = codec.decode(stored)
    assert decoded == event
    return decoded  # type: ignore[return-value]


def refused(**values: Any) -> EncodeError:
    with pytest.raises(EncodeError) as caught:
        EventCodec().encode(TypedOrderPlaced(**values))
    assert caught.value.event_type == "TypedOrderPlaced"
    return caught.value


def test_the_error_names_the_event_the_field_and_both_types() -> None:
    error = refused(count="12")
    assert (error.field, error.expected, error.received) == ("count", "int", "str '12'")
    assert str(error) == "cannot store event TypedOrderPlaced: count: expected int, got str '12'"
    assert error.errors == {"count": ["expected int, got str '12'"]}
    # One error for bad input: a ValidationError (a ValueError), and a TypeError.
    assert isinstance(error, ValidationError) and isinstance(error, ValueError | TypeError)


def test_nested_fields_are_named_by_their_path() -> None:
    lines = [Line("a", Decimal(1)), Line("b", Decimal(2)), Line("c", 2.5)]  # type: ignore[arg-type]
    error = refused(lines=lines)
    assert error.field == "lines[2].price" and error.expected == "Decimal"
    assert refused(by_code={1: "a", "2": "b"}).field == "by_code['2']"
    assert refused(tags=("a", 1)).field == "tags[1]"
    assert refused(extra={"when": [datetime(2024, 1, 1)]}).field == "extra['when'][0]"


def test_bool_is_not_an_int_but_an_int_is_a_float() -> None:
    assert refused(count=True).expected == "int (bool is not an int)"
    refused(ratio=False)
    refused(flag=1)
    decoded = encodes(ratio=10, count=Level.HIGH)
    # An int in a float field comes back as that int; an IntEnum member as its int.
    assert type(decoded.ratio) is int and decoded.ratio == 10
    assert type(decoded.count) is int and decoded.count == Level.HIGH


def test_text_and_numbers_are_not_parsed_on_the_way_in() -> None:
    refused(price=1.5)  # Decimal("1.5") != 1.5: a float would not come back equal
    refused(price="1.50")
    refused(ref=str(uuid.UUID(int=1)))
    refused(due_on="2024-01-01")
    refused(name=5)
    assert encodes(price=Decimal("1.50")).price == Decimal("1.50")


def test_naive_datetimes_are_refused_aware_ones_keep_their_offset() -> None:
    error = refused(placed_at=datetime(2024, 1, 1, 9))
    assert error.expected == "a timezone-aware datetime"
    assert error.received == "a naive datetime (2024-01-01T09:00:00)"
    refused(extra=datetime(2024, 1, 1))  # untyped too
    paris = datetime(2024, 7, 1, 9, tzinfo=ZoneInfo("Europe/Paris"))
    decoded = encodes(placed_at=paris)
    assert decoded.placed_at == paris and decoded.placed_at.utcoffset() == timedelta(hours=2)
    # A datetime is not a date: it would not come back as one.
    refused(due_on=datetime(2024, 1, 1, tzinfo=UTC))


def test_str_subclasses_and_enums() -> None:
    decoded = encodes(name=Word.YES, colour=Colour.RED)
    assert decoded.name == "yes" and type(decoded.name) is str
    assert decoded.colour is Colour.RED
    refused(colour="red")  # the value of a member is not the member
    # Untyped, a member is stored as its value: kept when it equals it.
    assert encodes(extra=Word.NO).extra == "no"
    assert "annotate the field with Colour" in refused(extra=Colour.GREEN).expected
    assert "comes back as a dict" in refused(extra=Line("a", Decimal(1))).expected


def test_optionals_unions_and_containers() -> None:
    assert encodes(either="x").either == "x" and encodes(either=3).either == 3
    assert refused(either=1.5).expected == "int | str"
    assert refused(either=None).expected == "int | str"
    refused(tags=["a"])  # a list is not a tuple: it would come back as one
    refused(lines=(Line("a", Decimal(1)),))
    refused(by_code={True: "a"})
    assert encodes(by_code={1: "a"}).by_code == {1: "a"}
    assert encodes(extra={"n": [1, 2.5, None, Decimal(1), (1, "a"), {3}]}).extra is not None
    refused(extra={1: "a"})  # untyped keys come back as text
    refused(extra=object())


def test_value_level_encoding_and_dataclasses_raise_the_same_error() -> None:
    with pytest.raises(EncodeError, match=r"\[1\]: expected int"):
        encode_value([1, "2"], list[int])
    with pytest.raises(EncodeError) as caught:
        encode_value(Money("1", "EUR"), Money)  # type: ignore[arg-type]
    assert caught.value.field == "amount"


# ---------------------------------------------------------------- the property


def equal(a: Any, b: Any) -> bool:
    """``a == b``, with NaN equal to NaN (it is equal to nothing, itself included)."""
    return _comparable(a) == _comparable(b)


def _comparable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ("NaN", float)
    if isinstance(value, Decimal) and value.is_nan():
        return ("NaN", Decimal, value.is_snan())
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_comparable(v) for v in value)
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return (type(value), [_comparable(getattr(value, f.name)) for f in fields(value)])
    return value


#: A value of any supported type: for a field annotated otherwise, mostly wrong.
any_value = st.sampled_from(LEAVES).flatmap(lambda leaf: leaf[1]) | st.one_of(
    st.just(datetime(2024, 1, 1)),  # naive
    st.datetimes(),
    st.lists(st.integers() | st.text(), max_size=3),
    st.lists(st.integers(), max_size=3).map(tuple),
    st.dictionaries(st.integers() | st.text(max_size=3), st.integers(), max_size=3),
    untyped_values,
    st.builds(object),
)

_names = itertools.count()


@dataclass
class Drawn:
    annotation: Any
    value: Any
    fits: bool  # drawn from the annotation's own values


def draw_field(data: st.DataObject) -> Drawn:
    annotation, values = data.draw(typed_values, label="annotation")
    fits = data.draw(st.booleans(), label="fits")
    value = data.draw(values if fits else any_value, label="value")
    return Drawn(annotation, value, fits)


@contextmanager
def generated_event(drawn: Sequence[Drawn]) -> Iterator[Event]:
    """An instance of a new event class with one field per drawn annotation.

    The class is in the event registry (stores decode through it) for the block.
    """
    cls = make_dataclass(
        f"GeneratedEvent{next(_names)}",
        [(f"f{i}", d.annotation) for i, d in enumerate(drawn)],
        bases=(Event,),
        frozen=True,
        kw_only=True,
    )
    try:
        yield cls(**{f"f{i}": d.value for i, d in enumerate(drawn)})
    finally:
        default_registry.unregister(cls)


def check_saved_or_refused(event: Event, drawn: Sequence[Drawn], saved: list[Event]) -> None:
    """``saved`` (a save of ``event``, then a load) is the event, or nothing after a refusal."""
    codec = EventCodec()
    try:
        encoded = codec.encode(event)
    except EncodeError as error:
        hypothesis.event("refused")
        assert saved == [], "the store kept an event the codec refuses"
        assert error.event_type == event.type and error.field, error
        index = int(error.field.split("[")[0].split(".")[0][1:])
        assert not drawn[index].fits, f"a value of the annotation itself was refused: {error}"
        return
    hypothesis.event("saved")
    assert saved == [event], "the store refused an event the codec takes"
    for through in (through_json, through_postgresql):
        stored = EncodedEvent(
            encoded.event_id,
            encoded.event_type,
            encoded.schema_version,
            encoded.timestamp,
            through(encoded.data),
            through(encoded.metadata),
        )
        decoded = codec.decode(stored)
        assert type(decoded) is type(event)
        for i, d in enumerate(drawn):
            got = getattr(decoded, f"f{i}")
            assert equal(got, d.value), (d.annotation, d.value, got)


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.data())
def test_a_save_stores_what_loads_back_equal_or_refuses_it(data: st.DataObject) -> None:
    drawn = [draw_field(data) for _ in range(data.draw(st.integers(1, 3), label="fields"))]
    with generated_event(drawn) as event:
        store = InMemoryEventStore()
        with suppress(EncodeError):
            store.save("s-1", [event], expected_version=0)
        saved = store.load("s-1")
        assert store.head_position() == len(saved)
        check_saved_or_refused(event, drawn, saved)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_async_store_refuses_the_same_events(data: st.DataObject) -> None:
    drawn = [draw_field(data)]
    store = InMemoryAsyncEventStore()
    with generated_event(drawn) as event:

        async def save_and_load() -> list[Event]:
            with suppress(EncodeError):
                await store.save("s-1", [event])
            return await store.load("s-1")

        check_saved_or_refused(event, drawn, asyncio.run(save_and_load()))


def test_a_naive_datetime_an_older_version_stored_reads_back_as_utc_and_saves_again() -> None:
    codec = EventCodec()
    data = codec.encode(TypedOrderPlaced(placed_at=datetime(2024, 1, 1, 9, tzinfo=UTC))).data
    data["placed_at"] = "2024-01-01T09:00:00"
    data["extra"] = {"__orchestrix_type__": "datetime", "value": "2024-01-02T00:00:00"}
    stored = EncodedEvent("e-1", "TypedOrderPlaced", 1, datetime(2024, 1, 1, tzinfo=UTC), data, {})
    decoded = codec.decode(stored)
    assert decoded.placed_at == datetime(2024, 1, 1, 9, tzinfo=UTC)  # type: ignore[attr-defined]
    assert decoded.extra == datetime(2024, 1, 2, tzinfo=UTC)  # type: ignore[attr-defined]
    store = InMemoryEventStore()
    store.save("s-1", [decoded])  # what every reader gives, a save takes
    assert store.load("s-1") == [decoded]
