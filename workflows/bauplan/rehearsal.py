"""Rehearsal mode: a stand-in for ``bauplan.Client`` that records instead of running.

It accepts exactly the arguments of the installed SDK's methods (checked with
``inspect.signature`` on every call) so a call the real SDK would refuse fails
here too, and it keeps jobs in a SQLite ledger so that several processes, or a
process killed and restarted, see the same jobs. That ledger is how tests and
acceptance checks count submissions.

Faults armed in the ledger (``bauplan-trigger rehearsal fault``) make the next
calls of a method raise one of the SDK's own exceptions, or (``EXIT_AFTER``) do
their work and then kill the calling process, which is how a crash the instant
Bauplan answered is rehearsed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bauplan.exceptions

from workflows.bauplan import rehearsal_refs as refs
from workflows.bauplan.adapter import has_project_file, project_identity
from workflows.bauplan.faults import bind, sdk_error, sdk_method
from workflows.bauplan.jobs import (
    KIND,
    Info,
    Job,
    JobContext,
    JobPages,
    JobQuery,
    LogEvent,
    RunState,
    User,
    code_version,
    job_error,
    job_logs,
    utc,
)

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
    code_version TEXT,
    project_id TEXT,
    project_name TEXT
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

# Columns added after the first release, for ledgers written before them.
_ADDED_COLUMNS = {"project_id": "TEXT", "project_name": "TEXT"}


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
        db = self._connection()
        db.executescript(_SCHEMA + refs.SCHEMA)
        present = {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}
        for column, kind in _ADDED_COLUMNS.items():
            if column not in present:
                try:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
                except sqlite3.OperationalError as exc:  # added by another process meanwhile
                    if "duplicate column" not in str(exc):
                        raise

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
        (or ``EXIT_AFTER``: do the call's work, then kill the calling process).
        ``workflows.bauplan.faults.arm`` checks the names first."""
        self.execute(
            "INSERT INTO faults (method, error, message, remaining) VALUES (?, ?, ?, ?)",
            (method, error, message, count),
        )

    def faults(self) -> list[dict[str, Any]]:
        """Every armed fault, oldest first, with how many calls it still hits."""
        rows = self.query("SELECT * FROM faults WHERE remaining > 0 ORDER BY id")
        return [dict(row) for row in rows]

    def clear_faults(self) -> int:
        """Disarm every fault; how many were still armed."""
        return len(self.execute("DELETE FROM faults WHERE remaining > 0 RETURNING id"))

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
        "project_id": row["project_id"],
        "started_ts": row["submitted_at"],
        "finished_ts": row["finished_at"],
    }


