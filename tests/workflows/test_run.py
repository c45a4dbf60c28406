"""The run workflow on real DBOS (SQLite and PostgreSQL) with the rehearsal client."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import final_run as _final
from tests.support import match
from trigger.core.event import manual_event
from workflows.bauplan.rehearsal import Ledger
from workflows.runtime import ledger_path


def _fire(
    settings: Any, enqueuer: Any, trigger: str = "orders", event_id: str = "e1", **inputs: str
) -> str:
    inputs = inputs or ({"run_date": "2026-11-23"} if trigger == "orders" else {})
    [request] = match(manual_event(trigger, inputs, event_id=event_id), settings)
    return enqueuer.enqueue(request).run_id


def test_a_run_succeeds_and_submits_once_with_templated_parameters(launched: Any) -> None:
    settings, enqueuer = launched()
    run_id = _fire(settings, enqueuer)
    run = _final(enqueuer, run_id)
    assert run["status"] == "succeeded"
    assert run["branch"] == "rehearsal.orders_2026_11_23"
    assert run["trigger"] == "orders" and run["event_id"] == "e1"
    jobs = Ledger(ledger_path(settings)).jobs()
    assert len(jobs) == 1
    assert jobs[0]["job_id"] == run["job_id"]
    assert jobs[0]["ref"] == "rehearsal.orders_2026_11_23"
    assert jobs[0]["parameters"] == {"run_date": "2026-11-23", "source": "fire"}
    assert run["parameters"] == {"run_date": "2026-11-23", "source": "fire"}
    assert any("would run" in line for line in run["log_tail"])


def test_a_failed_job_fails_the_run_naming_trigger_branch_and_job(launched: Any) -> None:
    settings, enqueuer = launched(bauplan={"rehearse_outcome": "fail"})
    run_id = _fire(settings, enqueuer)
    run = _final(enqueuer, run_id)
    assert run["status"] == "failed"
    assert run["dbos_status"] == "ERROR"
    assert "told to fail" in run["error"]
    jobs = Ledger(ledger_path(settings)).jobs()
    assert [j["status"] for j in jobs] == ["FAIL"]
    status = enqueuer.client.list_workflows(workflow_ids=[run_id])[0]
    assert "'orders'" in str(status.error)
    assert "rehearsal.orders_2026_11_23" in str(status.error)
    assert jobs[0]["job_id"] in str(status.error)


def test_the_same_event_id_fired_twice_gives_one_run(launched: Any) -> None:
    settings, enqueuer = launched()
    [request] = match(manual_event("orders", {"run_date": "d"}, event_id="same"), settings)
    first = enqueuer.enqueue(request)
    second = enqueuer.enqueue(request)
    assert (first.duplicate, second.duplicate) == (False, True)
    assert first.run_id == second.run_id
    _final(enqueuer, first.run_id)
    assert len(Ledger(ledger_path(settings)).jobs()) == 1


def test_every_enqueue_carries_the_branch_partition_key_and_a_priority(launched: Any) -> None:
    settings, enqueuer = launched()
    run_id = _fire(settings, enqueuer)
    status = enqueuer.client.list_workflows(workflow_ids=[run_id])[0]
    assert status.queue_partition_key == "rehearsal.orders_2026_11_23"
    assert status.priority == 100
    _final(enqueuer, run_id)


def test_transient_sdk_errors_are_retried_and_still_submit_once(launched: Any) -> None:
    settings, enqueuer = launched()
    ledger = Ledger(ledger_path(settings))
    ledger.inject_fault("run", "TooManyRequestsError", "slow down", count=2)
    ledger.inject_fault("get_job", "ServiceUnavailableError", "busy", count=1)
    run = _final(enqueuer, _fire(settings, enqueuer))
    assert run["status"] == "succeeded"
    assert len(ledger.jobs()) == 1


def test_permanent_sdk_errors_fail_at_once_with_a_clear_message(launched: Any) -> None:
    settings, enqueuer = launched()
    ledger = Ledger(ledger_path(settings))
    ledger.inject_fault("run", "BauplanJobError", "no bauplan_project.yaml found in /x", count=5)
    run = _final(enqueuer, _fire(settings, enqueuer))
    assert run["status"] == "failed"
    assert "bauplan_project.yml" in run["error"] and "project_dir" in run["error"]
    remaining = ledger.execute("SELECT remaining FROM faults")[0]["remaining"]
    assert remaining == 4  # tried exactly once
    assert ledger.jobs() == []


def test_a_missing_branch_is_created_from_base_ref(launched: Any) -> None:
    settings, enqueuer = launched()
    run = _final(enqueuer, _fire(settings, enqueuer))
    rows = Ledger(ledger_path(settings)).execute("SELECT name, from_ref FROM branches")
    assert [(r["name"], r["from_ref"]) for r in rows] == [(run["branch"], "main")]


def test_a_branch_outside_the_users_space_is_refused() -> None:
    from workflows.steps.branch import guard_writable, user_branch

    with pytest.raises(Exception, match="main"):
        guard_writable("main", "rehearsal")
    with pytest.raises(Exception, match="not prefixed"):
        guard_writable("bob.orders", "rehearsal")
    assert user_branch("alice", "orders_main") == "alice.orders_main"


def _step_names(enqueuer: Any, run_id: str) -> list[str]:
    return [s["function_name"] for s in enqueuer.client.list_workflow_steps(run_id)]


def test_a_plain_run_is_three_checkpoints_however_often_it_polls(launched: Any) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_seconds": 1.0, "poll_interval": 0.05, "poll_max_interval": 0.05}
    )
    run = _final(enqueuer, _fire(settings, enqueuer))
    assert run["status"] == "succeeded"
    # About twenty polls, all inside one wait step.
    assert _step_names(enqueuer, run["id"]) == ["launch", "wait", "finish"]


def test_a_long_wait_checkpoints_each_budget_and_keeps_its_backoff(
    launched: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workflows import job

    monkeypatch.setattr(job, "WAIT_STEP_SECONDS", 0.3)
    settings, enqueuer = launched(
        bauplan={"rehearse_seconds": 2.0, "poll_interval": 0.05, "poll_max_interval": 0.4}
    )
    run = _final(enqueuer, _fire(settings, enqueuer))
    assert run["status"] == "succeeded"
    waits = [
        s["output"]
        for s in enqueuer.client.list_workflow_steps(run["id"])
        if s["function_name"] == "wait"
    ]
    assert len(waits) >= 3
    assert [w["state"] for w in waits][-1] == "success"
    delays = [w["delay"] for w in waits]
    # Each step carries on from the delay the last one reached, up to the cap.
    assert delays == sorted(delays) and delays[0] > 0.05 and delays[-1] == pytest.approx(0.4)
    assert len(Ledger(ledger_path(settings)).jobs()) == 1


def test_a_run_failing_in_its_first_step_still_records_when_and_where(launched: Any) -> None:
    from workflows.run import RESULT_EVENT

    settings, enqueuer = launched()
    Ledger(ledger_path(settings)).inject_fault("has_branch", "ForbiddenError", "denied", count=5)
    run_id = _fire(settings, enqueuer)
    run = _final(enqueuer, run_id)
    assert run["status"] == "failed" and "denied" in run["error"]
    result = enqueuer.client.get_event(run_id, RESULT_EVENT, timeout_seconds=0)
    [status] = enqueuer.client.list_workflows(workflow_ids=[run_id])
    assert result["branch"] == "rehearsal.orders_2026_11_23"
    assert result["started_at"] == pytest.approx((status.dequeued_at or 0) / 1000)
    assert result["finished_at"] >= result["started_at"]
    assert _step_names(enqueuer, run_id) == ["launch", "finish"]
