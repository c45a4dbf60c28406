"""``runs retry|cancel|resume`` from the CLI, against a DBOS worker in this process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support import base_config, run_cli, wait_until, write_config
from tests.trigger.ops.test_api import shared_branch_triggers
from trigger.core.event import manual_event
from trigger.sources.manual import fire_event
from workflows.bauplan.rehearsal import Ledger
from workflows.records import show_run
from workflows.runtime import ledger_path


def _cli(settings: Any, tmp_path: Path, *args: str) -> Any:
    config = base_config(
        tmp_path,
        Path(settings.triggers[0].project_dir),
        triggers=shared_branch_triggers(settings.triggers[0].project_dir),
    )
    path = write_config(tmp_path / "cli.toml", config)
    env = {"DBOS_SYSTEM_DATABASE_URL": settings.system_database_url} if settings.is_postgres else {}
    return run_cli(*args, "--config", str(path), env=env)


def _until(enqueuer: Any, run_id: str, *words: str, job: bool = False) -> dict[str, Any]:
    return wait_until(
        lambda: (
            (r := show_run(enqueuer.client, run_id))["status"] in words
            and (not job or r["job_id"])
            and r
        ),
        timeout=60,
        what=f"run {run_id} to be {words}",
    )


def test_cancel_resume_and_retry_from_the_cli(
    launched: Any, project_dir: Path, tmp_path: Path
) -> None:
    settings, enqueuer = launched(triggers=shared_branch_triggers(project_dir))
    slow = fire_event(enqueuer, manual_event("slow", {}, event_id="hold")).run_id
    holder = _until(enqueuer, slow, "running", job=True)
    quick = fire_event(enqueuer, manual_event("quick", {}, event_id="wait")).run_id
    _until(enqueuer, quick, "waiting")

    refused = _cli(settings, tmp_path, "runs", "retry", slow)
    assert refused.returncode == 1
    assert f"run {slow} is still running" in refused.stderr
    assert "Traceback" not in refused.stderr

    cancelled = _cli(settings, tmp_path, "runs", "cancel", quick)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "dequeued before it started" in cancelled.stdout
    assert _until(enqueuer, quick, "cancelled")["status"] == "cancelled"

    resumed = _cli(settings, tmp_path, "runs", "resume", quick, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["detail"] == "back on the queue for branch rehearsal.shared"
    status = enqueuer.client.list_workflows(workflow_ids=[quick])[0]
    assert status.queue_partition_key == "rehearsal.shared"
    assert status.queue_name == "bauplan-trigger-runs"
    assert _until(enqueuer, quick, "waiting")["status"] == "waiting"  # still behind the holder

    stopped = _cli(settings, tmp_path, "runs", "cancel", slow)
    assert stopped.returncode == 0, stopped.stderr
    assert f"Bauplan job {holder['job_id']} cancelled" in stopped.stdout
    assert _until(enqueuer, quick, "succeeded")["status"] == "succeeded"
    jobs = {j["job_id"]: j["status"] for j in Ledger(ledger_path(settings)).jobs()}
    assert jobs[holder["job_id"]] == "ABORT" and len(jobs) == 2

    finished = _cli(settings, tmp_path, "runs", "cancel", quick)
    assert finished.returncode == 1 and "already ended (succeeded)" in finished.stderr
    not_resumable = _cli(settings, tmp_path, "runs", "resume", quick)
    assert not_resumable.returncode == 1 and "only a cancelled or stuck run" in not_resumable.stderr

    retried = _cli(settings, tmp_path, "runs", "retry", quick)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.strip() == f"{quick}:retry-1"
    assert _until(enqueuer, f"{quick}:retry-1", "succeeded")["status"] == "succeeded"
    missing = _cli(settings, tmp_path, "runs", "cancel", "run:quick:nope")
    assert missing.returncode == 1 and "no run with id 'run:quick:nope'" in missing.stderr


def test_resume_puts_a_run_back_on_the_run_queue_with_its_triggers_own_limits(
    launched: Any, project_dir: Path
) -> None:
    """A trigger with its own limits has its own partitions and rate window; DBOS
    forgets the queue of a cancelled run, and resume must put it back on the run queue
    with its partition key, where its limits still hold."""
    from trigger.ops.control import cancel, resume
    from workflows.queue import RUN_QUEUE

    limited = {
        "name": "limited",
        "project_dir": str(project_dir),
        "branch": "limited",
        "rehearse_seconds": 0.05,
        "per_branch_limit": {"runs": 1, "period_seconds": 600},
    }
    settings, enqueuer = launched(triggers=[limited])
    own = "rehearsal.limited~c1-r1p600"
    first = fire_event(enqueuer, manual_event("limited", {}, event_id="l1")).run_id
    assert _until(enqueuer, first, "succeeded")["status"] == "succeeded"
    second = fire_event(enqueuer, manual_event("limited", {}, event_id="l2")).run_id
    status = enqueuer.client.list_workflows(workflow_ids=[second])[0]
    assert (status.queue_name, status.queue_partition_key) == (RUN_QUEUE, own)
    cancel(settings, enqueuer.client, second, "ana")
    assert _until(enqueuer, second, "cancelled")["status"] == "cancelled"

    resume(settings, enqueuer.client, second, "ana")
    status = enqueuer.client.list_workflows(workflow_ids=[second])[0]
    assert (status.queue_name, status.queue_partition_key) == (RUN_QUEUE, own)
    waiting = wait_until(
        lambda: (
            (r := show_run(enqueuer.client, second, settings)).get("phase") == "rate-limited" and r
        ),
        what="the resumed run to wait for its window",
    )
    assert waiting["status"] == "waiting", waiting
    assert waiting["waiting_reason"].startswith("branch rehearsal.limited is rate-limited")
