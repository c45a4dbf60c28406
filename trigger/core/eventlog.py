"""The event log: every event that reached an ingress, including those that started nothing.

One row per received event (source, id, time, outcome, reason, sender address and a
few identifying attributes), one row per trigger's verdict on it, and a key index
(event id, delivery id, git sha, file path, run ids) so ``explain`` finds the story
from whatever id the operator has in hand. Stored in the system database next to
DBOS's tables. Never the raw payload and never a secret: callers pass the Event's
attributes, which hold neither.

The ingest writer (``workflows.intake``) writes an event's rows in the transaction
that enqueues its runs, so the decisions carry the run ids; :func:`record_event`
writes the events that start nothing (a refused delivery, an operator's action).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Literal

import sqlalchemy as sa

from trigger.core import db, eventcounts, text
from trigger.core.batch import GroupCommit
from trigger.core.event import readable_attributes
from trigger.core.eventlog_store import (
    KEY_MAX,
    DecisionRecord,
    Entry,
    decisions_table,
    ensure_tables,
    events_table,
    heartbeats_table,
    keys_table,
    log_written,
    write_batch,
)

log = logging.getLogger(__name__)

Outcome = Literal["accepted", "duplicate", "ignored", "rejected"]
OUTCOMES = ("accepted", "duplicate", "ignored", "rejected")
DEFAULT_RETENTION_DAYS = 30.0
_PRUNE_EVERY = 3600.0

# Attribute names whose values are identities worth looking an event up by.
KEY_ATTRIBUTES = (
    "delivery_id",
    "git_sha",
    "git_short_sha",
    "file_path",
    "file_rel",
    "file_sha256",
    "scheduled_time",
)


DecisionLike = DecisionRecord | tuple[str, bool, str | None, str | None]


class EventLog:
    """The log over one SQLAlchemy engine; creates its tables on first use."""

    def __init__(self, engine: sa.Engine, retention_days: float = DEFAULT_RETENTION_DAYS) -> None:
        self.engine = engine
        self.retention_days = retention_days
        # The first write prunes; after that at most every _PRUNE_EVERY seconds. (0.0 would
        # make the first prune wait until the host's monotonic clock passed an hour.)
        self._last_prune = float("-inf")
        self._lock = threading.Lock()
        ensure_tables(engine)
        self._writer: GroupCommit[Entry, int] = GroupCommit(
            engine, write_batch, name="event-log-writer", after_write=self.written
        )

    def record(self, **fields: Any) -> int:
        """Record one event (the fields of :func:`make_entry`); its ``seq`` once committed."""
        return self.submit(make_entry(**fields)).result()

    def submit(self, entry: Entry) -> Future[int]:
        """Hand ``entry`` to the group writer; the future holds its ``seq`` once committed."""
        return self._writer.submit(entry).future

    async def submit_async(self, entry: Entry) -> int:
        """:meth:`submit` for a coroutine: the event loop serves others while it waits."""
        return await self._writer.submit(entry).wait()

    def written(self, entries: Sequence[Entry], _outcomes: Sequence[object] = ()) -> None:
        """After every committed group, here or in the ingest writer: its lines, pruning."""
        log_written(entries)
        self._maybe_prune()

    def get(self, seq: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(events_table).where(events_table.c.seq == seq)).first()
            if row is None:
                return None
            return _with_decisions(conn, [row])[0]

    def find(self, value: str) -> list[dict[str, Any]]:
        """Events whose id, delivery id, sha, file path or run ids equal ``value``, oldest first."""
        if text.problem(value) is not None:  # no key holds such a string (the one rule)
            return []
        with self.engine.connect() as conn:
            seqs = sa.select(keys_table.c.event_seq).where(keys_table.c.value == value[:KEY_MAX])
            rows = conn.execute(
                sa.select(events_table)
                .where(events_table.c.seq.in_(seqs))
                .order_by(events_table.c.seq)
            ).all()
            return _with_decisions(conn, rows)

    def recent(
        self,
        *,
        source: str | None = None,
        outcome: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; ``before`` is the ``seq`` of the last row of the previous page."""
        if source and text.problem(source) is not None:  # no source is named so (and
            return []  # PostgreSQL cannot even compare a text holding NUL)
        query = sa.select(events_table).order_by(events_table.c.seq.desc()).limit(limit)
        if source:
            query = query.where(events_table.c.source == source)
        if outcome:
            query = query.where(events_table.c.outcome == outcome)
        if before is not None:
            query = query.where(events_table.c.seq < before)
        with self.engine.connect() as conn:
            return _with_decisions(conn, conn.execute(query).all())

    def totals(self) -> list[tuple[str, str, int]]:
        """(source, outcome, total) of every event ever logged here, pruned ones too
        (``trigger.core.eventcounts``), for /metrics."""
        with self.engine.connect() as conn:
            return eventcounts.totals(conn)

    def prune(self, now: float | None = None) -> int:
        """Delete events older than the retention; returns how many went."""
        cutoff = (now if now is not None else time.time()) - self.retention_days * 86400
        with self.engine.begin() as conn:
            old = sa.select(events_table.c.seq).where(events_table.c.received_at < cutoff)
            conn.execute(sa.delete(decisions_table).where(decisions_table.c.event_seq.in_(old)))
            conn.execute(sa.delete(keys_table).where(keys_table.c.event_seq.in_(old)))
            gone = conn.execute(
                sa.delete(events_table).where(events_table.c.received_at < cutoff)
            ).rowcount
        if gone:
            log.info("pruned %d events older than %g days", gone, self.retention_days)
        return int(gone or 0)

    def _maybe_prune(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last_prune < _PRUNE_EVERY:
                return
            self._last_prune = now
        try:
            self.prune()
        except sa.exc.SQLAlchemyError as exc:  # pruning is housekeeping, never fatal
            log.warning("event log pruning failed: %s", type(exc).__name__)

    def beat(self, name: str, at: float | None = None) -> None:
        """Record that a long-running source (``files:<trigger>``) just did its work."""
        stamp = at if at is not None else time.time()
        with self.engine.begin() as conn:
            db.put_row(conn, heartbeats_table, {"name": name}, {"at": stamp})

    def heartbeats(self) -> dict[str, float]:
        with self.engine.connect() as conn:
            return {r.name: r.at for r in conn.execute(sa.select(heartbeats_table))}


def make_entry(
    *,
    source: str,
    event_id: str | None,
    outcome: Outcome,
    reason: str | None = None,
    source_addr: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    decisions: Iterable[DecisionLike] = (),
    received_at: float | None = None,
    lookup_keys: Iterable[str] = (),
    duplicate_of: str | None = None,
) -> Entry:
    """One event as the log keeps it: plain attributes only, with its lookup keys."""
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    attrs = {k: v for k, v in (attributes or {}).items() if _plain(v)}
    verdicts = [_as_record(d) for d in decisions]
    lookup = {event_id} if event_id else set()
    lookup |= {str(attrs[k]) for k in KEY_ATTRIBUTES if attrs.get(k) not in (None, "")}
    lookup |= {d.run_id for d in verdicts if d.run_id}
    lookup |= set(lookup_keys)
    return Entry(
        source=source,
        event_id=event_id,
        outcome=outcome,
        reason=reason,
        source_addr=source_addr,
        attributes=attrs,
        received_at=received_at if received_at is not None else time.time(),
        verdicts=verdicts,
        keys=sorted(v[:KEY_MAX] for v in lookup if v),
        duplicate_of=duplicate_of,
    )


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _as_record(item: DecisionLike) -> DecisionRecord:
    if isinstance(item, DecisionRecord):
        return item
    trigger, matched, reason, run_id = item
    return DecisionRecord(trigger, bool(matched), reason, run_id)


def _with_decisions(conn: sa.Connection, rows: Sequence[sa.Row[Any]]) -> list[dict[str, Any]]:
    seqs = [r.seq for r in rows]
    by_event: dict[int, list[dict[str, Any]]] = {s: [] for s in seqs}
    if seqs:
        query = (
            sa.select(decisions_table)
            .where(decisions_table.c.event_seq.in_(seqs))
            .order_by(decisions_table.c.event_seq, decisions_table.c.position)
        )
        for d in conn.execute(query):
            by_event[d.event_seq].append(
                {"trigger": d.trigger, "matched": d.matched, "reason": d.reason, "run_id": d.run_id}
            )
    return [
        {
            "seq": r.seq,
            "source": r.source,
            "event_id": r.event_id,
            "received_at": r.received_at,
            "outcome": r.outcome,
            "reason": r.reason,
            "source_addr": r.source_addr,
            # Older versions stored strings that are not valid Unicode (escaped in JSON).
            "attributes": readable_attributes(text.readable(json.loads(r.attributes or "{}"))),
            "decisions": by_event[r.seq],
        }
        for r in rows
    ]


_LOGS: dict[str, EventLog] = {}
_LOGS_LOCK = threading.Lock()


def event_log(target: Any, retention_days: float | None = None) -> EventLog:
    """An EventLog for an engine, a ``workflows.store.Store``, a Settings or a URL.

    Cached per database URL so ingress code can call this on every request.
    """
    if isinstance(target, EventLog):
        return target
    engine: sa.Engine | None = None
    if isinstance(target, sa.Engine):
        engine, url = target, target.url.render_as_string(hide_password=False)
    elif hasattr(target, "engine") and isinstance(target.engine, sa.Engine):
        engine, url = target.engine, target.engine.url.render_as_string(hide_password=False)
    elif hasattr(target, "database_url"):
        url = target.database_url()
        retention_days = retention_days or target.events.retention_days
    elif isinstance(target, str):
        url = target
    else:
        raise TypeError(f"cannot find a database in {type(target).__name__}")
    # Built under its own lock: two threads racing here would otherwise both open an
    # engine, and the loser's pooled connections would be left to the garbage collector.
    with _LOGS_LOCK:
        found = _LOGS.get(url)
        if found is None:
            found = EventLog(engine or db.engine(url), retention_days or DEFAULT_RETENTION_DAYS)
            _LOGS[url] = found
    return found


def record_event(
    target: Any,
    source: str,
    event_id: str | None,
    outcome: Outcome,
    reason: str | None = None,
    source_addr: str | None = None,
    decisions: Iterable[DecisionLike] = (),
    *,
    attributes: Mapping[str, Any] | None = None,
    received_at: float | None = None,
) -> int:
    """Record one received event. ``target``: an engine, Store, Settings, URL or EventLog.

    ``decisions`` are ``(trigger, matched, reason, run_id)`` tuples (or DecisionRecord):
    ``reason`` is the filter rule that excluded the event when ``matched`` is False, and
    may say ``duplicate`` of what when matched and the run already existed.
    """
    return event_log(target).record(
        source=source,
        event_id=event_id,
        outcome=outcome,
        reason=reason,
        source_addr=source_addr,
        attributes=attributes,
        decisions=decisions,
        received_at=received_at,
    )


def record_heartbeat(target: Any, name: str) -> None:
    """A watcher calls this after each scan; /metrics shows the age of the last one."""
    event_log(target).beat(name)


def dispatch_entry(
    event: Any,
    decided: Sequence[Any],
    enqueued: Mapping[str, Any],
    *,
    source_addr: str | None = None,
    extra: Mapping[str, Any] | None = None,
    repeat: bool = False,
    ignored_because: str | None = None,
) -> Entry:
    """The log entry of an event that passed verification, from ``matching.decide`` and
    the enqueues.

    ``event`` is a ``trigger.core.event.Event``; ``decided`` the list ``decide()`` returned;
    ``enqueued`` maps run id -> ``workflows.queue.Enqueued`` for the requests enqueued.
    The outcome is ``accepted`` when at least one new run was enqueued, ``duplicate``
    when every matching run already existed or the event was received before
    (``repeat``: whatever it decided then), ``ignored`` when no trigger matched.
    """
    verdicts: list[DecisionRecord] = []
    new = dup = 0
    for d in decided:
        if d.request is None:
            verdicts.append(DecisionRecord(d.trigger, False, d.reason, None))
            continue
        result = enqueued.get(d.request.run_id)
        note = None
        if result is None:
            note = "matched but not enqueued"
        elif result.duplicate:
            dup += 1
            note = f"duplicate: run {d.request.run_id} already existed"
        else:
            new += 1
        verdicts.append(DecisionRecord(d.trigger, True, note, d.request.run_id))
    duplicate_of = None
    if new:
        outcome: Outcome = "accepted"
        reason = None
    elif dup or repeat:
        outcome = "duplicate"
        reason = f"duplicate of event {event.id}: it was received before"
        duplicate_of = event.id  # the writer dates the first reception
    else:
        outcome = "ignored"
        reason = ignored_because or (
            "no trigger matched" if decided else "no triggers are configured"
        )
    return make_entry(
        source=event.kind,
        event_id=event.id,
        outcome=outcome,
        reason=reason,
        source_addr=source_addr,
        attributes={**event.attributes, **(extra or {})},
        decisions=verdicts,
        received_at=event.received_at.timestamp(),
        duplicate_of=duplicate_of,
    )
