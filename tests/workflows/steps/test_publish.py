"""Publish on success, on both databases: a trigger with ``[triggers.publish]`` merges
its run's branch, at the commit the run produced, into the target once; a conflict is
the publish's outcome, recorded and told, never retried; a trigger without the section
never merges anything."""

from __future__ import annotations

from typing import Any

import pytest

from tests.workflows.flow_support import final, fire, ledger, orders_trigger
from trigger.core.eventlog import event_log
from trigger.ops.explain import explain
from workflows.bauplan.rehearsal import RehearsalClient
from workflows.bauplan.rehearsal_refs import merges
from workflows.records import show_run
from workflows.steps.publish import RUN_PROPERTY

FAST = {"rehearse_seconds": 0.05, "poll_interval": 0.05}


def _publishing(project_dir: Any, **publish: Any) -> dict[str, Any]:
    return orders_trigger(project_dir, publish={"into": "main", **publish})


def test_a_successful_run_is_merged_into_the_target_at_its_own_commit(
    launched: Any, project_dir: Any
) -> None:
    settings, enqueuer = launched(bauplan=FAST, triggers=[_publishing(project_dir)])
    run_id = fire(settings, enqueuer, "p1")
    ended = final(enqueuer, run_id)
    assert ended["status"] == "succeeded"
    [merge] = merges(ledger(settings))
    [job] = ledger(settings).jobs()
    client = RehearsalClient(ledger(settings))
    assert merge["into_branch"] == "main"
    assert merge["source_ref"] == f"rehearsal.orders_d1@{merge['source_hash']}"
    # The commit the run produced: the branch's head once its job finished.
    assert merge["source_hash"] == client.get_branch("rehearsal.orders_d1").hash
    assert merge["properties"][RUN_PROPERTY] == run_id
    assert run_id in merge["message"] and job["job_id"] in merge["body"]
    shown = show_run(enqueuer.client, run_id, settings)
    assert shown["publish"]["state"] == "published"
    assert shown["publish"]["commit"] == merge["hash"] == client.get_branch("main").hash
    assert client.has_branch("rehearsal.orders_d1")  # kept unless asked otherwise
    # ``runs show``, ``explain`` and the run's page say it in one sentence.
    story = explain(run_id, event_log(settings), enqueuer.client, settings)
    [finished] = [t for t in story["runs"][0]["timeline"] if t["what"] == "finished"]
    assert f"published into main as {merge['hash'][:12]}" in finished["detail"]


def test_a_trigger_without_a_publish_section_never_merges(launched: Any, project_dir: Any) -> None:
    settings, enqueuer = launched(bauplan=FAST, triggers=[orders_trigger(project_dir)])
    assert final(enqueuer, fire(settings, enqueuer, "p2"))["status"] == "succeeded"
    assert merges(ledger(settings)) == []


def test_a_failed_run_is_not_published(launched: Any, project_dir: Any) -> None:
    settings, enqueuer = launched(
        bauplan={**FAST, "rehearse_outcome": "fail"}, triggers=[_publishing(project_dir)]
    )
    ended = final(enqueuer, fire(settings, enqueuer, "p3"))
    assert ended["status"] == "failed"
    assert merges(ledger(settings)) == []
    assert show_run(enqueuer.client, ended["id"], settings)["publish"] is None


@pytest.mark.parametrize("refusal", ["MergeConflictError", "BranchHeadChangedError"])
def test_a_refused_merge_leaves_the_run_succeeded_with_its_publish_in_conflict(
    launched: Any, project_dir: Any, refusal: str
) -> None:
    settings, enqueuer = launched(bauplan=FAST, triggers=[_publishing(project_dir)])
    ledger(settings).inject_fault("merge_branch", refusal, "main moved")
    run_id = fire(settings, enqueuer, "p4")
    ended = final(enqueuer, run_id)
    shown = show_run(enqueuer.client, run_id, settings)
    assert ended["status"] == "succeeded"
    assert shown["publish"]["state"] == "conflict"
    assert refusal in shown["publish"]["error"] and "into main" in shown["publish"]["error"]
    # Not retried: the fault hit one call, and a second call would have merged.
    assert merges(ledger(settings)) == []
    assert ledger(settings).faults() == []


def test_the_branch_can_be_deleted_once_published(launched: Any, project_dir: Any) -> None:
    settings, enqueuer = launched(
        bauplan=FAST, triggers=[_publishing(project_dir, delete_branch_after=True)]
    )
    run_id = fire(settings, enqueuer, "p5")
    assert final(enqueuer, run_id)["status"] == "succeeded"
    assert show_run(enqueuer.client, run_id, settings)["publish"]["branch_deleted"] is True
    assert not RehearsalClient(ledger(settings)).has_branch("rehearsal.orders_d1")
    assert len(merges(ledger(settings))) == 1


def test_a_second_run_on_the_branch_publishes_its_own_commit(
    launched: Any, project_dir: Any
) -> None:
    settings, enqueuer = launched(bauplan=FAST, triggers=[_publishing(project_dir)])
    first, second = fire(settings, enqueuer, "p6"), fire(settings, enqueuer, "p7")
    assert final(enqueuer, first)["status"] == final(enqueuer, second)["status"] == "succeeded"
    one, two = merges(ledger(settings))
    assert one["source_hash"] != two["source_hash"]
    assert two["parent_hash"] == one["hash"]
    assert {one["properties"][RUN_PROPERTY], two["properties"][RUN_PROPERTY]} == {first, second}
