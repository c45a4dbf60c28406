"""What a burst of events becomes: ``on_burst`` and debounce, decided where the run
is enqueued.

A new run of a coalescing trigger supersedes the older runs of the same trigger on
the same branch that have not started yet. All of it happens in the ingest writer's
transaction (``workflows.intake``), the one that enqueues the new run and logs its
event, so a crash leaves either the new run with its predecessors retired, or
neither. Concurrent writers (several ingress processes) take the trigger and
branch in turn: a transaction-scoped advisory lock on PostgreSQL; SQLite has one
writer at a time anyway.

A waiting run is retired by one conditional update (mark it superseded and cancel
it, only if it is still waiting), so a worker dequeuing it at the same moment
either takes it first (the update finds it started and leaves it alone, or for
``cancel`` asks it to cancel its job: ``cancel_requested_by``, read between polls)
or finds it cancelled. The run workflow's first step (``gate``) also ends a run
whose attributes name a successor, before any Bauplan call, so no job is ever
submitted by a superseded run.

Debounce delays the enqueue (DBOS ``DELAYED``) by ``debounce_seconds``; each new
event supersedes the delayed one, so the newest event runs once the burst is
quiet. ``max_wait_seconds`` caps the delay from the burst's first event, so a
steady stream still runs.

A run that has its branch but waits inside the workflow (for its rate window:
``rate-limited``; for a global slot: ``awaiting-slot``, see ``workflows.job``) is
still waiting in the users' sense, so it is superseded too: one conditional update
marks it (only while it still waits there), its reservation is given back and its
job workflow, if still queued, is cancelled; after the commit the writer wakes it
(``Taken.woken``) and it ends without a Bauplan call. The run leaves those phases
only through :func:`claim_start`, a conditional update on the same row, so a run
either starts or is superseded, never both.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from dbos import DBOSClient

from trigger.core.logfields import ids
from trigger.core.matching import RunRequest, run_id_prefix
from trigger.core.runstatus import PARKED_PHASES
from trigger.core.settings import TriggerConfig
from trigger.core.settings.flow import coalesces
from workflows.dbos_compat import WorkflowTable
from workflows.store import starts

log = logging.getLogger(__name__)

WAITING = ["ENQUEUED", "DELAYED"]
RUNNING = ["PENDING"]
PARKED = PARKED_PHASES  # a run with its branch, waiting in the workflow to start
# Sent to a parked run that was superseded, so it ends now rather than when it wakes.
WAKE_TOPIC = "bauplan-trigger.wake"


@dataclass(frozen=True)
class Sibling:
    """Another run of the same trigger on the same branch, as the transaction sees it."""

    workflow_id: str
    status: str
    attributes: dict[str, Any]
    created_at: int | None = None  # ms, as DBOS keeps it

    @property
    def parked(self) -> bool:
        """Waiting inside the workflow for its rate window or a global slot."""
        return self.attributes.get("phase") in PARKED

    @property
    def started(self) -> bool:
        # A run that passed its gate has a phase, even if a takeover put it back on the queue.
        if self.parked:
            return False
        return self.status in RUNNING or "phase" in self.attributes


class Runs:
    """The run workflows of DBOS's table, read and retired in the caller's transaction."""

    def __init__(self, conn: sa.Connection, table: WorkflowTable, run_workflow: str) -> None:
        self.conn = conn
        self.table = table
        self.run_workflow = run_workflow
        # Parked runs superseded in this transaction, to wake once it commits.
        self.woken: list[str] = []
        table.bind(conn)

    def take_turns(self, keys: list[tuple[str, str]]) -> None:
        """Hold each (trigger, branch) until commit, in one order for every writer."""
        if self.table.is_sqlite:
            return  # the transaction holds SQLite's one write lock already
        for trigger, branch in sorted(set(keys)):
            digest = hashlib.blake2b(f"{trigger}\0{branch}".encode(), digest_size=8).digest()
            self.conn.execute(
                sa.select(sa.func.pg_advisory_xact_lock(int.from_bytes(digest, "big", signed=True)))
            )

    def same_branch(self, trigger: str, keys: list[str], run_id: str) -> list[Sibling]:
        """The trigger's other unfinished runs on these partition keys (one branch's)."""
        t = self.table.table
        rows = self.conn.execute(
            sa.select(t.c.workflow_uuid, t.c.status, t.c.attributes, t.c.created_at).where(
                t.c.name == self.run_workflow,
                t.c.workflow_uuid.startswith(run_id_prefix(trigger), autoescape=True),
                t.c.status.in_(WAITING + RUNNING),
                t.c.queue_partition_key.in_(keys),
                t.c.workflow_uuid != run_id,
            )
        )
        return [
            Sibling(
                r.workflow_uuid,
                r.status,
                r.attributes if isinstance(r.attributes, dict) else {},
                r.created_at,
            )
            for r in rows
        ]

    def least_busy(self, keys: list[str]) -> str:
        """Of a branch's partition keys (one per slot of its per-branch concurrency), the
        one with the fewest unfinished runs: where a new run waits the least."""
        t = self.table.table
        rows = self.conn.execute(
            sa.select(t.c.queue_partition_key, sa.func.count())
            .where(
                t.c.name == self.run_workflow,
                t.c.queue_partition_key.in_(keys),
                t.c.status.in_(WAITING + RUNNING),
            )
            .group_by(t.c.queue_partition_key)
        ).all()
        counts = {str(key): int(n) for key, n in rows}
        return min(keys, key=lambda k: (counts.get(k, 0), keys.index(k)))

    def supersede(self, old: Sibling, new_id: str) -> bool:
        """Retire a waiting run in favour of ``new_id``; False when it started meanwhile.
        A parked run is only marked here (it ends itself once woken: ``woken``)."""
        t = self.table.table
        marks = {"superseded_by": new_id, "outcome": "superseded", "phase": "finished"}
        done = self.conn.execute(
            sa.update(t)
            .where(t.c.workflow_uuid == old.workflow_id, t.c.status.in_(WAITING))
            .values(attributes=self.table.merged(marks), **WorkflowTable.cancelled_values())
        ).rowcount
        if not done and old.parked:
            done = self.conn.execute(
                sa.update(t)
                .where(
                    t.c.workflow_uuid == old.workflow_id,
                    t.c.status.in_(RUNNING),
                    self.table.attribute("phase").in_(PARKED),
                    self.table.attribute("superseded_by").is_(None),
                )
                .values(attributes=self.table.merged({"superseded_by": new_id}))
            ).rowcount
            if done:
                self.woken.append(old.workflow_id)
                self._cancel_queued_job(old.attributes.get("job_workflow"))
        if done:
            self.conn.execute(
                sa.delete(starts).where(starts.c.run_id == old.workflow_id, ~starts.c.confirmed)
            )
            log.info(
                "superseded run %s by %s",
                old.workflow_id,
                new_id,
                extra=ids(run_id=old.workflow_id),
            )
        else:
            log.info("run %s started before %s superseded it", old.workflow_id, new_id)
        return bool(done)

    def _cancel_queued_job(self, job_workflow: Any) -> None:
        """Free the global slot a superseded run's job workflow waits for, if it waits."""
        if not job_workflow:
            return
        t = self.table.table
        self.conn.execute(
            sa.update(t)
            .where(t.c.workflow_uuid == str(job_workflow), t.c.status.in_(WAITING))
            .values(**WorkflowTable.cancelled_values())
        )

    def request_cancel(self, old_id: str, new_id: str) -> None:
        t = self.table.table
        self.conn.execute(
            sa.update(t)
            .where(t.c.workflow_uuid == old_id)
            .values(attributes=self.table.merged({"cancel_requested_by": new_id}))
        )
        log.info(
            "asked running run %s to cancel its job for %s",
            old_id,
            new_id,
            extra=ids(run_id=old_id),
        )


