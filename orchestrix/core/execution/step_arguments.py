"""Which arguments a saga step's action or compensation receives, from its signature.

A declared parameter takes the saga keyword argument of its name; ``**kwargs``
takes every saga keyword argument; ``result`` (in a compensation) takes the
step's own result; ``saga_id``, ``idempotency_key`` and ``results`` are
supplied when declared and not a saga keyword argument.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CallPlan"]


def is_coroutine_callable(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` returns a coroutine (coroutine function or such a ``__call__``)."""
    if inspect.iscoroutinefunction(func):
        return True
    # A callable object with an ``async def __call__``.
    call = getattr(func, "__call__", None)  # noqa: B004 - we want the method itself
    return call is not None and inspect.iscoroutinefunction(call)


@dataclass(frozen=True, slots=True)
class CallPlan:
    """Which arguments a callable takes, worked out once from its signature."""

    func: Callable[..., Any]
    is_coroutine: bool
    positional_only: tuple[str, ...]
    keywords: tuple[str, ...]
    var_keyword: bool
    signature_known: bool

    @classmethod
    def of(cls, func: Callable[..., Any]) -> CallPlan:
        try:
            parameters = inspect.signature(func).parameters.values()
        except (TypeError, ValueError):
            # No introspectable signature (some builtins): pass the saga kwargs.
            return cls(func, is_coroutine_callable(func), (), (), True, False)
        kinds = inspect.Parameter
        return cls(
            func=func,
            is_coroutine=is_coroutine_callable(func),
            positional_only=tuple(p.name for p in parameters if p.kind is kinds.POSITIONAL_ONLY),
            keywords=tuple(
                p.name
                for p in parameters
                if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)
            ),
            var_keyword=any(p.kind is kinds.VAR_KEYWORD for p in parameters),
            signature_known=True,
        )

    def arguments(
        self,
        saga_kwargs: Mapping[str, Any],
        context: Mapping[str, Any],
        overrides: Mapping[str, Any],
    ) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for one call.

        A declared name takes its value from ``overrides`` (a compensation's
        ``result``), else from the saga kwargs, else from ``context``; a name
        found nowhere is left to its default. ``**kwargs`` gets the saga
        kwargs not bound by name (never the context: forwarding ``**kwargs``
        must not pass surprise arguments on).
        """
        if not self.signature_known:
            return [], dict(saga_kwargs)

        def lookup(name: str) -> tuple[bool, Any]:
            for source in (overrides, saga_kwargs, context):
                if name in source:
                    return True, source[name]
            return False, None

        args: list[Any] = []
        bound: set[str] = set()
        for name in self.positional_only:
            found, value = lookup(name)
            if not found:
                break  # the rest keep their defaults; a positional gap is impossible
            args.append(value)
            bound.add(name)
        kwargs: dict[str, Any] = {}
        for name in self.keywords:
            found, value = lookup(name)
            if found:
                kwargs[name] = value
                bound.add(name)
        if self.var_keyword:
            for name, value in saga_kwargs.items():
                if name not in bound:
                    kwargs[name] = value
        return args, kwargs
