"""An ingress-only ``serve`` and a worker ``serve`` on one PostgreSQL run a pushed event."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import base_config, final_run, make_settings, write_config
from tests.trigger.hookkit import body_of, github_headers, github_push, github_trigger
from workflows.bauplan.rehearsal import Ledger
from workflows.intake import Enqueuer
from workflows.runtime import ledger_path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_an_ingress_and_a_worker_process_run_a_push_together(
    tmp_path: Path, backend: str, project_dir: Path, serve_process: Any
) -> None:
    port = _free_port()
    overrides: dict[str, Any] = {
        "service": {"listen": f"127.0.0.1:{port}"},
        "triggers": [github_trigger(project_dir)],
    }
    config = write_config(
        tmp_path / "bauplan-trigger.toml", base_config(tmp_path, project_dir, **overrides)
    )
    env = {"DBOS_SYSTEM_DATABASE_URL": backend}
    worker = serve_process(config, env, role="worker")
    ingress = serve_process(config, env, role="ingress")
    body = body_of(github_push())
    response = httpx.post(
        f"http://127.0.0.1:{port}/hooks/github",
        content=body,
        headers=github_headers(body, delivery="split-1"),
        timeout=30,
    )
    assert response.status_code == 202, response.text
    [run_id] = response.json()["runs"]
    settings = make_settings(tmp_path, backend, project_dir, **overrides)
    enqueuer = Enqueuer(settings)
    try:
        run = final_run(enqueuer, run_id, timeout=60)
        assert run["status"] == "succeeded", run
    finally:
        enqueuer.close()
    assert run["branch"] == "rehearsal.orders_main"
    assert len(Ledger(ledger_path(settings)).jobs()) == 1
    assert "outcome=accepted" in ingress.log()
    assert f"finished run {run_id}" in worker.log()
    assert "finished run" not in ingress.log()
    assert "It's a Secret" not in ingress.log() + worker.log()
