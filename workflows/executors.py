"""Heartbeats, and taking over the runs of a worker that died and stays dead.

DBOS recovers a workflow only in a process that launches with the executor id
that started it. A worker that dies for good would strand its in-flight runs
(and, because they still count as running, block their branches). Every
launched process therefore writes a heartbeat row; a run is moved to another
worker only when its executor's heartbeat is stale, by ``bauplan-trigger
recover EXECUTOR_ID`` or, with ``[queue] takeover_after_seconds`` set,
automatically by a surviving worker.

Taking over means ``resume_workflow(id, queue_name=<its own queue>)``: the run
goes back on its queue with its partition key, so the per-branch limits still
apply, and whichever worker dequeues it continues from its last checkpoint (a
re-executed submit reconciles with Bauplan instead of submitting again).

Only one survivor takes over a given silence of an executor: the claim is a
conditional update of its heartbeat row. A silent executor whose hold
(``workflows.hold``) is still taken is alive, only stalled, and is never taken
over, by a survivor or by ``recover``, ``--force`` or not. What remains unknowable
is a process whose host vanished: its hold ends when the database notices (about
a minute), and if it then wakes up mid-step, that step runs twice. Pick a margin
far above any pause you expect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa
from dbos import DBOSClient

from trigger.core import db
from trigger.core.errors import TriggerError
from trigger.core.settings import Settings
from workflows.hold import Hold, held_by
from workflows.queue import resume_queue
from workflows.store import Store, metadata

log = logging.getLogger(__name__)

heartbeats = sa.Table(
    "bt_heartbeats",
    metadata,
    sa.Column("executor_id", sa.String(200), primary_key=True),
    sa.Column("beat_at", sa.Float, nullable=False),
    sa.Column("taken_over_by", sa.String(200), nullable=True),
    sa.Column("taken_over_at", sa.Float, nullable=True),
)

# Without automatic takeover, how recent a heartbeat must be for ``recover`` to
# refuse (the executor looks alive).
ALIVE_WITHIN = 30.0


def beat_interval(settings: Settings) -> float:
    after = settings.queue.takeover_after_seconds
    return 5.0 if after is None else max(0.2, min(5.0, after / 4))


def alive_within(settings: Settings) -> float:
    return settings.queue.takeover_after_seconds or ALIVE_WITHIN


def beat(engine: sa.Engine, executor_id: str, now: float | None = None) -> None:
    now = time.time() if now is None else now
    with engine.begin() as conn:
        db.put_row(
            conn,
            heartbeats,
            {"executor_id": executor_id},
            {"beat_at": now, "taken_over_by": None, "taken_over_at": None},
        )


def last_beat(engine: sa.Engine, executor_id: str) -> float | None:
    with engine.connect() as conn:
        value = conn.execute(
            sa.select(heartbeats.c.beat_at).where(heartbeats.c.executor_id == executor_id)
        ).scalar()
    return None if value is None else float(value)


def claim(engine: sa.Engine, executor_id: str, by: str, stale_before: float) -> bool:
    """Win the right to take over ``executor_id``'s runs; one winner per silence."""
    with engine.begin() as conn:
        won = conn.execute(
            sa.update(heartbeats)
            .where(heartbeats.c.executor_id == executor_id)
            .where(heartbeats.c.beat_at < stale_before)
            .where(heartbeats.c.taken_over_by.is_(None))
            .values(taken_over_by=by, taken_over_at=time.time())
        ).rowcount
    return bool(won)


def stale_executors(engine: sa.Engine, stale_before: float) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(heartbeats.c.executor_id)
            .where(heartbeats.c.beat_at < stale_before)
            .where(heartbeats.c.taken_over_by.is_(None))
        )
        return [r.executor_id for r in rows]


def resume_runs(client: DBOSClient, settings: Settings, executor_id: str) -> list[str]:
    """Put the executor's in-flight workflows back on their own queues."""
    rows = client.list_workflows(
        executor_id=executor_id, status="PENDING", load_input=False, load_output=False
    )
    taken: list[str] = []
    for row in rows:
        client.resume_workflow(row.workflow_id, queue_name=resume_queue(settings, row))
        taken.append(row.workflow_id)
        log.info(
            "took over run %s from executor %s (queue=%s branch=%s)",
            row.workflow_id,
            executor_id,
            row.queue_name,
            row.queue_partition_key,
        )
    return taken


