"""What an event class declares personal: its ``data_subject`` and ``personal_data`` fields.

How to declare them, and what each kind of field reads as once its subject is
forgotten, is in ``docs/personal-data.md``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Final

from orchestrix.core.messaging.message import CLOUDEVENT_FIELDS, Event

__all__ = ["ERASED", "KEEP_DEFAULT", "PersonalFields", "personal_fields"]

#: What a forgotten subject's ``str`` personal field without a default reads as.
ERASED: Final = "<erased>"
#: A placeholder meaning "leave the field out of the data": the codec then
#: fills in the field's default.
KEEP_DEFAULT: Final = object()
_ENVELOPE = frozenset(CLOUDEVENT_FIELDS)


@dataclasses.dataclass(frozen=True, slots=True)
class PersonalFields:
    """What an event class declares personal: its ``data_subject`` and fields.

    ``erased`` maps each personal field to what it reads as once its key is
    gone (a JSON value, or ``KEEP_DEFAULT`` for the field's default).
    """

    subject: str
    fields: tuple[str, ...]
    erased: dict[str, object]


_plans: dict[type, PersonalFields | None] = {}


def personal_fields(cls: type[Event]) -> PersonalFields | None:
    """The personal fields ``cls`` declares (None when it declares none).

    Raises ``TypeError`` for a declaration that can't work (see docs/personal-data.md).
    """
    try:
        return _plans[cls]
    except KeyError:
        plan = _plans[cls] = _read_declaration(cls)
        return plan


def _read_declaration(cls: type[Event]) -> PersonalFields | None:
    declared = getattr(cls, "personal_data", ())
    if not declared:
        return None
    where = f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(declared, str) or not all(isinstance(name, str) for name in declared):
        raise TypeError(f"{where}.personal_data must be a tuple of field names, not {declared!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for attribute in ("personal_data", "data_subject"):
        if attribute in fields:
            raise TypeError(
                f"{where}.{attribute} is a dataclass field (it has an annotation): declare it "
                f"as a class attribute, {attribute}: ClassVar[...] = ..."
            )
    subject = getattr(cls, "data_subject", None)
    if not isinstance(subject, str) or subject not in fields or subject in _ENVELOPE:
        raise TypeError(
            f"{where} declares personal_data but its data_subject ({subject!r}) is not one "
            "of its fields: name the field holding the id of the person the data belongs to"
        )
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: only defaults then qualify
        hints = {}
    erased: dict[str, object] = {}
    for name in declared:
        field = fields.get(name)
        if field is None or name in _ENVELOPE:
            raise TypeError(f"{where}.personal_data names {name!r}, which is not its own field")
        if name == subject:
            raise TypeError(
                f"{where}.personal_data names its data_subject {name!r}: the subject's id "
                "stays readable (it names the key); store personal ids in another field"
            )
        annotation = hints.get(name)
        if field.default is not dataclasses.MISSING or (
            field.default_factory is not dataclasses.MISSING
        ):
            erased[name] = KEEP_DEFAULT
        elif annotation is str:
            erased[name] = ERASED
        elif _optional(annotation):
            erased[name] = None
        else:
            # After an erasure the event must still decode, so the field needs
            # a value that stands for "erased" without a key.
            raise TypeError(
                f"{where}.{name} is personal data of type {annotation!r} without a default: "
                f"give it a default, or make it str (reads {ERASED!r} once erased) or "
                "optional (reads None)"
            )
    return PersonalFields(subject, tuple(declared), erased)


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(
        None
    ) in typing.get_args(annotation)
