"""The example project: a bank and a shop on Orchestrix (see README.md, "The example project").

As in any Django project that uses Celery, the package loads its Celery app
so that the processes that commit events (the web server, the demo command)
send their tasks to the configured broker. Only in the Celery mode: the
embedded mode must run without Celery's settings (or a broker) at all.
"""

import os

if os.environ.get("ORCHESTRIX_EXAMPLE_CELERY", "").lower() in ("1", "true", "yes", "on"):
    from example_project.celery import app as celery_app

    __all__ = ["celery_app"]
