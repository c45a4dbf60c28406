"""A run that has its branch but waits in its workflow, on both databases: for its rate
window (``rate-limited``) or, under the global cap, for a slot (``awaiting-slot``).
Either way it reads as waiting, a newer event of a coalescing trigger supersedes it at
once (it is woken, gives back what it held and submits nothing), and an operator's
cancel ends it without a job."""

from __future__ import annotations

from typing import Any

from tests.support import wait_until
from tests.workflows.flow_support import final, fire, ledger, orders_trigger, release
from trigger.core.eventlog import event_log
from trigger.ops import control
from trigger.ops.explain import explain
from workflows.queue import JOB_WORKFLOW
from workflows.records import show_run
from workflows.store import Store, starts

# Long enough that a run not woken would outlast every wait in these tests.
ONE_PER_HOUR = {"per_branch_limit": {"runs": 1, "period_seconds": 3600}}


def _phase(enqueuer: Any, settings: Any, run_id: str, phase: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        run: dict[str, Any] = show_run(enqueuer.client, run_id, settings)
        return run if run.get("phase") == phase else None

    found: dict[str, Any] = wait_until(reached, what=f"run {run_id} to be {phase}")
    return found


def _recorded_starts(settings: Any) -> list[str]:
    store = Store(settings.database_url())
    try:
        with store.engine.connect() as conn:
            return [r.run_id for r in conn.execute(starts.select())]
    finally:
        store.close()


def test_a_rate_limited_run_is_superseded_by_a_newer_event_at_once(
    launched: Any, project_dir: Any
) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_seconds": 0.05},
        queue=ONE_PER_HOUR,
        triggers=[orders_trigger(project_dir, on_burst="latest")],
    )
    first = fire(settings, enqueuer, "l1")
    assert final(enqueuer, first)["status"] == "succeeded"
    second = fire(settings, enqueuer, "l2")
    parked = _phase(enqueuer, settings, second, "rate-limited")
    assert parked["status"] == "waiting"
    assert parked["waiting_reason"].endswith("(1 starts in the last 3600s, limit 1)")
    # ``explain`` (and the run's page, which shows its story) says the same.
    [told] = explain(second, event_log(settings), enqueuer.client, settings)["runs"]
    assert told["waiting"] == parked["waiting_reason"]
    third = fire(settings, enqueuer, "l3")
    # Woken, it ends now rather than in an hour, and never submits.
    ended = final(enqueuer, second)
    assert ended["status"] == "superseded"
    assert third in ended["error"]
    assert _phase(enqueuer, settings, third, "rate-limited")["status"] == "waiting"
    assert len(ledger(settings).jobs()) == 1
    assert _recorded_starts(settings) == [first]
    # An operator's cancel ends the parked run too, without a job.
    control.cancel(settings, enqueuer.client, third, actor="test")
    assert final(enqueuer, third)["status"] == "cancelled"
    assert len(ledger(settings).jobs()) == 1


def test_a_run_waiting_for_a_global_slot_is_superseded_and_its_job_workflow_cancelled(
    launched: Any, project_dir: Any
) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_outcome": "hang"},
        queue={"global_concurrency": 1},
        triggers=[orders_trigger(project_dir, on_burst="latest")],
    )
    holder = fire(settings, enqueuer, "h", run_date="a")
    wait_until(lambda: len(ledger(settings).jobs()) == 1, what="the one slot to be taken")
    older = fire(settings, enqueuer, "b1", run_date="b")
    parked = _phase(enqueuer, settings, older, "awaiting-slot")
    assert parked["status"] == "waiting"
    assert parked["waiting_reason"] == "the global cap is reached (1 of 1 runs running)"
    newer = fire(settings, enqueuer, "b2", run_date="b")
    assert final(enqueuer, older)["status"] == "superseded"
    [job_workflow] = enqueuer.client.list_workflows(workflow_ids=[f"{older}:job"])
    assert job_workflow.name == JOB_WORKFLOW and str(job_workflow.status) == "CANCELLED"
    _phase(enqueuer, settings, newer, "awaiting-slot")
    assert len(ledger(settings).jobs()) == 1
    # The slot frees: the newer run gets it, the holder ends; one job each, no more.
    release(settings)
    wait_until(lambda: len(ledger(settings).jobs()) == 2, what="the newer run's job")
    release(settings)
    assert final(enqueuer, holder)["status"] == final(enqueuer, newer)["status"] == "succeeded"
    assert [j["ref"] for j in ledger(settings).jobs()] == [
        "rehearsal.orders_a",
        "rehearsal.orders_b",
    ]


def test_cancelling_a_run_under_the_cap_cancels_its_job_workflow_and_resuming_picks_it_up(
    launched: Any, project_dir: Any
) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_outcome": "hang"}, queue={"global_concurrency": 1}
    )
    holder = fire(settings, enqueuer, "h", run_date="a")
    wait_until(lambda: len(ledger(settings).jobs()) == 1, what="the one slot to be taken")
    waiting = fire(settings, enqueuer, "w", run_date="b")
    _phase(enqueuer, settings, waiting, "awaiting-slot")
    control.cancel(settings, enqueuer.client, waiting, actor="test")
    assert final(enqueuer, waiting)["status"] == "cancelled"
    [job_workflow] = enqueuer.client.list_workflows(workflow_ids=[f"{waiting}:job"])
    assert str(job_workflow.status) == "CANCELLED"
    control.resume(settings, enqueuer.client, waiting, actor="test")
    release(settings)  # the holder's job ends: the resumed run's job workflow gets the slot
    wait_until(lambda: len(ledger(settings).jobs()) == 2, what="the resumed run's job")
    release(settings)
    assert final(enqueuer, holder)["status"] == final(enqueuer, waiting)["status"] == "succeeded"
    assert len(ledger(settings).jobs()) == 2
