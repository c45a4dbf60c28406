"""Rehearsal mode: a stand-in for ``bauplan.Client`` that records instead of running.

It accepts exactly the arguments of the installed SDK's methods (checked with
``inspect.signature`` on every call) so a call the real SDK would refuse fails
here too, and it keeps jobs in a SQLite ledger so that several processes, or a
process killed and restarted, see the same jobs. That ledger is how tests and
acceptance checks count submissions.
"""

from __future__ import annotations

import inspect
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bauplan
import bauplan.exceptions

from workflows.bauplan_adapter import has_project_file

LEDGER_FILE = "rehearsal.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    ref TEXT,
    project_dir TEXT NOT NULL,
    parameters TEXT NOT NULL,
    arguments TEXT NOT NULL,
    username TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    finish_at REAL,
    finished_at REAL,
    outcome TEXT NOT NULL,
    status TEXT NOT NULL,
    code_version TEXT
);
CREATE TABLE IF NOT EXISTS branches (name TEXT PRIMARY KEY, from_ref TEXT, created_at REAL);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    method TEXT NOT NULL,
    error TEXT NOT NULL,
    message TEXT NOT NULL,
    remaining INTEGER NOT NULL
);
"""

_FINAL = ("COMPLETE", "FAIL", "ABORT")


def _now() -> float:
    return time.time()


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


_CONNECTIONS = threading.local()


class Ledger:
    """The SQLite job ledger; safe for several processes (WAL, busy timeout).

    Fifty runs polling at once must not queue behind one another: each thread keeps
    its connection, reads take no write lock, and commits are not fsynced
    (``synchronous=NORMAL`` in WAL mode survives a killed process, only not a
    power cut, which a rehearsal can afford).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection to this ledger, opened on first use."""
        opened: dict[str, sqlite3.Connection] | None = getattr(_CONNECTIONS, "by_path", None)
        if opened is None:
            opened = _CONNECTIONS.by_path = {}
        key = str(self.path)
        db = opened.get(key)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            db.row_factory = sqlite3.Row
            opened[key] = db
        return db

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """A statement in its own write transaction."""
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute(sql, params).fetchall()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return rows

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """A read: a WAL snapshot, no write lock."""
        return self._connection().execute(sql, params).fetchall()

    def jobs(self) -> list[dict[str, Any]]:
        rows = self.query("SELECT * FROM jobs ORDER BY submitted_at, job_id")
        now = _now()
        return [_job_record(_settled(row, now)) for row in rows]

    def inject_fault(
        self, method: str, error: str, message: str = "injected", count: int = 1
    ) -> None:
        """Make the next ``count`` calls of ``method`` raise the SDK error class ``error``
        (or ``EXIT_AFTER``: record the call, then kill the calling process)."""
        self.execute(
            "INSERT INTO faults (method, error, message, remaining) VALUES (?, ?, ?, ?)",
            (method, error, message, count),
        )

    def take_fault(self, method: str) -> tuple[str, str] | None:
        # Looked at without the write lock first: on every SDK call, almost always empty.
        if not self.query(
            "SELECT 1 FROM faults WHERE method = ? AND remaining > 0 LIMIT 1", (method,)
        ):
            return None
        rows = self.execute(
            "UPDATE faults SET remaining = remaining - 1 WHERE id = (SELECT id FROM faults "
            "WHERE method = ? AND remaining > 0 ORDER BY id LIMIT 1) RETURNING error, message",
            (method,),
        )
        return (rows[0]["error"], rows[0]["message"]) if rows else None


def _settled(row: sqlite3.Row, now: float) -> dict[str, Any]:
    """The row as of ``now``: a job past its due time reads as finished, dated when it
    was due. Derived on every read, never written, so no read takes the write lock."""
    fields = dict(row)
    finish_at = fields["finish_at"]
    if fields["status"] == "RUNNING" and finish_at is not None and finish_at <= now:
        fields["status"] = "FAIL" if fields["outcome"] == "fail" else "COMPLETE"
        fields["finished_at"] = finish_at
    return fields


def _job_record(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "job_id": row["job_id"],
        "ref": row["ref"],
        "project_dir": row["project_dir"],
        "parameters": json.loads(row["parameters"]),
        "username": row["username"],
        "submitted_at": _iso(row["submitted_at"]),
        "finished_at": _iso(row["finished_at"]),
        "status": row["status"],
        "outcome": row["outcome"],
        "code_version": row["code_version"],
        "started_ts": row["submitted_at"],
        "finished_ts": row["finished_at"],
    }


@dataclass(frozen=True)
class _User:
    username: str


@dataclass(frozen=True)
class _Info:
    user: _User


@dataclass(frozen=True)
class _RunState:
    job_id: str
    job_status: str | None
    error: str | None = None


@dataclass(frozen=True)
class _Job:
    id: str
    status: str
    kind: str
    user: str
    error_message: str | None
    created_at: datetime | None
    finished_at: datetime | None

    @property
    def human_readable_status(self) -> str:
        return self.status.lower()


@dataclass(frozen=True)
class _JobContext:
    id: str
    ref: str | None


@dataclass(frozen=True)
class _LogEvent:
    level: str
    message: str
    stream: str = "STDOUT"


_signatures: dict[str, inspect.Signature] = {}
_signatures_lock = threading.Lock()


def _signature(method: str) -> inspect.Signature:
    # The SDK's signatures are parsed from text with ast; CPython 3.11.7 can fail
    # that with "AST constructor recursion depth mismatch" when threads race.
    with _signatures_lock:
        if method not in _signatures:
            _signatures[method] = inspect.signature(getattr(bauplan.Client, method))
        return _signatures[method]


def _bind(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse any call the installed SDK's signature would refuse."""
    signature = _signature(method)
    try:
        signature.bind(None, *args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"bauplan.Client.{method}() would refuse this call: {exc}") from None


