"""Several ``serve --role worker`` processes on one PostgreSQL, and taking over a
dead one's runs (several processes: PostgreSQL only, SQLite is one process by
design); and never taking over a live one's, on either database."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support import base_config, make_settings, match, run_cli, wait_until, write_config
from tests.workflows.flow_support import (
    intervals_by_ref,
    ledger,
    max_overlap,
    rate_check,
    release,
)
from trigger.core.event import manual_event
from trigger.core.settings import build_settings
from workflows import app
from workflows.executors import Heartbeat, heartbeats, last_beat
from workflows.intake import Enqueuer
from workflows.store import Store


@pytest.fixture
def pg(postgres_url: str) -> str:
    """Several processes share one queue on PostgreSQL only."""
    return postgres_url


def _workers(serve_process: Any, config: Path, pg: str, names: list[str]) -> dict[str, Any]:
    return {
        name: serve_process(
            config,
            env={"DBOS_SYSTEM_DATABASE_URL": pg, "BAUPLAN_TRIGGER_SERVICE__NAME": name},
            role="worker",
        )
        for name in names
    }


def _executor(enqueuer: Enqueuer, name: str, run_ids: list[str]) -> str | None:
    rows = enqueuer.client.list_workflows(workflow_ids=run_ids, status="PENDING")
    return next((r.executor_id for r in rows if (r.executor_id or "").endswith(f"-{name}")), None)


def test_three_workers_share_every_limit_and_survive_one_killed(
    tmp_path: Path, project_dir: Path, pg: str, serve_process: Any
) -> None:
    branches, events, cap, rate = 30, 5, 6, {"runs": 2, "period_seconds": 2.0}
    overrides: dict[str, Any] = {
        "bauplan": {"rehearse_seconds": 0.3},
        "queue": {
            "global_concurrency": cap,
            "per_branch_limit": rate,
            "takeover_after_seconds": 3.0,
        },
    }
    config = write_config(
        tmp_path / "bauplan-trigger.toml", base_config(tmp_path, project_dir, **overrides)
    )
    settings = make_settings(tmp_path, pg, project_dir, **overrides)
    workers = _workers(serve_process, config, pg, ["w1", "w2", "w3"])
    enqueuer = Enqueuer(settings)
    try:
        run_ids = []
        for i in range(events):
            for b in range(branches):
                event = manual_event("orders", {"run_date": f"b{b}"}, event_id=f"b{b}-e{i}")
                run_ids.append(enqueuer.enqueue(match(event, settings)[0]).run_id)
        dead = wait_until(
            lambda: len(ledger(settings).jobs()) >= 20 and _executor(enqueuer, "w2", run_ids),
            timeout=180,
            what="worker w2 to be running a run",
        )
        workers["w2"].kill9()

        def done() -> bool:
            rows = enqueuer.client.list_workflows(workflow_ids=run_ids, load_input=False)
            return all(str(r.status) in ("SUCCESS", "ERROR", "CANCELLED") for r in rows)

        wait_until(done, timeout=600, interval=0.5, what="every run to end")
        rows = enqueuer.client.list_workflows(workflow_ids=run_ids, load_input=False)
        assert {str(r.status) for r in rows} == {"SUCCESS"}
    finally:
        enqueuer.close()
    jobs = ledger(settings).jobs()
    assert len(jobs) == branches * events  # no double submission
    assert len({j["job_id"] for j in jobs}) == branches * events
    per_branch = intervals_by_ref(jobs)
    assert len(per_branch) == branches
    assert max(max_overlap(spans) for spans in per_branch.values()) == 1
    assert max_overlap([(j["started_ts"], j["finished_ts"]) for j in jobs]) <= cap
    # Bauplan's side of the rate limit: never three submits of a branch within 2 s.
    assert rate_check(jobs, rate["runs"], rate["period_seconds"])["held"]
    survivors = workers["w1"].log() + workers["w3"].log()
    assert f"executor {dead} silent for over 3s" in survivors


def test_recover_cli_takes_over_a_dead_workers_run_once(
    tmp_path: Path, project_dir: Path, pg: str, serve_process: Any
) -> None:
    overrides: dict[str, Any] = {"bauplan": {"rehearse_outcome": "hang"}}
    config = write_config(
        tmp_path / "bauplan-trigger.toml", base_config(tmp_path, project_dir, **overrides)
    )
    settings = make_settings(tmp_path, pg, project_dir, **overrides)
    env = {"DBOS_SYSTEM_DATABASE_URL": pg}
    first = _workers(serve_process, config, pg, ["a"])["a"]
    enqueuer = Enqueuer(settings)
    try:
        event = manual_event("orders", {"run_date": "d1"}, event_id="stranded")
        stranded = enqueuer.enqueue(match(event, settings)[0]).run_id
        wait_until(lambda: ledger(settings).jobs(), what="the first job")
        dead = _executor(enqueuer, "a", [stranded])
        assert dead is not None
        first.kill9()
        _workers(serve_process, config, pg, ["b"])
        event = manual_event("orders", {"run_date": "d1"}, event_id="behind")
        behind = enqueuer.enqueue(match(event, settings)[0]).run_id

        shown = run_cli("runs", "show", behind, "--config", str(config), env=env)
        assert f"branch rehearsal.orders_d1 is busy with run {stranded}" in shown.stdout

        refused = run_cli("recover", dead, "--config", str(config), env=env)
        assert refused.returncode == 1
        assert "looks alive" in refused.stderr and "--force" in refused.stderr

        taken = run_cli("recover", dead, "--force", "--config", str(config), "--json", env=env)
        assert taken.returncode == 0, taken.stderr
        assert stranded in taken.stdout
        wait_until(
            lambda: (
                (r := enqueuer.client.list_workflows(workflow_ids=[stranded])[0]).status
                == "PENDING"
                and (r.executor_id or "").endswith("-b")
            ),
            what="worker b to continue the stranded run",
        )
        wait_until(
            lambda: release(settings) >= 0 and len(ledger(settings).jobs()) == 2,
            what="the run behind it to submit",
        )
        release(settings)
        wait_until(
            lambda: (
                {
                    str(r.status)
                    for r in enqueuer.client.list_workflows(workflow_ids=[stranded, behind])
                }
                == {"SUCCESS"}
            ),
            timeout=60,
            what="both runs to succeed",
        )
    finally:
        enqueuer.close()
    jobs = ledger(settings).jobs()
    assert len(jobs) == 2  # the stranded run kept its job: submitted once
    assert max_overlap([(j["started_ts"], j["finished_ts"]) for j in jobs]) == 1


@pytest.mark.slow
def test_a_stalled_worker_is_alive_to_survivors_and_to_recover_even_forced(
    tmp_path: Path,
    project_dir: Path,
    backend: str | None,
    serve_process: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = base_config(tmp_path, project_dir, queue={"takeover_after_seconds": 1.0})
    config = write_config(tmp_path / "bauplan-trigger.toml", data)
    env = {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}
    settings = build_settings(data, config_path=config, environ=env)
    stalled = serve_process(config, env, role="worker")
    executor = app.executor_id(settings, "worker")
    store = Store(settings.database_url())
    survivor = Heartbeat(settings, store.engine, "elsewhere-worker-w2")
    os.kill(stalled.proc.pid, signal.SIGSTOP)  # a debugger, a frozen VM: silent, not dead
    try:
        wait_until(
            lambda: (last_beat(store.engine, executor) or 0) < time.time() - 1.5,
            what="the stopped worker's heartbeat to go stale",
        )
        with caplog.at_level(logging.WARNING, logger="workflows.executors"):
            assert survivor.take_over() == []
            assert survivor.take_over() == []
        assert _taken_over_by(store, executor) is None
        [warning] = [r.getMessage() for r in caplog.records if executor in r.getMessage()]
        assert f"executor {executor} silent for over 1s but alive" in warning
        assert f"pid {stalled.proc.pid} on host" in warning

        refused = run_cli("recover", executor, "--force", "--config", str(config), env=env)
        assert refused.returncode == 1
        [line] = refused.stderr.splitlines()
        assert line.startswith(f"error: executor {executor!r} is alive: its executor id is held")
        assert "--force does not override a live hold" in line
        assert _taken_over_by(store, executor) is None
    finally:
        os.kill(stalled.proc.pid, signal.SIGCONT)
        survivor.stop()
        store.close()


def _taken_over_by(store: Store, executor: str) -> str | None:
    with store.engine.connect() as conn:
        by = conn.execute(
            sa.select(heartbeats.c.taken_over_by).where(heartbeats.c.executor_id == executor)
        ).scalar()
    return None if by is None else str(by)
