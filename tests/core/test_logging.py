"""Tests of orchestrix.core.common.logging."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrix.core.common.logging import StructuredLogger, format_context, get_logger

LOGGER_NAME = "orchestrix.tests.logging"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _only(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """The one record our test logger emitted."""
    ours = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert len(ours) == 1, ours
    return ours[0]


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> StructuredLogger:
    """A structured logger whose every level caplog captures."""
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    return StructuredLogger(logging.getLogger(LOGGER_NAME))


# -- get_logger ---------------------------------------------------------------------


def test_get_logger_is_plain_get_logger() -> None:
    assert get_logger("orchestrix.some.module") is logging.getLogger("orchestrix.some.module")
    assert get_logger("myapp") is logging.getLogger("myapp")


def test_library_logger_has_a_null_handler() -> None:
    get_logger("orchestrix.x")
    handlers = logging.getLogger("orchestrix").handlers
    assert sum(isinstance(h, logging.NullHandler) for h in handlers) == 1
    # Asking again does not pile up handlers.
    get_logger("orchestrix.y")
    assert sum(isinstance(h, logging.NullHandler) for h in handlers) == 1


def test_unconfigured_application_sees_no_output_and_root_is_untouched() -> None:
    # In a fresh interpreter nothing has configured logging: without the
    # NullHandler, Python's last-resort handler would print the warning below.
    code = textwrap.dedent(
        """
        import logging
        from orchestrix.core.common.logging import StructuredLogger, get_logger
        get_logger("orchestrix.core.demo").warning("should not be printed")
        StructuredLogger(get_logger("orchestrix.core.demo")).error("nor this", a=1)
        assert logging.getLogger().handlers == [], logging.getLogger().handlers
        assert logging.getLogger().level == logging.WARNING
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert result.stderr == ""


# -- message and context --------------------------------------------------------------


def test_message_is_followed_by_key_value_pairs(
    log: StructuredLogger, caplog: pytest.LogCaptureFixture
) -> None:
    log.info("order placed", order_id="ORD-1", amount=99.5, items=3)
    record = _only(caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage() == "order placed order_id=ORD-1 amount=99.5 items=3"
    assert record.context == {"order_id": "ORD-1", "amount": 99.5, "items": 3}  # type: ignore[attr-defined]


def test_message_without_context_is_unchanged(
    log: StructuredLogger, caplog: pytest.LogCaptureFixture
) -> None:
    log.info("started")
    record = _only(caplog)
    assert record.getMessage() == "started"
    assert record.context == {}  # type: ignore[attr-defined]


def test_context_values_keep_their_types_for_formatters(
    log: StructuredLogger, caplog: pytest.LogCaptureFixture
) -> None:
    log.info("x", count=2, ok=True, nothing=None, tags=["a"])
    context = _only(caplog).context  # type: ignore[attr-defined]
    assert json.dumps(context) == '{"count": 2, "ok": true, "nothing": null, "tags": ["a"]}'


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("plain", "plain"),
        ("two words", "'two words'"),
        ("O'Brien", '"O\'Brien"'),
        ('say "hi"', "'say \"hi\"'"),
        ("line\nbreak", "'line\\nbreak'"),
        ("a=b", "'a=b'"),
        ("", "''"),
        (42, "42"),
        (None, "None"),
        ([1, 2], "'[1, 2]'"),
    ],
)
def test_values_with_spaces_or_quotes_are_quoted(value: object, rendered: str) -> None:
    assert format_context({"k": value}) == f" k={rendered}"


