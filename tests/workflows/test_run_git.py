"""The run workflow on a pushed commit: prepare, submit, clean up, survive a lost workspace."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.support import final_run as _final
from tests.support import wait_until
from tests.trigger.hookkit import make_repo
from trigger.core.matching import RunRequest
from workflows.bauplan.rehearsal import Ledger
from workflows.runtime import ledger_path
from workflows.steps import code as workspace


def _request(upstream: Path, sha: str, run_id: str = "run:orders:gh-1") -> RunRequest:
    return RunRequest(
        run_id=run_id,
        trigger="orders",
        event_id=run_id.rsplit(":", 1)[1],
        event_kind="github",
        project_dir=f"pipelines/orders at {sha[:12]}",
        branch_suffix="orders_main",
        base_ref="main",
        parameters={},
        priority=100,
        git_source=str(upstream),
        git_sha=sha,
        project_subdir="pipelines/orders",
    )


def test_a_workspace_lost_between_steps_is_rebuilt_before_submitting(
    launched: Any, tmp_path: Path
) -> None:
    upstream = tmp_path / "upstream"
    first, _ = make_repo(upstream)
    settings, enqueuer = launched(bauplan={"retry_interval": 2.0})
    ledger = Ledger(ledger_path(settings))
    ledger.inject_fault("run", "TooManyRequestsError", "slow down", count=1)
    request = _request(upstream, first)
    enqueuer.enqueue(request)
    wait_until(
        lambda: ledger.execute("SELECT remaining FROM faults")[0]["remaining"] == 0,
        what="the first submit attempt",
    )
    # prepare_code has finished as its own step; the workspace now disappears
    # before the submit step's retry.
    shutil.rmtree(workspace.workspace_path(settings.state_path, request.run_id))
    run = _final(enqueuer, request.run_id)
    assert run["status"] == "succeeded", run["error"]
    [job] = ledger.jobs()
    assert job["code_version"] == first
    assert not workspace.workspace_path(settings.state_path, request.run_id).exists()


def test_a_commit_missing_after_a_fresh_fetch_fails_the_run_at_once(
    launched: Any, tmp_path: Path
) -> None:
    upstream = tmp_path / "upstream"
    make_repo(upstream)
    settings, enqueuer = launched()
    request = _request(upstream, "e" * 40, run_id="run:orders:gh-3")
    enqueuer.enqueue(request)
    run = _final(enqueuer, request.run_id)
    assert run["status"] == "failed"
    # The step's own sentence, not DBOS giving up after retrying it.
    assert run["error"] == (
        f"commit {'e' * 40} is not in {upstream} after a fresh fetch (was it force-pushed "
        "away, or pushed to another repository?); the run is not retried"
    )
    assert Ledger(ledger_path(settings)).jobs() == []  # nothing was submitted
