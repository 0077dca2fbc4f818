"""What the admin's buttons and the API's write endpoints do, each reported as one message.

Every operation returns an :class:`Outcome` (a message level and a sentence
for the operator) instead of raising: a failing retry is a result to show,
not a server error. (It lives outside :mod:`orchestrix_django.admin` so that
the API works in projects without ``django.contrib.admin``.)

**Rebuild** (:func:`rebuild_projection`) is done in place: the read model is
cleared and the checkpoint reset (``reset_projection``, one transaction),
then the projection is caught up *for at most* ``seconds`` in the request.
A small projection is rebuilt by the time the page reloads; a big one is
left reset and partly rebuilt, and the runners (``orchestrix_run`` or the
Celery tasks) catch up the rest, batch by batch, while the page shows its
lag going down. A web request is no place for an hour-long replay (proxies
time out, workers get recycled), and nothing is lost by stopping early:
every batch commits with its checkpoint. Readers see a read model that is
filling up meanwhile; to rebuild without them noticing, build a new version
beside the live one and switch (``manage.py orchestrix_rebuild NEW --replace
OLD``, see :mod:`orchestrix_django.projections.rebuild`).
"""

from __future__ import annotations

import dataclasses
import time

from django.contrib import messages

from orchestrix.core.common.exceptions import HandlerError, OrchestrixError
from orchestrix.core.messaging.dead_letter import (
    DeadLetter,
    DeadLetterError,
    DeadLetterStatus,
)
from orchestrix_django.bus import BUS_SOURCE_PREFIX, get_bus
from orchestrix_django.projections.control import (
    pause,
    reset_projection,
    resume,
    retry_parked,
    skip_parked,
)
from orchestrix_django.projections.definition import DjangoProjection
from orchestrix_django.projections.registry import get_projection
from orchestrix_django.projections.runner import FAILURE_STOPS, StopReason, catch_up
from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue
from orchestrix_django.storage.projection_state import DjangoProjectionStateStore

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

