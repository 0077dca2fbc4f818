"""The projections of ``ORCHESTRIX["PROJECTIONS"]``: loaded once, forgotten on a settings change."""

from __future__ import annotations

from orchestrix_django.projections.definition import DjangoProjection
from orchestrix_django.settings import ConfiguredObjects, orchestrix_settings

__all__ = ["get_projection", "projections", "reset_registry"]


def _load() -> dict[str, DjangoProjection]:
    loaded: dict[str, DjangoProjection] = {}
    for projection in orchestrix_settings.PROJECTIONS:
        if not isinstance(projection, DjangoProjection):
            raise TypeError(
                f"ORCHESTRIX['PROJECTIONS'] lists {projection!r}, not a DjangoProjection"
            )
        if projection.projection_id in loaded:
            raise ValueError(f"two projections are called {projection.projection_id!r}")
        loaded[projection.projection_id] = projection
    return loaded


_configured = ConfiguredObjects(_load, missing="no projection {!r} is configured")


def projections() -> dict[str, DjangoProjection]:
    """The projections of ``ORCHESTRIX["PROJECTIONS"]``, by id (imported once)."""
    return _configured.all()


def reset_registry() -> None:
    """Forget the loaded projections (the settings changed)."""
    _configured.reset()


def get_projection(projection_id: str) -> DjangoProjection:
    """The configured projection ``projection_id``; KeyError says which ids exist."""
    return _configured.get(projection_id)
