"""Reusable test suites: the contracts every store implementation must pass.

* :mod:`orchestrix.testing.event_store_contract` — ``EventStoreContract``,
  ``AsyncEventStoreContract``, ``GlobalEventLogContract``.
* :mod:`orchestrix.testing.projection_contract` — ``ProjectionStateStoreContract``.
* :mod:`orchestrix.testing.saga_contract` — ``SagaStateStoreContract``.
* :mod:`orchestrix.testing.dead_letter_contract` — ``DeadLetterQueueContract``.

They import only the standard library and use plain ``assert``; add
``pytest.register_assert_rewrite("orchestrix.testing")`` to your conftest for
detailed assertion messages.
"""
