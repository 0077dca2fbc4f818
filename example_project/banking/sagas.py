"""The ``money-transfer`` saga: debit the source, credit the target, or refund the source.

Started by the ``TransferMoney`` handler with the transfer's id as saga id;
run by ``orchestrix_run`` (or the demo) in the embedded mode, by a Celery
worker in the Celery mode. Its steps:

1. ``debit_source`` takes the money from the source account. When the
   source refuses (insufficient funds, frozen), nothing was taken and there
   is nothing to undo: the step marks the transfer failed and fails.
2. ``credit_target`` puts it into the target account. A frozen or closed
   target refuses, the step fails, and the saga compensates ``debit_source``
   with ``refund_source``: the money goes back, the transfer is marked failed.
3. ``complete_transfer`` marks the transfer completed.

Every step may run twice (a worker can die between doing a step and the
saga recording it): the money events carry ids made from the step's
``idempotency_key``, and a step whose event is stored already does nothing
(:mod:`example_project.common.idempotency`).
"""

from __future__ import annotations

from decimal import Decimal

from example_project.banking.aggregates import Account, Transfer, repository
from example_project.common.aggregates import update
from example_project.common.commands import CommandRejected
from example_project.common.idempotency import event_id_for, event_recorded
from example_project.common.sagas import failure_reason
from orchestrix.core.common.exceptions import AggregateNotFoundError
from orchestrix.core.execution.saga import SagaStep
from orchestrix_django.sagas import DjangoSaga

__all__ = [
    "complete_transfer",
    "credit_target",
    "debit_source",
    "refund_source",
    "transfer_saga",
]


def _fail_transfer(transfer_id: str, reason: str) -> None:
    update(repository(), Transfer, transfer_id, lambda transfer: transfer.fail(reason))


def debit_source(
    transfer_id: str,
    source_id: str,
    target_id: str,
    amount: Decimal,
    currency: str,
    idempotency_key: str,
) -> dict[str, str]:
    """Take the amount from the source account."""
    event_id = event_id_for(idempotency_key)
    if not event_recorded(event_id):
        try:
            update(
                repository(),
                Account,
                source_id,
                lambda account: account.withdraw(
                    amount, currency, f"transfer {transfer_id} to {target_id}", event_id=event_id
                ),
            )
        except (CommandRejected, AggregateNotFoundError) as refused:
            # Nothing was taken, so no compensation will run: close the transfer here.
            _fail_transfer(transfer_id, f"the source refused: {refused}")
            raise
    return {"account_id": source_id, "event_id": event_id}


def refund_source(
    transfer_id: str,
    source_id: str,
    amount: Decimal,
    currency: str,
    idempotency_key: str,
    saga_id: str,
) -> None:
    """Compensation of ``debit_source``: give the money back, mark the transfer failed."""
    event_id = event_id_for(idempotency_key, "refund")
    if not event_recorded(event_id):
        update(
            repository(),
            Account,
            source_id,
            lambda account: account.refund(
                amount, currency, f"refund of transfer {transfer_id}", event_id=event_id
            ),
        )
    _fail_transfer(transfer_id, failure_reason(saga_id))


def credit_target(
    transfer_id: str,
    source_id: str,
    target_id: str,
    amount: Decimal,
    currency: str,
    idempotency_key: str,
) -> dict[str, str]:
    """Put the amount into the target account (a frozen or closed one refuses)."""
    event_id = event_id_for(idempotency_key)
    if not event_recorded(event_id):
        update(
            repository(),
            Account,
            target_id,
            lambda account: account.deposit(
                amount, currency, f"transfer {transfer_id} from {source_id}", event_id=event_id
            ),
        )
    return {"account_id": target_id, "event_id": event_id}


def complete_transfer(transfer_id: str) -> None:
    """Mark the transfer completed."""
    update(repository(), Transfer, transfer_id, lambda transfer: transfer.complete())


#: Listed in ``ORCHESTRIX["SAGAS"]``; its state lives in the saga table (the admin's Sagas page).
transfer_saga = DjangoSaga(
    saga_type="money-transfer",
    steps=[
        SagaStep(name="debit_source", action=debit_source, compensation=refund_source),
        SagaStep(name="credit_target", action=credit_target),
        SagaStep(name="complete_transfer", action=complete_transfer),
    ],
)
