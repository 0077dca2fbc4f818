"""The JSON codec: every field type round-trips exactly; bad data fails clearly."""

import enum
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrix.core.common.exceptions import (
    DuplicateEventTypeError,
    EncodeError,
    EventDecodeError,
    UnknownEventTypeError,
)
from orchestrix.core.messaging.message import Event, EventRegistry
from orchestrix.core.serialization.cloudevents import from_cloudevent, to_cloudevent
from orchestrix.core.serialization.event_codec import EncodedEvent, EventCodec
from orchestrix.core.serialization.json_data import DecodeFailure
from orchestrix.core.serialization.tagged import TAG
from orchestrix.core.serialization.values import decode_value, encode_value


class Status(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    price: Money
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class CodecOrderPlaced(Event):
    order_id: uuid.UUID
    customer: str
    total: Money
    lines: list[Line]
    status: Status
    priority: Priority
    placed_on: date
    due_at: datetime | None
    cutoff: time
    grace: timedelta
    ratio: float
    count: int
    flag: bool
    note: str | None = None
    amounts: dict[str, Decimal] = field(default_factory=dict)
    by_day: dict[date, int] = field(default_factory=dict)
    by_status: dict[Status, list[int]] = field(default_factory=dict)
    ids: frozenset[uuid.UUID] = frozenset()
    pair: tuple[int, str] = (0, "")
    raw: bytes = b""
    either: int | str = 0
    mode: Literal["fast", "slow"] = "fast"
    anything: Any = None


def make_order(**overrides: Any) -> CodecOrderPlaced:
    values: dict[str, Any] = {
        "order_id": uuid.uuid4(),
        "customer": "Zoë",
        "total": Money(Decimal("10.50"), "EUR"),
        "lines": [Line("A-1", 2, Money(Decimal("5.25"), "EUR"), ("x", "y"))],
        "status": Status.OPEN,
        "priority": Priority.HIGH,
        "placed_on": date(2024, 2, 29),
        "due_at": datetime(2024, 3, 1, 8, 30, tzinfo=UTC),
        "cutoff": time(17, 0, 30, 5),
        "grace": timedelta(days=2, microseconds=7),
        "ratio": 0.1,
        "count": 2**70,
        "flag": False,
        "amounts": {"net": Decimal("8.82"), "tax": Decimal("1.68")},
        "by_day": {date(2024, 1, 1): 3},
        "by_status": {Status.CLOSED: [1, 2]},
        "ids": frozenset({uuid.uuid4(), uuid.uuid4()}),
        "pair": (7, "seven"),
        "raw": b"\x00\xffbinary",
        "either": "text",
        "mode": "slow",
        "anything": {"d": Decimal("1.0"), "u": uuid.UUID(int=5), "t": (1, 2), "s": {3}},
        "data": {"when": datetime(2020, 1, 1, tzinfo=UTC)},
        "correlation_id": "corr",
        "subject": "orders/1",
    }
    values.update(overrides)
    return CodecOrderPlaced(**values)


def through_json(encoded: EncodedEvent) -> EncodedEvent:
    """What a database hands back: the JSON text parsed again."""
    return EncodedEvent(
        encoded.event_id,
        encoded.event_type,
        encoded.schema_version,
        encoded.timestamp,
        json.loads(json.dumps(encoded.data, allow_nan=False)),
        json.loads(json.dumps(encoded.metadata, allow_nan=False)),
    )


def test_every_field_type_round_trips_exactly() -> None:
    codec = EventCodec()
    event = make_order()
    decoded = codec.decode(through_json(codec.encode(event)))
    assert decoded == event
    assert type(decoded.total.amount) is Decimal and str(decoded.total.amount) == "10.50"
    assert decoded.count == 2**70
    assert decoded.anything["t"] == (1, 2) and decoded.anything["s"] == {3}
    assert decoded.data == {"when": datetime(2020, 1, 1, tzinfo=UTC)}


def test_stored_json_is_plain_where_the_type_is_known() -> None:
    encoded = EventCodec().encode(make_order())
    assert encoded.data["total"] == {"amount": "10.50", "currency": "EUR"}
    assert encoded.data["status"] == "open"
    assert encoded.data["placed_on"] == "2024-02-29"
    assert encoded.data["by_day"] == {"2024-01-01": 3}
    assert encoded.data["anything"]["d"] == {TAG: "decimal", "value": "1.0"}
    assert "id" not in encoded.data and "correlation_id" not in encoded.data
    assert encoded.metadata == {
        "specversion": "1.0",
        "source": "orchestrix",
        "subject": "orders/1",
        "correlation_id": "corr",
    }


def test_non_finite_floats_round_trip_through_strict_json() -> None:
    codec = EventCodec()
    for value in (math.inf, -math.inf):
        decoded = codec.decode(through_json(codec.encode(make_order(ratio=value))))
        assert decoded.ratio == value
    decoded = codec.decode(
        through_json(codec.encode(make_order(ratio=math.nan, anything=math.nan)))
    )
    assert math.isnan(decoded.ratio) and math.isnan(decoded.anything)


def test_ints_in_float_fields_stay_ints() -> None:
    codec = EventCodec()
    decoded = codec.decode(through_json(codec.encode(make_order(ratio=10))))
    assert decoded.ratio == 10 and type(decoded.ratio) is int


def test_aware_datetimes_keep_their_instant() -> None:
    tz = timezone(timedelta(hours=-5))
    moment = datetime(2024, 6, 1, 12, tzinfo=tz)
    decoded = decode_value(encode_value(moment, datetime), datetime)
    assert decoded == moment and decoded.utcoffset() == timedelta(hours=-5)


def test_decoding_does_not_call_init() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Strict(Event):
        amount: int

        def __post_init__(self) -> None:
            if self.amount > 10:
                raise ValueError("new rule: amounts above 10 are refused")

    registry = EventRegistry()
    registry.register(Strict)
    codec = EventCodec(registry)
    encoded = codec.encode(Strict(amount=5))
    stored = EncodedEvent(
        *[getattr(encoded, f) for f in ("event_id", "event_type", "schema_version", "timestamp")],
        {"amount": 50},
        encoded.metadata,
    )
    assert codec.decode(stored).amount == 50  # history stays readable


def test_missing_field_uses_default_or_fails_naming_it() -> None:
    codec = EventCodec()
    encoded = codec.encode(make_order())
    data = dict(encoded.data)
    del data["note"]
    assert codec.decode(_with_data(encoded, data)).note is None
    del data["customer"]
    with pytest.raises(EventDecodeError, match="customer") as caught:
        codec.decode(_with_data(encoded, data), stream_id="orders-1", version=4)
    assert caught.value.stream_id == "orders-1" and caught.value.version == 4
    assert "CodecOrderPlaced" in str(caught.value) and "orders-1" in str(caught.value)


def _with_data(encoded: EncodedEvent, data: Any) -> EncodedEvent:
    return EncodedEvent(
        encoded.event_id,
        encoded.event_type,
        encoded.schema_version,
        encoded.timestamp,
        data,
        encoded.metadata,
    )


@pytest.mark.parametrize(
    ("field_name", "bad"),
    [
        ("customer", 5),
        ("count", "5"),
        ("flag", 1),
        ("total", [1]),
        ("status", "unknown"),
        ("placed_on", "yesterday"),
        ("order_id", "not-a-uuid"),
        ("lines", {"a": 1}),
        ("pair", [1]),
        ("mode", "medium"),
        ("raw", "!!!"),
    ],
)
def test_wrong_shapes_raise_a_decode_error_naming_the_field(field_name: str, bad: Any) -> None:
    codec = EventCodec()
    encoded = codec.encode(make_order())
    data = {**encoded.data, field_name: bad}
    with pytest.raises(EventDecodeError) as caught:
        codec.decode(_with_data(encoded, data), stream_id="s", version=1, position=9)
    assert field_name in str(caught.value)
    assert caught.value.position == 9


def test_non_object_data_is_a_decode_error() -> None:
    codec = EventCodec()
    encoded = codec.encode(make_order())
    with pytest.raises(EventDecodeError, match="JSON objects"):
        codec.decode(_with_data(encoded, ["not", "an", "object"]))


def test_unknown_type_names_the_type_and_stream() -> None:
    codec = EventCodec(EventRegistry())
    stored = EncodedEvent("id", "NoSuchEvent", 1, datetime.now(UTC), {}, {})
    with pytest.raises(UnknownEventTypeError, match="NoSuchEvent") as caught:
        codec.decode(stored, stream_id="acc-1", version=3)
    assert "acc-1" in str(caught.value)


def test_unencodable_value_says_which_field() -> None:
    with pytest.raises(TypeError, match="anything"):
        EventCodec().encode(make_order(anything=object()))


def test_cloudevent_round_trip() -> None:
    event = make_order(trace_id="t", causation_id="c")
    cloudevent = to_cloudevent(event)
    assert cloudevent["specversion"] == "1.0"
    assert cloudevent["type"] == "CodecOrderPlaced"
    assert cloudevent["time"] == event.timestamp.isoformat()
    assert cloudevent["correlationid"] == "corr" and cloudevent["traceid"] == "t"
    assert cloudevent["datacontenttype"] == "application/json"
    assert from_cloudevent(json.loads(json.dumps(cloudevent))) == event
    with pytest.raises(EventDecodeError):
        from_cloudevent({"type": "CodecOrderPlaced"})


def test_registry_conflict_blocks_decoding() -> None:
    registry = EventRegistry()

    @dataclass(frozen=True, kw_only=True)
    class Twin(Event):
        pass

    registry.register(Twin)
    other = type("Twin", (Event,), {"__module__": "elsewhere", "__qualname__": "Twin"})
    registry.add(other)
    assert [c.event_type for c in registry.conflicts()] == ["Twin"]
    with pytest.raises(DuplicateEventTypeError):
        registry.resolve("Twin", 1)


def test_self_referencing_dataclasses() -> None:
    @dataclass
    class Node:
        name: str
        children: "list[Node]" = field(default_factory=list)

    globals()["Node"] = Node  # resolvable like a module-level class
    tree = Node("root", [Node("a", [Node("b")])])
    assert decode_value(encode_value(tree, Node), Node) == tree


def test_tagged_values_in_untyped_positions() -> None:
    value = {"price": Decimal("1.10"), "at": date(2024, 1, 1), TAG: "user key"}
    encoded = encode_value(value)
    assert json.loads(json.dumps(encoded)) == encoded
    assert decode_value(encoded) == value
    with pytest.raises(EncodeError, match="a str key") as caught:
        encode_value({"ok": {1: "int key"}})
    assert caught.value.field == "['ok'][1]"
    with pytest.raises(DecodeFailure):
        decode_value({TAG: "martian", "value": 1})


# ---------------------------------------------------------------- properties

json_scalars = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False)
anything = st.recursive(
    json_scalars
    | st.decimals(allow_nan=False)
    | st.uuids()
    | st.dates()
    | st.datetimes(timezones=st.just(UTC))
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
        | st.tuples(children, children)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    customer=st.text(),
    amount=st.decimals(allow_nan=False, allow_infinity=False, places=4),
    lines=st.lists(
        st.builds(
            Line,
            sku=st.text(max_size=8),
            quantity=st.integers(),
            price=st.builds(Money, st.decimals(allow_nan=False), st.text(max_size=3)),
            tags=st.lists(st.text(max_size=3), max_size=3).map(tuple),
        ),
        max_size=3,
    ),
    status=st.sampled_from(Status),
    due_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    ratio=st.floats(allow_nan=False),
    count=st.integers(),
    grace=st.timedeltas(),
    amounts=st.dictionaries(st.text(max_size=5), st.decimals(allow_nan=False), max_size=3),
    either=st.integers() | st.text(),
    anything=anything,
)
def test_property_every_representable_event_round_trips(
    customer: str,
    amount: Decimal,
    lines: list[Line],
    status: Status,
    due_at: datetime | None,
    ratio: float,
    count: int,
    grace: timedelta,
    amounts: dict[str, Decimal],
    either: int | str,
    anything: Any,
) -> None:
    codec = EventCodec()
    event = make_order(
        customer=customer,
        total=Money(amount, "EUR"),
        lines=lines,
        status=status,
        due_at=due_at,
        ratio=ratio,
        count=count,
        grace=grace,
        amounts=amounts,
        either=either,
        anything=anything,
    )
    decoded = codec.decode(through_json(codec.encode(event)))
    assert decoded == event
    assert [str(line.price.amount) for line in decoded.lines] == [
        str(line.price.amount) for line in event.lines
    ]


json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    data=st.dictionaries(
        st.sampled_from(["customer", "count", "total", "lines", "status", "anything", "ids", "x"]),
        json_values,
    ),
    metadata=st.dictionaries(st.sampled_from(["source", "subject", "correlation_id"]), json_values),
)
def test_property_arbitrary_json_decodes_or_raises_a_decode_error(
    data: dict[str, Any], metadata: dict[str, Any]
) -> None:
    codec = EventCodec()
    base = codec.encode(make_order())
    stored = EncodedEvent(
        base.event_id, base.event_type, 1, base.timestamp, {**base.data, **data}, metadata
    )
    try:
        codec.decode(stored, stream_id="s-1", version=2)
    except EventDecodeError as error:
        assert error.stream_id == "s-1" and error.version == 2
