"""The banking app."""

from django.apps import AppConfig


class BankingConfig(AppConfig):
    """Accounts, their money and transfers (read models in this app's tables)."""

    name = "example_project.banking"
    label = "banking"
    verbose_name = "Banking (read models)"
    default_auto_field = "django.db.models.BigAutoField"
