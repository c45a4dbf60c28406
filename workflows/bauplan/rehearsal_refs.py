"""Rehearsal mode's branches and merges: enough of Bauplan's catalog to publish a run.

A branch's head is a hash that moves when something lands on it: the branch's
creation, a job that finished on it (the commit the run produced), a merge into it.
``main`` always exists. Merges are recorded in the ledger's ``merges`` table with
their message and properties, which is how a test (or ``bauplan-trigger rehearsal
merges``) counts publishes; ``get_commits`` reads them back, filtered by properties
as the SDK filters, so a repeated publish finds the merge it made.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from workflows.bauplan.faults import sdk_error
from workflows.bauplan.jobs import utc

MAIN = "main"

SCHEMA = """
CREATE TABLE IF NOT EXISTS merges (
    hash TEXT PRIMARY KEY,
    source_ref TEXT NOT NULL,
    source_hash TEXT NOT NULL,
    into_branch TEXT NOT NULL,
    parent_hash TEXT NOT NULL,
    message TEXT,
    body TEXT,
    properties TEXT NOT NULL,
    username TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


class _Ledger(Protocol):
    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...
    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...


@dataclass(frozen=True)
class Branch:
    """What ``bauplan.schema.Branch`` tells: its name and head hash."""

    name: str
    hash: str
    type: str = "BRANCH"


@dataclass(frozen=True)
class Ref:
    name: str
    hash: str


@dataclass(frozen=True)
class Commit:
    """The fields of ``bauplan.schema.Commit`` that a merge fills in."""

    ref: Ref
    message: str | None
    body: str | None
    properties: dict[str, str] = field(default_factory=dict)
    authored_date: datetime | None = None


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def head(ledger: _Ledger, branch: str, settled_jobs: list[dict[str, Any]]) -> str | None:
    """The branch's head hash, or None when there is no such branch. ``settled_jobs``:
    the jobs on that ref as they stand now (the ledger's ``_settled`` rows)."""
    moments: list[tuple[float, str]] = []
    if branch == MAIN:
        moments.append((0.0, _digest("genesis")))
    else:
        rows = ledger.query("SELECT from_ref, created_at FROM branches WHERE name = ?", (branch,))
        if not rows:
            return None
        moments.append((float(rows[0]["created_at"]), _digest(branch, rows[0]["from_ref"])))
    for job in settled_jobs:
        if job["status"] == "COMPLETE" and job["finished_at"] is not None:
            moments.append((float(job["finished_at"]), _digest("job", job["job_id"])))
    for row in ledger.query("SELECT hash, created_at FROM merges WHERE into_branch = ?", (branch,)):
        moments.append((float(row["created_at"]), str(row["hash"])))
    return max(moments)[1]


def get_branch(ledger: _Ledger, branch: str, jobs: list[dict[str, Any]]) -> Branch:
    found = head(ledger, branch, jobs)
    if found is None:
        raise sdk_error("BranchNotFoundError", f"branch {branch} not found")
    return Branch(branch, found)


def merge(
    ledger: _Ledger,
    username: str,
    arguments: dict[str, Any],
    heads: dict[str, str | None],
    now: float,
) -> Branch:
    """Record ``source_ref`` merged into ``into_branch``; ``heads``: the current head of
    the source branch and of the target."""
    source, into = name_of(arguments["source_ref"]), name_of(arguments["into_branch"], at=False)
    name, _, at = source.partition("@")
    if heads[name] is None:
        raise sdk_error("RefNotFoundError", f"ref {source} not found")
    if at and at != heads[name]:
        raise sdk_error("RefNotFoundError", f"ref {source} not found on branch {name}")
    parent = heads[into]
    if parent is None:
        raise sdk_error("BranchNotFoundError", f"branch {into} not found")
    properties = {str(k): str(v) for k, v in (arguments.get("commit_properties") or {}).items()}
    message, body = arguments.get("commit_message"), arguments.get("commit_body")
    made = _digest(source, parent, message, properties, now)
    ledger.execute(
        "INSERT INTO merges (hash, source_ref, source_hash, into_branch, parent_hash, message, "
        "body, properties, username, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            made,
            source,
            heads[name],
            into,
            parent,
            message,
            body,
            json.dumps(properties, sort_keys=True),
            username,
            now,
        ),
    )
    return Branch(into, made)


def commits(ledger: _Ledger, arguments: dict[str, Any]) -> list[Commit]:
    """The merges into ``ref``, newest first, with every ``filter_by_properties`` pair."""
    ref = name_of(arguments["ref"], at=False)
    wanted = arguments.get("filter_by_properties") or {}
    limit = arguments.get("limit")
    found = []
    for row in ledger.query(
        "SELECT * FROM merges WHERE into_branch = ? ORDER BY created_at DESC", (ref,)
    ):
        properties = json.loads(row["properties"])
        if all(properties.get(k) == str(v) for k, v in wanted.items()):
            found.append(
                Commit(
                    ref=Ref(ref, row["hash"]),
                    message=row["message"],
                    body=row["body"],
                    properties=properties,
                    authored_date=utc(row["created_at"]),
                )
            )
        if limit is not None and len(found) >= int(limit):
            break
    return found


def delete_branch(ledger: _Ledger, arguments: dict[str, Any]) -> bool:
    branch = name_of(arguments["branch"], at=False)
    if branch == MAIN:
        raise sdk_error("ForbiddenError", "main cannot be deleted")
    deleted = ledger.execute("DELETE FROM branches WHERE name = ? RETURNING name", (branch,))
    if not deleted and not arguments.get("if_exists"):
        raise sdk_error("BranchNotFoundError", f"branch {branch} not found")
    return bool(deleted)


def merges(ledger: _Ledger) -> list[dict[str, Any]]:
    """Every recorded merge, oldest first, as ``rehearsal merges --json`` prints it."""
    rows = ledger.query("SELECT * FROM merges ORDER BY created_at")
    return [
        {
            "hash": row["hash"],
            "source_ref": row["source_ref"],
            "source_hash": row["source_hash"],
            "into_branch": row["into_branch"],
            "parent_hash": row["parent_hash"],
            "message": row["message"],
            "body": row["body"],
            "properties": json.loads(row["properties"]),
            "username": row["username"],
            "merged_at": datetime.fromtimestamp(row["created_at"], UTC).isoformat(),
        }
        for row in rows
    ]


def name_of(value: object, *, at: bool = True) -> str:
    """A ref or branch given as a string or as an SDK object (``name`` and ``hash``);
    ``at``: keep the object's hash, as ``name@hash``."""
    if isinstance(value, str):
        return value
    name, hashed = getattr(value, "name", None), getattr(value, "hash", None)
    return f"{name}@{hashed}" if at and hashed else str(name)
