"""The run queue: its registration in ``serve`` and what every enqueue carries.

Every enqueue carries a partition key (the full Bauplan branch: a partitioned
queue leaves key-less workflows ENQUEUED forever), an explicit priority (DBOS
runs un-prioritised workflows before all others) and a workflow id derived from
the event, so a second enqueue of the same event finds the first run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from dbos import DBOS, EnqueueOptions, Queue, WorkflowStatus

from trigger.core.errors import BauplanFailure, EnqueueUnavailableError
from trigger.core.matching import RunRequest
from trigger.core.settings import Settings
from workflows import coalesce
from workflows.flow_queues import all_specs, spec_for

RUN_QUEUE = "bauplan-trigger-runs"
RUN_WORKFLOW = "bauplan_trigger.run"


def register_run_queue(settings: Settings) -> Queue:
    """Register the main run queue and one per distinct per-trigger override."""
    q = settings.queue
    queues = [
        DBOS.register_queue(
            spec.name,
            partition_concurrency=spec.per_branch_concurrency,
            partition_limiter=None
            if spec.per_branch_limit is None
            else {
                "limit": spec.per_branch_limit.runs,
                "period": spec.per_branch_limit.period_seconds,
            },
            worker_concurrency=q.worker_concurrency,
            global_concurrency=q.global_concurrency,
            polling_interval_sec=q.polling_interval,
        )
        for spec in all_specs(settings, RUN_QUEUE).values()
    ]
    return queues[0]


def queue_names(settings: Settings) -> list[str]:
    return list(all_specs(settings, RUN_QUEUE))


def run_queue(settings: Settings, trigger: str | None) -> str:
    """The queue a trigger's runs go on: its own when it overrides the per-branch limits."""
    return spec_for(settings, RUN_QUEUE, settings.find_trigger(trigger)).name


def resume_queue(settings: Settings, status: WorkflowStatus) -> str | None:
    """The queue a workflow goes back on when it is resumed (taken over, or resumed by an
    operator), so that its limits still apply: the queue it is on while DBOS records one;
    for a run that lost it (DBOS clears it on cancel), its trigger's queue."""
    if status.queue_name:
        return status.queue_name
    if status.name == RUN_WORKFLOW:
        return run_queue(settings, (status.attributes or {}).get("trigger"))
    return None


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
    settings: Settings, request: RunRequest, branch: str, burst: coalesce.Burst
) -> EnqueueOptions:
    """How a run request goes on the queue (``workflows.intake`` does the enqueue)."""
    options: EnqueueOptions = {
        "workflow_name": RUN_WORKFLOW,
        "queue_name": run_queue(settings, request.trigger),
        "workflow_id": request.run_id,
        "workflow_id_reuse_policy": "reject",
        "queue_partition_key": branch,
        "priority": request.priority,
        "app_version": settings.service.application_version,
        "attributes": {**attributes_for(request, branch), **burst.attributes()},
    }
    if burst.delay_seconds:
        options["delay_seconds"] = burst.delay_seconds
    return options


def attributes_for(request: RunRequest, branch: str) -> dict[str, Any]:
    return {
        "trigger": request.trigger,
        "event_id": request.event_id,
        "event_kind": request.event_kind,
        "branch": branch,
        "priority": request.priority,
    }
