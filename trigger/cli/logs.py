"""Log set-up: one short line per transition, DBOS's chatter turned down.

Two formats through one handler, for our loggers and DBOS's alike: text for a terminal,
and JSON (python-json-logger) for a log collector, where the ids a line is about (run,
trigger, event, delivery, branch, job) are fields the call passed
(``trigger.core.logfields``) or the DBOS workflow the line was logged from; never read
back out of the message.

Values from outside (request paths, refs, header values, commit messages, file names)
reach log lines through the records' arguments. Whatever they hold, a record stays
one line: the text format writes control characters and lone surrogates as escapes
(``trigger.core.text.escaped``) and indents a traceback's lines under its record, and the
JSON format escapes them by being JSON.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from trigger.core import secrets, text
from trigger.core.logfields import FIELDS
from trigger.core.matching import trigger_of

# Attributes other libraries put on their records: DBOS's log transformer (its ids and
# version, which the run id field and our own start-up line already say) and uvicorn's
# coloured copy of the message.
_FOREIGN = (
    "applicationID",
    "applicationVersion",
    "executorID",
    "operationUUID",
    "traceId",
    "color_message",
)
_PLAIN = (int, float, bool, type(None))
_HEAD = ("time", "level", "logger", "message")


class JsonFormatter(_LibraryJsonFormatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, then the
    fields the call passed (``extra=trigger.core.logfields.ids(...)``) or :class:`RunFields`
    added; ``error`` and ``traceback`` when the record carries an exception. Every string
    value is redacted, the fields included (the record factory redacts only the message)."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "traceback"},
            reserved_attrs=[*RESERVED_ATTRS, *_FOREIGN],
            json_ensure_ascii=True,
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        super().add_fields(log_data, record, message_dict)
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            log_data["error"] = f"{type(exc).__name__}: {exc}"

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        first = [key for key in (*_HEAD, *FIELDS) if key in log_data]
        order = [*first, *(key for key in log_data if key not in first)]
        return {key: _clean(log_data[key]) for key in order}


def _clean(value: Any) -> Any:
    """A field value as JSON can hold it, with every known secret cut out."""
    if isinstance(value, str):
        return secrets.redact(value)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _clean(item) for key, item in value.items()}
    return secrets.redact(str(value))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, one line per record: a line that starts at the
    left margin is always a record's first line, never text from outside."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Our message templates hold no control characters; escaping the formatted
        # message escapes the arguments, and third-party lines formatted before logging.
        record.message = text.escaped(record.message)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(block: str) -> str:
    """A traceback under its record: each line escaped and indented, so an exception
    message from outside cannot start a line of its own."""
    return "\n".join("  " + text.escaped(line) for line in block.splitlines())


# The workflow ids that belong to a run: the run's own (``run:<trigger>:<event>``), its
# job workflow's (``<run id>:job[-N]``, workflows.job) and its notices'
# (``notify:<notifier>:<status>:<run id>``, workflows.notify.outbox).
_JOB_SUFFIX = re.compile(r":job(-[0-9]+)?\Z")
_NOTICE = re.compile(r"notify:[^:]+:[^:]+:(run:.+)\Z")


def run_of(workflow_id: str) -> str | None:
    """The run a DBOS workflow id belongs to, or None (e.g. a schedule tick's)."""
    notice = _NOTICE.match(workflow_id)
    if notice:
        return notice.group(1)
    if trigger_of(workflow_id) is None:
        return None
    return _JOB_SUFFIX.sub("", workflow_id)


class RunFields(logging.Filter):
    """Ids the record's caller did not pass but the context knows: inside a DBOS workflow
    (our steps' lines and DBOS's own) the run it belongs to, and the DBOS workflow id
    when that is not the run's; with a run id, its trigger."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _dbos_workflow_id()
        if current:
            run_id = getattr(record, "run_id", None) or run_of(current)
            if run_id and not getattr(record, "run_id", None):
                record.run_id = run_id
            if current != run_id and not getattr(record, "workflow_id", None):
                record.workflow_id = current
        run_id = getattr(record, "run_id", None)
        if isinstance(run_id, str) and not getattr(record, "trigger", None):
            trigger = trigger_of(run_id)
            if trigger:
                record.trigger = trigger
        return True


class _DropExpectedFailures(logging.Filter):
    """DBOS logs a traceback for every workflow that raises; a failed Bauplan job is an
    expected outcome we already log in one line, so drop those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return type(exc).__name__ not in ("RunFailed",)


class _NameRetriedSteps(logging.Filter):
    """DBOS logs ``Step being automatically retried (attempt N of M)`` with the error
    only as a traceback and without the run: put the run id and the error on the line
    itself, and drop the traceback (the retry is expected; the error says why)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Step being automatically retried"):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        error = f"{type(exc).__name__}: {exc}" if exc is not None else "-"
        record.msg = f"{record.getMessage()} run={_dbos_workflow_id() or '-'} error={error}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


def _dbos_workflow_id() -> str | None:
    try:
        from dbos import DBOS

        return DBOS.workflow_id
    except Exception:
        return None


def tame_dbos_logger() -> None:
    """The filters our log set-up puts on DBOS's own logger; installing twice is a no-op."""
    dbos_logger = logging.getLogger("dbos")
    for kind in (_DropExpectedFailures, _NameRetriedSteps):
        if not any(isinstance(f, kind) for f in dbos_logger.filters):
            dbos_logger.addFilter(kind())


def log_handler(fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """The one handler both our loggers and DBOS's write through: ``fmt`` is ``text``
    (for a terminal) or ``json`` (one object per line, for a log collector)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RunFields())
    return handler


# The console handler DBOS adds to its logger at DBOS() when the logger has none.
_DBOS_CONSOLE = "__dbos_console_log_handler__"


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    root = logging.getLogger()
    if getattr(root, "_bauplan_trigger", False):
        return
    handler = log_handler(fmt)
    root.addHandler(handler)
    root.setLevel(level)
    root._bauplan_trigger = True  # type: ignore[attr-defined]
    dbos_logger = logging.getLogger("dbos")
    dbos_logger.setLevel(logging.WARNING)
    tame_dbos_logger()
    # DBOS adds its own plain console handler only when its logger has none: ours, put
    # there before DBOS starts, writes DBOS's lines in the same format, escaped and
    # redacted the same way. One DBOS added already (DBOS started first) is replaced.
    for existing in list(dbos_logger.handlers):
        if existing.name == _DBOS_CONSOLE:
            dbos_logger.removeHandler(existing)
    if not dbos_logger.handlers:
        dbos_logger.addHandler(handler)
        dbos_logger.propagate = False
    for name in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
