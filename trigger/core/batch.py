"""Group commit: the items many callers hand over, written by one thread, a group per
transaction.

Each caller waits for its own item; while one transaction commits, the items that
arrive meanwhile gather and go into the next one, so a busy service pays one commit
for many items and a quiet one pays no extra delay (a lone item is written at once).

A caller that stops waiting (its sender wants an answer in time) abandons its item;
an abandoned item is never committed. The writer checks for abandoned items just
before it commits: if there are any, it rolls the group back and writes it again
without them. From that check on, the item can no longer be abandoned and its caller
waits for the commit's outcome, so "gave up" always means "left nothing behind".
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Generic, TypeVar

import sqlalchemy as sa

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BATCH_MAX = 256
_IDLE_SECONDS = 5.0

# What a group's write gives back per item: its result, or the error that item alone met
# (the write rolled back that item's part of the transaction, the others go on).
Write = Callable[[sa.Connection, Sequence[T]], Sequence["R | BaseException"]]


class Abandoned(TimeoutError):
    """The caller stopped waiting before its item was committed: nothing was written."""


class Ticket(Generic[T, R]):
    """One submitted item and the wait for its outcome."""

    def __init__(self, item: T, lock: threading.Lock) -> None:
        self.item = item
        self.future: Future[R] = Future()
        self._lock = lock  # the writer's: it seals a whole group under it at once
        self._state = "waiting"  # -> "abandoned" (by the caller) or "committing" (writer)

    def abandon(self) -> bool:
        """Give up on the item; False when the writer is already committing it."""
        with self._lock:
            if self._state == "waiting":
                self._state = "abandoned"
            return self._state == "abandoned"

    def result(self, timeout: float | None = None) -> R:
        """The outcome; after ``timeout`` seconds :class:`Abandoned` unless the commit has
        begun, in which case its outcome is awaited (it is in the database or not)."""
        try:
            return self.future.result(timeout)
        except FutureTimeout:
            if self.abandon():
                raise Abandoned(f"not written within {timeout:g}s") from None
            return self.future.result()

    async def wait(self, timeout: float | None = None) -> R:
        """:meth:`result` for a coroutine: the event loop serves others meanwhile."""
        waited = asyncio.wrap_future(self.future)
        try:
            return await asyncio.wait_for(asyncio.shield(waited), timeout)
        except TimeoutError:
            if self.abandon():
                raise Abandoned(f"not written within {timeout:g}s") from None
            return await waited


class GroupCommit(Generic[T, R]):
    """A thread that writes submitted items with ``write``, a group per transaction.

    Up to ``threads`` writer threads (each with its own connection) take groups from
    one queue; they start on demand and stop after a few idle seconds, so an engine
    nobody writes to holds no thread. A group whose ``write`` fails is written again
    with ``careful`` when given (meant to fail only the items at fault), and once on a
    fresh connection when the server dropped the pooled one. ``after_write`` runs once
    per committed
    group (housekeeping; its failures are logged and never stop the writer).
    """

    def __init__(
        self,
        engine: sa.Engine,
        write: Write[T, R],
        *,
        name: str,
        careful: Write[T, R] | None = None,
        after_write: Callable[[Sequence[T], Sequence[R | BaseException]], None] | None = None,
        batch_max: int = BATCH_MAX,
        threads: int = 1,
    ) -> None:
        self.engine = engine
        self.write = write
        self.careful = careful
        self.name = name
        self.after_write = after_write
        self.batch_max = batch_max
        self.threads = threads
        self._queue: queue.SimpleQueue[Ticket[T, R]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._sealing = threading.Lock()
        self._alive = 0

    def submit(self, item: T) -> Ticket[T, R]:
        ticket: Ticket[T, R] = Ticket(item, self._sealing)
        with self._lock:
            self._queue.put(ticket)
            if self._alive < self.threads:
                self._alive += 1
                threading.Thread(target=self._run, name=self.name, daemon=True).start()
        return ticket

    def _take(self) -> list[Ticket[T, R]] | None:
        try:
            first = self._queue.get(timeout=_IDLE_SECONDS)
        except queue.Empty:
            with self._lock:
                if self._queue.empty():
                    self._alive -= 1
                    return None
            return []
        group = [first]
        while len(group) < self.batch_max:
            try:
                group.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return group

    def _run(self) -> None:
        while (group := self._take()) is not None:
            if group:
                self._commit(group)

    def _commit(self, group: list[Ticket[T, R]]) -> None:
        conflicts, reconnected, write = 0, False, self.write
        while group := [t for t in group if not t.future.done() and t._state != "abandoned"]:
            try:
                outcomes = self._transaction(group, write)
            except _Regroup:
                continue  # someone gave up meanwhile: the same group again without them
            except Exception as exc:
                if _conflict(exc) and conflicts < _CONFLICT_RETRIES:
                    conflicts += 1  # another writer's group took the same rows first
                    continue
                if _lost(exc) and not reconnected:
                    reconnected = True  # a pooled connection the server dropped: a fresh one
                    continue
                if self.careful is not None and write is not self.careful and not _lost(exc):
                    write = self.careful  # again, so that what failed fails alone
                    continue
                # every waiter learns, none is left hanging
                for ticket in group:
                    ticket.future.set_exception(exc)
                return
            for ticket, outcome in zip(group, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    ticket.future.set_exception(outcome)
                else:
                    ticket.future.set_result(outcome)
            if self.after_write is not None:
                try:
                    self.after_write([t.item for t in group], outcomes)
                except Exception as exc:  # housekeeping must never stop the writer
                    log.warning("%s housekeeping failed: %s", self.name, type(exc).__name__)
            return

    def _transaction(
        self, group: list[Ticket[T, R]], write: Write[T, R]
    ) -> Sequence[R | BaseException]:
        with self.engine.begin() as conn:
            outcomes = write(conn, [t.item for t in group])
            if len(outcomes) != len(group):
                raise RuntimeError(f"{self.name} wrote {len(outcomes)} of {len(group)} items")
            with self._sealing:
                if any(t._state == "abandoned" for t in group):
                    raise _Regroup  # rolled back by the ``with``: the rest is written again
                for ticket in group:
                    ticket._state = "committing"
        return outcomes


class _Regroup(Exception):
    pass


# PostgreSQL's deadlock and serialization failures: two writers' groups met on the same
# rows (a burst of redeliveries in another order); written again, the later one finds
# the earlier one's rows.
_CONFLICT_STATES = ("40P01", "40001")
_CONFLICT_RETRIES = 3


def _conflict(exc: Exception) -> bool:
    return isinstance(exc, sa.exc.OperationalError) and (
        getattr(exc.orig, "sqlstate", None) in _CONFLICT_STATES
    )


def _lost(exc: Exception) -> bool:
    return isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
