"""The event log's tables and its writer, which commits entries in groups.

A webhook is answered only after its event is in the log, so the write sits on the
ack path. One transaction per event would make every ack wait for its own commit;
the :class:`GroupWriter` instead writes every entry that arrived while the previous
transaction was committing in one transaction (three statements, one commit). A
lone entry is written at once, so a quiet service sees no extra delay.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

KEY_MAX = 300
# ``seq`` is an sa.Integer: 32 bits on PostgreSQL, so no seq (and no paging bound) is larger.
SEQ_MAX = 2**31 - 1
_BATCH_MAX = 256
_IDLE_SECONDS = 5.0

metadata = sa.MetaData()

events_table = sa.Table(
    "bt_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("event_id", sa.String(300), nullable=True),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("source_addr", sa.String(100), nullable=True),
    sa.Column("attributes", sa.Text, nullable=False, default="{}"),
)

decisions_table = sa.Table(
    "bt_event_decisions",
    metadata,
    sa.Column("event_seq", sa.Integer, nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("trigger", sa.String(100), nullable=False),
    sa.Column("matched", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("run_id", sa.String(300), nullable=True, index=True),
)

keys_table = sa.Table(
    "bt_event_keys",
    metadata,
    sa.Column("event_seq", sa.Integer, nullable=False, index=True),
    sa.Column("value", sa.String(KEY_MAX), nullable=False, index=True),
)

# Liveness of long-running sources (a folder watcher's last scan), read by /metrics.
heartbeats_table = sa.Table(
    "bt_source_heartbeats",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class DecisionRecord:
    """One trigger's verdict on one event, as the log keeps it."""

    trigger: str
    matched: bool
    reason: str | None = None
    run_id: str | None = None


@dataclass
class Entry:
    """One event row with its verdicts and lookup keys, ready to insert.

    ``duplicate_of`` names an earlier event whose first acceptance the reason should
    date; the writer looks it up in the same transaction, off the caller's thread.
    """

    source: str
    event_id: str | None
    outcome: str
    reason: str | None
    source_addr: str | None
    attributes: dict[str, Any]
    received_at: float
    verdicts: list[DecisionRecord] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    duplicate_of: str | None = None
    # The caller logs its own line for this event (a webhook's one delivery line).
    quiet: bool = False

    def row(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "event_id": self.event_id,
            "received_at": self.received_at,
            "outcome": self.outcome,
            "reason": self.reason,
            "source_addr": (self.source_addr or None) and self.source_addr[:100],
            "attributes": json.dumps(self.attributes, sort_keys=True, default=str),
        }


def first_accepted(conn: sa.Connection, event_id: str) -> float | None:
    """When the event with this id was first accepted, if the log still has it."""
    seqs = sa.select(keys_table.c.event_seq).where(keys_table.c.value == event_id[:KEY_MAX])
    found = conn.execute(
        sa.select(events_table.c.received_at)
        .where(events_table.c.seq.in_(seqs), events_table.c.outcome == "accepted")
        .order_by(events_table.c.seq)
        .limit(1)
    ).first()
    return None if found is None else float(found[0])


def write_batch(conn: sa.Connection, entries: Sequence[Entry]) -> list[int]:
    """Insert ``entries`` in this transaction; their new ``seq`` values, in order."""
    for entry in entries:
        if entry.duplicate_of is not None:
            when = first_accepted(conn, entry.duplicate_of)
            if when is not None:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))
                entry.reason = f"duplicate of event {entry.duplicate_of} first received {stamp} UTC"
    inserted = conn.execute(
        sa.insert(events_table).returning(events_table.c.seq, sort_by_parameter_order=True),
        [entry.row() for entry in entries],
    )
    seqs = [int(row[0]) for row in inserted]
    if len(seqs) != len(entries):
        raise RuntimeError("the event log insert returned fewer keys than rows")
    decisions = [
        {
            "event_seq": seq,
            "position": i,
            "trigger": d.trigger,
            "matched": d.matched,
            "reason": d.reason,
            "run_id": d.run_id,
        }
        for seq, entry in zip(seqs, entries, strict=True)
        for i, d in enumerate(entry.verdicts)
    ]
    if decisions:
        conn.execute(sa.insert(decisions_table), decisions)
    keys = [
        {"event_seq": seq, "value": value}
        for seq, entry in zip(seqs, entries, strict=True)
        for value in entry.keys
    ]
    if keys:
        conn.execute(sa.insert(keys_table), keys)
    return seqs


class GroupWriter:
    """A thread that writes submitted entries, a group per transaction.

    The thread starts on the first submit and stops after a few idle seconds, so an
    engine nobody writes to holds no thread. ``after_write`` runs once per group.
    """

    def __init__(self, engine: sa.Engine, after_write: Callable[[], None]) -> None:
        self.engine = engine
        self.after_write = after_write
        self._queue: queue.SimpleQueue[tuple[Entry, Future[int]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, entry: Entry) -> Future[int]:
        done: Future[int] = Future()
        with self._lock:
            self._queue.put((entry, done))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="event-log-writer", daemon=True
                )
                self._thread.start()
        return done

    def _take(self) -> list[tuple[Entry, Future[int]]] | None:
        try:
            first = self._queue.get(timeout=_IDLE_SECONDS)
        except queue.Empty:
            with self._lock:
                if self._queue.empty():
                    self._thread = None
                    return None
            return []
        group = [first]
        while len(group) < _BATCH_MAX:
            try:
                group.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return group

    def _run(self) -> None:
        while (group := self._take()) is not None:
            if group:
                self._write(group)

    def _write(self, group: list[tuple[Entry, Future[int]]]) -> None:
        entries = [entry for entry, _ in group]
        try:
            with self.engine.begin() as conn:
                seqs = write_batch(conn, entries)
        except Exception as exc:  # every waiter learns, none is left hanging
            for _, done in group:
                done.set_exception(exc)
            return
        for entry in entries:
            (log.debug if entry.quiet else log.info)(
                "event %s source=%s outcome=%s%s",
                entry.event_id or "-",
                entry.source,
                entry.outcome,
                f" reason={entry.reason}" if entry.reason else "",
            )
        for seq, (_, done) in zip(seqs, group, strict=True):
            done.set_result(seq)
        try:
            self.after_write()
        except Exception as exc:  # housekeeping must never stop the writer
            log.warning("event log housekeeping failed: %s", type(exc).__name__)


_READY: set[str] = set()
_READY_LOCK = threading.Lock()


def ensure_tables(engine: sa.Engine) -> None:
    key = str(engine.url)
    with _READY_LOCK:
        if key in _READY:
            return
        metadata.create_all(engine, checkfirst=True)
        _READY.add(key)
