"""Exactly-once submission: after a crash in the call to Bauplan, a run finds its own job
among every job in the window, adopts only one that is provably its own, and never
submits a second one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import (
    base_config,
    final_run,
    make_project,
    make_settings,
    match,
    wait_until,
    write_config,
)
from trigger.core.errors import SubmissionUnclear
from trigger.core.event import manual_event
from workflows.bauplan.adapter import Bauplan
from workflows.bauplan.rehearsal import Ledger, RehearsalClient
from workflows.intake import Enqueuer
from workflows.runtime import ledger_path
from workflows.steps import submit as submission
from workflows.store import Store

BRANCH = "rehearsal.orders_2026_11_23"


@pytest.fixture
def other_project(tmp_path: Path) -> Path:
    """A second Bauplan project, as another trigger sharing a branch would run."""
    return make_project(tmp_path / "pipelines" / "audit", "audit-id", "audit")


def _fire(settings: Any, enqueuer: Enqueuer, run_date: str, event_id: str) -> str:
    [request] = match(manual_event("orders", {"run_date": run_date}, event_id=event_id), settings)
    return enqueuer.enqueue(request).run_id


@pytest.mark.slow
def test_a_crash_right_after_bauplan_accepted_finds_its_job_among_two_hundred_others(
    tmp_path: Path,
    project_dir: Path,
    other_project: Path,
    backend: str | None,
    serve_process: Any,
) -> None:
    overrides = {"bauplan": {"rehearse_seconds": 0.2}}
    config = write_config(tmp_path / "bt.toml", base_config(tmp_path, project_dir, **overrides))
    settings = make_settings(tmp_path, backend, project_dir, **overrides)
    serve = serve_process(config, {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {})
    ledger = Ledger(ledger_path(settings))
    enqueuer = Enqueuer(settings)
    try:
        # Earlier runs on the same branch, same project: their jobs are claimed.
        for n in range(2):
            assert final_run(enqueuer, _fire(settings, enqueuer, "same", f"early-{n}"))
        # 200 more jobs of the same user, just before: other branches, and another
        # project's job on this very branch.
        others = RehearsalClient(ledger, seconds=0)
        for n in range(200):
            others.run(project_dir=str(project_dir), ref=f"rehearsal.other_{n}", detach=True)
        foreign = others.run(
            project_dir=str(other_project), ref="rehearsal.orders_same", detach=True
        )
        ledger.inject_fault("run", "EXIT_AFTER")
        run_id = _fire(settings, enqueuer, "same", "crash")
        wait_until(
            lambda: serve.proc is not None and serve.proc.poll() is not None,
            timeout=60,
            what="serve to die right after Bauplan accepted the job",
        )
        store = Store(settings.database_url())
        began = store.submission(run_id)
        store.close()
        assert began is not None and began.job_id is None
        window = [j for j in ledger.jobs() if j["started_ts"] >= began.started_at - 5]
        assert len(window) >= 202, "the 200 jobs are inside the reconcile window"

        serve.start()
        run = final_run(enqueuer, run_id)
    finally:
        enqueuer.close()
    jobs = ledger.jobs()
    assert len(jobs) == 2 + 201 + 1, "the crashed run did not submit a second job"
    on_branch = [j for j in jobs if j["ref"] == "rehearsal.orders_same"]
    assert len(on_branch) == 4
    assert run["status"] == "succeeded"
    assert run["job_id"] == on_branch[-1]["job_id"] != foreign.job_id
    assert f"run {run_id} adopted job {run['job_id']}" in serve.log()


def test_another_projects_job_on_the_branch_is_never_taken_for_its_own(
    launched: Any, other_project: Path
) -> None:
    settings, enqueuer = launched()
    ledger = Ledger(ledger_path(settings))
    foreign = RehearsalClient(ledger, seconds=0).run(
        project_dir=str(other_project), ref=BRANCH, detach=True
    )
    # The first call's answer is lost: it may or may not have started a job.
    ledger.inject_fault("run", "BauplanError", "request timed out", count=1)
    run = final_run(enqueuer, _fire(settings, enqueuer, "2026-11-23", "e1"))
    assert run["status"] == "succeeded", run["error"]
    assert run["job_id"] != foreign.job_id
    jobs = {j["job_id"]: j for j in ledger.jobs()}
    assert len(jobs) == 2
    assert jobs[run["job_id"]]["project_id"] == "test"


def test_two_jobs_that_could_each_be_its_own_fail_the_run_rather_than_a_guess(
    launched: Any, project_dir: Path
) -> None:
    settings, enqueuer = launched()
    ledger = Ledger(ledger_path(settings))
    client = RehearsalClient(ledger, seconds=0)
    seeded = [client.run(project_dir=str(project_dir), ref=BRANCH, detach=True) for _ in "ab"]
    ledger.inject_fault("run", "BauplanError", "request timed out", count=1)
    run_id = _fire(settings, enqueuer, "2026-11-23", "e1")
    run = final_run(enqueuer, run_id)
    assert run["status"] == "failed"
    assert "cannot tell which Bauplan job is its own" in run["error"]
    assert all(job.job_id in run["error"] for job in seeded)
    assert f"bauplan-trigger runs retry {run_id}" in run["error"]
    assert len(ledger.jobs()) == 2, "nothing was submitted a second time"


def test_an_error_answer_proves_no_job_so_the_retry_submits_without_adopting(
    launched: Any, project_dir: Path
) -> None:
    settings, enqueuer = launched()
    ledger = Ledger(ledger_path(settings))
    client = RehearsalClient(ledger, seconds=0)
    seeded = {client.run(project_dir=str(project_dir), ref=BRANCH, detach=True).job_id}
    ledger.inject_fault("run", "TooManyRequestsError", "slow down", count=1)
    run = final_run(enqueuer, _fire(settings, enqueuer, "2026-11-23", "e1"))
    assert run["status"] == "succeeded", run["error"]
    assert run["job_id"] not in seeded
    assert len(ledger.jobs()) == 2


@pytest.fixture
def store(tmp_path: Path, backend: str | None, project_dir: Path) -> Iterator[Store]:
    settings = make_settings(tmp_path, backend, project_dir)
    settings.state_path.mkdir(parents=True)
    built = Store(settings.database_url(), create_database=True)
    yield built
    built.close()


def _begin(store: Store, run_id: str, project_dir: Path, parameters: str) -> None:
    store.begin_submission(
        run_id,
        "rehearsal.b",
        project_dir=str(project_dir),
        project_id="test",
        project_name="orders",
        parameters=parameters,
    )


def test_a_lone_job_is_not_adopted_while_another_run_was_submitting_on_that_branch(
    store: Store, tmp_path: Path, project_dir: Path
) -> None:
    client = RehearsalClient(Ledger(tmp_path / "ledger.sqlite"), seconds=0)
    bauplan = Bauplan(client)
    _begin(store, "run:a", project_dir, '{"day": 1}')
    _begin(store, "run:b", project_dir, '{"day": 2}')
    job = client.run(project_dir=str(project_dir), ref="rehearsal.b", detach=True).job_id
    with pytest.raises(SubmissionUnclear, match=r"job .* was created there .* while run run:b"):
        submission.recorded_job(store, bauplan, "run:a")
    # Once run b has recorded the job as its own, run a provably submitted nothing.
    store.finish_submission("run:b", job)
    assert submission.recorded_job(store, bauplan, "run:a") is None
    assert submission.recorded_job(store, bauplan, "run:b") == job
