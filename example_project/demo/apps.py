"""The demo app (the ``orchestrix_demo`` command and the record of its runs)."""

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Holds the demo command and its runs."""

    name = "example_project.demo"
    label = "demo"
    verbose_name = "Demo runs"
    default_auto_field = "django.db.models.BigAutoField"
