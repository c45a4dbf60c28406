"""The rehearsal client's ``get_jobs`` and job contexts, as the SDK's stubs document them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bauplan.schema import JobKind, JobState

from workflows.bauplan.jobs import PAGE_SIZE
from workflows.bauplan.rehearsal import Ledger, RehearsalClient


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.sqlite")


def _submit(client: RehearsalClient, project_dir: Path, count: int, ref: str = "x") -> list[str]:
    return [
        client.run(project_dir=str(project_dir), ref=f"{client.username}.{ref}", detach=True).job_id
        for _ in range(count)
    ]


def test_every_job_is_listed_newest_first_across_pages_and_limit_is_exact(
    ledger: Ledger, project_dir: Path
) -> None:
    client = RehearsalClient(ledger, seconds=0)
    ids = _submit(client, project_dir, 2 * PAGE_SIZE + 50)
    listed = [job.id for job in client.get_jobs()]
    assert listed == list(reversed(ids))
    assert [job.id for job in client.get_jobs(limit=PAGE_SIZE + 7)] == listed[: PAGE_SIZE + 7]
    assert list(client.get_jobs(limit=0)) == []


def test_further_pages_are_read_only_when_iteration_reaches_them(
    ledger: Ledger, project_dir: Path
) -> None:
    client = RehearsalClient(ledger, seconds=0)
    ids = _submit(client, project_dir, PAGE_SIZE + 10)
    jobs = client.get_jobs()
    assert next(jobs).id == ids[-1]
    # The oldest jobs are on the second page, which has not been read yet.
    ledger.execute("DELETE FROM jobs WHERE job_id = ?", (ids[0],))
    rest = [job.id for job in jobs]
    assert ids[0] not in rest and ids[1] in rest
    assert len(rest) == PAGE_SIZE + 8


def test_only_the_current_users_jobs_unless_other_users_are_named(
    ledger: Ledger, project_dir: Path
) -> None:
    mine = RehearsalClient(ledger, username="alice", seconds=0)
    theirs = RehearsalClient(ledger, username="bob", seconds=0)
    alice, bob = _submit(mine, project_dir, 2), _submit(theirs, project_dir, 3)
    assert {job.id for job in mine.get_jobs()} == set(alice)
    assert {job.id for job in mine.get_jobs(filter_by_users="bob")} == set(bob)
    assert {job.id for job in mine.get_jobs(filter_by_current_user=False)} == {*alice, *bob}
    assert {job.user for job in mine.get_jobs(filter_by_users=["alice", "bob"])} == {
        "alice",
        "bob",
    }


def test_kinds_statuses_ids_and_creation_bounds_filter_as_the_sdk_reads_them(
    ledger: Ledger, project_dir: Path
) -> None:
    client = RehearsalClient(ledger, seconds=0)
    first = _submit(client, project_dir, 3)
    middle = datetime.now(UTC)
    later = _submit(client, project_dir, 2)
    hanging = RehearsalClient(ledger, outcome="hang")
    [running] = _submit(hanging, project_dir, 1)
    everything = {*first, *later, running}

    for kind in ("run", "RUN", "Run", JobKind.RUN, ["query", "run"]):
        assert {job.id for job in client.get_jobs(filter_by_kinds=kind)} == everything
    assert list(client.get_jobs(filter_by_kinds=["query", "table_import"])) == []
    assert [j.id for j in client.get_jobs(filter_by_statuses=JobState.RUNNING)] == [running]
    assert {j.id for j in client.get_jobs(filter_by_statuses="complete")} == {*first, *later}
    assert {j.id for j in client.get_jobs(filter_by_ids=first[:2])} == set(first[:2])
    after = {j.id for j in client.get_jobs(filter_by_created_after=middle)}
    assert after == {*later, running}
    before = {j.id for j in client.get_jobs(filter_by_created_before=middle)}
    assert before == set(first)
    future = datetime.now(UTC) + timedelta(hours=1)
    assert list(client.get_jobs(filter_by_created_after=future)) == []


def test_arguments_the_sdk_refuses_are_refused_when_called(ledger: Ledger) -> None:
    client = RehearsalClient(ledger)
    with pytest.raises(ValueError, match="invalid job kind: import"):
        client.get_jobs(filter_by_kinds="import")
    with pytest.raises(ValueError, match="invalid job state: success"):
        client.get_jobs(filter_by_statuses="success")
    with pytest.raises(TypeError, match="non-None tzinfo"):
        client.get_jobs(filter_by_created_after=datetime(2026, 1, 1))
    with pytest.raises(OverflowError):
        client.get_jobs(limit=-1)
    with pytest.raises(TypeError, match="would refuse"):
        client.get_jobs(filter_by_branch="x")


def test_a_jobs_context_tells_its_ref_and_project_but_not_its_parameters(
    ledger: Ledger, project_dir: Path
) -> None:
    client = RehearsalClient(ledger, seconds=0)
    job_id = client.run(
        project_dir=str(project_dir), ref="rehearsal.x", parameters={"a": 1}, detach=True
    ).job_id
    context = client.get_job_context(job_id)
    assert (context.ref, context.project_id, context.project_name) == (
        "rehearsal.x",
        "test",
        "orders",
    )
    assert not hasattr(context, "parameters")
    assert context.logs == []
    assert client.get_job_context(job_id, include_logs=True).logs
    [again] = client.get_job_contexts([job_id])
    assert again == context
    job = next(client.get_jobs())
    assert client.get_job_contexts([job]) == [context]


def test_a_ledger_written_before_projects_were_recorded_opens_and_lists(
    tmp_path: Path, project_dir: Path
) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, ref TEXT, project_dir TEXT NOT NULL, "
            "parameters TEXT NOT NULL, arguments TEXT NOT NULL, username TEXT NOT NULL, "
            "submitted_at REAL NOT NULL, finish_at REAL, finished_at REAL, outcome TEXT NOT NULL, "
            "status TEXT NOT NULL, code_version TEXT)"
        )
        db.execute(
            "INSERT INTO jobs VALUES ('old-1', 'rehearsal.x', '/p', '{}', '{}', 'rehearsal', "
            "1.0, 1.0, NULL, 'success', 'RUNNING', NULL)"
        )
    client = RehearsalClient(Ledger(path), seconds=0)
    new = client.run(project_dir=str(project_dir), ref="rehearsal.x", detach=True).job_id
    assert [job.id for job in client.get_jobs()] == [new, "old-1"]
    assert client.get_job_context("old-1").project_id is None
    assert client.get_job_context(new).project_id == "test"
