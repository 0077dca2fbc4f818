#!/usr/bin/env python3
"""The example project's manage.py: ``python manage.py orchestrix_demo`` runs the demo."""

import os
import sys


def main() -> None:
    """Run a Django management command with the example project's settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    try:
        from django.core.management import execute_from_command_line
    except ImportError as error:
        raise ImportError(
            "Django is not installed in this environment: install the project with its "
            "development extras first (python3 -m venv .venv && "
            ".venv/bin/pip install -e '.[dev]'), then run .venv/bin/python manage.py "
            "orchestrix_demo"
        ) from error
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
