"""Orchestrix for Django: the event store, projections, sagas, admin and API as a Django app.

Add ``"orchestrix_django"`` to ``INSTALLED_APPS`` and run ``migrate``; configure
it with the ``ORCHESTRIX`` settings dict (see :mod:`orchestrix_django.settings`).
"""
