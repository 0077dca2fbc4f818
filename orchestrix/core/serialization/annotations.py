"""Reading annotations: what a field's annotation is made of, as the encoders and decoders need it.

String annotations are resolved here without evaluating text (see :func:`resolve_hints`).
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any, Union

__all__ = [
    "COLLECTIONS",
    "MAPPINGS",
    "annotation_name",
    "codec_fields",
    "container_members",
    "is_any",
    "literal_options",
    "resolve_hints",
    "shape",
    "stored_as_is",
    "union_members",
    "unwrap",
]


def is_any(annotation: Any) -> bool:
    return annotation is Any or annotation is object or isinstance(annotation, typing.TypeVar)


def unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return unwrap(typing.get_args(annotation)[0])
    supertype = getattr(annotation, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        return unwrap(supertype)
    if isinstance(annotation, typing.TypeAliasType if hasattr(typing, "TypeAliasType") else ()):
        return unwrap(annotation.__value__)
    return annotation


def union_members(annotation: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(annotation)
    return None


def annotation_name(annotation: Any) -> str:
    """An annotation as an error message shows it: ``int``, ``list[Money]``."""
    if annotation is None or annotation is type(None):
        return "None"
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "").replace("collections.abc.", "")


#: Collection annotations (by origin) and the type their values are read back as.
COLLECTIONS: dict[Any, type] = {
    list: list,
    tuple: tuple,
    set: set,
    frozenset: frozenset,
    abc.Sequence: list,
    abc.MutableSequence: list,
    abc.Iterable: list,
    abc.Collection: list,
    abc.Set: set,
    abc.MutableSet: set,
}
MAPPINGS = (dict, abc.Mapping, abc.MutableMapping)


def shape(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """The origin and arguments of ``annotation``; a bare ``list`` or ``dict`` is its own origin."""
    origin = typing.get_origin(annotation)
    if (
        origin is None
        and isinstance(annotation, type)
        and (annotation in COLLECTIONS or annotation in MAPPINGS)
    ):
        return annotation, ()
    return origin, typing.get_args(annotation)


def literal_options(annotation: Any) -> list[Any]:
    """The options of a ``Literal`` that JSON holds as they are (str, int, bool, None)."""
    return [
        option
        for option in typing.get_args(annotation)
        if option is None or type(option) in (str, int, bool)
    ]


_CONTAINERS = (list, tuple, set, frozenset, dict)


def container_members(members: Sequence[Any]) -> dict[type, tuple[Any, bool]]:
    """The union members that are the only one of their container type.

    ``{list: (list[Money], tagged)}``: values of that type are encoded by that
    member; ``tagged`` when another member has the same JSON shape (two
    array-like members, a dict and a dataclass, an untyped member), so the
    stored value must say which member it is.
    """
    by_origin: dict[type, list[Any]] = {}
    arrays = objects = 0
    untyped = False
    for member in members:
        unwrapped = unwrap(member)
        if is_any(unwrapped):
            untyped = True
            continue
        origin = shape(unwrapped)[0] or unwrapped
        if origin in COLLECTIONS:
            arrays += 1
        elif origin in MAPPINGS or dataclasses.is_dataclass(origin):
            objects += 1
        if origin in _CONTAINERS:
            by_origin.setdefault(origin, []).append(member)
    return {
        origin: (found[0], untyped or (objects if origin is dict else arrays) > 1)
        for origin, found in by_origin.items()
        if len(found) == 1
    }


def codec_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of the dataclass ``cls`` the codec stores (not ``ClassVar``, ``InitVar``)."""
    return [f for f in dataclasses.fields(cls) if f._field_type is dataclasses._FIELD]  # type: ignore[attr-defined]


def resolve_hints(cls: type, fields: list[dataclasses.Field[Any]]) -> dict[str, Any]:
    """The fields' annotations as types (string annotations resolved).

    All at once through ``typing.get_type_hints``; when one annotation can't
    be resolved (a name imported under ``TYPE_CHECKING`` only, a class local
    to a function), field by field, so that only that field is untyped
    (``Any``: its values are stored tagged) and the others keep their types.
    """
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception:
        pass
    hints: dict[str, Any] = {}
    for f in fields:
        annotation = f.type
        if isinstance(annotation, str):
            owner = next((k for k in cls.__mro__ if f.name in inspect.get_annotations(k)), cls)
            annotation = _resolve_string_annotation(annotation, owner)
        hints[f.name] = annotation
    return hints


def _resolve_string_annotation(annotation: str, owner: type) -> Any:
    """``annotation`` (a string) as written in the class ``owner``, or ``Any``.

    Resolved by ``typing.get_type_hints`` in the namespaces it would use for
    ``owner`` (its module's globals, the class's own names), through a
    stand-in module holding just this annotation: the codec itself never
    evaluates text.
    """
    module = sys.modules.get(owner.__module__)
    holder = types.ModuleType("orchestrix_annotation")
    holder.__annotations__ = {"value": annotation}
    try:
        return typing.get_type_hints(
            holder,
            globalns=dict(vars(module)) if module is not None else {},
            localns=dict(vars(owner)),
            include_extras=True,
        )["value"]
    except Exception:
        return Any


def stored_as_is(annotation: Any) -> type | None:
    """``str``, ``int`` or ``bool`` when JSON holds a field of this annotation as it is.

    (Decoding such a value is the identity; anything else goes through the decoder.)
    """
    annotation = unwrap(annotation) if annotation is not None else None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = unwrap(members[0]) if len(members) == 1 else None
    return annotation if annotation in (str, int, bool) else None
