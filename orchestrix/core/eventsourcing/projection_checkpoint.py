"""Where a projection stands in memory, and the rules by which events move it.

A stored event moves the checkpoint to its log position and is skipped at or
below it; a plain event moves it to ``checkpoint + 1`` and is skipped when its
id is the checkpoint's last event id or among the recently processed ids.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from typing import cast

from orchestrix.core.common.clock import utc_now
from orchestrix.core.eventsourcing.event_store import StoredEvent
from orchestrix.core.eventsourcing.projection_state import ProjectionState
from orchestrix.core.messaging.message import Event

__all__ = ["Checkpoint", "unpack"]


def _ascending_after(events: Sequence[Event | StoredEvent], position: int) -> bool:
    """Whether ``events`` are stored events at rising positions, all after ``position``."""
    if not events:
        return False
    for item in events:
        if type(item) is not StoredEvent or item.position <= position:
            return False
        position = item.position
    return True


def unpack(item: Event | StoredEvent) -> tuple[Event, int | None, str | None, int | None]:
    """The event, its log position, stream id and version (None for a plain event)."""
    if isinstance(item, StoredEvent):
        return item.event, item.position, item.stream_id, item.version
    if isinstance(item, Event):
        return item, None, None, None
    raise TypeError(f"a projection processes Event or StoredEvent objects, got {item!r}")


class Checkpoint:
    """A projection's state in memory, whether it is saved, and the ids it processed last.

    ``recover_on_success``: an applied event makes the projection healthy again
    (with ``OnFailure.STOP`` the failing event is the first one applied next).
    """

    def __init__(self, projection_id: str, dedupe_window: int, recover_on_success: bool) -> None:
        self.projection_id = projection_id
        self.dedupe_window = dedupe_window
        self.recover_on_success = recover_on_success
        self.state: ProjectionState | None = None
        self.dirty = False
        self.recent_ids: collections.OrderedDict[str, None] = collections.OrderedDict()

    def current(self) -> ProjectionState:
        """The current state (a fresh, unsaved one until one was loaded)."""
        if self.state is None:
            return ProjectionState(projection_id=self.projection_id)
        return self.state

    def start_afresh(self) -> None:
        """Back to position 0 with a fresh state, forgetting the processed ids (not saved)."""
        self.recent_ids.clear()
        self.state = ProjectionState(projection_id=self.projection_id)
        self.dirty = True

    def next_position(self, event: Event, log_position: int | None) -> int | None:
        """The position ``event`` would move the checkpoint to, or None if it was processed."""
        state = self.current()
        if log_position is None:
            if event.id == state.last_processed_event_id or event.id in self.recent_ids:
                return None
            return state.last_processed_position + 1
        if log_position <= state.last_processed_position:
            return None
        return log_position

    def advance(self, event: Event, position: int, *, applied: bool) -> None:
        """Move to ``position`` past ``event`` (``applied``: its handlers ran, it counts)."""
        state = self.current()
        # With "stop" the failing event is the first one retried, so success
        # means recovery; with "park" health waits for the parked letters.
        healthy = True if applied and self.recover_on_success else state.is_healthy
        self.state = dataclasses.replace(
            state,
            last_processed_position=position,
            last_processed_event_id=event.id,
            updated_at=utc_now(),
            events_processed=state.events_processed + (1 if applied else 0),
            is_healthy=healthy,
        )
        self.dirty = True
        if self.dedupe_window:
            self.recent_ids[event.id] = None
            if len(self.recent_ids) > self.dedupe_window:
                self.recent_ids.popitem(last=False)

    def advance_past(self, events: Sequence[Event | StoredEvent]) -> int:
        """Move past ``events``, applied by the caller, as :meth:`advance` would one by one.

        Events already behind the checkpoint are not counted. Returns how many moved it.
        """
        state = self.current()
        last_position = state.last_processed_position
        if _ascending_after(events, last_position):
            # The common case, a runner's page of the log: every event moves
            # the checkpoint, and only the last `window` ids need remembering.
            last = cast(StoredEvent, events[-1])
            window = self.dedupe_window
            tail = [cast(StoredEvent, item).event.id for item in events[-window:]] if window else []
            return self._moved(state, len(events), last.position, last.event.id, tail)
        last_id = state.last_processed_event_id
        applied = 0
        window = self.dedupe_window
        recent = self.recent_ids
        moved: list[str] = []  # ids of the events that moved the checkpoint
        for item in events:
            if type(item) is StoredEvent:
                log_position: int | None = item.position
                event = item.event
            else:
                event, log_position, _, _ = unpack(item)
            if log_position is None:
                if event.id == last_id or event.id in recent:
                    continue
                log_position = last_position + 1
                if window:
                    # Later plain events of this call must see this one.
                    recent[event.id] = None
            elif log_position <= last_position:
                continue
            last_position, last_id = log_position, event.id
            applied += 1
            moved.append(event.id)
        if not applied:
            return 0
        return self._moved(
            state, applied, last_position, last_id, moved[-window:] if window else []
        )

    def _moved(
        self,
        state: ProjectionState,
        applied: int,
        position: int,
        event_id: str | None,
        newest_ids: list[str],
    ) -> int:
        """The checkpoint moved past ``applied`` events to ``position`` (:meth:`advance_past`)."""
        recent = self.recent_ids
        window = self.dedupe_window
        if window:
            # Only the newest `window` ids survive: add just those.
            for newest in newest_ids:
                recent[newest] = None
                recent.move_to_end(newest)
            while len(recent) > window:
                recent.popitem(last=False)
        self.state = dataclasses.replace(
            state,
            last_processed_position=position,
            last_processed_event_id=event_id,
            updated_at=utc_now(),
            events_processed=state.events_processed + applied,
            # As after a success in process_events (see advance).
            is_healthy=True if self.recover_on_success else state.is_healthy,
        )
        self.dirty = True
        return applied

    def take_loaded(self, loaded: ProjectionState) -> None:
        """Take ``loaded``, as the state store holds it, as the current state."""
        current = self.state
        if current is not None and loaded.last_processed_position < current.last_processed_position:
            # Someone reset the checkpoint behind our back: the ids we
            # remember are no longer "processed".
            self.recent_ids.clear()
        self.state = loaded
        self.dirty = False
