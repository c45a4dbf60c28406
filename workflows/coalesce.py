"""What a burst of events becomes: ``on_burst`` and debounce, at enqueue time.

A new run of a coalescing trigger supersedes the older runs of the same trigger
on the same branch that have not started yet. The order of writes is what
makes this safe against a worker dequeuing such a run at the same moment:

1. write ``superseded_by`` on the old run's attributes;
2. re-read its status, and only if it is still waiting, cancel it in DBOS;
3. the run workflow's first step (``gate``) reads its own attributes and ends
   as superseded, before any Bauplan call, if ``superseded_by`` is set.

A run dequeued before step 1 has passed its gate and is left alone (for
``latest``) or asked to cancel its job (``cancel``: ``cancel_requested_by``,
read by the workflow between polls). A run dequeued after step 1 stops at its
gate, so no job is ever submitted by a superseded run.

Debounce delays the enqueue (DBOS ``DELAYED``) by ``debounce_seconds``; each new
event supersedes the delayed one, so the newest event runs once the burst is
quiet. ``max_wait_seconds`` caps the delay from the burst's first event, so a
steady stream still runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from dbos import DBOSClient, WorkflowStatus

from trigger.core.matching import run_id_prefix
from trigger.core.settings import TriggerConfig
from trigger.core.settings.flow import coalesces

log = logging.getLogger(__name__)

WAITING = ["ENQUEUED", "DELAYED"]
RUNNING = ["PENDING"]


@dataclass
class Burst:
    trigger: TriggerConfig | None
    branch: str
    delay_seconds: float = 0.0
    burst_started_at: float | None = None
    # Runs that existed before this enqueue: older than it whatever their timestamps.
    seen_before: list[str] = field(default_factory=list)

    @classmethod
    def before(
        cls, client: DBOSClient, trig: TriggerConfig | None, run_id: str, branch: str
    ) -> Burst:
        """Look at the runs already waiting, to date the burst and pick the delay."""
        if trig is None or not coalesces(trig):
            return cls(trig, branch)
        now = time.time()
        rows = _same_branch(client, trig.name, branch, WAITING + RUNNING)
        rows = [w for w in rows if w.workflow_id != run_id]
        waiting = [w for w in rows if str(w.status) in WAITING]
        started = [_burst_start(w) for w in waiting]
        burst_start = min([now, *started])
        delay = 0.0
        if trig.debounce_seconds is not None:
            delay = trig.debounce_seconds
            if trig.max_wait_seconds is not None:
                delay = min(delay, max(0.0, burst_start + trig.max_wait_seconds - now))
        return cls(trig, branch, delay, burst_start, [w.workflow_id for w in rows])

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

    def after(self, client: DBOSClient, run_id: str) -> None:
        """Supersede the older waiting runs; for ``cancel``, ask the running ones to stop."""
        trig = self.trigger
        if trig is None or self.burst_started_at is None:
            return
        rows = _same_branch(client, trig.name, self.branch, WAITING + RUNNING)
        mine = next((w for w in rows if w.workflow_id == run_id), None)
        if mine is None or mine.created_at is None:
            return
        for old in rows:
            older = old.workflow_id in self.seen_before or (old.created_at or 0) < mine.created_at
            if old.workflow_id == run_id or not older:
                continue
            started = str(old.status) in RUNNING or "phase" in (old.attributes or {})
            if not started and supersede(client, old.workflow_id, run_id):
                continue
            if trig.on_burst == "cancel":
                request_cancel(client, old.workflow_id, run_id)


def supersede(client: DBOSClient, old_id: str, new_id: str) -> bool:
    """Retire a waiting run in favour of ``new_id``; False when it started meanwhile."""
    client.update_workflow_attributes(old_id, {"superseded_by": new_id}, merge=True)
    [row] = client.list_workflows(workflow_ids=[old_id], load_input=False, load_output=False)
    if str(row.status) not in WAITING:
        # It was dequeued before the mark: its gate ran first, or will see the mark.
        log.info("run %s started before %s superseded it", old_id, new_id)
        return False
    # The outcome goes first so no reader ever sees a bare CANCELLED; if the run is
    # dequeued in between, its gate ends it as superseded all the same.
    client.update_workflow_attributes(
        old_id, {"outcome": "superseded", "phase": "finished"}, merge=True
    )
    client.cancel_workflow(old_id)
    log.info("superseded run %s by %s", old_id, new_id)
    return True


def request_cancel(client: DBOSClient, old_id: str, new_id: str) -> None:
    client.update_workflow_attributes(old_id, {"cancel_requested_by": new_id}, merge=True)
    log.info("asked running run %s to cancel its job for %s", old_id, new_id)


def _same_branch(
    client: DBOSClient, trigger: str, branch: str, statuses: list[str]
) -> list[WorkflowStatus]:
    from workflows.queue import RUN_WORKFLOW

    # Filtering by attributes is PostgreSQL-only in DBOS; the partition key is the branch.
    rows = client.list_workflows(
        name=RUN_WORKFLOW,
        workflow_id_prefix=run_id_prefix(trigger),
        status=sorted(set(statuses)),
        load_input=False,
        load_output=False,
    )
    return [row for row in rows if row.queue_partition_key == branch]


def _burst_start(status: WorkflowStatus) -> float:
    value = (status.attributes or {}).get("burst_started_at")
    if isinstance(value, int | float):
        return float(value)
    return (status.created_at or 0) / 1000


def _own_attributes() -> dict[str, Any]:
    from dbos import DBOS

    status = DBOS.get_workflow_status(DBOS.workflow_id or "")
    return dict(status.attributes or {}) if status is not None else {}


def gate() -> str | None:
    """The run workflow's first step: the id of the run that superseded this one, if any.

    Passing the gate marks the run as started, so a later event never supersedes
    it (even if a takeover puts it back on the queue)."""
    from dbos import DBOS

    replaced_by = _own_attributes().get("superseded_by")
    if replaced_by:
        return str(replaced_by)
    DBOS.update_workflow_attributes(DBOS.workflow_id or "", {"phase": "preparing"}, merge=True)
    return None


def cancel_requested() -> str | None:
    """Between polls: the id of the newer run that asked this one to cancel its job."""
    value = _own_attributes().get("cancel_requested_by")
    return str(value) if value else None
