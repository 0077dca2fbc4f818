"""The configured sagas (``ORCHESTRIX["SAGAS"]``) by saga type, reloaded when settings change."""

from __future__ import annotations

from typing import Any

from orchestrix.core.execution.saga import Saga
from orchestrix_django.sagas.definition import DjangoSaga
from orchestrix_django.settings import ConfiguredObjects, orchestrix_settings

__all__ = ["get_saga", "reset_registry", "sagas", "start_saga"]


def _load() -> dict[str, DjangoSaga]:
    loaded: dict[str, DjangoSaga] = {}
    for entry in orchestrix_settings.SAGAS:
        if not isinstance(entry, Saga):
            raise TypeError(f"ORCHESTRIX['SAGAS'] lists {entry!r}, not a Saga")
        saga = DjangoSaga.from_saga(entry)
        if saga.saga_type in loaded:
            raise ValueError(f"two sagas have the type {saga.saga_type!r}")
        loaded[saga.saga_type] = saga
    return loaded


_configured = ConfiguredObjects(_load, missing="no saga of type {!r} is configured")


def sagas() -> dict[str, DjangoSaga]:
    """The sagas of ``ORCHESTRIX["SAGAS"]``, by saga type (imported once)."""
    return _configured.all()


def reset_registry() -> None:
    """Forget the loaded sagas (the settings changed)."""
    _configured.reset()


def get_saga(saga_type: str) -> DjangoSaga:
    """The configured saga of type ``saga_type``; KeyError says which types exist."""
    return _configured.get(saga_type)


def start_saga(saga_type: str, /, **kwargs: Any) -> str:
    """Start a saga of the configured type ``saga_type`` (see :meth:`DjangoSaga.start`)."""
    return get_saga(saga_type).start(**kwargs)
