"""The Celery app of the example project's Celery mode (``ORCHESTRIX_EXAMPLE_CELERY=1``).

Start a worker, with the beat that runs Orchestrix's periodic catch-up and
saga sweep, from the repository's root::

    ORCHESTRIX_EXAMPLE_CELERY=1 \\
    ORCHESTRIX_EXAMPLE_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/orchestrix_example \\
        .venv/bin/celery -A example_project worker -B -l info

The worker runs the projections (``orchestrix.advance_projection``, sent by
each commit; ``orchestrix.catch_up_projections`` from the beat) and the
sagas (``orchestrix.run_saga``; ``orchestrix.sweep_sagas`` from the beat).
Its settings come from ``CELERY_*`` in :mod:`example_project.settings`.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Finds orchestrix_django.tasks (projections; it registers the saga tasks too).
app.autodiscover_tasks()


@app.on_after_finalize.connect  # type: ignore[untyped-decorator]
def add_orchestrix_schedule(sender: Celery, **kwargs: Any) -> None:
    """The beat's periodic catch-up of projections and sweep of sagas."""
    from orchestrix_django.celery import beat_schedule, saga_beat_schedule

    sender.conf.beat_schedule.update(beat_schedule())
    sender.conf.beat_schedule.update(saga_beat_schedule())
