"""Helpers for the flow-control tests: firing runs, releasing hung rehearsal jobs,
and reading overlaps from the rehearsal ledger (the truth for what ran when)."""

from __future__ import annotations

import time
from typing import Any

from tests.support import final_run as final  # noqa: F401  (the flow tests import it here)
from tests.support import match, wait_until
from trigger.core.event import manual_event
from workflows.bauplan.rehearsal import Ledger
from workflows.runtime import ledger_path


def orders_trigger(project_dir: Any, **extra: Any) -> dict[str, Any]:
    """The ``orders`` trigger, one branch per ``run_date``, with flow settings of its own."""
    return {
        "name": "orders",
        "project_dir": str(project_dir),
        "branch": "orders_{run_date}",
        "inputs": ["run_date"],
        "parameters": {"run_date": "{run_date}"},
        **extra,
    }


def fill_the_branch(settings: Any, enqueuer: Any) -> tuple[list[str], str]:
    """With two runs per branch and hung jobs: two runs running, a third waiting for the
    branch; (the running run ids, the waiting one)."""
    running = [fire(settings, enqueuer, "w1"), fire(settings, enqueuer, "w2")]
    wait_until(lambda: len(ledger(settings).jobs()) == 2, what="two concurrent jobs")
    return running, fire(settings, enqueuer, "w3")


def fire(
    settings: Any, enqueuer: Any, event_id: str, trigger: str = "orders", **inputs: str
) -> str:
    inputs = inputs or {"run_date": "d1"}
    [request] = match(manual_event(trigger, inputs, event_id=event_id), settings)
    return str(enqueuer.enqueue(request).run_id)


def ledger(settings: Any) -> Ledger:
    return Ledger(ledger_path(settings))


def release(settings: Any) -> int:
    """Let every hung rehearsal job finish now."""
    rows = ledger(settings).execute(
        "UPDATE jobs SET finish_at = ? WHERE finish_at IS NULL AND status = 'RUNNING' "
        "RETURNING job_id",
        (time.time(),),
    )
    return len(rows)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t closes before a start at t)."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = now = 0
    for _, delta in points:
        now += delta
        best = max(best, now)
    return best


def intervals_by_ref(jobs: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for job in jobs:
        out.setdefault(job["ref"], []).append((job["started_ts"], job["finished_ts"]))
    return out
