"""File drops through a real ``serve`` process, killed with SIGKILL at the worst moments."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbos import DBOSClient

from tests.support import base_config, wait_until, write_config
from tests.trigger.sources.files.support import files_trigger
from trigger.core.settings import build_settings
from workflows.bauplan.rehearsal import Ledger
from workflows.records import list_runs
from workflows.runtime import ledger_path

pytestmark = pytest.mark.slow


@pytest.fixture
def setup(tmp_path: Path, project_dir: Path, backend: str | None) -> Iterator[Any]:
    clients: list[DBOSClient] = []

    def make(**files: Any) -> tuple[Path, Path, dict[str, str], Ledger, Any]:
        landing = tmp_path / "landing"
        landing.mkdir(exist_ok=True)
        config = base_config(
            tmp_path,
            project_dir,
            triggers=[files_trigger(project_dir, landing, **files)],
            bauplan={"rehearse_seconds": 0.0},
        )
        path = write_config(tmp_path / "bauplan-trigger.toml", config)
        env = {"DBOS_SYSTEM_DATABASE_URL": backend} if backend else {}
        settings = build_settings(config, config_path=path, environ=env)
        ledger = Ledger(ledger_path(settings))

        def runs() -> list[dict[str, Any]]:
            if not clients:
                clients.append(DBOSClient(system_database_url=settings.database_url()))
            return list_runs(clients[0], trigger="landing")

        return path, landing, env, ledger, runs

    yield make
    for client in clients:
        client.destroy()


def test_kill9_between_detection_and_enqueue_loses_nothing_and_runs_once(
    setup: Any, serve_process: Any
) -> None:
    config, landing, env, ledger, runs = setup(settle_seconds=3.0)
    proc = serve_process(config, env)
    (landing / "a.csv").write_text("x")
    wait_until(lambda: "file a.csv seen" in proc.log(), what="the file to be seen")
    proc.kill9()
    assert ledger.jobs() == []
    proc.start()
    wait_until(
        lambda: [r for r in runs() if r["status"] == "succeeded"], timeout=60, what="the run"
    )
    assert len(runs()) == 1
    assert len(ledger.jobs()) == 1


def test_kill9_between_run_end_and_move_completes_the_move_on_recovery(
    setup: Any, serve_process: Any
) -> None:
    config, landing, env, ledger, runs = setup(after="move")
    ledger.inject_fault("get_job_logs", "EXIT_AFTER", "die after the job ended", count=1)
    proc = serve_process(config, env)
    (landing / "a.csv").write_text("x")
    assert proc.proc.wait(timeout=60) == 137
    assert (landing / "a.csv").exists()  # the run's job ended; the move has not happened
    assert len(ledger.jobs()) == 1
    proc.start()
    wait_until(lambda: (landing / "processed" / "a.csv").exists(), timeout=60, what="the move")
    wait_until(lambda: [r["status"] for r in runs()] == ["succeeded"], what="the run")
    assert not (landing / "a.csv").exists()
    assert len(ledger.jobs()) == 1
    assert sorted(p.name for p in (landing / "processed").iterdir()) == ["a.csv"]
