"""The argument checks every store shares: ids, types and versions no store could keep.

``check_save_arguments`` runs in every store's ``save`` (the in-memory one
here; the Django one in tests/django/test_hostile_input.py), so a save that
works in a unit test against memory is refused there as it would be in
production.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from orchestrix.core.eventsourcing.event_store import (
    MAX_POSITION,
    check_from_version,
    check_read_all_arguments,
    check_save_arguments,
    unstorable_character,
)
from orchestrix.core.messaging.message import Event
from orchestrix.infrastructure.memory import InMemoryEventStore


@dataclass(frozen=True, kw_only=True)
class ArgumentNoted(Event):
    text: str = ""


def test_unstorable_characters_are_nul_and_lone_surrogates() -> None:
    assert unstorable_character("plain, é, 😀, \\u0000, \x01") is None
    assert unstorable_character("ab\x00") == "a NUL character at index 2"
    assert unstorable_character("\ud800x") == "a lone surrogate ('\\ud800') at index 0"
    assert unstorable_character("x\udcff") == "a lone surrogate ('\\udcff') at index 1"


@pytest.mark.parametrize(
    ("stream_id", "event", "match"),
    [
        ("", ArgumentNoted(), "aggregate_id must be a non-empty string"),
        (None, ArgumentNoted(), "aggregate_id must be a non-empty string"),
        ("s\x00", ArgumentNoted(), r"aggregate_id 's\\x00' contains a NUL character at index 1"),
        ("s\ud800", ArgumentNoted(), "aggregate_id .* contains a lone surrogate"),
        ("s", ArgumentNoted(id=""), "event id must be a non-empty string"),
        ("s", ArgumentNoted(id="e\x00"), "event id .* contains a NUL character"),
        ("s", ArgumentNoted(type="T\udc80"), "the type of event .* contains a lone surrogate"),
    ],
)
def test_ids_and_types_no_store_could_keep_are_refused(
    stream_id: Any, event: Event, match: str
) -> None:
    store = InMemoryEventStore()
    with pytest.raises(ValueError, match=match):
        store.save(stream_id, [event])
    if isinstance(stream_id, str) and stream_id:
        assert store.load(stream_id) == []


@pytest.mark.parametrize("bad", [-1, MAX_POSITION + 1, 10**40, True, 1.0, "3"])
def test_expected_version_must_be_an_int_in_bigint_range(bad: Any) -> None:
    with pytest.raises(ValueError, match="expected_version must be None or an int from 0 to"):
        check_save_arguments("s", [ArgumentNoted()], bad)


def test_the_edges_of_the_ranges_are_accepted() -> None:
    check_save_arguments("s", [ArgumentNoted(id=str(uuid.uuid4()))], MAX_POSITION)
    check_save_arguments("s", [], 0)
    assert check_from_version(0) == 0 and check_from_version(MAX_POSITION) == MAX_POSITION
    check_read_all_arguments(-(2**70), 1)  # before the first position: from the start
    check_read_all_arguments(MAX_POSITION, 2**70, MAX_POSITION)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (-1, ValueError, "from_version must be from 0 to 2\\*\\*63-1, got -1"),
        (MAX_POSITION + 1, ValueError, "from_version must be from 0 to"),
        ("0", TypeError, "from_version must be an int"),
        (False, TypeError, "from_version must be an int"),
        (None, TypeError, "from_version must be an int"),
    ],
)
def test_from_version_out_of_range(value: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        check_from_version(value)


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ((MAX_POSITION + 1, 10), ValueError, "after_position must be at most 2\\*\\*63-1"),
        ((None, 10), TypeError, "after_position must be an int"),
        ((0, 0), ValueError, "limit must be >= 1, got 0"),
        ((0, 10.0), TypeError, "limit must be an int"),
        ((0, 10, MAX_POSITION + 1), ValueError, "before_position must be at most"),
        ((0, 10, "9"), TypeError, "before_position must be an int"),
    ],
)
def test_read_all_arguments_out_of_range(
    arguments: tuple[Any, ...], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        check_read_all_arguments(*arguments)
