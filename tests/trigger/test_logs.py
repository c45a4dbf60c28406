"""``serve --log-format json``: one JSON object per line with run, trigger and event."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.support import base_config, final_run, make_settings, run_cli, wait_until, write_config
from trigger.logs import JsonFormatter, tame_dbos_logger


def test_a_record_names_its_run_trigger_and_event() -> None:
    record = logging.LogRecord(
        "workflows.queue",
        logging.INFO,
        __file__,
        1,
        "enqueued run %s trigger=%s event=%s branch=%s",
        ("run:orders:e1", "orders", "e1", "u.orders"),
        None,
    )
    data = json.loads(JsonFormatter().format(record))
    assert data["level"] == "INFO" and data["logger"] == "workflows.queue"
    assert data["message"] == "enqueued run run:orders:e1 trigger=orders event=e1 branch=u.orders"
    assert (data["run_id"], data["trigger"], data["event_id"]) == ("run:orders:e1", "orders", "e1")
    assert data["time"].endswith("+00:00")


@pytest.mark.slow
def test_serve_logs_json_lines(tmp_path: Path, project_dir: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = base_config(tmp_path, project_dir, service={"listen": f"127.0.0.1:{port}"})
    config["service"]["state_dir"] = str(tmp_path / "state")
    path = write_config(tmp_path / "bauplan-trigger.toml", config)
    import subprocess
    import sys

    from tests.support import cli_env

    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as handle:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trigger.cli",
                "serve",
                "--config",
                str(path),
                "--log-format",
                "json",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=cli_env(),
        )
    try:
        wait_until(lambda: "serving role=" in log_path.read_text(), timeout=90, what="serve")
        fired = run_cli(
            "fire",
            "orders",
            "--config",
            str(path),
            "--param",
            "run_date=j",
            "--event-id",
            "json-1",
            "--wait",
            "--timeout",
            "60",
        )
        assert fired.returncode == 0, fired.stderr
        wait_until(lambda: "finished run" in log_path.read_text(), timeout=60, what="finish")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    finished = [line for line in lines if line["message"].startswith("finished run")]
    assert finished[0]["run_id"] == "run:orders:json-1" and finished[0]["trigger"] == "orders"
    guard = [line for line in lines if line["logger"] == "trigger.api"]
    assert "without a token: serving it only because" in guard[0]["message"]
    assert guard[0]["level"] == "WARNING"


class _Lines(logging.Handler):
    """What a text handler on DBOS's logger would print, traceback included."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_a_retried_step_names_its_run_and_the_error(tmp_path: Path, project_dir: Path) -> None:
    from trigger.dispatch import fire_event
    from trigger.event import manual_event
    from workflows import app
    from workflows.queue import Enqueuer
    from workflows.rehearsal import Ledger
    from workflows.runtime import ledger_path

    settings = make_settings(tmp_path, None, project_dir)
    dbos_logger = logging.getLogger("dbos")
    before = list(dbos_logger.filters)
    tame_dbos_logger()
    seen = _Lines()
    dbos_logger.addHandler(seen)
    app.launch(settings)
    enqueuer = Enqueuer(settings)
    try:
        Ledger(ledger_path(settings)).inject_fault("run", "TooManyRequestsError", "slow down")
        event = manual_event("orders", {"run_date": "r"}, event_id="retry-1")
        fire_event(settings, enqueuer, event, source_addr="test")
        assert final_run(enqueuer, "run:orders:retry-1")["status"] == "succeeded"
    finally:
        enqueuer.close()
        app.shutdown()
        dbos_logger.removeHandler(seen)
        for added in [f for f in dbos_logger.filters if f not in before]:
            dbos_logger.removeFilter(added)
    retried = [line for line in seen.lines if "automatically retried" in line]
    assert retried == [
        "Step being automatically retried (attempt 1 of 6) run=run:orders:retry-1 "
        "error=BauplanFailure: Bauplan run failed, will retry: TooManyRequestsError: "
        "(429, 'TooManyRequestsError', 'slow down')"
    ]
