"""The process-wide message bus of a Django project, fed by committed events.

:func:`get_bus` returns the core's in-memory bus with committed events delivered
to it, handler failures after a commit parked as dead letters (``bus:<handler>``),
and sync and async handlers alike; ``ORCHESTRIX["MODULES"]`` are wired to it at
start-up. The behaviour is described in docs/django.md ("Signals and the message bus").
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.core.exceptions import ImproperlyConfigured

from orchestrix.core.common.exceptions import HandlerError
from orchestrix.core.common.module import Module
from orchestrix.core.common.observability import ObservabilityHooks, get_observability
from orchestrix.core.eventsourcing.event_store import EventStore, StoredEvent
from orchestrix.core.messaging.dead_letter import (
    DeadLetter,
    DeadLetterNotFoundError,
    DeadLetterQueue,
    retry,
)
from orchestrix.core.messaging.message import Message
from orchestrix.infrastructure.memory.bus import InMemoryMessageBus, handler_name
from orchestrix_django.settings import import_from_string, orchestrix_settings
from orchestrix_django.signals import events_committed

if TYPE_CHECKING:
    from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue

__all__ = [
    "BUS_SOURCE_PREFIX",
    "DjangoMessageBus",
    "ModuleWiringError",
    "connect_signals",
    "get_bus",
    "load_module",
    "module_problems",
    "reset_bus",
    "wire_modules",
]

T = TypeVar("T", bound=Message)

#: Dead letters parked by the bus have the source ``"bus:<handler name>"``.
BUS_SOURCE_PREFIX = "bus:"

#: The ``dispatch_uid`` of the ``events_committed`` receiver (connected once).
DISPATCH_UID = "orchestrix_django.bus.deliver_committed_events"

# The core bus's logger: one logger to configure for every bus failure.
logger = logging.getLogger("orchestrix.bus")


class DjangoMessageBus(InMemoryMessageBus):
    """The in-memory bus, fed by committed events, with sync and async handlers.

    ``observability`` defaults to ``ORCHESTRIX["OBSERVABILITY"]`` (else the
    process-wide hooks) and ``dead_letters`` to a
    :class:`~orchestrix_django.storage.dead_letters.DjangoDeadLetterQueue` on the
    database the events were saved to; both are looked up when used, so
    settings overridden in tests apply to the process-wide bus.
    Subscribing, publishing and delivering are safe from several threads.
    """

    def __init__(
        self,
        observability: ObservabilityHooks | None = None,
        dead_letters: DeadLetterQueue | None = None,
    ) -> None:
        super().__init__(observability)
        self._dead_letters = dead_letters
        self._modules: dict[str, Any] = {}
        # Reentrant: a module's register() may wire another module.
        self._modules_lock = threading.RLock()

    # -- configuration -------------------------------------------------------------

    @property
    def hooks(self) -> ObservabilityHooks:
        """Where handler failures are counted."""
        if self._observability is not None:
            return self._observability
        configured: ObservabilityHooks | None = orchestrix_settings.OBSERVABILITY
        return configured if configured is not None else get_observability()

    def dead_letter_queue(self, using: str | None = None) -> DeadLetterQueue:
        """The queue failed deliveries are parked in (on database ``using``)."""
        if self._dead_letters is not None:
            return self._dead_letters
        return _django_dead_letter_queue(using)

    # -- publishing ----------------------------------------------------------------

    def publish(self, message: Message) -> None:
        """Run every handler of ``message`` (async ones through ``async_to_sync``).

        Then raise the failures, if any, as :class:`HandlerError` (the first
        one, carrying all of them in ``errors``), each logged and counted.
        Not for code running in an event loop: use :meth:`publish_async`.
        """
        failures = [self._failed(message, h, e) for h, e in self._run_all(message)]
        _raise_failures(failures)

    async def publish_async(self, message: Message) -> None:
        """:meth:`publish` for async callers: the handlers run concurrently.

        Coroutine handlers are awaited in the caller's event loop; plain
        functions run through ``sync_to_async`` (in Django's thread for sync
        code, so they may use the ORM).
        """
        handlers = self.handlers_for(type(message))
        if not handlers:
            return
        outcomes = await asyncio.gather(
            *(_run_async(handler, message) for handler in handlers), return_exceptions=True
        )
        failures: list[HandlerError] = []
        for handler, outcome in zip(handlers, outcomes, strict=True):
            if isinstance(outcome, Exception):
                failures.append(self._failed(message, handler, outcome))
            elif isinstance(outcome, BaseException):
                # Cancellation and interpreter exits are not handler failures.
                raise outcome
        _raise_failures(failures)

    def deliver_committed(
        self, events: Sequence[StoredEvent], *, using: str | None = None
    ) -> list[DeadLetter]:
        """Deliver committed ``events`` to their handlers; never raises a handler's error.

        This is what the ``events_committed`` receiver calls. Each event goes
        to every handler, in order. A failure is logged (with the event's id,
        type, stream, version and position), counted, and parked in the
        dead-letter queue of database ``using``; the parked letters are
        returned. A queue that cannot park (its database is down, say) is
        logged too, and delivery goes on.

        A handler that failed on an event still receives the later ones (of
        its stream too): in-process handlers are for side effects that may
        run out of order after a retry. Read models that need every event in
        order are projections, which stop at a failure instead.
        """
        parked: list[DeadLetter] = []
        for stored in events:
            for handler, error in self._run_all(stored.event):
                letter = self._park(stored, handler, error, using)
                if letter is not None:
                    parked.append(letter)
        return parked

    # -- dead letters ----------------------------------------------------------------

    def retry_dead_letter(self, dead_letter_id: str, queue: DeadLetterQueue | None = None) -> Any:
        """Run a letter parked by this bus through the handler that failed on it, again.

        The handler is found among the current subscriptions by the name the
        letter records (so the fixed code of a redeployed process runs). On
        success the letter becomes ``RETRIED``; a failure is recorded on it
        (``attempts + 1``) and raised (the core's :func:`retry`). Raises
        :class:`LookupError` when no single subscribed handler has that name
        (the letter is left untouched then), and the core's
        :class:`DeadLetterNotFoundError` / ``DeadLetterStateError`` for an
        unknown letter or one that is not parked or has no message.
        """
        queue = queue if queue is not None else self.dead_letter_queue()
        letter = queue.get(dead_letter_id)
        if letter is None:
            raise DeadLetterNotFoundError(dead_letter_id)
        if not letter.is_parked or letter.message is None:
            return retry(queue, dead_letter_id, _never_called)  # raises the core's error
        if not letter.source.startswith(BUS_SOURCE_PREFIX):
            raise LookupError(
                f"dead letter {dead_letter_id!r} comes from {letter.source!r}, not from the bus"
            )
        name = letter.handler or letter.source[len(BUS_SOURCE_PREFIX) :]
        message = letter.message
        handlers = [h for h in self.handlers_for(type(message)) if handler_name(h) == name]
        if len(handlers) != 1:
            found = "no handler" if not handlers else f"{len(handlers)} handlers"
            raise LookupError(
                f"cannot retry dead letter {dead_letter_id!r}: {found} named {name} "
                f"subscribed to {type(message).__name__} in this process"
            )
        handler = handlers[0]
        return retry(queue, dead_letter_id, lambda m: _call_sync(handler, m))

    # -- modules -------------------------------------------------------------------

    @property
    def modules(self) -> dict[str, Any]:
        """The modules registered with :meth:`register_module`, by key (a copy)."""
        with self._modules_lock:
            return dict(self._modules)

    def register_module(self, module: Module, store: EventStore, *, key: str) -> bool:
        """Call ``module.register(self, store)`` unless a module was registered as ``key``.

        Returns whether it registered. Registering once per key is what makes
        :func:`wire_modules` safe to run again (``ready()`` runs twice in
        some test set-ups): subscribing twice would deliver every event twice.
        """
        with self._modules_lock:
            if key in self._modules:
                return False
            module.register(self, store)
            self._modules[key] = module
            return True

    # -- internals -------------------------------------------------------------------

    def _run_all(self, message: Message) -> list[tuple[Callable[..., Any], Exception]]:
        """Run every handler of ``message``; the ones that failed, with their errors."""
        failures: list[tuple[Callable[..., Any], Exception]] = []
        for handler in self.handlers_for(type(message)):
            try:
                _call_sync(handler, message)
            except Exception as error:
                failures.append((handler, error))
        return failures

    def _failed(
        self, message: Message, handler: Callable[..., Any], error: Exception
    ) -> HandlerError:
        name = handler_name(handler)
        logger.error("handler %s failed on %s %s", name, message.type, message.id, exc_info=error)
        self._count(message, name, error)
        return HandlerError(message.type, name, error)

    def _count(self, message: Message, name: str, error: Exception) -> None:
        self.hooks.record_handler_error(message.type, name, f"{type(error).__name__}: {error}")

    def _park(
        self,
        stored: StoredEvent,
        handler: Callable[..., Any],
        error: Exception,
        using: str | None,
    ) -> DeadLetter | None:
        event = stored.event
        name = handler_name(handler)
        letter: DeadLetter | None = None
        try:
            letter = self.dead_letter_queue(using).park(
                event,
                error,
                source=f"{BUS_SOURCE_PREFIX}{name}",
                position=stored.position,
                stream_id=stored.stream_id,
                version=stored.version,
                handler=name,
            )
        except Exception:
            # Losing the letter must not lose the report: the failure is still
            # logged and counted below.
            logger.exception(
                "could not park the failure of handler %s on %s %s (stream %s) as a dead letter",
                name,
                event.type,
                event.id,
                stored.stream_id,
            )
        logger.error(
            "handler %s failed on %s %s (stream %s, version %d, position %d) after it "
            "was committed; %s",
            name,
            event.type,
            event.id,
            stored.stream_id,
            stored.version,
            stored.position,
            f"parked as dead letter {letter.id}" if letter is not None else "NOT parked",
            exc_info=error,
        )
        self._count(event, name, error)
        return letter


def _raise_failures(failures: list[HandlerError]) -> None:
    if failures:
        first = failures[0]
        first.errors = list(failures)
        raise first


def _is_async(handler: Callable[..., Any]) -> bool:
    return iscoroutinefunction(handler) or iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def _call_sync(handler: Callable[..., Any], message: Message) -> Any:
    """Call ``handler`` from synchronous code, running it to completion if it is async."""
    result = handler(message)
    if not inspect.isawaitable(result):
        return result
    try:
        return async_to_sync(_await)(result)
    except BaseException:
        # If the awaitable never ran (no event loop could be used), close it
        # rather than leave a "coroutine was never awaited" behind.
        _close(result)
        raise


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _run_async(handler: Callable[..., Any], message: Message) -> Any:
    if _is_async(handler):
        return await handler(message)
    result = await sync_to_async(handler)(message)
    if inspect.isawaitable(result):
        result = await result
    return result


def _close(awaitable: Awaitable[Any]) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


def _never_called(message: Message) -> None:  # pragma: no cover - retry() refuses first
    raise AssertionError("retry() refused the letter before calling its handler")


def _django_dead_letter_queue(using: str | None) -> DjangoDeadLetterQueue:
    # Imported here: the models must not be imported with this module.
    from orchestrix_django.storage.dead_letters import DjangoDeadLetterQueue

    return DjangoDeadLetterQueue(using)


# -- the process-wide bus and its signal receiver ----------------------------------

_bus: DjangoMessageBus | None = None
_bus_lock = threading.Lock()


def get_bus() -> DjangoMessageBus:
    """The process-wide bus (created on first use) that committed events reach."""
    global _bus
    bus = _bus
    if bus is None:
        with _bus_lock:
            if _bus is None:
                _bus = DjangoMessageBus()
            bus = _bus
        connect_signals()
    return bus


def reset_bus() -> None:
    """Forget the process-wide bus and its subscriptions (for tests).

    The next :func:`get_bus` creates an empty one; call :func:`wire_modules`
    to register the configured modules with it.
    """
    global _bus
    with _bus_lock:
        _bus = None


def connect_signals() -> None:
    """Connect the ``events_committed`` receiver (once, however often it is called)."""
    events_committed.connect(_deliver_committed_events, dispatch_uid=DISPATCH_UID, weak=False)


def _deliver_committed_events(
    sender: Any,
    *,
    events: Sequence[StoredEvent] = (),
    using: str | None = None,
    **kwargs: Any,
) -> None:
    """The ``events_committed`` receiver: hand the committed events to the bus.

    It runs in ``transaction.on_commit``, after the save committed: nothing
    may escape it, or the committing code (and the other on-commit callbacks
    and receivers) would see an error for a save that succeeded.
    """
    bus = _bus
    if bus is None:
        return  # nobody asked for a bus, so nobody subscribed
    try:
        bus.deliver_committed(events, using=using)
    except Exception:
        logger.exception(
            "delivering %d committed event(s) of stream %s failed",
            len(events),
            kwargs.get("stream_id"),
        )


# -- modules ---------------------------------------------------------------------


class ModuleWiringError(ImproperlyConfigured):
    """An ``ORCHESTRIX["MODULES"]`` entry cannot be registered (see check ``orchestrix.E007``)."""


def _configured_module_paths() -> list[Any]:
    """The ``MODULES`` entries; raises :class:`ModuleWiringError` if it is not a list."""
    value = orchestrix_settings.user_settings.get("MODULES", [])
    if not isinstance(value, list | tuple):
        raise ModuleWiringError(
            f"ORCHESTRIX['MODULES'] must be a list of dotted paths, got {value!r}"
        )
    return list(value)


def load_module(path: object) -> Module:
    """The module object ``path`` names: an instance, or an instance of the class it names.

    Raises :class:`ModuleWiringError` saying why when ``path`` is not a
    dotted path, does not import, names nothing with a ``register`` method,
    or names a class that cannot be built without arguments.
    """
    target = _lookup(path)
    if isinstance(target, type):
        module: Module = target()
        return module
    return target  # type: ignore[no-any-return]


def _lookup(path: object) -> Any:
    """What ``path`` names, checked to be a module (or a module class) but not instantiated."""
    if not isinstance(path, str):
        raise ModuleWiringError(
            f"ORCHESTRIX['MODULES']: entries are dotted paths (strings), got {path!r}"
        )
    try:
        target = import_from_string(path, "MODULES")
    except ImproperlyConfigured as error:
        raise ModuleWiringError(str(error)) from error
    except Exception as error:
        # The module was found but raised while it was imported.
        raise ModuleWiringError(
            f"ORCHESTRIX['MODULES']: importing {path!r} failed: {type(error).__name__}: {error}"
        ) from error
    if not callable(getattr(target, "register", None)):
        raise ModuleWiringError(
            f"ORCHESTRIX['MODULES']: {path!r} is {target!r}, which has no register(bus, store) "
            "method (the Module protocol)"
        )
    if isinstance(target, type):
        try:
            inspect.signature(target).bind()
        except TypeError as error:
            raise ModuleWiringError(
                f"ORCHESTRIX['MODULES']: the class {path!r} cannot be instantiated without "
                f"arguments ({error}); name an instance instead"
            ) from error
        except ValueError:
            pass  # no signature to inspect (a builtin): instantiation will tell
    return target


def module_problems() -> list[str]:
    """Why entries of ``ORCHESTRIX["MODULES"]`` cannot be wired (for check ``E007``).

    Imports every entry but instantiates no class. Raises
    ``ImproperlyConfigured`` when ``ORCHESTRIX`` itself is not a dict.
    """
    try:
        paths = _configured_module_paths()
    except ModuleWiringError as error:
        return [str(error)]
    problems: list[str] = []
    for path in paths:
        try:
            _lookup(path)
        except ModuleWiringError as error:
            problems.append(str(error))
    return problems


def wire_modules(
    bus: DjangoMessageBus | None = None, store: EventStore | None = None
) -> list[Module]:
    """Register each ``ORCHESTRIX["MODULES"]`` entry with ``bus`` (the process-wide one).

    Each module's ``register(bus, store)`` gets ``store`` (a new
    :class:`~orchestrix_django.storage.events.DjangoEventStore` by default). An entry
    already registered with this bus is skipped, so calling this again (as
    ``AppConfig.ready()`` may be) only registers what is new. Entries that
    cannot be wired are skipped with a warning: the system check
    ``orchestrix.E007`` reports them. A ``register`` that raises propagates:
    that is a bug in the module, not in the settings. Returns the modules
    registered by this call.
    """
    try:
        paths = _configured_module_paths()
    except ImproperlyConfigured:
        return []  # reported by the checks (E006 / E007)
    bus = bus if bus is not None else get_bus()
    registered: list[Module] = []
    for path in paths:
        key = path if isinstance(path, str) else repr(path)
        if key in bus.modules:
            continue
        try:
            module = load_module(path)
        except ModuleWiringError as error:
            logger.warning("not wired (see check orchestrix.E007): %s", error)
            continue
        if store is None:
            from orchestrix_django.storage.events import DjangoEventStore

            store = DjangoEventStore()
        if bus.register_module(module, store, key=key):
            registered.append(module)
    return registered
