"""The rehearsal client: the SDK's exact signatures, a ledger shared by processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bauplan.exceptions
import pytest

from workflows.bauplan.rehearsal import Ledger, RehearsalClient


@pytest.fixture
def client(tmp_path: Path) -> RehearsalClient:
    return RehearsalClient(Ledger(tmp_path / "ledger.sqlite"), seconds=0)


def test_it_refuses_a_keyword_the_real_client_run_does_not_accept(
    client: RehearsalClient, project_dir: Path
) -> None:
    with pytest.raises(TypeError, match=r"bauplan.Client.run\(\) would refuse"):
        client.run(project_dir=str(project_dir), ref="rehearsal.x", detach=True, branch="x")
    with pytest.raises(TypeError, match="would refuse"):
        client.create_branch("rehearsal.x", base="main")
    assert client.ledger.jobs() == []


def test_a_submission_is_recorded_with_its_arguments(
    client: RehearsalClient, project_dir: Path
) -> None:
    state = client.run(
        project_dir=str(project_dir), ref="rehearsal.x", parameters={"a": 1}, detach=True
    )
    [job] = client.ledger.jobs()
    assert job["job_id"] == state.job_id
    assert (job["ref"], job["parameters"], job["status"]) == ("rehearsal.x", {"a": 1}, "COMPLETE")
    assert str(client.get_job(state.job_id).status) == "COMPLETE"


def test_a_project_without_bauplan_project_yml_fails_like_the_sdk(
    client: RehearsalClient, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(bauplan.exceptions.BauplanJobError, match="no bauplan_project"):
        client.run(project_dir=str(tmp_path / "empty"), ref="rehearsal.x", detach=True)


def test_faults_raise_the_sdks_own_exceptions(client: RehearsalClient) -> None:
    client.ledger.inject_fault("info", "TooManyRequestsError", "slow down")
    with pytest.raises(bauplan.exceptions.TooManyRequestsError):
        client.info()
    assert client.info().user.username == "rehearsal"


def test_hanging_jobs_never_finish_until_cancelled(tmp_path: Path, project_dir: Path) -> None:
    client = RehearsalClient(Ledger(tmp_path / "l.sqlite"), outcome="hang")
    job_id = client.run(project_dir=str(project_dir), ref="rehearsal.x", detach=True).job_id
    assert str(client.get_job(job_id).status) == "RUNNING"
    client.cancel_job(job_id)
    assert str(client.get_job(job_id).status) == "ABORT"


def test_another_process_sees_the_same_jobs(tmp_path: Path, project_dir: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    script = (
        "import sys; from pathlib import Path; "
        "from workflows.bauplan.rehearsal import Ledger, RehearsalClient; "
        "c = RehearsalClient(Ledger(Path(sys.argv[1])), seconds=0); "
        "print(c.run(project_dir=sys.argv[2], ref='rehearsal.p', detach=True).job_id)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(path), str(project_dir)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert [j["job_id"] for j in Ledger(path).jobs()] == [out.stdout.strip()]


def test_a_due_job_reads_as_finished_and_cancelling_it_then_changes_nothing(
    client: RehearsalClient, project_dir: Path
) -> None:
    job_id = client.run(project_dir=str(project_dir), ref="rehearsal.x", detach=True).job_id
    [row] = client.ledger.query("SELECT status FROM jobs")
    assert row["status"] == "RUNNING"  # not settled in the table yet...
    assert str(client.get_job(job_id).status) == "COMPLETE"  # ...but due, so reported done
    client.cancel_job(job_id)
    assert str(client.get_job(job_id).status) == "COMPLETE"
    assert [j["status"] for j in client.ledger.jobs()] == ["COMPLETE"]


def test_each_thread_reads_the_writes_of_the_others(
    client: RehearsalClient, project_dir: Path
) -> None:
    import threading

    ids: list[str] = []

    def submit() -> None:
        run = client.run(project_dir=str(project_dir), ref="rehearsal.x", detach=True)
        ids.append(run.job_id)

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(j["job_id"] for j in client.ledger.jobs()) == sorted(ids)
    assert all(str(client.get_job(job_id).status) == "COMPLETE" for job_id in ids)
