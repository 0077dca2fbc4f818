"""The projections of ``ORCHESTRIX["PROJECTIONS"]``: loaded once, forgotten on a settings change."""

from __future__ import annotations

import threading
from typing import Any

from django.core.signals import setting_changed

from orchestrix_django.projections.definition import DjangoProjection
from orchestrix_django.settings import orchestrix_settings

__all__ = ["get_projection", "projections", "reset_registry"]

_registry_lock = threading.Lock()
_projections: dict[str, DjangoProjection] | None = None


def projections() -> dict[str, DjangoProjection]:
    """The projections of ``ORCHESTRIX["PROJECTIONS"]``, by id (imported once)."""
    global _projections
    with _registry_lock:
        if _projections is None:
            loaded: dict[str, DjangoProjection] = {}
            for projection in orchestrix_settings.PROJECTIONS:
                if not isinstance(projection, DjangoProjection):
                    raise TypeError(
                        f"ORCHESTRIX['PROJECTIONS'] lists {projection!r}, not a DjangoProjection"
                    )
                if projection.projection_id in loaded:
                    raise ValueError(f"two projections are called {projection.projection_id!r}")
                loaded[projection.projection_id] = projection
            _projections = loaded
        return _projections


def reset_registry() -> None:
    """Forget the loaded projections (the settings changed)."""
    global _projections
    with _registry_lock:
        _projections = None


def get_projection(projection_id: str) -> DjangoProjection:
    """The configured projection ``projection_id``; KeyError says which ids exist."""
    found = projections().get(projection_id)
    if found is None:
        known = ", ".join(sorted(projections())) or "none"
        raise KeyError(f"no projection {projection_id!r} is configured (known: {known})")
    return found


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "ORCHESTRIX":
        reset_registry()


setting_changed.connect(_reload, dispatch_uid="orchestrix_django.projections.registry")
