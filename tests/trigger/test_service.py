"""``serve`` start-up: a second process for the same executor, or a taken port, is
refused before DBOS launches, so it recovers (and re-runs) nothing."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from tests.support import base_config, final_run, wait_until, write_config
from tests.workflows.flow_support import fire, ledger
from trigger.core.settings import build_settings
from trigger.ops.explain import run_story
from workflows.intake import Enqueuer
from workflows.records import show_run

pytestmark = pytest.mark.slow


def _setup(tmp_path: Path, project_dir: Path, backend: str | None, seconds: float) -> Any:
    data = base_config(tmp_path, project_dir, bauplan={"rehearse_seconds": seconds})
    config = write_config(tmp_path / "bt.toml", data)
    env = {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}
    return config, build_settings(data, config_path=config, environ=env), env


def _exit_code(proc: Any, within: float = 30) -> int:
    return int(proc.proc.wait(timeout=within))


@pytest.mark.parametrize("role", ["all", "worker"])
def test_a_second_serve_for_the_same_executor_refuses_and_the_run_goes_on_once(
    tmp_path: Path, project_dir: Path, backend: str | None, serve_process: Any, role: str
) -> None:
    config, settings, env = _setup(tmp_path, project_dir, backend, seconds=3.0)
    first = serve_process(config, env, role=role)
    enqueuer = Enqueuer(settings)
    try:
        run_id = fire(settings, enqueuer, "in-flight")
        wait_until(lambda: ledger(settings).jobs(), what="the run's job to be submitted")

        second = serve_process(config, env, role=role, wait=False)
        assert _exit_code(second) == 1
        [line] = second.log().splitlines()
        assert line.startswith("error: executor id ")
        assert f"-{role}-main" in line
        assert f"pid {first.proc.pid}" in line and socket.gethostname() in line
        assert "[service] name" in line and "--role" in line

        run = final_run(enqueuer, run_id, timeout=60)
        assert run["status"] == "succeeded", run
        story = run_story(enqueuer.client, run_id, settings)
    finally:
        enqueuer.close()
    assert len(ledger(settings).jobs()) == 1
    assert (first.log() + second.log()).count(f"submitted run {run_id}") == 1
    assert [t["what"] for t in story["timeline"]].count("started") == 1
    assert [s["name"] for s in story["steps"]].count("wait") == 1
    assert run["executor_id"].endswith(f"-{role}-main")
    assert "no longer owned" not in first.log() + second.log()


def test_a_taken_port_is_refused_before_dbos_launches_and_a_restart_after_kill_9_starts_at_once(
    tmp_path: Path, project_dir: Path, backend: str | None, serve_process: Any
) -> None:
    config, settings, env = _setup(tmp_path, project_dir, backend, seconds=2.0)
    first = serve_process(config, env)
    enqueuer = Enqueuer(settings)
    try:
        run_id = fire(settings, enqueuer, "stranded")
        wait_until(lambda: ledger(settings).jobs(), what="the run's job to be submitted")
        first.kill9()

        with socket.socket() as squatter:
            squatter.bind((settings.service.host, settings.service.port))
            squatter.listen()
            refused = serve_process(config, env, wait=False)
            assert _exit_code(refused) == 1
        [line] = refused.log().splitlines()
        assert line.startswith(f"error: cannot listen on {settings.service.listen}")
        assert show_run(enqueuer.client, run_id)["status"] == "running"

        restarted = serve_process(config, env)
        run = final_run(enqueuer, run_id, timeout=60)
        assert run["status"] == "succeeded", run
    finally:
        enqueuer.close()
    assert "DBOS launched" not in refused.log()
    assert f"submitted run {run_id}" in restarted.log()
    assert len(ledger(settings).jobs()) == 1
    assert run["job_id"] == ledger(settings).jobs()[0]["job_id"]