def _sdk_error(name: str, message: str) -> Exception:
    cls = getattr(bauplan.exceptions, name)
    if issubclass(cls, bauplan.exceptions.BauplanHTTPError):
        codes = {"TooManyRequestsError": 429, "ServiceUnavailableError": 503}
        error: Exception = cls(codes.get(name, 500), name, message)
        return error
    made: Exception = cls(message)
    return made


class RehearsalClient:
    """A ``bauplan.Client`` look-alike backed by the ledger."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        username: str = "rehearsal",
        seconds: float = 2.0,
        outcome: str = "success",
    ) -> None:
        self.ledger = ledger
        self.username = username
        self.seconds = seconds
        self.outcome = outcome  # "success" | "fail" | "hang"

    def _enter(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        _bind(method, args, kwargs)
        fault = self.ledger.take_fault(method)
        if fault is None:
            return False
        error, message = fault
        if error == "EXIT_AFTER":
            return True
        raise _sdk_error(error, message)

    def info(self, *args: Any, **kwargs: Any) -> _Info:
        self._enter("info", args, kwargs)
        return _Info(user=_User(self.username))

    def has_branch(self, *args: Any, **kwargs: Any) -> bool:
        self._enter("has_branch", args, kwargs)
        branch = kwargs.get("branch", args[0] if args else None)
        rows = self.ledger.query("SELECT 1 FROM branches WHERE name = ?", (str(branch),))
        return bool(rows)

    def create_branch(self, *args: Any, **kwargs: Any) -> str:
        self._enter("create_branch", args, kwargs)
        bound = _signature("create_branch").bind(None, *args, **kwargs)
        branch, from_ref = str(bound.arguments["branch"]), str(bound.arguments["from_ref"])
        if not branch.startswith(self.username + "."):
            raise _sdk_error("CreateBranchForbiddenError", f"cannot create {branch}")
        self.ledger.execute(
            "INSERT OR IGNORE INTO branches (name, from_ref, created_at) VALUES (?, ?, ?)",
            (branch, from_ref, _now()),
        )
        return branch

    def run(self, *args: Any, **kwargs: Any) -> _RunState:
        exit_after = self._enter("run", args, kwargs)
        bound = _signature("run").bind(None, *args, **kwargs)
        project_dir = Path(str(bound.arguments["project_dir"]))
        if not project_dir.is_dir():
            raise bauplan.exceptions.BauplanJobError("failed to read project file")
        if not has_project_file(project_dir):
            raise bauplan.exceptions.BauplanJobError(
                f"no bauplan_project.yaml found in {project_dir}"
            )
        if not bound.arguments.get("detach"):
            raise AssertionError("rehearsal expects detach=True: the trigger never blocks on a run")
        job_id = f"rehearsal-{uuid.uuid4().hex[:16]}"
        now = _now()
        finish_at = None if self.outcome == "hang" else now + self.seconds
        params = bound.arguments.get("parameters") or {}
        recorded = {k: v for k, v in bound.arguments.items() if k not in ("self",)}
        self.ledger.execute(
            "INSERT INTO jobs (job_id, ref, project_dir, parameters, arguments, username, "
            "submitted_at, finish_at, finished_at, outcome, status, code_version) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, 'RUNNING', ?)",
            (
                job_id,
                None if bound.arguments.get("ref") is None else str(bound.arguments["ref"]),
                str(project_dir),
                json.dumps(params, sort_keys=True),
                json.dumps(recorded, sort_keys=True, default=str),
                self.username,
                now,
                finish_at,
                self.outcome,
                _code_version(project_dir),
            ),
        )
        if exit_after:
            os._exit(137)
        return _RunState(job_id=job_id, job_status=None)

    def _row(self, job_id: str) -> dict[str, Any]:
        rows = self.ledger.query("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        if not rows:
            raise _sdk_error("ResourceNotFoundError", f"job {job_id} not found")
        return _settled(rows[0], _now())

    def get_job(self, *args: Any, **kwargs: Any) -> _Job:
        self._enter("get_job", args, kwargs)
        return self._job(self._row(str(args[0] if args else kwargs["job_id"])))

    def _job(self, row: sqlite3.Row | dict[str, Any]) -> _Job:
        error = "rehearsal: the job was told to fail" if row["status"] == "FAIL" else None
        return _Job(
            id=row["job_id"],
            status=row["status"],
            kind="RUN",
            user=row["username"],
            error_message=error,
            created_at=datetime.fromtimestamp(row["submitted_at"], UTC),
            finished_at=None
            if row["finished_at"] is None
            else datetime.fromtimestamp(row["finished_at"], UTC),
        )

    def get_job_logs(self, *args: Any, **kwargs: Any) -> list[_LogEvent]:
        if self._enter("get_job_logs", args, kwargs):
            os._exit(137)  # EXIT_AFTER: die after the job ended, before the run records it
        job = args[0] if args else kwargs["job"]
        row = self._row(str(getattr(job, "id", job)))
        params = json.loads(row["parameters"])
        lines = [
            _LogEvent("INFO", f"rehearsal: would run {row['project_dir']} on {row['ref']}"),
            _LogEvent("INFO", f"rehearsal: parameters {json.dumps(params, sort_keys=True)}"),
        ]
        if row["status"] == "FAIL":
            lines.append(_LogEvent("ERROR", "rehearsal: the job was told to fail"))
        return lines

    def cancel_job(self, *args: Any, **kwargs: Any) -> None:
        self._enter("cancel_job", args, kwargs)
        job_id = str(args[0] if args else kwargs["job_id"])
        now = _now()
        self.ledger.execute(
            "UPDATE jobs SET status = 'ABORT', finished_at = ? WHERE job_id = ? "
            "AND status = 'RUNNING' AND (finish_at IS NULL OR finish_at > ?)",
            (now, job_id, now),
        )

    def get_jobs(self, *args: Any, **kwargs: Any) -> Iterator[_Job]:
        self._enter("get_jobs", args, kwargs)
        since = kwargs.get("filter_by_created_after")
        floor = since.timestamp() if isinstance(since, datetime) else 0.0
        rows = self.ledger.query(
            "SELECT * FROM jobs WHERE submitted_at >= ? ORDER BY submitted_at", (floor,)
        )
        limit = kwargs.get("limit")
        now = _now()
        for row in rows[:limit] if limit else rows:
            yield self._job(_settled(row, now))

    def get_job_context(self, *args: Any, **kwargs: Any) -> _JobContext:
        self._enter("get_job_context", args, kwargs)
        job = args[0] if args else kwargs["job"]
        row = self._row(str(getattr(job, "id", job)))
        return _JobContext(id=row["job_id"], ref=row["ref"])


def _code_version(project_dir: Path) -> str | None:
    """The git commit the project folder is checked out at, when it is a work tree."""
    for folder in (project_dir, *project_dir.parents):
        head = folder / ".git"
        if head.is_file() or head.is_dir():
            import subprocess

            result = subprocess.run(
                ["git", "-C", str(project_dir), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                check=False,
            )
            return result.stdout.strip() or None if result.returncode == 0 else None
    return None
