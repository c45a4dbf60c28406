"""Why a waiting run waits, worked out when someone asks: ``runs``, ``runs show``,
``explain``, ``GET /api/runs/ID`` and ``fire --wait`` all read it from here.

The queue itself decides what starts; this module only reads the same facts
DBOS reads when it dequeues (running runs per branch, starts in the rate-limit
window, running runs per queue) and names the first limit that holds the run
back. It is a snapshot: by the time it is printed the run may have started.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from dbos import DBOSClient, WorkflowStatus

from trigger.core.settings import Settings
from workflows import workers
from workflows.flow_queues import QueueSpec, all_specs


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


class _QueueView:
    """Running runs and recent starts on one queue, read once per report."""

    def __init__(self, client: DBOSClient, spec: QueueSpec, workflow: str) -> None:
        self.spec = spec
        running = client.list_workflows(
            name=workflow,
            queue_name=spec.name,
            status="PENDING",
            load_input=False,
            load_output=False,
        )
        self.running = len(running)
        self.running_by_branch: dict[str, list[str]] = defaultdict(list)
        for row in running:
            self.running_by_branch[row.queue_partition_key or ""].append(row.workflow_id)
        self.starts_by_branch: dict[str, list[float]] = defaultdict(list)
        limit = spec.per_branch_limit
        if limit is not None:
            since = datetime.fromtimestamp(time.time() - limit.period_seconds, UTC)
            recent = client.list_workflows(
                name=workflow,
                queue_name=spec.name,
                dequeued_after=since.isoformat(),
                load_input=False,
                load_output=False,
            )
            for row in recent:
                if row.dequeued_at is not None and str(row.status) not in ("ENQUEUED", "DELAYED"):
                    self.starts_by_branch[row.queue_partition_key or ""].append(
                        row.dequeued_at / 1000
                    )


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
    """``{run id: what holds it back}`` for the waiting rows among ``rows``."""
    specs = all_specs(settings, base)
    views: dict[str, _QueueView] = {}
    out: dict[str, Waiting] = {}
    idle: list[str] = []  # why nothing picks up a run next in line; asked at most once
    for row in rows:
        status = str(row.status)
        if status == "DELAYED":
            until = (row.delay_until_epoch_ms or 0) / 1000
            out[row.workflow_id] = Waiting(
                "delayed", f"debouncing: starts at {_iso(until)} unless a newer event replaces it"
            )
            continue
        if status != "ENQUEUED":
            continue
        spec = specs.get(row.queue_name or "")
        if spec is None:
            out[row.workflow_id] = Waiting(
                "unknown_queue",
                f"on queue {row.queue_name!r}, which this config does not define; "
                "no worker with this config will start it",
            )
            continue
        if spec.name not in views:
            views[spec.name] = _QueueView(client, spec, workflow)
        held = _held(views[spec.name], settings, row)
        if held is None and not idle:
            idle.append(_next_in_line(settings))
        out[row.workflow_id] = held or Waiting("queued", idle[0])
    return out


def _next_in_line(settings: Settings) -> str:
    """Nothing holds the run back, so it waits for a worker: say so if none is alive."""
    gone = workers.absent(settings)
    if gone is None:
        return "next in line: waiting for a worker to pick it up"
    return (
        f"next in line, but {gone}: start `bauplan-trigger serve` (role all or worker) "
        "with this config to run it"
    )


def _held(view: _QueueView, settings: Settings, row: WorkflowStatus) -> Waiting | None:
    """The limit that holds the run back, or None when none does."""
    branch = row.queue_partition_key or ""
    busy = view.running_by_branch.get(branch, [])
    if len(busy) >= view.spec.per_branch_concurrency:
        return Waiting("branch_busy", f"branch {branch} is busy with run {', '.join(sorted(busy))}")
    limit = view.spec.per_branch_limit
    starts = sorted(view.starts_by_branch.get(branch, []))
    if limit is not None and len(starts) >= limit.runs:
        until = starts[len(starts) - limit.runs] + limit.period_seconds
        return Waiting(
            "rate_limited",
            f"branch {branch} is rate-limited until {_iso(until)} "
            f"({len(starts)} starts in the last {limit.period_seconds:g}s, limit {limit.runs})",
        )
    cap = settings.queue.global_concurrency
    if cap is not None and view.running >= cap:
        return Waiting(
            "global_cap", f"the global cap is reached ({view.running} of {cap} runs running)"
        )
    return None
