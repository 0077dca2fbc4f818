"""The API's URLs: ``path("orchestrix/", include("orchestrix_django.api.urls"))``.

The names live in the ``orchestrix`` namespace (``reverse("orchestrix:event-log")``).
The write endpoints opt out of ``ATOMIC_REQUESTS``: a rebuild commits a
transaction per batch, and a retry its own, as the runners do.
"""

from __future__ import annotations

from django.db import transaction
from django.urls import path

from orchestrix_django.api.dead_letters import (
    DeadLetterDetailView,
    DeadLetterDiscardView,
    DeadLetterListView,
    DeadLetterRetryView,
)
from orchestrix_django.api.events import (
    ApiRootView,
    EventDetailView,
    EventLogView,
    StreamDetailView,
    StreamEventsView,
    StreamListView,
)
from orchestrix_django.api.projections import (
    ProjectionDetailView,
    ProjectionListView,
    ProjectionPauseView,
    ProjectionRebuildView,
    ProjectionResumeView,
)
from orchestrix_django.api.sagas import SagaDetailView, SagaListView
from orchestrix_django.api.schema import SchemaView

app_name = "orchestrix"

urlpatterns = [
    path("", ApiRootView.as_view(), name="root"),
    path("events/", EventLogView.as_view(), name="event-log"),
    path("events/<path:event_id>/", EventDetailView.as_view(), name="event-detail"),
    path("streams/", StreamListView.as_view(), name="stream-list"),
    # Before the stream's own URL: stream ids may hold slashes.
    path(
        "streams/<path:stream_id>/events/",
        StreamEventsView.as_view(),
        name="stream-events",
    ),
    path("streams/<path:stream_id>/", StreamDetailView.as_view(), name="stream-detail"),
    path("projections/", ProjectionListView.as_view(), name="projection-list"),
    path(
        "projections/<str:projection_id>/",
        ProjectionDetailView.as_view(),
        name="projection-detail",
    ),
    path(
        "projections/<str:projection_id>/rebuild/",
        transaction.non_atomic_requests(ProjectionRebuildView.as_view()),
        name="projection-rebuild",
    ),
    path(
        "projections/<str:projection_id>/pause/",
        ProjectionPauseView.as_view(),
        name="projection-pause",
    ),
    path(
        "projections/<str:projection_id>/resume/",
        ProjectionResumeView.as_view(),
        name="projection-resume",
    ),
    path("sagas/", SagaListView.as_view(), name="saga-list"),
    path("sagas/<str:saga_id>/", SagaDetailView.as_view(), name="saga-detail"),
    path("dead-letters/", DeadLetterListView.as_view(), name="dead-letter-list"),
    path(
        "dead-letters/<str:dead_letter_id>/",
        DeadLetterDetailView.as_view(),
        name="dead-letter-detail",
    ),
    path(
        "dead-letters/<str:dead_letter_id>/retry/",
        transaction.non_atomic_requests(DeadLetterRetryView.as_view()),
        name="dead-letter-retry",
    ),
    path(
        "dead-letters/<str:dead_letter_id>/discard/",
        transaction.non_atomic_requests(DeadLetterDiscardView.as_view()),
        name="dead-letter-discard",
    ),
    path("schema/", SchemaView.as_view(), name="schema"),
]
