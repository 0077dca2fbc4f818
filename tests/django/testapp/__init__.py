"""The Django app of the test suite.

It imports the test Celery app, as a project's package imports its own
(``proj/__init__.py``), so that every process that sets Django up (the test
run, the worker processes of tests/django/workers.py) sends its Celery
wake-ups to the test broker.
"""

from tests.celery_app import app as celery_app

__all__ = ["celery_app"]
