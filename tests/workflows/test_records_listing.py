"""Listing runs: every filter narrows the runs first and pages after, on both databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import final_run, wait_until
from tests.trigger.ops.test_api import shared_branch_triggers
from trigger.core.event import manual_event
from trigger.ops.control import cancel
from trigger.sources.manual import fire_event
from workflows.records import list_runs, show_run


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["id"] for r in rows]


def test_filters_page_through_the_runs_they_keep(launched: Any, project_dir: Path) -> None:
    settings, enqueuer = launched(triggers=shared_branch_triggers(project_dir))
    client = enqueuer.client
    slow = fire_event(enqueuer, manual_event("slow", {}, event_id="hold")).run_id
    wait_until(lambda: show_run(client, slow)["job_id"], timeout=60, what="the slow run's job")
    waiting = [fire_event(enqueuer, manual_event("quick", {}, event_id=e)).run_id for e in "ab"]
    for run_id in waiting:
        cancel(settings, client, run_id, "tests")
    cancel(settings, client, slow, "tests")
    done = fire_event(enqueuer, manual_event("quick", {}, event_id="later")).run_id
    assert final_run(enqueuer, done)["status"] == "succeeded"
    for run_id in (slow, *waiting):
        final_run(enqueuer, run_id)

    cancelled = list_runs(client, status="cancelled", limit=10)
    assert sorted(_ids(cancelled)) == sorted([slow, *waiting])
    # The newest run overall is the succeeded one: an offset counts cancelled runs only.
    paged = list_runs(client, status="cancelled", limit=10, offset=1)
    assert _ids(paged) == _ids(cancelled)[1:]
    assert _ids(list_runs(client, status="cancelled", limit=1, offset=2)) == _ids(cancelled)[2:]

    assert len(list_runs(client, source="manual")) == 4
    assert list_runs(client, source="github") == []
    assert _ids(list_runs(client, search="quick:A")) == [waiting[0]]
    assert len(list_runs(client, search="SHARED", limit=2)) == 2  # the branch, any case
    assert _ids(list_runs(client, search="nothing", run_ids=[done])) == [done]
    assert _ids(list_runs(client, trigger="slow", status="cancelled", search="hold")) == [slow]
