"""Per-branch limits on real DBOS: concurrency, rate limit, global cap, overrides."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import base_config, match, run_cli, wait_until, write_config
from tests.workflows.flow_support import (
    final,
    fire,
    intervals_by_ref,
    ledger,
    max_overlap,
    orders_trigger,
    release,
)
from trigger.core.event import manual_event
from trigger.core.settings import TriggerConfig
from workflows.branch_flow import spec_for
from workflows.queue import RUN_QUEUE


def test_ten_events_on_one_branch_never_overlap(launched: Any, backend: str | None) -> None:
    settings, enqueuer = launched(bauplan={"rehearse_seconds": 0.1})
    ids = [fire(settings, enqueuer, f"e{i}") for i in range(10)]
    runs = [final(enqueuer, run_id) for run_id in ids]
    assert all(run["status"] == "succeeded" for run in runs)
    jobs = ledger(settings).jobs()
    assert len(jobs) == 10
    assert max_overlap(intervals_by_ref(jobs)["rehearsal.orders_d1"]) == 1
    if backend is not None:
        # PostgreSQL keeps arrival order per branch; SQLite does not promise it.
        assert [j["job_id"] for j in jobs] == [run["job_id"] for run in runs]


def test_branches_run_in_parallel_up_to_the_global_cap(launched: Any) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_outcome": "hang"}, queue={"global_concurrency": 3}
    )
    ids = [fire(settings, enqueuer, f"b{i}", run_date=f"d{i}") for i in range(10)]
    # Three hung jobs on three branches at once; the other seven wait for the cap.
    wait_until(lambda: len(ledger(settings).jobs()) == 3, what="three jobs to start")
    from workflows.records import list_runs

    # The other seven hold their branches and wait for a slot (a moment after the jobs).
    def seven_waiting() -> list[dict[str, Any]] | None:
        waiting = list_runs(enqueuer.client, status="waiting", settings=settings)
        return waiting if len(waiting) == 7 else None

    waiting = wait_until(seven_waiting, what="seven runs waiting for the cap")
    assert all("global cap is reached (3 of 3" in r["waiting_reason"] for r in waiting)
    assert len(ledger(settings).jobs()) == 3
    wait_until(
        lambda: (
            release(settings) >= 0
            and len(ledger(settings).jobs()) == 10
            and all(j["status"] == "COMPLETE" for j in ledger(settings).jobs())
        ),
        what="all ten jobs to run",
    )
    assert all(final(enqueuer, run_id)["status"] == "succeeded" for run_id in ids)
    jobs = ledger(settings).jobs()
    assert max_overlap([(j["started_ts"], j["finished_ts"]) for j in jobs]) <= 3


def test_rate_limit_allows_n_starts_per_period_per_branch(launched: Any) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_seconds": 0.05},
        queue={"per_branch_concurrency": 5, "per_branch_limit": {"runs": 2, "period_seconds": 1.0}},
    )
    ids = [fire(settings, enqueuer, f"r{i}") for i in range(6)]
    other = fire(settings, enqueuer, "other", run_date="d2")
    assert all(final(enqueuer, run_id)["status"] == "succeeded" for run_id in [*ids, other])
    statuses = enqueuer.client.list_workflows(workflow_ids=ids)
    # The ledger's submit times, Bauplan's side of it: never more than 2 in any second.
    jobs = {j["job_id"]: j["started_ts"] for j in ledger(settings).jobs()}
    submits = sorted(jobs[s.attributes["job_id"]] for s in statuses)
    assert len(submits) == 6
    assert all(later - earlier >= 1.0 for earlier, later in zip(submits, submits[2:], strict=False))


def test_a_rate_limited_run_says_until_when(launched: Any) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_seconds": 0.05},
        queue={"per_branch_concurrency": 5, "per_branch_limit": {"runs": 1, "period_seconds": 60}},
    )
    first = fire(settings, enqueuer, "r1")
    final(enqueuer, first)
    second = fire(settings, enqueuer, "r2")
    from workflows.records import show_run

    def parked() -> dict[str, Any] | None:
        run: dict[str, Any] = show_run(enqueuer.client, second, settings)
        return run if run.get("phase") == "rate-limited" else None

    # It has its branch (nothing else could run there) and waits for its window.
    run = wait_until(parked, what="the second run to be rate-limited")
    assert run["status"] == "waiting"
    assert run["waiting_reason"].startswith("branch rehearsal.orders_d1 is rate-limited until ")
    assert run["waiting_reason"].endswith("(1 starts in the last 60s, limit 1)")
    assert len(ledger(settings).jobs()) == 1


def test_a_busy_branch_names_the_run_it_waits_for(
    launched: Any, tmp_path: Any, project_dir: Any, backend: str | None
) -> None:
    overrides: dict[str, Any] = {"bauplan": {"rehearse_outcome": "hang"}}
    settings, enqueuer = launched(**overrides)
    first = fire(settings, enqueuer, "x1")
    wait_until(lambda: ledger(settings).jobs(), what="the first job")
    second = fire(settings, enqueuer, "x2")
    from workflows.records import list_runs, show_run

    run = show_run(enqueuer.client, second, settings)
    assert run["waiting_reason"] == f"branch rehearsal.orders_d1 is busy with run {first}"
    [listed] = list_runs(enqueuer.client, status="waiting", settings=settings)
    assert listed["id"] == second and listed["waiting_reason"] == run["waiting_reason"]
    config = write_config(
        tmp_path / "bauplan-trigger.toml", base_config(tmp_path, project_dir, **overrides)
    )
    env = {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}
    table = run_cli("runs", "--status", "waiting", "--config", str(config), env=env)
    assert table.returncode == 0, table.stderr
    assert "WHY WAITING" in table.stdout and f"busy with run {first}" in table.stdout
    wait_until(lambda: release(settings) >= 0 and len(ledger(settings).jobs()) == 2, what="x2")
    release(settings)
    assert final(enqueuer, second)["status"] == "succeeded"


def test_a_trigger_override_gets_its_own_partitions_and_limits(
    launched: Any, project_dir: Any
) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_outcome": "hang"},
        triggers=[orders_trigger(project_dir, per_branch_concurrency=2)],
    )
    first = fire(settings, enqueuer, "o1")
    second = fire(settings, enqueuer, "o2")
    # Both jobs run at once on the same branch: this trigger allows two.
    wait_until(lambda: len(ledger(settings).jobs()) == 2, what="two concurrent jobs")
    first_status, second_status = enqueuer.client.list_workflows(workflow_ids=[first, second])
    # One queue for every trigger: the override is in the partition keys, a slot each.
    assert first_status.queue_name == second_status.queue_name == RUN_QUEUE
    assert {first_status.queue_partition_key, second_status.queue_partition_key} == {
        "rehearsal.orders_d1~c2#0",
        "rehearsal.orders_d1~c2#1",
    }
    release(settings)
    assert final(enqueuer, first)["status"] == final(enqueuer, second)["status"] == "succeeded"


def test_partition_namespaces_come_from_the_settings_alone(
    settings_factory: Any, project_dir: Any
) -> None:
    settings = settings_factory(
        queue={"per_branch_limit": {"runs": 3, "period_seconds": 0.5}},
        triggers=[
            orders_trigger(project_dir),
            {**orders_trigger(project_dir, per_branch_concurrency=1), "name": "same"},
            {
                **orders_trigger(project_dir, per_branch_limit={"runs": 1, "period_seconds": 10}),
                "name": "slow",
            },
        ],
    )
    specs = [spec_for(settings, t) for t in settings.triggers]
    assert [s.namespace for s in specs] == ["", "", "c1-r1p10"]
    assert [s.window("u.b") for s in specs] == ["u.b", "u.b", "u.b~c1-r1p10"]
    assert spec_for(settings, None).per_branch_limit is not None
    assert isinstance(settings.triggers[0], TriggerConfig)


def test_runs_left_waiting_on_an_earlier_releases_queue_are_adopted_at_launch(
    launched: Any,
) -> None:
    settings, enqueuer = launched(bauplan={"rehearse_seconds": 0.05})
    [request] = match(manual_event("orders", {"run_date": "old"}, event_id="old"), settings)
    enqueuer.client.enqueue(
        {
            "workflow_name": "bauplan_trigger.run",
            "queue_name": f"{RUN_QUEUE}.c2",  # as a release with per-limits queues did
            "workflow_id": request.run_id,
            "queue_partition_key": "rehearsal.orders_old",
            "priority": request.priority,
            "app_version": settings.service.application_version,
        },
        request.as_dict(),
    )
    from dbos import DBOS

    from workflows.queue import adopt_earlier_queues

    DBOS.register_queue(f"{RUN_QUEUE}.c2", partition_concurrency=2)  # as that release did
    assert adopt_earlier_queues() == 1
    # Its queue is gone: no worker polls it for ever after.
    assert f"{RUN_QUEUE}.c2" not in [q.name for q in DBOS.list_queues()]
    assert final(enqueuer, request.run_id)["status"] == "succeeded"
    assert adopt_earlier_queues() == 0


@pytest.mark.parametrize("cap", [None, 5])
def test_the_job_queue_polls_at_the_run_queues_pace_only_under_a_cap(
    launched: Any, cap: int | None
) -> None:
    from dbos import DBOS

    from workflows.queue import JOB_QUEUE, UNCAPPED_JOB_POLLING

    launched(queue={"global_concurrency": cap})
    queue = DBOS.retrieve_queue(JOB_QUEUE)
    assert queue is not None
    assert queue.polling_interval_sec == (UNCAPPED_JOB_POLLING if cap is None else 0.1)
    assert queue.concurrency == cap
