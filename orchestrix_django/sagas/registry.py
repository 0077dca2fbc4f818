"""The configured sagas (``ORCHESTRIX["SAGAS"]``) by saga type, reloaded when settings change."""

from __future__ import annotations

import threading
from typing import Any

from django.core.signals import setting_changed

from orchestrix.core.execution.saga import Saga
from orchestrix_django.sagas.definition import DjangoSaga
from orchestrix_django.settings import orchestrix_settings

__all__ = ["get_saga", "reset_registry", "sagas", "start_saga"]

_registry_lock = threading.Lock()
_registry: dict[str, DjangoSaga] | None = None


def sagas() -> dict[str, DjangoSaga]:
    """The sagas of ``ORCHESTRIX["SAGAS"]``, by saga type (imported once)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            loaded: dict[str, DjangoSaga] = {}
            for entry in orchestrix_settings.SAGAS:
                if not isinstance(entry, Saga):
                    raise TypeError(f"ORCHESTRIX['SAGAS'] lists {entry!r}, not a Saga")
                saga = DjangoSaga.from_saga(entry)
                if saga.saga_type in loaded:
                    raise ValueError(f"two sagas have the type {saga.saga_type!r}")
                loaded[saga.saga_type] = saga
            _registry = loaded
        return _registry


def reset_registry() -> None:
    """Forget the loaded sagas (the settings changed)."""
    global _registry
    with _registry_lock:
        _registry = None


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "ORCHESTRIX":
        reset_registry()


setting_changed.connect(_reload, dispatch_uid="orchestrix_django.sagas.registry")


def get_saga(saga_type: str) -> DjangoSaga:
    """The configured saga of type ``saga_type``; KeyError says which types exist."""
    found = sagas().get(saga_type)
    if found is None:
        known = ", ".join(sorted(sagas())) or "none"
        raise KeyError(f"no saga of type {saga_type!r} is configured (known: {known})")
    return found


def start_saga(saga_type: str, /, **kwargs: Any) -> str:
    """Start a saga of the configured type ``saga_type`` (see :meth:`DjangoSaga.start`)."""
    return get_saga(saga_type).start(**kwargs)
