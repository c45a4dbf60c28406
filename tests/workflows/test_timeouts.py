"""Time limits of a run, on both databases: a job that outlives ``timeout_seconds`` is
cancelled and the run fails saying so; a run that waited longer than
``max_queue_seconds`` for its turn ends ``expired`` and submits nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.support import make_settings, wait_until
from tests.workflows.flow_support import final, fire, ledger, orders_trigger, release
from trigger.core.errors import ConfigError


def test_a_job_that_outlives_its_timeout_is_cancelled_and_the_run_fails(
    launched: Any, project_dir: Any
) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_outcome": "hang", "poll_interval": 0.05},
        triggers=[orders_trigger(project_dir, timeout_seconds=0.5)],
    )
    run_id = fire(settings, enqueuer, "t1")
    ended = final(enqueuer, run_id)
    [job] = ledger(settings).jobs()
    assert ended["status"] == "failed"
    assert ended["error"] == f"timed out after 0.5 s (job {job['job_id']} cancelled)"
    assert job["status"] == "ABORT"


def test_the_bauplan_section_sets_the_timeout_of_every_trigger(
    launched: Any, project_dir: Any
) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_outcome": "hang", "poll_interval": 0.05, "timeout_seconds": 0.5},
        triggers=[orders_trigger(project_dir)],
    )
    ended = final(enqueuer, fire(settings, enqueuer, "t2"))
    assert ended["status"] == "failed" and ended["error"].startswith("timed out after 0.5 s")


def test_a_job_that_ends_in_time_is_not_touched(launched: Any, project_dir: Any) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_seconds": 0.05, "poll_interval": 0.05},
        triggers=[orders_trigger(project_dir, timeout_seconds=60)],
    )
    assert final(enqueuer, fire(settings, enqueuer, "t3"))["status"] == "succeeded"


def test_a_run_that_waited_too_long_for_its_branch_expires_without_a_job(
    launched: Any, project_dir: Any
) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_outcome": "hang", "poll_interval": 0.05},
        triggers=[orders_trigger(project_dir, max_queue_seconds=3)],
    )
    first = fire(settings, enqueuer, "q1")
    wait_until(lambda: len(ledger(settings).jobs()) == 1, what="the first job")
    second = fire(settings, enqueuer, "q2")  # same branch: waits behind the hung job
    # Let it wait past its limit before the branch frees up.
    wait_until(lambda: _age(enqueuer, second) > 3.1, what="the second run to wait past its limit")
    release(settings)
    assert final(enqueuer, first)["status"] == "succeeded"
    ended = final(enqueuer, second)
    assert ended["status"] == "expired"
    assert ended["error"].startswith("waited ") and "max_queue_seconds = 3;" in ended["error"]
    assert ended["job_id"] is None
    assert len(ledger(settings).jobs()) == 1


def test_a_run_whose_rate_window_opens_too_late_expires_at_once(
    launched: Any, project_dir: Any
) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_seconds": 0.05, "poll_interval": 0.05},
        triggers=[
            orders_trigger(
                project_dir,
                max_queue_seconds=5,
                per_branch_limit={"runs": 1, "period_seconds": 3600},
            )
        ],
    )
    assert final(enqueuer, fire(settings, enqueuer, "r1"))["status"] == "succeeded"
    ended = final(enqueuer, fire(settings, enqueuer, "r2"), timeout=30)
    assert ended["status"] == "expired", ended
    assert "its rate window opens" in ended["error"]
    assert len(ledger(settings).jobs()) == 1


def test_under_a_global_cap_a_run_whose_window_opens_too_late_expires_too(
    launched: Any, project_dir: Any
) -> None:
    settings, enqueuer = launched(
        bauplan={"rehearse_seconds": 0.05, "poll_interval": 0.05},
        queue={"global_concurrency": 1},
        triggers=[
            orders_trigger(
                project_dir,
                max_queue_seconds=5,
                per_branch_limit={"runs": 1, "period_seconds": 3600},
            )
        ],
    )
    assert final(enqueuer, fire(settings, enqueuer, "c1"))["status"] == "succeeded"
    ended = final(enqueuer, fire(settings, enqueuer, "c2"), timeout=30)
    assert ended["status"] == "expired", ended
    assert "its rate window opens" in ended["error"]
    assert len(ledger(settings).jobs()) == 1


@pytest.mark.parametrize("key", ["timeout_seconds", "max_queue_seconds"])
def test_a_limit_must_be_positive(tmp_path: Any, project_dir: Any, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        make_settings(
            tmp_path, None, project_dir, triggers=[orders_trigger(project_dir, **{key: 0})]
        )


def _age(enqueuer: Any, run_id: str) -> float:
    [status] = enqueuer.client.list_workflows(workflow_ids=[run_id])
    return time.time() - status.created_at / 1000
