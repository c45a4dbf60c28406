"""The system database going away: recognised in one place, answered with 503, logged once.

While PostgreSQL is down, everything in ``serve`` that touches it fails on its own
schedule: DBOS's queue threads (several times a second per queue), its scheduler,
background jobs and notification listener, our heartbeats, each API request. Left
alone, one fact becomes hundreds of warnings and tracebacks. :func:`is_unreachable`
is the one test for "this error means the database cannot be reached"; the HTTP app
answers such errors with 503 (:func:`answer_unavailable`), the CLI with one line,
and :class:`OutageLog` turns the log records about them into one line when the
outage starts and one when it ends.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
from html import escape

import psycopg
import sqlalchemy as sa
from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from trigger.core import db
from trigger.core.errors import EnqueueUnavailableError, SystemDatabaseUnreachableError

log = logging.getLogger(__name__)

# Server-side SQLSTATEs that mean the connection itself is gone: class 08 (connection
# exception), and the server shutting down or not accepting connections yet.
_GONE_STATES = ("57P01", "57P02", "57P03")
# What DBOS's own log lines say when they carry the error as text, not as exc_info.
_GONE_TEXT = re.compile(
    r"connection failed:|connection to server (?:at|on) .* failed"
    r"|server closed the connection unexpectedly|consuming input failed"
    r"|sending query failed|the connection is (?:lost|closed)|terminating connection due to"
    r"|SSL connection has been closed unexpectedly|unable to open database file"
)
# How SQLAlchemy names the driver's exception inside its own message.
_DRIVER_TAG = re.compile(r"\((?:psycopg|sqlite3)[\w.]*\)\s*")
# Exception classes the HTTP app sends to :func:`answer_unavailable`.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sa.exc.DBAPIError,
    psycopg.Error,
    sqlite3.Error,
    SystemDatabaseUnreachableError,
    EnqueueUnavailableError,
)
RETRY_AFTER_SECONDS = 5


def is_unreachable(exc: BaseException | None) -> bool:
    """True when ``exc`` (or what caused it) says the database could not be reached or
    dropped the connection; False for every other database error (a missing table, a
    lock timeout, a bad query)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if _connection_gone(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _connection_gone(exc: BaseException) -> bool:
    if isinstance(exc, SystemDatabaseUnreachableError):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        return bool(exc.connection_invalidated) or (
            exc.orig is not None and _connection_gone(exc.orig)
        )
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        # Failures to connect carry no SQLSTATE: refused, unknown host, auth, no database.
        return state is None or state.startswith("08") or state in _GONE_STATES
    if isinstance(exc, sqlite3.OperationalError):
        return "unable to open database file" in str(exc)
    return False


def reason(error: BaseException | str) -> str:
    """The driver's own first line, e.g. ``connection to server at "db", port 5432
    failed: Connection refused``: host and port, never a password."""
    text = str(error)
    if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
        text = str(error.orig)
    return _split(text)[1] or type(error).__name__


def _split(text: str) -> tuple[str, str]:
    """``(what noticed it, the driver's words)`` from a message such as DBOS's
    ``Exception reloading queue q from database: (psycopg.OperationalError) ...``."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = next((item for item in lines if _GONE_TEXT.search(item)), lines[0] if lines else "")
    cut = _DRIVER_TAG.search(line) or _GONE_TEXT.search(line)
    head, tail = ("", line)
    if cut is not None and (cut.re is _DRIVER_TAG or line[: cut.start()].rstrip().endswith(":")):
        head, tail = (
            line[: cut.start()],
            line[cut.end() if cut.re is _DRIVER_TAG else cut.start() :],
        )
    tail = tail.split("connection failed: ", 1)[-1]
    return head.strip().rstrip(":").strip()[:120], tail.strip()[:200]


def unreachable(exc: BaseException) -> SystemDatabaseUnreachableError:
    """The one-line error users see for an ``is_unreachable`` exception."""
    if isinstance(exc, SystemDatabaseUnreachableError):
        return exc
    return SystemDatabaseUnreachableError(reason(exc))


async def answer_unavailable(request: Request, exc: Exception) -> Response:
    """The app's one handler for database errors: 503 with a sentence while the database
    cannot be reached (a readable notice that refreshes itself on the page), and the
    error as before, a 500, for anything else."""
    if isinstance(exc, EnqueueUnavailableError):
        sentence = str(exc)
    elif is_unreachable(exc):
        sentence = str(unreachable(exc))
    else:
        raise exc
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    route = request.scope.get("route")
    if getattr(route, "response_class", None) is HTMLResponse:
        return HTMLResponse(_notice(sentence), status_code=503, headers=headers)
    return JSONResponse({"error": sentence}, status_code=503, headers=headers)


def _notice(sentence: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{RETRY_AFTER_SECONDS}">'
        "<title>system database unreachable - bauplan-trigger</title></head>"
        '<body style="font:15px/1.5 system-ui,sans-serif;margin:40px;max-width:760px">'
        '<h1 style="font-size:20px">bauplan-trigger cannot read its system database</h1>'
        f"<p>{escape(sentence)}.</p><p>Runs already accepted are kept and resume when it is "
        f"back. This page tries again every {RETRY_AFTER_SECONDS} seconds.</p></body></html>"
    )


def about_unreachable(record: logging.LogRecord) -> bool:
    """Whether a log record only reports that the database cannot be reached."""
    exc = record.exc_info[1] if record.exc_info else None
    return is_unreachable(exc) or bool(_GONE_TEXT.search(record.getMessage()))


class DropUnreachable(logging.Filter):
    """For commands that print their own one-line error: DBOS's lines about the same
    unreachable database would only repeat it, in three lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not about_unreachable(record)


class OutageLog(logging.Filter):
    """Holds back every log record about the unreachable database and logs two lines
    instead: when the first one arrives, and when a probe of the database answers
    again (with the outage's length and how many lines were held back)."""

    def __init__(self, url: str, probe_interval: float = 1.0) -> None:
        super().__init__()
        self._url = url
        self._interval = probe_interval
        self._lock = threading.Lock()
        self._since: float | None = None
        self._held = 0
        self._stop = threading.Event()
        self._prober: threading.Thread | None = None
        self._attached: list[logging.Filterer] = []

    def install(self) -> OutageLog:
        """On DBOS's logger (which does not propagate) and on the root's handlers."""
        self._attached = [logging.getLogger("dbos"), *logging.getLogger().handlers]
        for target in self._attached:
            target.addFilter(self)
        return self

    def close(self) -> None:
        self._stop.set()
        for target in self._attached:
            target.removeFilter(self)
        if self._prober is not None:
            self._prober.join(timeout=10)

    def filter(self, record: logging.LogRecord) -> bool:
        # DBOS's lines are chatter whatever their level; an error of ours is a
        # consequence (a component that stopped) and is always shown.
        ours_and_grave = record.name != "dbos" and record.levelno >= logging.ERROR
        if record.name == __name__ or ours_and_grave or not about_unreachable(record):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        with self._lock:
            if self._since is not None:
                self._held += 1
                return False
            self._since, self._held = time.time(), 1
            self._prober = threading.Thread(target=self._probe, name="bt-outage", daemon=True)
            self._prober.start()
        if exc is not None and is_unreachable(exc):
            what, why = record.getMessage().split("\n", 1)[0][:120], reason(exc)
        else:
            what, why = _split(record.getMessage())
        log.warning(
            "system database unreachable: %s (noticed by %s%s); holding back its errors "
            "until it answers again",
            why,
            record.name,
            f": {what}" if what else "",
        )
        return False

    def _probe(self) -> None:
        engine = _probe_engine(self._url)
        try:
            while not self._stop.wait(self._interval):
                if not _answers(engine):
                    continue
                with self._lock:
                    since, held = self._since or time.time(), self._held
                    self._since = None
                log.info(
                    "system database reachable again after %.1fs (held back %d log lines about it)",
                    time.time() - since,
                    held,
                )
                return
        finally:
            engine.dispose()


def _answers(engine: sa.Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception:  # still down: the first line said so, and nothing new is known
        return False
    return True


def _probe_engine(url: str) -> sa.Engine:
    """Reads only: a probe must never create the SQLite file it looks for."""
    if url.startswith("sqlite"):
        path = sa.make_url(url).database or ""
        return db.unpooled(
            "sqlite://", creator=lambda: sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        )
    return db.unpooled(url, connect_args={"connect_timeout": 5})
