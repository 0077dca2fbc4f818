"""Projections run by Django: read models kept up to date from the global log.

The public names; internal code imports from the concrete modules.
"""

from orchestrix_django.projections.control import (
    pause,
    reset_projection,
    resume,
    retry_parked,
    skip_parked,
)
from orchestrix_django.projections.definition import (
    DjangoProjection,
    FailureMode,
    batch_size_override,
)
from orchestrix_django.projections.embedded import EmbeddedRunner, Turn
from orchestrix_django.projections.rebuild import (
    NotCaughtUpError,
    RebuildError,
    RebuildResult,
    SwitchResult,
    active_projection,
    active_read_model,
    check_rebuild,
    read_model_name,
    rebuild,
    switch_projection,
)
from orchestrix_django.projections.registry import get_projection, projections
from orchestrix_django.projections.runner import CatchUpResult, StopReason, catch_up
from orchestrix_django.projections.status import (
    ProjectionStatus,
    is_stalled,
    projection_status,
    stalled_after,
)

__all__ = [
    "CatchUpResult",
    "DjangoProjection",
    "EmbeddedRunner",
    "FailureMode",
    "NotCaughtUpError",
    "ProjectionStatus",
    "RebuildError",
    "RebuildResult",
    "StopReason",
    "SwitchResult",
    "Turn",
    "active_projection",
    "active_read_model",
    "batch_size_override",
    "catch_up",
    "check_rebuild",
    "get_projection",
    "is_stalled",
    "pause",
    "projection_status",
    "projections",
    "read_model_name",
    "rebuild",
    "reset_projection",
    "resume",
    "retry_parked",
    "skip_parked",
    "stalled_after",
    "switch_projection",
]