@dataclass
class Burst:
    trigger: TriggerConfig | None
    branch: str
    delay_seconds: float = 0.0
    burst_started_at: float | None = None
    # The runs of the trigger on the branch before this one: older than it, all of them.
    older: list[Sibling] = field(default_factory=list)

    @classmethod
    def before(
        cls, runs: Runs, trig: TriggerConfig | None, run_id: str, branch: str, keys: list[str]
    ) -> Burst:
        """Look at the runs already waiting (on ``keys``, the branch's partition keys for
        this trigger), to date the burst and pick the delay."""
        if trig is None or not coalesces(trig):
            return cls(trig, branch)
        now = time.time()
        older = runs.same_branch(trig.name, keys, run_id)
        started = [_burst_start(w) for w in older if not w.started]
        burst_start = min([now, *started])
        delay = 0.0
        if trig.debounce_seconds is not None:
            delay = trig.debounce_seconds
            if trig.max_wait_seconds is not None:
                delay = min(delay, max(0.0, burst_start + trig.max_wait_seconds - now))
        return cls(trig, branch, delay, burst_start, older)

    def attributes(self) -> dict[str, Any]:
        if self.trigger is None or self.burst_started_at is None:
            return {}
        attrs: dict[str, Any] = {
            "on_burst": self.trigger.on_burst,
            "burst_started_at": self.burst_started_at,
        }
        if self.delay_seconds:
            attrs["debounce_until"] = time.time() + self.delay_seconds
        return attrs

    def after(self, runs: Runs, run_id: str) -> None:
        """Supersede the older waiting runs; for ``cancel``, ask the running ones to stop."""
        trig = self.trigger
        if trig is None or self.burst_started_at is None:
            return
        for old in self.older:
            if not old.started and runs.supersede(old, run_id):
                continue
            if trig.on_burst == "cancel":
                runs.request_cancel(old.workflow_id, run_id)


