"""What the admin's buttons and actions do: see :mod:`orchestrix_django.operations`.

The operations moved there, out of the admin package, so that the REST API
shares them in projects without ``django.contrib.admin``; this module keeps
the old import path working.
"""

from __future__ import annotations

from orchestrix_django.operations import (
    PROJECTION_SOURCE_PREFIX,
    Outcome,
    discard_dead_letter,
    pause_projection,
    rebuild_projection,
    resume_projection,
    retry_dead_letter,
    retry_kind,
)

__all__ = [
    "PROJECTION_SOURCE_PREFIX",
    "Outcome",
    "discard_dead_letter",
    "pause_projection",
    "rebuild_projection",
    "resume_projection",
    "retry_dead_letter",
    "retry_kind",
]
