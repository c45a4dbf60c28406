"""What the rehearsal client answers, shaped like the SDK's own objects.

``get_jobs`` takes the SDK's filters and checks them as the installed SDK does
(tried against ``bauplan`` 0.3.5 with no network: kind and state names are
case-insensitive with ``_`` or ``-``, kinds also without separators; created
bounds must carry a time zone; ``limit`` is a non-negative integer). Like the
SDK's iterator it fetches the first page when called and each further page only
when iteration reaches it, newest jobs first.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bauplan.schema import JobKind, JobState

PAGE_SIZE = 100

KIND = "RUN"  # every rehearsal job comes from ``run``


@dataclass(frozen=True)
class User:
    username: str


@dataclass(frozen=True)
class Info:
    user: User


@dataclass(frozen=True)
class RunState:
    job_id: str
    job_status: str | None
    error: str | None = None


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    kind: str
    user: str
    error_message: str | None
    created_at: datetime | None
    finished_at: datetime | None
    started_at: datetime | None = None
    runner: str = "rehearsal"

    @property
    def human_readable_status(self) -> str:
        return self.status.lower()


@dataclass(frozen=True)
class LogEvent:
    level: str
    message: str
    stream: str = "STDOUT"


@dataclass(frozen=True)
class JobContext:
    """``bauplan.schema.JobContext``: a job's ref and project, never its parameters."""

    id: str
    ref: str | None
    project_id: str | None
    project_name: str | None
    error_message: str | None
    logs: list[LogEvent] = field(default_factory=list)
    snapshot_dict: dict[str, str] = field(default_factory=dict)
    tx_ref: str | None = None
    sql_query: str | None = None
    dag_nodes: list[Any] = field(default_factory=list)
    dag_edges: list[Any] = field(default_factory=list)


def _names(enum: type) -> list[str]:
    return [name for name in dir(enum) if name.isupper()]


def _enum_name(value: object, enum: type, what: str, compact: bool) -> str:
    """The member name the SDK would read ``value`` as, or its own ValueError."""
    for name in _names(enum):
        if value is getattr(enum, name) or value == getattr(enum, name):
            return name
    if not isinstance(value, str):
        raise TypeError(f"argument 'filter_by_{what}s': expected str or {enum.__name__}")
    text = value.lower().replace("-", "_")
    for name in _names(enum):
        if text == name.lower() or (compact and text == name.lower().replace("_", "")):
            return name
    raise ValueError(f"invalid job {what}: {value}")


def _many(value: object) -> list[Any] | None:
    if value is None:
        return None
    return list(value) if isinstance(value, list | tuple) else [value]


def _strings(value: object, argument: str) -> tuple[str, ...] | None:
    items = _many(value)
    if items is None:
        return None
    out = []
    for item in items:
        text = getattr(item, "id", item) if argument == "filter_by_ids" else item
        if not isinstance(text, str):
            raise TypeError(f"argument {argument!r}: expected str, list[str]")
        out.append(text)
    return tuple(out)


