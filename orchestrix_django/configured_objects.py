"""Objects listed in the ``ORCHESTRIX`` settings, loaded once and forgotten when they change.

The projections and the sagas are each such a set: the list a setting names,
checked and keyed by id when first asked for, then kept until a test (or
``override_settings``) changes ``ORCHESTRIX``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django.core.signals import setting_changed

__all__ = ["ConfiguredObjects"]

T = TypeVar("T")


class ConfiguredObjects(Generic[T]):
    """The objects ``load`` returns by key: loaded on first use, reloaded after a settings change.

    ``missing`` is the KeyError message for an unknown key, with ``{!r}`` where
    the key goes (``"no projection {!r} is configured"``).
    """

    def __init__(self, load: Callable[[], dict[str, T]], *, missing: str) -> None:
        self._load = load
        self._missing = missing
        self._lock = threading.Lock()
        self._loaded: dict[str, T] | None = None
        setting_changed.connect(self._reload, weak=False)

    def all(self) -> dict[str, T]:
        """Every object by key (loaded now if not yet)."""
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def get(self, key: str) -> T:
        """The object ``key``; KeyError says which keys exist."""
        loaded = self.all()
        found = loaded.get(key)
        if found is None:
            known = ", ".join(sorted(loaded)) or "none"
            raise KeyError(f"{self._missing.format(key)} (known: {known})")
        return found

    def reset(self) -> None:
        """Forget the loaded objects (the settings changed)."""
        with self._lock:
            self._loaded = None

    def _reload(self, *, setting: str, **kwargs: Any) -> None:
        if setting == "ORCHESTRIX":
            self.reset()
