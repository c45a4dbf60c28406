"""Is any worker running? Read from the executor heartbeats that ``workflows.executors`` writes.

Every process that runs the queue (``serve`` with role ``all`` or ``worker``) beats
every ``beat_interval`` seconds; ingress processes never launch DBOS and never beat.
A worker counts as alive while its last beat is younger than a few intervals, so one
late beat does not make ``fire`` cry wolf, and a worker that is gone is noticed
within seconds. The answer is a snapshot, like every waiting reason.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from trigger.core import db
from trigger.core.settings import Settings
from workflows.executors import beat_interval, heartbeats

# Beats a worker may miss before it no longer counts as alive.
_MISSED_BEATS = 3


def seen_within(settings: Settings) -> float:
    """How recent a heartbeat must be for its worker to count as alive."""
    return _MISSED_BEATS * beat_interval(settings)


def absent(settings: Settings, engine: sa.Engine | None = None) -> str | None:
    """None when some worker beat lately; else a sentence saying none did, and when the
    last one was seen."""
    owned = engine is None
    engine = engine or db.unpooled(settings.database_url())
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(heartbeats.name):
                last = None
            else:
                last = conn.execute(
                    sa.select(heartbeats.c.executor_id, heartbeats.c.beat_at)
                    .order_by(heartbeats.c.beat_at.desc())
                    .limit(1)
                ).first()
    finally:
        if owned:
            engine.dispose()
    window = seen_within(settings)
    if last is None:
        return "no worker has ever run on this system database"
    age = max(0.0, time.time() - float(last.beat_at))
    if age <= window:
        return None
    return (
        f"no worker has sent a heartbeat in the last {window:g}s (the last was "
        f"{last.executor_id}, {_ago(age)} ago)"
    )


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
