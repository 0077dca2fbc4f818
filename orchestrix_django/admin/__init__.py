"""The Orchestrix pages of the Django admin.

Registered with the default admin site when ``django.contrib.admin`` finds
this module:

* **Events** (:mod:`.events`): the log, read-only for everyone; filters by
  type, stream, correlation id and date; exact search by stream id, event id
  and correlation id; an event's data and metadata, stored and upcast.
* **Streams** (:mod:`.events`): the summary kept on append; a stream's page
  is the timeline of its events.
* **Projections** (:mod:`.projections`): position, head, lag, health, last
  error; rebuild, pause, resume, retry or skip a parked event.
* **Sagas** (:mod:`.sagas`): status, current step, step history, deadlines.
* **Dead letters** (:mod:`.dead_letters`): reason, payload, traceback; retry
  and discard.

Every list stays fast on tables of millions of rows: no ``COUNT(*)`` over a
table (estimated counts, :mod:`.pagination`), no ``SELECT DISTINCT`` over a
table (filters and the date hierarchy read indexes), exact searches only.
Nothing is added, changed or deleted through a form; operations are buttons
and actions that need the model's *change* permission.
"""

from orchestrix_django.admin.dead_letters import DeadLetterAdmin
from orchestrix_django.admin.events import EventAdmin, StreamAdmin
from orchestrix_django.admin.projections import ProjectionAdmin
from orchestrix_django.admin.sagas import SagaAdmin

__all__ = ["DeadLetterAdmin", "EventAdmin", "ProjectionAdmin", "SagaAdmin", "StreamAdmin"]
