"""The run queue: its registration in ``serve`` and what every enqueue carries.

Every enqueue carries a partition key (the Bauplan branch's, ``workflows.branch_flow``:
a partitioned queue leaves key-less workflows ENQUEUED forever), an explicit priority (DBOS
runs un-prioritised workflows before all others) and a workflow id derived from
the event, so a second enqueue of the same event finds the first run.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from dbos import DBOS, EnqueueOptions, Queue, WorkflowStatus

from trigger.core.errors import BauplanFailure, EnqueueUnavailableError
from trigger.core.matching import RunRequest
from trigger.core.settings import Settings
from workflows import coalesce
from workflows.dbos_compat import WorkflowTable

log = logging.getLogger(__name__)

RUN_QUEUE = "bauplan-trigger-runs"
RUN_WORKFLOW = "bauplan_trigger.run"
# The global cap: each run's Bauplan part, as a child workflow, on an unpartitioned
# queue whose DBOS global_concurrency is ``[queue] global_concurrency``.
JOB_QUEUE = "bauplan-trigger-jobs"
JOB_WORKFLOW = "bauplan_trigger.job"
UNCAPPED_JOB_POLLING = 30.0


def register_run_queue(settings: Settings) -> Queue:
    """Register the run queue and the job queue.

    The run queue is partitioned with one run per partition key and nothing else, the
    shape DBOS dequeues in one batched transaction per poll however many branches
    wait; per-branch concurrency, overrides and the rate limit ride on the partition
    keys and the rate windows (``workflows.branch_flow``). The global cap is the job
    queue's, unpartitioned and so dequeued in one transaction per poll too."""
    q = settings.queue
    runs = DBOS.register_queue(
        RUN_QUEUE,
        partition_concurrency=1,
        worker_concurrency=q.worker_concurrency,
        polling_interval_sec=q.polling_interval,
    )
    DBOS.register_queue(
        JOB_QUEUE,
        global_concurrency=q.global_concurrency,
        worker_concurrency=q.worker_concurrency,
        # Without a cap runs submit themselves: only job workflows left by a config
        # that had one can be there, and they are not waited for at the run's pace.
        polling_interval_sec=q.polling_interval
        if q.global_concurrency is not None
        else UNCAPPED_JOB_POLLING,
    )
    return runs


def adopt_earlier_queues() -> int:
    """Runs still waiting on the per-limits queues of releases before the job queue
    (``bauplan-trigger-runs.<limits>``), which nothing serves any more, move to the run
    queue on their partition key (their branch), and those queues go. Called at
    launch; idempotent."""
    table = WorkflowTable.launched()
    t = table.table
    moved = table.update(
        t.c.name == RUN_WORKFLOW,
        t.c.queue_name.startswith(f"{RUN_QUEUE}.", autoescape=True),
        t.c.status.in_(["ENQUEUED", "DELAYED"]),
        queue_name=RUN_QUEUE,
    )
    if moved:
        log.info("moved %d waiting runs from earlier per-limits queues to %s", moved, RUN_QUEUE)
    # DBOS keeps registered queues in the database and every worker polls them all.
    for queue in DBOS.list_queues():
        if queue.name.startswith(f"{RUN_QUEUE}."):
            DBOS.delete_queue(queue.name)
            log.info("removed the earlier per-limits queue %s", queue.name)
    return moved


def queue_names(settings: Settings) -> list[str]:
    return [RUN_QUEUE, JOB_QUEUE]


def resume_queue(settings: Settings, status: WorkflowStatus) -> str | None:
    """The queue a workflow goes back on when it is resumed (taken over, or resumed by an
    operator), so that its limits still apply: the queue it is on while DBOS records one;
    for a run or job that lost it (DBOS clears it on cancel), the queue of its kind."""
    if status.queue_name:
        return status.queue_name
    return {RUN_WORKFLOW: RUN_QUEUE, JOB_WORKFLOW: JOB_QUEUE}.get(status.name or "")


class UsernameCache:
    """The Bauplan user whose branches we write, known before a run starts because
    it is part of the partition key. Configured, or ``rehearsal``, or resolved once."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._value = settings.bauplan.username
        if self._value is None and settings.bauplan.mode == "rehearse":
            self._value = "rehearsal"
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            if self._value is None:
                from workflows.bauplan.adapter import Bauplan, live_client

                try:
                    self._value = Bauplan(live_client()).username()
                except BauplanFailure as exc:
                    raise EnqueueUnavailableError(
                        f"cannot resolve the Bauplan username to build branch names ({exc}); "
                        "set [bauplan] username in the config to enqueue without asking Bauplan"
                    ) from None
            return self._value


@dataclass(frozen=True)
class Enqueued:
    run_id: str
    branch: str
    duplicate: bool


def enqueue_options(
    settings: Settings, request: RunRequest, branch: str, key: str, burst: coalesce.Burst
) -> EnqueueOptions:
    """How a run request goes on the queue (``workflows.intake`` does the enqueue), on
    partition key ``key`` (the branch's, or one of its slots: ``workflows.branch_flow``)."""
    options: EnqueueOptions = {
        "workflow_name": RUN_WORKFLOW,
        "queue_name": RUN_QUEUE,
        "workflow_id": request.run_id,
        "workflow_id_reuse_policy": "reject",
        "queue_partition_key": key,
        "priority": request.priority,
        "app_version": settings.service.application_version,
        "attributes": {**attributes_for(request, branch), **burst.attributes()},
    }
    if burst.delay_seconds:
        options["delay_seconds"] = burst.delay_seconds
    return options


def attributes_for(request: RunRequest, branch: str) -> dict[str, Any]:
    return {
        # DBOS's own created_at has whole seconds on SQLite under Python < 3.12: this is
        # the enqueue time to the millisecond, as every other time of a run has.
        "enqueued_at": int(time.time() * 1000),
        "trigger": request.trigger,
        "event_id": request.event_id,
        "event_kind": request.event_kind,
        "branch": branch,
        "priority": request.priority,
    }