def recover_executor(
    settings: Settings, executor_id: str, *, force: bool = False, by: str = "cli"
) -> list[str]:
    """``bauplan-trigger recover``: refuse a live executor (its hold is taken) always,
    and one whose heartbeat is recent unless forced."""
    store = Store(settings.database_url(), create_database=True)
    try:
        holder = held_by(settings, store.engine, executor_id)
        if holder is not None:
            raise TriggerError(
                f"executor {executor_id!r} is alive: its executor id is held by "
                f"{holder.describe()}, so taking over its runs would run their steps twice; "
                "stop that process first (--force does not override a live hold)"
            )
        window = alive_within(settings)
        seen = last_beat(store.engine, executor_id)
        if seen is not None and not force and seen > time.time() - window:
            raise TriggerError(
                f"executor {executor_id!r} sent a heartbeat {time.time() - seen:.0f}s ago "
                f"(within {window:g}s), so it looks alive; taking over its runs would run "
                "their steps twice. Stop that process first, or pass --force if you know "
                "it is dead"
            )
        if seen is not None:
            claim(
                store.engine, executor_id, by, stale_before=time.time() + (1 if force else -window)
            )
        client = DBOSClient(system_database_url=settings.database_url())
        try:
            return resume_runs(client, settings, executor_id)
        finally:
            client.destroy()
    finally:
        store.close()


class Heartbeat:
    """A daemon thread: beat every interval; optionally take over silent executors."""

    def __init__(
        self,
        settings: Settings,
        engine: sa.Engine,
        executor_id: str,
        *,
        hold: Hold | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.executor_id = executor_id
        self.hold = hold
        self.on_lost = on_lost
        self.interval = beat_interval(settings)
        self._spared: set[str] = set()
        self._lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bt-heartbeat", daemon=True)
        self._client: DBOSClient | None = None

    def start(self) -> None:
        beat(self.engine, self.executor_id)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout=10)
        if self._client is not None:
            self._client.destroy()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check_hold()
                beat(self.engine, self.executor_id)
                if self.settings.queue.takeover_after_seconds is not None:
                    self.take_over()
            except Exception as exc:  # a missed beat must not kill the worker
                log.warning("heartbeat of %s failed: %s", self.executor_id, exc)

    def check_hold(self) -> None:
        if self.hold is None or self._lost or self.hold.check():
            return
        self._lost = True
        holder = held_by(self.settings, self.engine, self.executor_id)
        log.error(
            "another process (%s) took executor id %s while this one ran; stopping, so that "
            "its runs do not run twice",
            holder.describe() if holder else "gone again",
            self.executor_id,
        )
        if self.on_lost is not None:
            self.on_lost()

    def take_over(self) -> list[str]:
        after = self.settings.queue.takeover_after_seconds
        if after is None:
            return []
        stale_before = time.time() - after
        taken: list[str] = []
        stale = stale_executors(self.engine, stale_before)
        self._spared &= set(stale)
        for other in stale:
            if other == self.executor_id or self._alive(other, after):
                continue
            if not claim(self.engine, other, self.executor_id, stale_before):
                continue
            if self._client is None:
                self._client = DBOSClient(system_database_url=self.settings.database_url())
            runs = resume_runs(self._client, self.settings, other)
            log.warning(
                "executor %s silent for over %gs: took over %d run(s)", other, after, len(runs)
            )
            taken += runs
        return taken

    def _alive(self, other: str, after: float) -> bool:
        """A silent executor that still holds its id is stalled, not dead: say so once."""
        holder = held_by(self.settings, self.engine, other)
        if holder is None:
            return False
        if other not in self._spared:
            self._spared.add(other)
            log.warning(
                "executor %s silent for over %gs but alive (its id is held by %s): "
                "not taking over its runs",
                other,
                after,
                holder.describe(),
            )
        return True
