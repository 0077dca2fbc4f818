"""The arguments the ``orchestrix_*`` commands share: argparse types and declarations.

Each option several commands take (``--database``, ``--progress-every``,
``--no-input``, ``--batch-size``, ``--stream``) is declared here once, so it is
spelled, typed and defaulted the same way everywhere; a command passes only
the words of its help that are its own.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import CommandParser

from orchestrix_django.settings import orchestrix_settings

__all__ = [
    "add_batch_size",
    "add_database",
    "add_no_input",
    "add_progress_every",
    "add_streams",
    "chosen_database",
    "database_alias",
    "non_negative_int",
    "positive_float",
    "positive_int",
]


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    return _whole_number(text, minimum=1)


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0."""
    return _whole_number(text, minimum=0)


def _whole_number(text: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text}")
    return value


def database_alias(text: str) -> str:
    """An argparse type: an alias of ``settings.DATABASES``."""
    from django.conf import settings

    if text not in settings.DATABASES:
        known = ", ".join(sorted(settings.DATABASES))
        raise argparse.ArgumentTypeError(f"no database {text!r} in DATABASES (known: {known})")
    return text


def add_database(parser: CommandParser, what: str = "The database") -> None:
    """``--database ALIAS``; ``what`` names its role (``"The database to export from"``)."""
    parser.add_argument(
        "--database",
        type=database_alias,
        metavar="ALIAS",
        help=f"{what} (default: ORCHESTRIX['DATABASE']).",
    )


def chosen_database(options: dict[str, Any]) -> str:
    """The database ``--database`` chose, else ORCHESTRIX's."""
    return str(options["database"] or orchestrix_settings.DATABASE)


def add_progress_every(parser: CommandParser, steps: str) -> None:
    """``--progress-every N``; ``steps`` names what N counts (``"batches"``)."""
    parser.add_argument(
        "--progress-every",
        type=positive_int,
        default=10,
        metavar="N",
        help=f"When the output is not a terminal, print a progress line every N {steps} "
        "(default: 10). On a terminal a progress bar is redrawn instead.",
    )


def add_no_input(parser: CommandParser, effect: str) -> None:
    """``--no-input``/``--noinput`` (``options["interactive"]``); ``effect``: what is not asked."""
    parser.add_argument(
        "--no-input",
        "--noinput",
        action="store_false",
        dest="interactive",
        help=f"Do not ask for confirmation {effect}.",
    )


def add_batch_size(parser: CommandParser, text: str, default: int | None = None) -> None:
    """``--batch-size N`` (a positive whole number); ``text``: its help."""
    parser.add_argument("--batch-size", type=positive_int, default=default, metavar="N", help=text)


def add_streams(parser: CommandParser, verb: str) -> None:
    """``--stream STREAM_ID``, repeatable (``options["streams"]``); ``verb``: ``"Export"``."""
    parser.add_argument(
        "--stream",
        action="append",
        dest="streams",
        metavar="STREAM_ID",
        help=f"{verb} only this stream (repeat the option for several).",
    )