def _job_id(args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> str:
    job = args[0] if args else kwargs[name]
    return str(getattr(job, "id", job))


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

    @sdk_method
    def info(self, *args: Any, **kwargs: Any) -> Info:
        return Info(user=User(self.username))

    @sdk_method
    def has_branch(self, *args: Any, **kwargs: Any) -> bool:
        branch = kwargs.get("branch", args[0] if args else None)
        rows = self.ledger.query("SELECT 1 FROM branches WHERE name = ?", (str(branch),))
        return bool(rows)

    @sdk_method
    def create_branch(self, *args: Any, **kwargs: Any) -> str:
        arguments = bind("create_branch", args, kwargs)
        branch, from_ref = str(arguments["branch"]), str(arguments["from_ref"])
        if not branch.startswith(self.username + "."):
            raise sdk_error("CreateBranchForbiddenError", f"cannot create {branch}")
        self.ledger.execute(
            "INSERT OR IGNORE INTO branches (name, from_ref, created_at) VALUES (?, ?, ?)",
            (branch, from_ref, _now()),
        )
        return branch

    @sdk_method
    def run(self, *args: Any, **kwargs: Any) -> RunState:
        arguments = bind("run", args, kwargs)
        project_dir = Path(str(arguments["project_dir"]))
        if not project_dir.is_dir():
            raise bauplan.exceptions.BauplanJobError("failed to read project file")
        if not has_project_file(project_dir):
            raise bauplan.exceptions.BauplanJobError(
                f"no bauplan_project.yaml found in {project_dir}"
            )
        if not arguments.get("detach"):
            raise AssertionError("rehearsal expects detach=True: the trigger never blocks on a run")
        job_id = f"rehearsal-{uuid.uuid4().hex[:16]}"
        now = _now()
        finish_at = None if self.outcome == "hang" else now + self.seconds
        params = arguments.get("parameters") or {}
        recorded = {k: v for k, v in arguments.items() if k not in ("self",)}
        project = project_identity(project_dir)
        self.ledger.execute(
            "INSERT INTO jobs (job_id, ref, project_dir, parameters, arguments, username, "
            "submitted_at, finish_at, finished_at, outcome, status, code_version, "
            "project_id, project_name) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, 'RUNNING', ?, ?, ?)",
            (
                job_id,
                None if arguments.get("ref") is None else str(arguments["ref"]),
                str(project_dir),
                json.dumps(params, sort_keys=True),
                json.dumps(recorded, sort_keys=True, default=str),
                self.username,
                now,
                finish_at,
                self.outcome,
                code_version(project_dir),
                project.id,
                project.name,
            ),
        )
        return RunState(job_id=job_id, job_status=None)

    def _row(self, job_id: str) -> dict[str, Any]:
        rows = self.ledger.query("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        if not rows:
            raise sdk_error("ResourceNotFoundError", f"job {job_id} not found")
        return _settled(rows[0], _now())

    @sdk_method
    def get_job(self, *args: Any, **kwargs: Any) -> Job:
        return self._job(self._row(_job_id(args, kwargs, "job_id")))

    def _job(self, row: dict[str, Any]) -> Job:
        return Job(
            id=row["job_id"],
            status=row["status"],
            kind=KIND,
            user=row["username"],
            error_message=job_error(row),
            created_at=utc(row["submitted_at"]),
            started_at=utc(row["submitted_at"]),
            finished_at=utc(row["finished_at"]),
        )

    @sdk_method
    def get_job_logs(self, *args: Any, **kwargs: Any) -> list[LogEvent]:
        return job_logs(self._row(_job_id(args, kwargs, "job")))

    @sdk_method
    def cancel_job(self, *args: Any, **kwargs: Any) -> None:
        job_id = _job_id(args, kwargs, "job_id")
        now = _now()
        self.ledger.execute(
            "UPDATE jobs SET status = 'ABORT', finished_at = ? WHERE job_id = ? "
            "AND status = 'RUNNING' AND (finish_at IS NULL OR finish_at > ?)",
            (now, job_id, now),
        )

    @sdk_method
    def get_jobs(self, *args: Any, **kwargs: Any) -> JobPages:
        query = JobQuery.parse(bind("get_jobs", args, kwargs), self.username)
        now = _now()
        return JobPages(self.ledger.query, query, lambda row: _settled(row, now), self._job)

    def _settled_on(self, ref: str) -> list[dict[str, Any]]:
        now = _now()
        return [
            _settled(r, now) for r in self.ledger.query("SELECT * FROM jobs WHERE ref = ?", (ref,))
        ]

    @sdk_method
    def get_branch(self, *args: Any, **kwargs: Any) -> refs.Branch:
        branch = refs.name_of(bind("get_branch", args, kwargs)["branch"], at=False)
        return refs.get_branch(self.ledger, branch, self._settled_on(branch))

    @sdk_method
    def merge_branch(self, *args: Any, **kwargs: Any) -> refs.Branch:
        arguments = bind("merge_branch", args, kwargs)
        source = refs.name_of(arguments["source_ref"]).partition("@")[0]
        into = refs.name_of(arguments["into_branch"], at=False)
        heads = {b: refs.head(self.ledger, b, self._settled_on(b)) for b in (source, into)}
        return refs.merge(self.ledger, self.username, arguments, heads, _now())

    @sdk_method
    def get_commits(self, *args: Any, **kwargs: Any) -> list[refs.Commit]:
        return refs.commits(self.ledger, bind("get_commits", args, kwargs))

    @sdk_method
    def delete_branch(self, *args: Any, **kwargs: Any) -> bool:
        return refs.delete_branch(self.ledger, bind("delete_branch", args, kwargs))

    @sdk_method
    def get_job_context(self, *args: Any, **kwargs: Any) -> JobContext:
        arguments = bind("get_job_context", args, kwargs)
        return self._context(_job_id(args, kwargs, "job"), arguments)

    @sdk_method
    def get_job_contexts(self, *args: Any, **kwargs: Any) -> list[JobContext]:
        arguments = bind("get_job_contexts", args, kwargs)
        jobs = arguments["jobs"]
        listed = jobs if isinstance(jobs, list | tuple) else [jobs]
        return [self._context(str(getattr(j, "id", j)), arguments) for j in listed]

    def _context(self, job_id: str, arguments: dict[str, Any]) -> JobContext:
        """What ``get_job_context`` tells: the ref and the project, never the parameters."""
        row = self._row(job_id)
        return JobContext(
            id=row["job_id"],
            ref=row["ref"],
            project_id=row["project_id"],
            project_name=row["project_name"],
            error_message=job_error(row),
            logs=job_logs(row) if arguments.get("include_logs") else [],
        )
