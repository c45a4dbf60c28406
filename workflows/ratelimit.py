"""The per-branch rate limit: a durable gate in the run, not a queue limiter.

A DBOS ``partition_limiter`` would push every poll of every worker onto DBOS's
per-partition dequeue (one transaction per waiting branch). Instead a run that has
its branch records its start in the branch's window right before it submits: one
short transaction, serialised per window (``SELECT … FOR UPDATE`` on the window's
row on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite). When the window is full nothing
is recorded: the run learns the earliest time a start fits and sleeps durably until
then, keeping its branch (with one run per branch, nothing else could start there),
and tries again.

A start is recorded unconfirmed, and confirmed once its job is submitted with the
time the submit returned, so the window holds no start earlier than Bauplan saw it
and no two starts of one branch are closer than the limit allows, as the rehearsal
ledger's own timestamps show. While another run's start is unconfirmed (its submit in
flight, with per-branch concurrency above one) a run looks again a moment later
instead of counting that start too early. A run recording again (resumed
after a crash between recording and submitting) drops its own unconfirmed start
first, so a crash neither leaks a start nor counts one twice; a cancelled or
superseded run gives an unconfirmed start back (``release``), and any start leaves
the window once it is a period old.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from trigger.core import db
from trigger.core.settings.flow import BranchLimit
from workflows.store import starts, windows

# A start recorded but not confirmed for longer than this is taken at its recorded time
# (its run crashed while submitting); younger ones make others look again shortly.
IN_FLIGHT_SECONDS = 30.0
IN_FLIGHT_RETRY = 0.25


@dataclass(frozen=True)
class Slot:
    """A start: recorded ``at`` now, or (``at`` later) the earliest time one fits;
    ``count`` starts were in the window besides."""

    at: float
    count: int
    limit: BranchLimit

    def wait_seconds(self, now: float | None = None) -> float:
        return max(0.0, self.at - (time.time() if now is None else now))

    def as_dict(self) -> dict[str, float | int]:
        return {
            "until": self.at,
            "starts": self.count,
            "period_seconds": self.limit.period_seconds,
            "limit": self.limit.runs,
        }


def describe(slot: dict[str, Any]) -> str:
    """``rate-limited until T (k starts in the last P s, limit L)`` for a slot's dict
    (as a run records it in its ``rate_limited`` attribute)."""
    until = datetime.fromtimestamp(float(slot["until"]), UTC).isoformat(timespec="seconds")
    return (
        f"rate-limited until {until} ({slot['starts']} starts in the last "
        f"{float(slot['period_seconds']):g}s, limit {slot['limit']})"
    )


def earliest(times: Iterable[float], limit: BranchLimit, now: float) -> float:
    """The earliest time ≥ ``now`` a start fits beside ``times`` (the window's starts,
    all later than ``now - period`` and none later than ``now``): when fewer than
    ``limit.runs`` of them remain within one period of it."""
    ordered = sorted(times)
    if len(ordered) < limit.runs:
        return now
    # A millisecond past the moment: ``t + period - period`` may round to just below ``t``.
    return max(now, ordered[len(ordered) - limit.runs] + limit.period_seconds + 0.001)


class Windows:
    """The rate windows on the system database, through an engine of their own."""

    def __init__(self, url: str) -> None:
        self._postgres = not db.is_sqlite(url)
        # Every run of a worker passes through here, each transaction in milliseconds.
        self.engine = db.locking(url)

    def close(self) -> None:
        self.engine.dispose()

    def reserve(self, window: str, run_id: str, limit: BranchLimit, *, record: bool = True) -> Slot:
        """Record ``run_id``'s start in ``window`` now if it fits (``record=False``: only
        look), else say when it will; its own earlier unconfirmed start is dropped
        first. A run that already submitted keeps its confirmed start."""
        with self.engine.begin() as conn:
            self._lock(conn, window)
            now = time.time()
            conn.execute(
                sa.delete(starts).where(
                    sa.or_(
                        sa.and_(starts.c.run_id == run_id, ~starts.c.confirmed),
                        sa.and_(
                            starts.c.window == window,
                            starts.c.at <= now - limit.period_seconds,
                        ),
                    )
                )
            )
            rows = conn.execute(
                sa.select(starts.c.run_id, starts.c.at, starts.c.confirmed).where(
                    starts.c.window == window
                )
            ).all()
            mine = [r for r in rows if r.run_id == run_id]
            if mine:
                return Slot(mine[0].at, len(rows) - 1, limit)
            at = earliest([r.at for r in rows], limit, now)
            if any(not r.confirmed and now - r.at < IN_FLIGHT_SECONDS for r in rows):
                # Another run's submit is in flight: its start is not known to the second
                # yet. Look again in a moment rather than count it too early.
                at = max(at, now + IN_FLIGHT_RETRY)
            if at <= now and record:
                conn.execute(
                    sa.insert(starts).values(run_id=run_id, window=window, at=now, confirmed=False)
                )
            return Slot(at, len(rows), limit)

    def confirm(self, run_id: str) -> None:
        """The job was submitted: the start is now, if that is later than reserved."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(starts)
                .where(starts.c.run_id == run_id)
                .values(at=self._later(starts.c.at, time.time()), confirmed=True)
            )

    def _later(self, column: Any, value: float) -> Any:
        return (sa.func.greatest if self._postgres else sa.func.max)(column, value)

    def release(self, run_ids: list[str]) -> None:
        """Give back the unconfirmed reservations of runs that will not submit."""
        if not run_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(sa.delete(starts).where(starts.c.run_id.in_(run_ids), ~starts.c.confirmed))

    def _lock(self, conn: sa.Connection, window: str) -> None:
        if not self._postgres:
            return  # BEGIN IMMEDIATE already holds SQLite's one write lock
        conn.execute(postgresql.insert(windows).values(window=window).on_conflict_do_nothing())
        conn.execute(
            sa.select(windows.c.window).where(windows.c.window == window).with_for_update()
        )
