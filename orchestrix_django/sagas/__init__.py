"""Sagas run by Django: orchestrated steps, compensations, deadlines and process managers."""

from orchestrix_django.sagas.context import SagaContext, current_saga
from orchestrix_django.sagas.definition import DjangoSaga
from orchestrix_django.sagas.errors import DeadlinePassed, SagaBusyError, SagaInterrupted
from orchestrix_django.sagas.process_managers import CommandDispatchError, Process, ProcessManager
from orchestrix_django.sagas.registry import get_saga, sagas, start_saga
from orchestrix_django.sagas.runner import run_saga
from orchestrix_django.sagas.sweep import EmbeddedSagaRunner, expire_overdue_sagas, resume_sagas

__all__ = [
    "CommandDispatchError",
    "DeadlinePassed",
    "DjangoSaga",
    "EmbeddedSagaRunner",
    "Process",
    "ProcessManager",
    "SagaBusyError",
    "SagaContext",
    "SagaInterrupted",
    "current_saga",
    "expire_overdue_sagas",
    "get_saga",
    "resume_sagas",
    "run_saga",
    "sagas",
    "start_saga",
]
