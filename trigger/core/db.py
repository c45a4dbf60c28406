"""The one way our code opens SQLAlchemy engines on the system database.

Two kinds: ``engine`` for a long-lived part that reads and writes often (the
submission store, the event log, the HTTP app), pooled, and ``unpooled`` for a
short look or a connection that must stay its own (a readiness check, the
executor hold), which opens a connection per use and keeps none.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

# SQLite: wait this long for another writer's lock instead of failing at once
# ("database is locked"); a burst of ingests and a worker share one file.
SQLITE_BUSY_TIMEOUT = 30
# PostgreSQL: the connections a pooled engine keeps open.
POOL_SIZE = 5
# PostgreSQL: the group-commit writer threads of one ingest writer, a connection each.
# One is fastest on a small machine, where the writer's CPU, not the database's round
# trips, sets the pace: more threads make smaller groups and fight over the GIL
# (bench/ingest.py, 2 cores: 590 acks/s with one, 536 with two; 395 with four, busier).
WRITER_THREADS = 1


def is_sqlite(url: str | sa.URL) -> bool:
    return str(url).startswith("sqlite")


def engine(url: str | sa.URL) -> sa.Engine:
    """A pooled engine: connections checked before use (a restarted server or a
    dropped connection costs a reconnect, not an error), SQLite's busy timeout."""
    if is_sqlite(url):
        return sa.create_engine(
            url, pool_pre_ping=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT}
        )
    return sa.create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE)


def writer(url: str | sa.URL, threads: int = 1) -> sa.Engine:
    """An engine for the writer threads that commit groups (``trigger.core.batch``).
    On SQLite (see :func:`use_wal`): savepoints that work under pysqlite, and each
    transaction taking the write lock at ``BEGIN`` (IMMEDIATE), so a transaction that
    reads before it writes never fails on a snapshot another writer moved on from; it
    waits, up to the busy timeout."""
    if not is_sqlite(url):
        # No ping before each use: it would cost every group a round trip. A connection
        # the server dropped fails its group, which is written again on a fresh one.
        return sa.create_engine(
            url,
            pool_size=threads,
            connect_args={"connect_timeout": 10},
        )
    made = engine(url)

    @sa.event.listens_for(made, "connect")
    def _driver_leaves_transactions_to_us(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @sa.event.listens_for(made, "begin")
    def _begin_immediate(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return made


def locking(url: str | sa.URL, connections: int = 2) -> sa.Engine:
    """An engine for short transactions that serialise on a lock (the rate windows).
    SQLite: the :func:`writer`'s (``BEGIN IMMEDIATE`` takes the lock). PostgreSQL: at
    most ``connections``, checked before use (a restarted server costs a reconnect,
    not a failed run); every worker's connections count against max_connections."""
    if is_sqlite(url):
        return writer(url)
    return sa.create_engine(
        url,
        pool_size=connections,
        max_overflow=0,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10},
    )


def use_wal(url: str | sa.URL) -> None:
    """Put a SQLite system database in write-ahead-log mode: readers (the worker, the
    page) and the ingest writer no longer block each other, and a commit appends instead
    of rewriting pages. Kept in the file, so every process on it uses it; commits still
    sync (``synchronous`` stays FULL). Called before anything in this process opens the
    file (the switch needs it to itself); if another process holds it, it waits for the
    busy timeout and then carries on in the mode the file has."""
    if not is_sqlite(url):
        return
    path = sa.make_url(url).database
    if not path or path == ":memory:":
        return
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as exc:
        log.warning("the SQLite system database stays in its journal mode: %s", exc)


def unpooled(url: str | sa.URL, **options: Any) -> sa.Engine:
    """An engine that keeps no connection open between uses; ``options`` go to
    ``create_engine`` as they are (``connect_args``, ``isolation_level``, ``creator``)."""
    return sa.create_engine(url, poolclass=NullPool, **options)


def put_row(
    conn: sa.Connection, table: sa.Table, key: Mapping[str, Any], values: Mapping[str, Any]
) -> None:
    """Make the row of ``table`` with primary key ``key`` hold ``values``: update it, or
    insert it when there is none yet. Portable (SQLite and PostgreSQL alike); two first
    writes of one key at once fail the second on the key, as a heartbeat can afford."""
    where = [table.c[name] == value for name, value in key.items()]
    if not conn.execute(sa.update(table).where(*where).values(**values)).rowcount:
        conn.execute(sa.insert(table).values(**key, **values))
