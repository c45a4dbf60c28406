"""The event log's tables and its writer, which commits entries in groups.

Entries are written in groups (``trigger.core.batch``): the ingest writer
(``workflows.intake``) inserts an event's rows in the transaction that enqueues its
runs; the log's own writer takes the events that start nothing (refused deliveries,
operator actions). Every event id is indexed, so a redelivery is found in one lookup.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from trigger.core import eventcounts
from trigger.core.logfields import ids

log = logging.getLogger(__name__)

KEY_MAX = 300
# ``seq`` is an sa.Integer: 32 bits on PostgreSQL, so no seq (and no paging bound) is larger.
SEQ_MAX = 2**31 - 1

metadata = sa.MetaData()

events_table = sa.Table(
    "bt_events",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("event_id", sa.String(300), nullable=True, index=True),
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


def first_received(conn: sa.Connection, event_id: str) -> float | None:
    """When the event with this id was first received (accepted or ignored), if the log
    still has it."""
    seqs = sa.select(keys_table.c.event_seq).where(keys_table.c.value == event_id[:KEY_MAX])
    found = conn.execute(
        sa.select(events_table.c.received_at)
        .where(events_table.c.seq.in_(seqs), events_table.c.outcome.in_(("accepted", "ignored")))
        .order_by(events_table.c.seq)
        .limit(1)
    ).first()
    return None if found is None else float(found[0])


def write_batch(conn: sa.Connection, entries: Sequence[Entry]) -> list[int]:
    """Insert ``entries`` in this transaction; their new ``seq`` values, in order."""
    if not entries:
        return []
    for entry in entries:
        if entry.duplicate_of is not None:
            when = first_received(conn, entry.duplicate_of)
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


def log_written(entries: Sequence[Entry]) -> None:
    """The one line per event the log writes, once its group committed."""
    for entry in entries:
        (log.debug if entry.quiet else log.info)(
            "event %s source=%s outcome=%s%s",
            entry.event_id or "-",
            entry.source,
            entry.outcome,
            f" reason={entry.reason}" if entry.reason else "",
            extra=ids(event_id=entry.event_id, outcome=entry.outcome),
        )


_READY: set[str] = set()
_READY_LOCK = threading.Lock()


def ensure_tables(engine: sa.Engine) -> None:
    key = str(engine.url)
    with _READY_LOCK:
        if key in _READY:
            return
        metadata.create_all(engine, checkfirst=True)
        # A log made by an older version lacks the indexes added since.
        for index in events_table.indexes:
            index.create(engine, checkfirst=True)
        # The totals /metrics reports, which a trigger on the event table raises.
        eventcounts.ensure(engine, _RETAINED)
        _READY.add(key)


# The log's own counts, by source and outcome: what the durable totals start from.
_RETAINED = sa.select(events_table.c.source, events_table.c.outcome, sa.func.count()).group_by(
    events_table.c.source, events_table.c.outcome
)
