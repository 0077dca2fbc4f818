"""The errors a Django saga run stops with (all but the cancellation are core ``SagaError``s)."""

from __future__ import annotations

from orchestrix.core.common.exceptions import SagaError

__all__ = ["DeadlinePassed", "SagaBusyError", "SagaInterrupted", "StepCancelled"]


class DeadlinePassed(SagaError):
    """A saga or one of its steps missed its deadline (the runner then times the saga out)."""


class SagaBusyError(SagaError):
    """Another runner holds the saga's run lock: it is being executed right now."""


class SagaInterrupted(SagaError):
    """The runner was asked to stop between two steps; the saga is left resumable."""


class StepCancelled(BaseException):
    """An async step was cancelled at its deadline.

    A ``BaseException``, so that the core does not take it for the step's own
    failure: the state stays as it is (the step RUNNING) and the runner times
    the saga out, as for any missed deadline.
    """
