"""Type-checked encoding on the Django store: it keeps only what it gives back equal.

The property of tests/core/test_typed_encoding.py on the database: generated
event classes with fields of every supported annotation, holding values of
that annotation or of any other, are saved and loaded; the load gives back
an equal event, or the save raised and stored nothing. (The contract suite
checks the error on every store: tests/django/test_store_contract.py.)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrix.core.common.exceptions import EncodeError, EventDecodeError
from orchestrix.core.messaging.message import Event
from orchestrix.core.serialization.event_codec import EncodedEvent, EventCodec
from orchestrix.core.serialization.tagged import TAG
from orchestrix_django.models import EventRecord
from orchestrix_django.storage.events import DjangoEventStore
from tests.core.test_typed_encoding import draw_field, equal, generated_event

pytestmark = pytest.mark.django_db(transaction=True)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_a_save_stores_what_loads_back_equal_or_refuses_it(data: st.DataObject) -> None:
    drawn = [draw_field(data) for _ in range(data.draw(st.integers(1, 3), label="fields"))]
    store = DjangoEventStore()
    stream = f"typed-{uuid.uuid4().hex}"
    with generated_event(drawn) as event:
        try:
            store.save(stream, [event], expected_version=0)
        except EncodeError as error:
            hypothesis.event("refused by the codec")
            index = int(error.field.split("[")[0].split(".")[0][1:])  # type: ignore[union-attr]
            assert not drawn[index].fits, f"a value of the annotation itself was refused: {error}"
        except ValueError as error:
            # What no database keeps (NUL, lone surrogates, too deep): refused as before.
            hypothesis.event("refused as unstorable")
            assert "can't be stored" in str(error), error
        else:
            hypothesis.event("saved")
            [loaded] = store.load(stream)
            assert type(loaded) is type(event) and loaded.id == event.id
            for i, d in enumerate(drawn):
                got = getattr(loaded, f"f{i}")
                assert equal(got, d.value), (d.annotation, d.value, got)
            return
        assert not EventRecord.objects.filter(stream_id=stream).exists()


@dataclass(frozen=True, kw_only=True)
class TypedShiftStarted(Event):
    starts: datetime
    notes: Any = None


def _stored(event_id: str, data: dict[str, Any]) -> EncodedEvent:
    timestamp = datetime(2024, 1, 1, tzinfo=UTC)
    return EncodedEvent(event_id, "TypedShiftStarted", 1, timestamp, data, {})


def test_an_import_is_refused_whole_when_an_event_does_not_decode() -> None:
    store = DjangoEventStore()
    good = _stored(str(uuid.uuid4()), {"starts": "2024-01-01T09:00:00+00:00"})
    with pytest.raises(EventDecodeError, match="starts: expected an ISO 8601 date and time"):
        store.save_encoded("shift-1", [good, _stored(str(uuid.uuid4()), {"starts": 1})])
    assert not EventRecord.objects.filter(stream_id="shift-1").exists()
    # What an older version stored, a naive datetime, is read as UTC: it can be saved again.
    old = _stored(
        str(uuid.uuid4()),
        {
            "starts": "2024-01-01T10:00:00",
            "notes": {TAG: "datetime", "value": "2024-01-02T00:00:00"},
        },
    )
    store.save_encoded("shift-1", [good, old])
    loaded = store.load("shift-1")
    assert loaded[1].starts == datetime(2024, 1, 1, 10, tzinfo=UTC)  # type: ignore[attr-defined]
    assert loaded[1].notes == datetime(2024, 1, 2, tzinfo=UTC)  # type: ignore[attr-defined]
    again = EventCodec().encode(loaded[1])  # what the API and a re-export do
    assert again.data["starts"] == "2024-01-01T10:00:00+00:00"
