"""The durability proof: kill -9 at any point loses nothing and submits nothing twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import base_config, make_settings, match, wait_until, write_config
from trigger.core.event import manual_event
from workflows.bauplan.rehearsal import Ledger
from workflows.intake import Enqueuer
from workflows.records import list_runs

pytestmark = pytest.mark.slow


def _setup(tmp_path: Path, project_dir: Path, backend: str | None, seconds: float) -> Any:
    overrides = {"bauplan": {"rehearse_seconds": seconds}}
    config = write_config(tmp_path / "bt.toml", base_config(tmp_path, project_dir, **overrides))
    settings = make_settings(tmp_path, backend, project_dir, **overrides)
    env = {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}
    return config, settings, env


def _final_count(enqueuer: Enqueuer) -> int:
    runs = list_runs(enqueuer.client, limit=1000)
    return sum(r["status"] in ("succeeded", "failed", "cancelled") for r in runs)


def test_kill_9_while_running_and_while_queued_loses_nothing_and_never_resubmits(
    tmp_path: Path, project_dir: Path, backend: str | None, serve_process: Any
) -> None:
    config, settings, env = _setup(tmp_path, project_dir, backend, seconds=1.5)
    serve = serve_process(config, env)
    ledger = Ledger(settings.state_path / "rehearsal.sqlite")
    enqueuer = Enqueuer(settings)
    try:
        for i in range(20):
            event = manual_event("orders", {"run_date": f"day{i % 4}"}, event_id=f"dur-{i}")
            [request] = match(event, settings)
            enqueuer.enqueue(request)

        # First crash: jobs are running on the four branches, the rest are queued.
        wait_until(lambda: len(ledger.jobs()) >= 2, timeout=60, what="jobs to be running")
        serve.kill9()
        submitted_before = len(ledger.jobs())
        assert submitted_before < 20

        # Second crash: after recovery has resumed work and more runs are queued.
        serve.start()
        wait_until(
            lambda: len(ledger.jobs()) >= submitted_before + 2,
            timeout=60,
            what="more jobs after the first restart",
        )
        serve.kill9()
        assert len(ledger.jobs()) < 20

        serve.start()
        wait_until(lambda: _final_count(enqueuer) == 20, timeout=180, what="all 20 runs to end")
        runs = list_runs(enqueuer.client, limit=1000)
    finally:
        enqueuer.close()

    jobs = ledger.jobs()
    assert len(jobs) == 20, "every run submitted exactly once"
    assert {r["status"] for r in runs} == {"succeeded"}
    assert sorted(r["job_id"] for r in runs) == sorted(j["job_id"] for j in jobs)


def test_a_crash_right_after_bauplan_accepted_a_job_adopts_it_instead_of_resubmitting(
    tmp_path: Path, project_dir: Path, backend: str | None, serve_process: Any
) -> None:
    config, settings, env = _setup(tmp_path, project_dir, backend, seconds=0.5)
    ledger = Ledger(settings.state_path / "rehearsal.sqlite")
    # The process dies the moment the rehearsal service has recorded the job,
    # before DBOS can checkpoint the submit step's result.
    ledger.inject_fault("run", "EXIT_AFTER")
    serve = serve_process(config, env)
    enqueuer = Enqueuer(settings)
    try:
        [request] = match(manual_event("orders", {"run_date": "x"}, event_id="crash"), settings)
        enqueuer.enqueue(request)
        wait_until(
            lambda: serve.proc is not None and serve.proc.poll() is not None,
            timeout=60,
            what="serve to die inside the submit step",
        )
        assert len(ledger.jobs()) == 1
        serve.start()
        wait_until(lambda: _final_count(enqueuer) == 1, timeout=60, what="the run to end")
        [run] = list_runs(enqueuer.client)
    finally:
        enqueuer.close()
    [job] = ledger.jobs()
    assert run["status"] == "succeeded"
    assert run["job_id"] == job["job_id"]
    assert "adopted job" in serve.log()
