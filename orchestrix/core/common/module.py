"""The documented import path of the :class:`Module` protocol.

The protocol wires handlers to a message bus and an event store, so it is
defined beside them, in :mod:`orchestrix.core.messaging.module`.
"""

from orchestrix.core.messaging.module import Module

__all__ = ["Module"]
