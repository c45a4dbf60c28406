"""The notice outbox: every notice is its own durable workflow, on its own queue.

A run only enqueues its notices and goes on: it never waits for a receiver, so a
receiver that is down neither holds the run nor its branch. One notice workflow
per run, notifier and run status, with an id derived from those three, so a
recovered run that enqueues again finds the notice it already enqueued.

The queue is partitioned by run and notifier, one workflow at a time per
partition, and a run's ``started`` notice has the earlier priority: the final
notice of a run waits until that notifier's ``started`` notice is delivered or
given up, however long it retries. Different notifiers and different runs never
wait for each other.

Every process that launches DBOS (``serve --role all`` or ``worker``) runs this
queue beside the run queue, so notices are sent where the notifier secrets are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from dbos import DBOS, EnqueueOptions, Queue, SetWorkflowTimeout

from trigger.core.matching import RunRequest
from trigger.core.settings import Settings
from workflows import runtime
from workflows.notify import delivery
from workflows.notify.notice import Notice

log = logging.getLogger(__name__)

NOTICE_QUEUE = "bauplan-trigger-notices"
NOTICE_WORKFLOW = "bauplan_trigger.notice"
# Lower runs first: a started notice goes before the final one of its partition.
_PRIORITY = {"started": 1}
_FINAL_PRIORITY = 2


# With no notifier configured nothing can be put on the notice queue; polling it this
# seldom still delivers (or skips) what a run under an older config left there.
IDLE_POLLING_INTERVAL = 30.0


def register_notice_queue(settings: Settings) -> Queue:
    """One notice at a time per run and notifier (the only limit, which keeps DBOS's
    batched dequeue)."""
    return DBOS.register_queue(
        NOTICE_QUEUE,
        partition_concurrency=1,
        polling_interval_sec=polling_interval(settings),
    )


def polling_interval(settings: Settings) -> float:
    """A notice tells of something that has happened already, so a second's pick-up is
    nothing next to a receiver's round trip; polled as often as runs are, this queue
    cost an idle ``serve`` as much CPU as the run queue (bench/idle.py)."""
    if not settings.notifiers:
        return IDLE_POLLING_INTERVAL
    return settings.queue.notice_polling_interval


def notice_id(run_id: str, name: str, status: str) -> str:
    """Begins with ``notify:``, never ``run:``: no event id can make a run id equal to it."""
    return f"notify:{name}:{status}:{run_id}"


def partition(run_id: str, name: str) -> str:
    return f"notify:{name}:{run_id}"


def enqueue(req: RunRequest, notice: Notice) -> list[str]:
    """From the run workflow: one notice workflow for each of the run's notifiers that
    wants this status. Each enqueue is a checkpoint of the run; nothing is sent here."""
    settings = runtime.current().settings
    notice = replace(notice, run_url=settings.service.run_url(notice.run_id))
    ids: list[str] = []
    for name in delivery.wanted(settings, req.notify, notice.status):
        options: EnqueueOptions = {
            "workflow_name": NOTICE_WORKFLOW,
            "queue_name": NOTICE_QUEUE,
            "workflow_id": notice_id(notice.run_id, name, notice.status),
            "queue_partition_key": partition(notice.run_id, name),
            "priority": _PRIORITY.get(notice.status, _FINAL_PRIORITY),
            "app_version": settings.service.application_version,
            "attributes": {"run_id": notice.run_id, "notifier": name, "on": notice.status},
        }
        # A notice outlives its run: it must not inherit a deadline the run may have.
        with SetWorkflowTimeout(None):
            DBOS.enqueue_workflow_with_options(options, name, notice.as_dict())
        ids.append(options["workflow_id"])
    if ids:
        log.debug("run %s: %s notice enqueued for %s", notice.run_id, notice.status, ids)
    return ids


@DBOS.workflow(name=NOTICE_WORKFLOW)
def notice_workflow(name: str, notice: dict[str, Any]) -> dict[str, Any]:
    return delivery.deliver(name, Notice.from_dict(notice))


def notice_ids(steps: Iterable[Any]) -> list[str]:
    """The notice workflows a run enqueued, read from the run's own steps."""
    return [
        str(step["child_workflow_id"])
        for step in steps
        if step["function_name"] == NOTICE_WORKFLOW and step.get("child_workflow_id")
    ]
