"""Log set-up: one short line per transition, DBOS's chatter turned down.

Values from outside (request paths, refs, header values, commit messages, file names)
reach log lines through the records' arguments. Whatever they hold, a record stays
one line: the text format writes control characters and lone surrogates as escapes
(``trigger.core.text.escaped``) and indents a traceback's lines under its record, and the
JSON format escapes them by being JSON.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from trigger.core import text

_RUN = re.compile(r"\b(run:[A-Za-z0-9._:@/+=-]+)")
_TRIGGER = re.compile(r"\btrigger[= ]'?([a-z0-9][a-z0-9_-]*)")
_EVENT = re.compile(r"\bevent[= ]([A-Za-z0-9][A-Za-z0-9._:@/+=-]*)")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the run id, trigger
    and event id when the record names them (``extra=``, the message, or the DBOS
    workflow the line was logged from)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        run_id = getattr(record, "run_id", None) or _first(_RUN, message) or _workflow_id()
        trigger = getattr(record, "trigger", None) or _first(_TRIGGER, message)
        if run_id and not trigger and run_id.count(":") >= 2:
            trigger = run_id.split(":", 2)[1]
        event_id = getattr(record, "event_id", None) or _first(_EVENT, message)
        for key, value in (("run_id", run_id), ("trigger", trigger), ("event_id", event_id)):
            if value:
                data[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            data["error"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        return json.dumps(data, default=str)


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


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(1) if match else None


def _workflow_id() -> str | None:
    current = _dbos_workflow_id()
    return current if current and current.startswith("run:") else None


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


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    root = logging.getLogger()
    if getattr(root, "_bauplan_trigger", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root._bauplan_trigger = True  # type: ignore[attr-defined]
    dbos_logger = logging.getLogger("dbos")
    dbos_logger.setLevel(logging.WARNING)
    tame_dbos_logger()
    if not dbos_logger.handlers:
        # DBOS adds its own plain console handler only when the logger has none; ours
        # writes DBOS's lines in the same format, escaped the same way.
        dbos_logger.addHandler(handler)
        dbos_logger.propagate = False
    for name in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
