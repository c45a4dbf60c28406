"""Helpers for the flow-control tests: firing runs, releasing hung rehearsal jobs,
and reading overlaps from the rehearsal ledger (the truth for what ran when)."""

from __future__ import annotations

import json
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


# -- checks on a ledger (or on job-like records {"ref", "started_ts", "finished_ts"}) --


def max_running_per_ref(jobs: list[dict[str, Any]]) -> int:
    """The most jobs running at one instant on one branch (1 when never side by side)."""
    return max((max_overlap(spans) for spans in intervals_by_ref(jobs).values()), default=0)


def max_running(jobs: list[dict[str, Any]]) -> int:
    """The most jobs running at one instant across every branch."""
    return max_overlap([(j["started_ts"], j["finished_ts"]) for j in jobs])


def max_starts_in_window(starts: list[float], period: float) -> int:
    """The most starts in any window (t - period, t]: the window DBOS's limiter counts
    (a start exactly ``period`` after another does not share its window)."""
    ordered = sorted(starts)
    best = lo = 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - period:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def tightest_window(starts: list[float], runs: int) -> float | None:
    """The shortest time from a start to the ``runs``-th start after it: a limit of
    ``runs`` per ``period`` holds exactly when this is at least ``period`` (None when
    there are no ``runs + 1`` starts)."""
    ordered = sorted(starts)
    gaps = [ordered[k + runs] - ordered[k] for k in range(len(ordered) - runs)]
    return min(gaps) if gaps else None


def rate_check(jobs: list[dict[str, Any]], runs: int, period: float) -> dict[str, Any]:
    """Per branch, the submits of its jobs against ``runs`` per ``period`` seconds."""
    starts: dict[str, list[float]] = {}
    for job in jobs:
        starts.setdefault(job["ref"], []).append(job["started_ts"])
    most = {ref: max_starts_in_window(s, period) for ref, s in starts.items()}
    tight = [t for s in starts.values() if (t := tightest_window(s, runs)) is not None]
    return {
        "max_submits_per_branch_in_period": max(most.values(), default=0),
        "branches_over_limit": sum(1 for n in most.values() if n > runs),
        "tightest_window_seconds": None if not tight else round(min(tight), 3),
        "held": all(n <= runs for n in most.values()),
    }


def job_key(ref: str | None, parameters: dict[str, Any]) -> tuple[str, str]:
    """What tells one run's job from another's in the ledger: its branch and parameters."""
    return (str(ref), json.dumps(parameters, sort_keys=True, default=str))


def exactly_once(
    jobs: list[dict[str, Any]], expected: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """Every run (run id -> its ``job_key``) submitted exactly one job, and no job
    belongs to no run. The keys must be distinct across runs."""
    assert len(set(expected.values())) == len(expected), "two runs share a job key"
    count: dict[tuple[str, str], int] = {}
    for job in jobs:
        key = job_key(job["ref"], job["parameters"])
        count[key] = count.get(key, 0) + 1
    per_run = {run_id: count.get(key, 0) for run_id, key in expected.items()}
    known = set(expected.values())
    return {
        "runs": len(expected),
        "jobs": len(jobs),
        "runs_without_job": sum(1 for n in per_run.values() if n == 0),
        "runs_with_several_jobs": sum(1 for n in per_run.values() if n > 1),
        "jobs_of_no_run": sum(n for key, n in count.items() if key not in known),
        "held": len(jobs) == len(expected) and all(n == 1 for n in per_run.values()),
    }
