"""``python manage.py orchestrix_forget_subject ID --yes``: crypto-shred a data subject.

Deletes the data key of subject ``ID`` (see
:mod:`orchestrix_django.storage.personal_data`): the personal fields of its events
read as placeholders from then on, for good; the events themselves stay.
Without ``--yes`` it asks for confirmation on a terminal, and refuses
elsewhere. Exits 1 when the subject has no key (an unknown id: nothing of it
is stored encrypted), 0 when it was forgotten already.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestrix_django.management.arguments import add_database, chosen_database
from orchestrix_django.models import SubjectKey
from orchestrix_django.storage.subject_keys import forget_subject

__all__ = ["Command"]


class Command(BaseCommand):
    """``orchestrix_forget_subject``: delete a data subject's key (see the module docs)."""

    help = (
        "Forget a data subject: delete its encryption key, so that the personal fields of "
        "its events become unreadable for good (they read as placeholders; the events stay "
        "and projections still replay). This cannot be undone. Database backups taken "
        "before still hold the key. Exits 1 when the subject has no key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """The subject id, --yes and --database."""
        parser.add_argument("subject_id", help="The data subject's id (its events' data_subject).")
        parser.add_argument(
            "--yes",
            action="store_true",
            help="Do not ask for confirmation (needed when not run on a terminal).",
        )
        add_database(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        """Delete the key after confirmation; CommandError (exit 1) when there is none."""
        subject_id: str = options["subject_id"]
        using = chosen_database(options)
        row = (
            SubjectKey.objects.using(using).filter(pk=subject_id).values_list("deleted_at").first()
        )
        if row is None:
            raise CommandError(
                f"no data subject {subject_id!r} has a key in database {using!r}: nothing of "
                "it is stored encrypted (check the id)"
            )
        if row[0] is not None:
            self.stdout.write(f"Data subject {subject_id!r} was forgotten already, at {row[0]}.")
            return
        if not options["yes"]:
            if not sys.stdin.isatty():
                raise CommandError("this deletes the subject's key for good: pass --yes")
            answer = input(
                f"Delete the key of data subject {subject_id!r}? Its personal data becomes "
                "unreadable for good. Type 'yes' to continue: "
            )
            if answer.strip().lower() != "yes":
                raise CommandError("cancelled: nothing was deleted")
        if forget_subject(subject_id, using=using):
            self.stdout.write(
                self.style.SUCCESS(
                    f"Forgot data subject {subject_id!r}: its key is deleted; its personal "
                    "data now reads as placeholders."
                )
            )
        else:  # forgotten by someone else between our look and the update
            self.stdout.write(f"Data subject {subject_id!r} was forgotten already.")
