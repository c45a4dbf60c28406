"""Why a waiting run waits, worked out when someone asks: ``runs``, ``runs show``,
``explain``, ``GET /api/runs/ID`` and ``fire --wait`` all read it from here.

The queue and the run decide what starts; this module only reads the same facts
(the runs holding each partition key, what a parked run recorded about its rate
window, the job workflows holding global slots) and names the first limit that
holds the run back. It is a snapshot: by the time it is printed the run may have
started.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from dbos import DBOSClient, WorkflowStatus

from trigger.core.runstatus import AWAITING_SLOT, RATE_LIMITED
from trigger.core.settings import Settings
from workflows import workers
from workflows.branch_flow import branch_of
from workflows.queue import JOB_WORKFLOW
from workflows.ratelimit import describe


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


class _QueueView:
    """The runs holding each partition key of the run queue, read once per report."""

    def __init__(self, client: DBOSClient, queue: str, workflow: str) -> None:
        running = client.list_workflows(
            name=workflow,
            queue_name=queue,
            status="PENDING",
            load_input=False,
            load_output=False,
        )
        self.running_by_key: dict[str, list[str]] = defaultdict(list)
        for row in running:
            self.running_by_key[row.queue_partition_key or ""].append(row.workflow_id)


# What holds a waiting run back, as ``/metrics`` counts it; the sentence says the rest.
Kind = Literal["delayed", "branch_busy", "rate_limited", "global_cap", "queued", "unknown_queue"]
KINDS: tuple[Kind, ...] = (
    "queued",
    "branch_busy",
    "rate_limited",
    "global_cap",
    "delayed",
    "unknown_queue",
)


@dataclass(frozen=True)
class Waiting:
    kind: Kind
    reason: str


def reasons(
    client: DBOSClient, settings: Settings, rows: list[WorkflowStatus], workflow: str, base: str
) -> dict[str, str]:
    """``{run id: reason}`` for the waiting rows among ``rows``."""
    return {k: w.reason for k, w in diagnose(client, settings, rows, workflow, base).items()}


def diagnose(
    client: DBOSClient, settings: Settings, rows: list[WorkflowStatus], workflow: str, base: str
) -> dict[str, Waiting]:
    """``{run id: what holds it back}`` for the waiting rows among ``rows`` (queued on
    ``base``, or parked in their workflow)."""
    view: _QueueView | None = None
    slots: list[int] = []  # job workflows holding a global slot; counted at most once
    out: dict[str, Waiting] = {}
    idle: list[str] = []  # why nothing picks up a run next in line; asked at most once
    for row in rows:
        status = str(row.status)
        attrs: dict[str, Any] = row.attributes or {}
        if status == "DELAYED":
            until = (row.delay_until_epoch_ms or 0) / 1000
            out[row.workflow_id] = Waiting(
                "delayed", f"debouncing: starts at {_iso(until)} unless a newer event replaces it"
            )
        elif status == "PENDING" and attrs.get("phase") == RATE_LIMITED:
            branch = attrs.get("branch") or branch_of(row.queue_partition_key or "")
            slot = attrs.get("rate_limited")
            what = describe(slot) if isinstance(slot, dict) else "rate-limited"
            out[row.workflow_id] = Waiting("rate_limited", f"branch {branch} is {what}")
        elif status == "PENDING" and attrs.get("phase") == AWAITING_SLOT:
            if not slots:
                slots.append(_holding_slots(client))
            out[row.workflow_id] = _for_a_slot(settings, slots[0])
        elif status == "ENQUEUED":
            if row.queue_name != base:
                out[row.workflow_id] = Waiting(
                    "unknown_queue",
                    f"on queue {row.queue_name!r}, which this version does not serve; "
                    "no worker will start it: cancel it and retry it",
                )
                continue
            view = view or _QueueView(client, base, workflow)
            held = _held(view, row)
            if held is None and not idle:
                idle.append(_next_in_line(settings))
            out[row.workflow_id] = held or Waiting("queued", idle[0])
    return out


def _holding_slots(client: DBOSClient) -> int:
    return len(
        client.list_workflows(
            name=JOB_WORKFLOW, status="PENDING", load_input=False, load_output=False
        )
    )


def _for_a_slot(settings: Settings, running: int) -> Waiting:
    cap = settings.queue.global_concurrency
    if cap is not None and running >= cap:
        return Waiting("global_cap", f"the global cap is reached ({running} of {cap} runs running)")
    return Waiting(
        "global_cap", f"next in line for a global slot ({running} of {cap or '?'} runs running)"
    )


def _next_in_line(settings: Settings) -> str:
    """Nothing holds the run back, so it waits for a worker: say so if none is alive."""
    gone = workers.absent(settings)
    if gone is None:
        return "next in line: waiting for a worker to pick it up"
    return (
        f"next in line, but {gone}: start `bauplan-trigger serve` (role all or worker) "
        "with this config to run it"
    )


def _held(view: _QueueView, row: WorkflowStatus) -> Waiting | None:
    """The run holding the waiting run's partition key, or None when none does."""
    key = row.queue_partition_key or ""
    busy = view.running_by_key.get(key, [])
    if busy:
        branch = (row.attributes or {}).get("branch") or branch_of(key)
        return Waiting("branch_busy", f"branch {branch} is busy with run {', '.join(sorted(busy))}")
    return None