#: Dead letters parked by a projection have the source ``"projection:<id>"``.
PROJECTION_SOURCE_PREFIX = "projection:"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What an operation did: a ``django.contrib.messages`` level and a sentence."""

    level: int
    text: str

    @property
    def ok(self) -> bool:
        """Whether the operation did what was asked."""
        return self.level < messages.WARNING


def _configured(projection_id: str) -> DjangoProjection | Outcome:
    try:
        return get_projection(projection_id)
    except KeyError as error:
        return Outcome(messages.ERROR, str(error.args[0]))


# ---------------------------------------------------------------- projections


def rebuild_projection(projection_id: str, *, seconds: float) -> Outcome:
    """Reset ``projection_id`` and catch it up for at most ``seconds`` (see the module docs)."""
    projection = _configured(projection_id)
    if isinstance(projection, Outcome):
        return projection
    started = time.monotonic()
    try:
        reset_projection(projection)
        result = catch_up(projection, should_stop=lambda: time.monotonic() - started >= seconds)
    except Exception as error:
        return Outcome(
            messages.ERROR,
            f"Rebuilding projection {projection_id} failed: {type(error).__name__}: {error}",
        )
    took = time.monotonic() - started
    if result.stopped in FAILURE_STOPS:
        return Outcome(
            messages.WARNING,
            f"Projection {projection_id} was reset and stopped at a failing event after "
            f"{result.applied} events (position {result.position}): see its dead letter.",
        )
    if result.lag == 0:
        return Outcome(
            messages.SUCCESS,
            f"Projection {projection_id} rebuilt: {result.applied} events applied in "
            f"{took:.1f} s, at the head of the log (position {result.position}).",
        )
    return Outcome(
        messages.WARNING if result.stopped is StopReason.PAUSED else messages.SUCCESS,
        f"Projection {projection_id} was reset and {result.applied} events applied in "
        f"{took:.1f} s; it is {result.lag} events behind (position {result.position} of "
        f"{result.head}): the runners catch up the rest.",
    )


def pause_projection(projection_id: str) -> Outcome:
    """Stop the runners from advancing ``projection_id``."""
    projection = _configured(projection_id)
    if isinstance(projection, Outcome):
        # Not configured here: the flag can still be set for the processes that run it.
        DjangoProjectionStateStore().set_paused(projection_id, True)
    else:
        pause(projection)
    return Outcome(messages.SUCCESS, f"Projection {projection_id} paused.")


def resume_projection(projection_id: str) -> Outcome:
    """Let the runners advance ``projection_id`` again."""
    projection = _configured(projection_id)
    if isinstance(projection, Outcome):
        DjangoProjectionStateStore().set_paused(projection_id, False)
    else:
        resume(projection)
    return Outcome(
        messages.SUCCESS, f"Projection {projection_id} resumed: the runners advance it again."
    )


# ---------------------------------------------------------------- dead letters


def retry_kind(source: str) -> str | None:
    """How a letter from ``source`` is retried: "projection", "bus", or None (it can't be)."""
    if source.startswith(PROJECTION_SOURCE_PREFIX):
        return "projection"
    if source.startswith(BUS_SOURCE_PREFIX):
        return "bus"
    return None


def _parked(queue: DjangoDeadLetterQueue, dead_letter_id: str) -> DeadLetter | Outcome:
    """The parked letter ``dead_letter_id``, or the Outcome saying it is missing or resolved."""
    letter = queue.get(dead_letter_id)
    if letter is None:
        return Outcome(messages.ERROR, f"There is no dead letter {dead_letter_id}.")
    if letter.status != DeadLetterStatus.PARKED:
        return Outcome(
            messages.WARNING, f"Dead letter {dead_letter_id} is already {letter.status}."
        )
    return letter


def retry_dead_letter(dead_letter_id: str) -> Outcome:
    """Handle a parked message again, by the projection or bus handler that failed on it."""
    queue = DjangoDeadLetterQueue()
    letter = _parked(queue, dead_letter_id)
    if isinstance(letter, Outcome):
        return letter
    kind = retry_kind(letter.source)
    if kind == "projection":
        return _retry_projection_letter(letter.source[len(PROJECTION_SOURCE_PREFIX) :], letter.id)
    if kind == "bus":
        try:
            get_bus().retry_dead_letter(dead_letter_id, queue)
        except (LookupError, DeadLetterError) as error:
            return Outcome(messages.ERROR, f"Dead letter {dead_letter_id} not retried: {error}")
        except Exception as error:
            return Outcome(
                messages.ERROR,
                f"Dead letter {dead_letter_id}: the handler failed again "
                f"({type(error).__name__}: {error}); the attempt is recorded on the letter.",
            )
        return Outcome(
            messages.SUCCESS, f"Dead letter {dead_letter_id} retried: the handler succeeded."
        )
    return Outcome(
        messages.ERROR,
        f"Dead letter {dead_letter_id} comes from {letter.source!r}, which the admin cannot "
        "retry (only projection and message-bus letters): discard it, or retry it in code.",
    )


def _retry_projection_letter(projection_id: str, dead_letter_id: str) -> Outcome:
    projection = _configured(projection_id)
    if isinstance(projection, Outcome):
        return projection
    try:
        result = retry_parked(projection, dead_letter_id)
    except HandlerError as error:
        return Outcome(
            messages.ERROR,
            f"Dead letter {dead_letter_id}: projection {projection_id} failed again ({error}); "
            "the attempt is recorded on the letter.",
        )
    except OrchestrixError as error:
        return Outcome(messages.ERROR, f"Dead letter {dead_letter_id} not retried: {error}")
    if result is None:
        return Outcome(
            messages.SUCCESS,
            f"Dead letter {dead_letter_id} retried: projection {projection_id} applied the event.",
        )
    if result.stopped in FAILURE_STOPS:
        return Outcome(
            messages.ERROR,
            f"Dead letter {dead_letter_id} retried, but projection {projection_id} stopped "
            f"again at position {result.position} ({result.stopped}): see its new dead letter.",
        )
    return Outcome(
        messages.SUCCESS,
        f"Dead letter {dead_letter_id} retried: projection {projection_id} resumed and applied "
        f"{result.applied} events; it is at position {result.position} (lag {result.lag}).",
    )


def discard_dead_letter(dead_letter_id: str) -> Outcome:
    """Give up on a parked message; a stopped projection moves past it and resumes."""
    queue = DjangoDeadLetterQueue()
    letter = _parked(queue, dead_letter_id)
    if isinstance(letter, Outcome):
        return letter
    if retry_kind(letter.source) == "projection":
        projection_id = letter.source[len(PROJECTION_SOURCE_PREFIX) :]
        projection = _configured(projection_id)
        if not isinstance(projection, Outcome):
            try:
                result = skip_parked(projection, dead_letter_id)
            except OrchestrixError as error:
                return Outcome(
                    messages.ERROR, f"Dead letter {dead_letter_id} not discarded: {error}"
                )
            moved = (
                f"; projection {projection_id} moved past it and is at position "
                f"{result.position} (lag {result.lag})"
                if result is not None
                else ""
            )
            return Outcome(messages.SUCCESS, f"Dead letter {dead_letter_id} discarded{moved}.")
    try:
        queue.discard(dead_letter_id)
    except DeadLetterError as error:
        return Outcome(messages.ERROR, f"Dead letter {dead_letter_id} not discarded: {error}")
    return Outcome(messages.SUCCESS, f"Dead letter {dead_letter_id} discarded.")
