"""``python manage.py orchestrix_append_only``: is the database guard of stored events in place?

Without options it reports the triggers that keep ``orchestrix_event``
append-only (see :mod:`orchestrix_django.storage.append_only`) and exits 1, saying
what is missing or disabled, when the guard is not whole. ``--install`` puts
it back (as a database user who may create triggers); ``--sql`` prints the
statements instead, for a DBA to run.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from orchestrix_django.management.arguments import add_database, chosen_database
from orchestrix_django.storage.append_only import (
    GuardInstall,
    guard_problems,
    guard_script,
    install_guard,
)

__all__ = ["Command"]


class Command(BaseCommand):
    """``orchestrix_append_only``: report, install or print the append-only guard."""

    help = (
        "Report whether the triggers that keep stored events append-only are installed and "
        "enabled (exit 1 when not). --install installs them (as a database user who may "
        "create triggers: on MariaDB/MySQL with binary logging, SUPER or "
        "log_bin_trust_function_creators=1); --sql prints the SQL for a DBA to run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The command's arguments."""
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--install", action="store_true", help="Install the triggers.")
        action.add_argument(
            "--sql", action="store_true", help="Print the SQL that installs them; run nothing."
        )
        add_database(parser, "The database of the events")

    def handle(self, *args: Any, **options: Any) -> None:
        """Report, install or print."""
        using = chosen_database(options)
        if options["sql"]:
            connection = connections[using]
            # The mysql client ends a statement at ";" unless told otherwise, and
            # MariaDB's triggers hold several.
            end = "//" if connection.vendor == "mysql" else ";"
            if end != ";":
                self.stdout.write(f"DELIMITER {end}")
            for statement in guard_script(connection):
                self.stdout.write(f"{statement}{end}")
            if end != ";":
                self.stdout.write("DELIMITER ;")
            return
        if options["install"] and install_guard(using) is GuardInstall.REFUSED:
            raise CommandError(
                f"the database user of {using!r} may not create triggers. Run this command "
                "as a user who may (on MariaDB/MySQL with binary logging: one with SUPER, or "
                "any user once the global log_bin_trust_function_creators is 1), or give a DBA "
                "the output of: python manage.py orchestrix_append_only --sql"
            )
        problems = guard_problems(using)
        if problems:
            raise CommandError(
                f"stored events on {using!r} are not guarded by the database: "
                f"{'; '.join(problems)}. Install the guard with: python manage.py "
                "orchestrix_append_only --install (or --sql for a DBA)."
            )
        if int(options["verbosity"]) >= 1:
            self.stdout.write(f"The append-only guard of stored events on {using!r} is in place.")