def _timestamp(value: object, argument: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise TypeError(f"argument {argument!r}: expected a datetime")
    if value.tzinfo is None:
        raise TypeError(f"argument {argument!r}: expected a datetime with non-None tzinfo")
    return value.timestamp()


@dataclass(frozen=True)
class JobQuery:
    """``get_jobs``'s arguments, checked; ``users`` None means everyone's jobs."""

    users: tuple[str, ...] | None
    ids: tuple[str, ...] | None
    kinds: frozenset[str] | None
    statuses: frozenset[str] | None
    after: float | None
    before: float | None
    limit: int | None

    @classmethod
    def parse(cls, arguments: dict[str, Any], current_user: str) -> JobQuery:
        limit = arguments.get("limit")
        if limit is not None:
            if not isinstance(limit, int) or isinstance(limit, bool):
                raise TypeError("argument 'limit': expected an integer")
            if limit < 0:
                raise OverflowError("can't convert negative int to unsigned")
        users = _strings(arguments.get("filter_by_users"), "filter_by_users")
        if users is None and arguments.get("filter_by_current_user", True):
            users = (current_user,)
        kinds = _many(arguments.get("filter_by_kinds"))
        statuses = _many(arguments.get("filter_by_statuses"))
        return cls(
            users=users,
            ids=_strings(arguments.get("filter_by_ids"), "filter_by_ids"),
            kinds=None
            if kinds is None
            else frozenset(_enum_name(k, JobKind, "kind", True) for k in kinds),
            statuses=None
            if statuses is None
            else frozenset(_enum_name(s, JobState, "state", False) for s in statuses),
            after=_timestamp(arguments.get("filter_by_created_after"), "filter_by_created_after"),
            before=_timestamp(
                arguments.get("filter_by_created_before"), "filter_by_created_before"
            ),
            limit=limit,
        )

    def where(self) -> tuple[str, list[Any]]:
        """The filters the ledger can apply itself, as SQL."""
        clauses: list[str] = ["1 = 1"]
        params: list[Any] = []
        for column, values in (("username", self.users), ("job_id", self.ids)):
            if values is not None:
                clauses.append(f"{column} IN ({', '.join('?' * len(values)) or 'NULL'})")
                params.extend(values)
        if self.after is not None:
            clauses.append("submitted_at > ?")
            params.append(self.after)
        if self.before is not None:
            clauses.append("submitted_at < ?")
            params.append(self.before)
        if self.kinds is not None and KIND not in self.kinds:
            clauses.append("0 = 1")
        return " AND ".join(clauses), params


class JobPages:
    """The jobs a ``get_jobs`` call matches, read ``PAGE_SIZE`` rows at a time.

    ``read(sql, params)`` runs a query on the ledger; ``settle(row)`` is the row as
    of now (a due job reads as finished); ``to_job(row)`` builds the SDK look-alike.
    """

    def __init__(
        self,
        read: Callable[[str, tuple[Any, ...]], list[sqlite3.Row]],
        query: JobQuery,
        settle: Callable[[sqlite3.Row], dict[str, Any]],
        to_job: Callable[[dict[str, Any]], Job],
    ) -> None:
        self._read = read
        self._query = query
        self._settle = settle
        self._to_job = to_job
        self._cursor: tuple[float, str] | None = None
        self._done = False
        self._left = query.limit
        self._buffer: list[Job] = []
        self._fetch()  # the SDK asks for the first page when called

    def _fetch(self) -> None:
        where, params = self._query.where()
        if self._cursor is not None:
            where += " AND (submitted_at < ? OR (submitted_at = ? AND job_id < ?))"
            params += [self._cursor[0], self._cursor[0], self._cursor[1]]
        rows = self._read(
            f"SELECT * FROM jobs WHERE {where} "  # noqa: S608 - placeholders only
            "ORDER BY submitted_at DESC, job_id DESC LIMIT ?",
            (*params, PAGE_SIZE),
        )
        if len(rows) < PAGE_SIZE:
            self._done = True
        if rows:
            self._cursor = (rows[-1]["submitted_at"], rows[-1]["job_id"])
        for row in rows:
            settled = self._settle(row)
            if self._query.statuses is None or settled["status"] in self._query.statuses:
                self._buffer.append(self._to_job(settled))

    def __iter__(self) -> Iterator[Job]:
        return self

    def __next__(self) -> Job:
        if self._left is not None and self._left <= 0:
            raise StopIteration
        while not self._buffer and not self._done:
            self._fetch()
        if not self._buffer:
            raise StopIteration
        if self._left is not None:
            self._left -= 1
        return self._buffer.pop(0)


def utc(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def job_error(row: dict[str, Any]) -> str | None:
    return "rehearsal: the job was told to fail" if row["status"] == "FAIL" else None


def job_logs(row: dict[str, Any]) -> list[LogEvent]:
    params = json.loads(row["parameters"])
    lines = [
        LogEvent("INFO", f"rehearsal: would run {row['project_dir']} on {row['ref']}"),
        LogEvent("INFO", f"rehearsal: parameters {json.dumps(params, sort_keys=True)}"),
    ]
    if row["status"] == "FAIL":
        lines.append(LogEvent("ERROR", "rehearsal: the job was told to fail"))
    return lines


def code_version(project_dir: Path) -> str | None:
    """The git commit the project folder is checked out at, when it is a work tree."""
    for folder in (project_dir, *project_dir.parents):
        head = folder / ".git"
        if head.is_file() or head.is_dir():
            result = subprocess.run(
                ["git", "-C", str(project_dir), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                check=False,
            )
            return result.stdout.strip() or None if result.returncode == 0 else None
    return None