def _burst_start(run: Sibling) -> float:
    value = run.attributes.get("burst_started_at")
    if isinstance(value, int | float):
        return float(value)
    return (run.created_at or 0) / 1000


def attributes_of(run_id: str) -> dict[str, Any]:
    from dbos import DBOS

    status = DBOS.get_workflow_status(run_id)
    return dict(status.attributes or {}) if status is not None else {}


def wake(client: DBOSClient, run_id: str, why: str) -> None:
    """Tell a parked run (``why``: superseded, cancelled) to end now, through a DBOS
    message on ``WAKE_TOPIC``. Best effort: unwoken, it ends when its wait is over,
    ``why`` all the same."""
    try:
        client.send(run_id, {why: True}, topic=WAKE_TOPIC)
    except Exception as exc:
        log.warning(
            "could not wake %s run %s (%s); it ends when its wait does",
            why,
            run_id,
            type(exc).__name__,
        )


def coalescing(req: RunRequest) -> bool:
    """Whether a newer event may supersede this run (its trigger's policy, as enqueued)."""
    return req.on_burst != "queue" or req.debounce_seconds is not None


def gate() -> str | None:
    """The run workflow's first step: the id of the run that superseded this one, if any.

    Passing the gate marks the run as started, so a later event never supersedes
    it (even if a takeover puts it back on the queue)."""
    from dbos import DBOS

    replaced_by = attributes_of(DBOS.workflow_id or "").get("superseded_by")
    if replaced_by:
        return str(replaced_by)
    DBOS.update_workflow_attributes(DBOS.workflow_id or "", {"phase": "preparing"}, merge=True)
    return None


def cancel_requested(run_id: str) -> str | None:
    """Between polls: the id of the newer run that asked ``run_id`` to cancel its job."""
    value = attributes_of(run_id).get("cancel_requested_by")
    return str(value) if value else None


def claim_start(run_id: str) -> str | None:
    """A parked run leaves its waiting phase to start: None when it may, else the id of
    the run that superseded it while it waited (or asked it to cancel: ``cancel``)."""
    table = WorkflowTable.launched()
    claimed = table.update(
        table.table.c.workflow_uuid == run_id,
        table.attribute("superseded_by").is_(None),
        table.attribute("cancel_requested_by").is_(None),
        attributes=table.merged({"phase": "starting"}),
    )
    if claimed:
        return None
    attrs = attributes_of(run_id)
    return str(attrs.get("superseded_by") or attrs.get("cancel_requested_by") or "?")
