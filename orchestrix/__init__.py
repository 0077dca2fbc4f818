"""Orchestrix: event sourcing and CQRS for Python.

The core (this package) needs only the standard library; the Django app lives
in ``orchestrix_django``. Import names from their documented modules, e.g.
``from orchestrix.core.messaging.message import Event``.
"""

import logging as _logging

__version__ = "0.1.0.dev0"

# A library never prints on its own: applications configure logging.
_logging.getLogger("orchestrix").addHandler(_logging.NullHandler())