def test_unprintable_value_does_not_break_logging(
    log: StructuredLogger, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    log.info("still logged", thing=Broken())
    assert _only(caplog).getMessage() == "still logged thing=<unprintable Broken>"


def test_percent_signs_are_not_format_directives(
    log: StructuredLogger, caplog: pytest.LogCaptureFixture
) -> None:
    log.info("100% done %s %(x)s", ratio="50%")
    assert _only(caplog).getMessage() == "100% done %s %(x)s ratio=50%"


@pytest.mark.parametrize(
    ("method", "level"),
    [
        ("debug", logging.DEBUG),
        ("info", logging.INFO),
        ("warning", logging.WARNING),
        ("error", logging.ERROR),
    ],
)
def test_each_level(
    log: StructuredLogger, caplog: pytest.LogCaptureFixture, method: str, level: int
) -> None:
    getattr(log, method)("hello", step=1)
    record = _only(caplog)
    assert record.levelno == level
    assert record.getMessage() == "hello step=1"
    assert record.exc_info is None


def test_records_point_at_the_caller(
    log: StructuredLogger, caplog: pytest.LogCaptureFixture
) -> None:
    log.warning("where")
    record = _only(caplog)
    assert record.funcName == "test_records_point_at_the_caller"
    assert record.pathname == __file__


def test_disabled_level_does_no_formatting(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER_NAME)
    rendered: list[str] = []

    class Spy:
        def __str__(self) -> str:
            rendered.append("x")
            return "spy"

    StructuredLogger(logging.getLogger(LOGGER_NAME)).debug("hidden", value=Spy())
    assert [r for r in caplog.records if r.name == LOGGER_NAME] == []
    assert rendered == []


def test_accepts_a_logger_name() -> None:
    assert StructuredLogger(LOGGER_NAME).logger is logging.getLogger(LOGGER_NAME)


# -- exception -----------------------------------------------------------------------


def test_exception_logs_error_with_traceback(
    log: StructuredLogger, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("charge failed", order_id="ORD-7")
    record = _only(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "charge failed order_id=ORD-7"
    assert record.exc_info is not None
    assert record.exc_info[0] is ZeroDivisionError
    assert record.context == {"order_id": "ORD-7"}  # type: ignore[attr-defined]
    assert "Traceback (most recent call last)" in caplog.text
    assert "ZeroDivisionError: division by zero" in caplog.text


# -- bind ----------------------------------------------------------------------------


def test_bind_adds_context_to_every_record(
    log: StructuredLogger, caplog: pytest.LogCaptureFixture
) -> None:
    bound = log.bind(saga_id="S-1", tenant="acme")
    bound.info("step", step="reserve")
    bound.error("failed")
    first, second = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert first.getMessage() == "step saga_id=S-1 tenant=acme step=reserve"
    assert first.context == {"saga_id": "S-1", "tenant": "acme", "step": "reserve"}  # type: ignore[attr-defined]
    assert second.getMessage() == "failed saga_id=S-1 tenant=acme"
    assert second.levelno == logging.ERROR


def test_bind_returns_a_new_logger_and_leaves_the_original_alone(
    log: StructuredLogger, caplog: pytest.LogCaptureFixture
) -> None:
    bound = log.bind(a=1)
    assert bound is not log
    assert bound.logger is log.logger
    assert log.context == {}
    log.info("plain")
    assert _only(caplog).getMessage() == "plain"


def test_bind_chains_and_call_context_wins(
    log: StructuredLogger, caplog: pytest.LogCaptureFixture
) -> None:
    bound = log.bind(a=1, b=2).bind(b=3, c=4)
    assert bound.context == {"a": 1, "b": 3, "c": 4}
    bound.info("m", c=5)
    record = _only(caplog)
    assert record.getMessage() == "m a=1 b=3 c=5"
    assert record.context == {"a": 1, "b": 3, "c": 5}  # type: ignore[attr-defined]


def test_context_property_is_a_copy(log: StructuredLogger) -> None:
    bound = log.bind(a=1)
    bound.context["a"] = 2
    assert bound.context == {"a": 1}


# -- keys that are LogRecord attributes or parameter names ---------------------------


def test_colliding_context_keys_do_not_break_logging(
    log: StructuredLogger, caplog: pytest.LogCaptureFixture
) -> None:
    colliding = {
        "message": "m",
        "msg": "x",
        "args": "(1, 2)",
        "levelname": "FAKE",
        "name": "n",
        "exc_info": "e",
        "stack_info": "s",
        "extra": "x",
        "asctime": "t",
        "context": "c",
        "self": "me",
        "level": "lv",
    }
    log.bind(stacklevel=9).warning("collide", **colliding)
    record = _only(caplog)
    assert record.levelname == "WARNING"
    assert record.name == LOGGER_NAME
    assert record.args == ()
    assert record.exc_info is None
    assert record.context == {"stacklevel": 9, **colliding}  # type: ignore[attr-defined]
    assert record.getMessage().startswith("collide stacklevel=9 message=m msg=x args='(1, 2)'")
    assert "context=c self=me level=lv" in record.getMessage()
    assert "collide" in caplog.text
