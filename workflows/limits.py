"""A run's time limits: ``max_queue_seconds`` before it starts, ``timeout_seconds`` once
its job is submitted (``[queue]`` and ``[bauplan]`` give the defaults, a trigger its own;
the request carries what applied when the event arrived).

Both are read inside steps, so a crash neither resets nor doubles them:

- A run that waited longer than ``max_queue_seconds`` since it was enqueued ends
  ``expired`` when it is next about to go on (its first step, and right before it
  records a start or submits), and submits nothing. It cannot be told earlier: until
  its branch frees up, DBOS does not hand it to a worker.
- The job's deadline is its submission time plus ``timeout_seconds``, from the
  submissions table, so a run recovered after a crash keeps the deadline it had.
"""

from __future__ import annotations

import time

from dbos import DBOS

from trigger.core.matching import RunRequest
from workflows.store import Store


def expired(req: RunRequest, start_at: float | None = None) -> str | None:
    """Why the run has waited too long to start, or None. ``start_at``: the earliest
    time it could start (its rate window's), when that is later than now: a run that
    would start only after its limit expires now rather than sleep until then."""
    if req.max_queue_seconds is None:
        return None
    status = DBOS.get_workflow_status(req.run_id)
    if status is None or not status.created_at:
        return None
    enqueued = status.created_at / 1000
    now = time.time()
    if start_at is not None and start_at - enqueued > req.max_queue_seconds:
        return (
            f"its rate window opens {start_at - now:.1f} s from now, after its "
            f"max_queue_seconds = {req.max_queue_seconds:g} since it was enqueued; "
            "nothing was submitted"
        )
    if now - enqueued <= req.max_queue_seconds:
        return None
    return (
        f"waited {now - enqueued:.1f} s for its turn, longer than max_queue_seconds = "
        f"{req.max_queue_seconds:g}; nothing was submitted"
    )


def job_deadline(store: Store, req: RunRequest) -> float | None:
    """When the run's job must have ended, or None without a timeout."""
    if req.timeout_seconds is None:
        return None
    submission = store.submission(req.run_id)
    began = submission.started_at if submission is not None else time.time()
    return began + req.timeout_seconds


def timed_out(req: RunRequest, job_id: str) -> str:
    return f"timed out after {req.timeout_seconds:g} s (job {job_id} cancelled)"
