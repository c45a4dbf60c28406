"""Durable totals of the events received, by source and outcome: true counters.

``/metrics`` reported ``bauplan_trigger_events_total`` by counting the event log,
which is pruned after its retention: each prune lowered a counter, and Prometheus's
``rate()`` reads every drop as a reset and invents a burst. These totals are kept
apart from the log, in the system database, and raised in the transaction that
writes the event rows (``eventlog_store.write_batch``, which the ingest writer and
the log's own writer both commit through). So:

- pruning the log deletes rows and leaves the totals alone;
- a restart reads them back: nothing is held in a process, nothing starts at zero;
- every process on one database (ingress, worker, ``all``) reports the same,
  deployment-wide total, and an event is counted if and only if it was logged.

Counters kept in each process (prometheus_client's usual way) would restart at zero
with the process and count only what that process wrote; that is right for the HTTP
figures (``trigger.http.metrics_middleware``) but not for a figure the deployment
shares.

Rows are sharded by the writer thread: writers in several processes on PostgreSQL
would otherwise queue on one row lock (``github``/``accepted``) until each other's
commit, turning concurrent group commits into a line. A scrape sums at most
sources x outcomes x :data:`SHARDS` rows, however long the history.

A database whose log predates the totals is seeded once, from the log it retains
(a marker row records that it was), so an upgrade does not drop the figure to zero.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

SHARDS = 16
# The marker of a seeded database: a row no event can have (a source is never empty).
_SEED_SHARD = -1
_MARKER = {"source": "", "outcome": "", "shard": _SEED_SHARD, "count": 0}

metadata = sa.MetaData()

counts_table = sa.Table(
    "bt_event_counts",
    metadata,
    sa.Column("source", sa.String(32), primary_key=True),
    sa.Column("outcome", sa.String(16), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("count", sa.BigInteger, nullable=False),
)


def _insert(conn: sa.Connection) -> sa.Insert:
    dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
    found: sa.Insert = dialect.insert(counts_table)
    return found


def _shard() -> int:
    return threading.get_native_id() % SHARDS


def add(conn: sa.Connection, pairs: Iterable[tuple[str, str]]) -> None:
    """Count these ``(source, outcome)`` events, in the caller's transaction."""
    counted = Counter(pairs)
    if not counted:
        return
    shard = _shard()
    # In key order, so two transactions raising the same rows never wait on each other
    # in a cycle.
    rows = [
        {"source": source, "outcome": outcome, "shard": shard, "count": n}
        for (source, outcome), n in sorted(counted.items())
    ]
    stmt = _insert(conn).values(rows)
    stmt = stmt.on_conflict_do_update(  # type: ignore[attr-defined]
        index_elements=["source", "outcome", "shard"],
        set_={"count": counts_table.c.count + stmt.excluded.count},  # type: ignore[attr-defined]
    )
    conn.execute(stmt)


def totals(conn: sa.Connection) -> list[tuple[str, str, int]]:
    """``(source, outcome, total)``, every event ever logged on this database."""
    query = (
        sa.select(counts_table.c.source, counts_table.c.outcome, sa.func.sum(counts_table.c.count))
        .where(counts_table.c.source != "")
        .group_by(counts_table.c.source, counts_table.c.outcome)
        .order_by(counts_table.c.source, counts_table.c.outcome)
    )
    return [(r[0], r[1], int(r[2])) for r in conn.execute(query)]


def seed(conn: sa.Connection, retained: sa.Select[str, str, int]) -> bool:
    """Start the totals from ``retained`` (the log's ``(source, outcome, count)``) on a
    database that has never had them; whether this call did. The marker's key makes a
    second process starting at the same moment wait for this one and then do nothing."""
    stmt = _insert(conn).values(_MARKER).on_conflict_do_nothing()  # type: ignore[attr-defined]
    # RETURNING, not rowcount: the driver may answer -1 ("unknown") for a skipped row.
    if conn.execute(stmt.returning(counts_table.c.shard)).first() is None:
        return False
    rows = [
        {"source": source, "outcome": outcome, "shard": _SEED_SHARD, "count": int(n)}
        for source, outcome, n in conn.execute(retained)
        if source
    ]
    if rows:
        conn.execute(sa.insert(counts_table), rows)
    return True


def ensure(engine: sa.Engine) -> None:
    metadata.create_all(engine, checkfirst=True)
