"""Rehearsed faults: the SDK's own exceptions, and a process that dies after any call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bauplan.exceptions
import pytest

from trigger.core.errors import RehearsalFaultError
from workflows.bauplan.faults import EXIT_CODE, METHODS, check, sdk_error
from workflows.bauplan.rehearsal import Ledger, RehearsalClient
from workflows.bauplan.rehearsal_refs import merges

# A call of each method as the adapter makes it; ``job`` and ``project`` filled in.
CALLS = {
    "info": "c.info()",
    "has_branch": "c.has_branch('rehearsal.b')",
    "create_branch": "c.create_branch('rehearsal.made', from_ref='main')",
    "run": "c.run(project_dir=project, ref='rehearsal.b', detach=True)",
    "get_job": "c.get_job(job)",
    "get_job_logs": "c.get_job_logs(job=job)",
    "cancel_job": "c.cancel_job(job)",
    "get_jobs": "c.get_jobs(filter_by_kinds='run')",
    "get_job_context": "c.get_job_context(job)",
    "get_job_contexts": "c.get_job_contexts([job])",
    "get_branch": "c.get_branch('main')",
    "merge_branch": "c.merge_branch('main', 'main', commit_message='m', commit_properties={'r': '1'})",
    "get_commits": "c.get_commits('main', filter_by_properties={'r': '1'}, limit=1)",
    "delete_branch": "c.delete_branch('rehearsal.gone', if_exists=True)",
}

SCRIPT = """
import sys
from pathlib import Path
from workflows.bauplan.rehearsal import Ledger, RehearsalClient
c = RehearsalClient(Ledger(Path(sys.argv[1])), outcome="hang")
job, project = sys.argv[2], sys.argv[3]
{call}
print("returned")
"""


def test_exit_after_kills_the_caller_after_the_work_of_every_sdk_method(
    tmp_path: Path, project_dir: Path
) -> None:
    assert set(CALLS) == set(METHODS)
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    job = RehearsalClient(ledger, outcome="hang").run(
        project_dir=str(project_dir), ref="rehearsal.b", detach=True
    )
    for method in METHODS:
        ledger.inject_fault(method, "EXIT_AFTER")
    procs = {
        method: subprocess.Popen(
            [
                sys.executable,
                "-c",
                SCRIPT.format(call=call),
                str(path),
                job.job_id,
                str(project_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for method, call in CALLS.items()
    }
    results = {method: (proc.wait(60), proc.communicate()) for method, proc in procs.items()}
    for method, (code, (out, err)) in results.items():
        assert code == EXIT_CODE and "returned" not in out, f"{method}: {code} {err[-500:]}"
    assert ledger.faults() == []
    # The calls that change something did so before the process died.
    jobs = {j["job_id"]: j for j in ledger.jobs()}
    assert len(jobs) == 2 and jobs[job.job_id]["status"] == "ABORT"
    branches = ledger.query("SELECT name FROM branches")
    assert [row["name"] for row in branches] == ["rehearsal.made"]
    assert [m["properties"] for m in merges(ledger)] == [{"r": "1"}]


def test_an_error_fault_raises_the_sdk_class_with_its_status_code(tmp_path: Path) -> None:
    client = RehearsalClient(Ledger(tmp_path / "l.sqlite"))
    client.ledger.inject_fault("get_jobs", "BranchNotFoundError", "gone", count=2)
    for _ in range(2):
        with pytest.raises(bauplan.exceptions.BranchNotFoundError) as caught:
            client.get_jobs()
        assert caught.value.code == 404
    assert list(client.get_jobs()) == []
    assert getattr(sdk_error("TooManyRequestsError", "slow"), "code", None) == 429
    assert getattr(sdk_error("GatewayTimeoutError", "late"), "code", None) == 504


@pytest.mark.parametrize(
    ("method", "error", "count", "complaint"),
    [
        ("runn", "EXIT_AFTER", 1, "no rehearsed Bauplan method named 'runn'"),
        ("run", "TooManyRequests", 1, "'TooManyRequests' is not an exception of the bauplan SDK"),
        ("step:waiting", "EXIT_AFTER", 1, "no run step named 'waiting'"),
        ("step:wait", "TooManyRequestsError", 1, "a step fault can only be EXIT_AFTER"),
        ("run", "EXIT_AFTER", 0, "--count 0: a fault must hit at least one call"),
    ],
)
def test_a_fault_that_could_never_fire_as_meant_is_refused_in_one_sentence(
    method: str, error: str, count: int, complaint: str
) -> None:
    with pytest.raises(RehearsalFaultError, match=complaint):
        check(method, error, count)


def test_every_step_and_notification_step_can_be_armed() -> None:
    for method in ("step:launch", "step:move_file.marker", "step:notify webhook:ops started"):
        check(method, "EXIT_AFTER", 1)
    check("get_job_contexts", "ServiceUnavailableError", 3)
