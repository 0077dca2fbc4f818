"""Orchestrix: event sourcing and CQRS for Python.

The core (this package) needs only the standard library; the Django app lives
in ``orchestrix_django``. Import names from their documented modules, e.g.
``from orchestrix.core.messaging.message import Event``.
"""

__version__ = "0.1.0.dev0"
