"""An exclusive hold on this process's executor id, for as long as the process lives.

Two live processes with one executor id re-run each other's in-flight steps, and
DBOS begins recovering a launching process's pending workflows about a second
after launch. So ``serve`` takes this hold before ``DBOS.launch()`` and refuses
to start when another process has it: the refused process recovers nothing.

The hold ends with its process however it ends. On PostgreSQL it is a
session-level advisory lock on a connection of its own: the server drops it
when that connection closes (kill -9 included), and server-side TCP keepalives
end it within about a minute when the holder's host vanishes. On SQLite it is
an ``flock`` on a file next to the database, which the kernel drops with the
process. The holder records who it is (host, pid, since) where a refused
process can read it: a ``bt_holds`` row on PostgreSQL, the lock file itself on
SQLite. A record left by a dead holder is overwritten by the next one.

Only a live process can hold it, so the hold is also proof of life: takeover
and ``recover`` leave an executor whose hold is taken alone, however long its
heartbeat has been silent.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from trigger.core import db
from trigger.core.errors import ExecutorHeldError
from trigger.core.settings import Settings
from workflows.store import Store, metadata

log = logging.getLogger(__name__)

holds = sa.Table(
    "bt_holds",
    metadata,
    sa.Column("executor_id", sa.String(200), primary_key=True),
    sa.Column("host", sa.String(300), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("since", sa.Float, nullable=False),
    sa.Column("backend_pid", sa.Integer, nullable=False),
)

# How long a refused process waits for a holder that has just taken the hold to
# write down who it is.
_RECORD_WAIT = 1.0
# The server notices a holder whose host vanished after idle + interval * count s.
_SERVER_KEEPALIVES = {
    "tcp_keepalives_idle": 30,
    "tcp_keepalives_interval": 10,
    "tcp_keepalives_count": 3,
}
_CLIENT_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    since: float

    def describe(self) -> str:
        if not self.pid:
            return "a process that has not recorded who it is yet"
        since = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"pid {self.pid} on host {self.host}, since {since}"


class Hold(Protocol):
    executor_id: str

    def check(self) -> bool:
        """Whether this process still holds its executor id (re-taken if it was lost)."""

    def release(self) -> None: ...


def take(settings: Settings, executor_id: str) -> Hold:
    """Hold ``executor_id`` or raise ExecutorHeldError naming the live holder."""
    if settings.is_postgres:
        return AdvisoryHold.take(settings.database_url(), executor_id)
    return FileHold.take(lock_path(settings, executor_id), executor_id)


def held_by(settings: Settings, engine: sa.Engine, executor_id: str) -> Holder | None:
    """The live process holding ``executor_id``, or None when nobody does. ``engine``
    is on the system database (PostgreSQL only; SQLite holds are files). A holder
    that has not written down who it is yet is reported with pid 0."""
    if settings.is_postgres:
        with engine.connect() as conn:
            return _advisory_holder(conn, executor_id)
    return _file_holder(lock_path(settings, executor_id))


def lock_path(settings: Settings, executor_id: str) -> Path:
    database = Path(sa.make_url(settings.database_url()).database or "dbos.sqlite")
    return database.with_name(f"{database.name}.{executor_id}.lock")


def _me() -> dict[str, str | int | float]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def _refused(executor_id: str, holder: Holder | None) -> ExecutorHeldError:
    return ExecutorHeldError(executor_id, (holder or Holder("?", 0, 0.0)).describe())


class FileHold:
    """``flock`` on ``<database>.<executor id>.lock``; its content says who holds it."""

    def __init__(self, path: Path, executor_id: str, fd: int) -> None:
        self.path = path
        self.executor_id = executor_id
        self._fd: int | None = fd

    @classmethod
    def take(cls, path: Path, executor_id: str) -> FileHold:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if not _try_flock(fd, fcntl.LOCK_EX):
            os.close(fd)
            raise _refused(executor_id, _wait_for_record(lambda: _file_holder(path)))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_me()).encode(), 0)
        return cls(path, executor_id, fd)

    def check(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _try_flock(fd: int, kind: int) -> bool:
    # A probe by ``held_by`` holds a shared lock for a moment: try a few times.
    for attempt in range(3):
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        if attempt < 2:
            time.sleep(0.05)
    return False


def _file_holder(path: Path) -> Holder | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        else:
            return None  # nobody holds it; the content, if any, is a dead holder's
        return _record(os.pread(fd, 4096, 0))
    finally:
        os.close(fd)


def _record(raw: bytes) -> Holder:
    try:
        data = json.loads(raw)
        return Holder(host=str(data["host"]), pid=int(data["pid"]), since=float(data["since"]))
    except (ValueError, KeyError, TypeError):
        return Holder(host="?", pid=0, since=0.0)


def _wait_for_record(read: Callable[[], Holder | None]) -> Holder | None:
    deadline = time.monotonic() + _RECORD_WAIT
    while True:
        holder = read()
        if holder is None or holder.pid or time.monotonic() > deadline:
            return holder
        time.sleep(0.05)


def _lock_key(executor_id: str) -> int:
    """A signed 64-bit advisory lock key, named apart from DBOS's own locks."""
    digest = hashlib.sha256(f"bauplan-trigger.executor.{executor_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _engine(url: str) -> sa.Engine:
    return db.unpooled(url, connect_args=_CLIENT_KEEPALIVES)


class AdvisoryHold:
    """``pg_try_advisory_lock`` on a connection of its own, held until it closes."""

    def __init__(self, engine: sa.Engine, executor_id: str, conn: sa.Connection) -> None:
        self.engine = engine
        self.executor_id = executor_id
        self._conn: sa.Connection | None = conn

    @classmethod
    def take(cls, url: str, executor_id: str) -> AdvisoryHold:
        # The first serve on a new database creates it (and our tables, this one too).
        Store(url, create_database=True).close()
        engine = _engine(url)
        try:
            conn = _lock(engine, executor_id)
        except BaseException:
            engine.dispose()
            raise
        if conn is None:
            holder = _wait_for_record(lambda: _holder_once(engine, executor_id))
            engine.dispose()
            raise _refused(executor_id, holder)
        return cls(engine, executor_id, conn)

    def check(self) -> bool:
        """Called every heartbeat: a lost session (a database restart, a network cut)
        lost the lock with it, so take it again unless someone else did."""
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT 1"))
                return True
            except sa.exc.DBAPIError:
                self._conn.invalidate()
                self._conn = None
        try:
            self._conn = _lock(self.engine, self.executor_id)
        except sa.exc.DBAPIError as exc:
            log.warning("cannot re-take the hold on executor id %s yet: %s", self.executor_id, exc)
            return True  # the database is away for everyone: nobody else can take it
        if self._conn is not None:
            # Routine after any lost connection (an outage, a database restart), like a
            # pool reconnecting; only losing the id to another process is news (an error).
            log.debug(
                "re-took the hold on executor id %s after losing its session", self.executor_id
            )
            return True
        return False

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                self._conn.close()  # a NullPool connection: closing it ends the session
            self._conn = None
        self.engine.dispose()


def _lock(engine: sa.Engine, executor_id: str) -> sa.Connection | None:
    """A session holding the lock and the record of who holds it, or None if taken."""
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        for name, value in _SERVER_KEEPALIVES.items():
            conn.execute(sa.text(f"SET {name} = {int(value)}"))
        # A server-wide idle timeout must not end the session that holds the lock.
        conn.execute(sa.text("SET idle_in_transaction_session_timeout = 0"))
        if conn.dialect.server_version_info and conn.dialect.server_version_info >= (14,):
            conn.execute(sa.text("SET idle_session_timeout = 0"))
        got = conn.execute(
            sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": _lock_key(executor_id)}
        ).scalar()
        if not got:
            conn.close()
            return None
        record = {**_me(), "backend_pid": conn.execute(sa.text("SELECT pg_backend_pid()")).scalar()}
        upsert = postgresql.insert(holds).values(executor_id=executor_id, **record)
        conn.execute(
            upsert.on_conflict_do_update(index_elements=[holds.c.executor_id], set_=record)
        )
        return conn
    except BaseException:
        conn.close()
        raise


def _holder_once(engine: sa.Engine, executor_id: str) -> Holder | None:
    with engine.connect() as conn:
        return _advisory_holder(conn, executor_id)


def _advisory_holder(conn: sa.Connection, executor_id: str) -> Holder | None:
    """Read from ``pg_locks``, which only lists live sessions; the record is trusted
    only when it was written by the session that holds the lock."""
    key = _lock_key(executor_id) & 0xFFFFFFFFFFFFFFFF
    row = conn.execute(
        sa.text(
            "SELECT l.pid AS backend_pid, h.host, h.pid, h.since FROM pg_locks l "
            "LEFT JOIN bt_holds h ON h.executor_id = :executor AND h.backend_pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
            "AND l.classid::bigint = :high AND l.objid::bigint = :low "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"executor": executor_id, "high": key >> 32, "low": key & 0xFFFFFFFF},
    ).first()
    if row is None:
        return None
    if row.pid is None:
        return Holder(host="?", pid=0, since=0.0)
    return Holder(host=row.host, pid=int(row.pid), since=float(row.since))
