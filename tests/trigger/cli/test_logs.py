"""Log lines: JSON with the ids as fields (ours and DBOS's lines alike), or text that
values from outside cannot break into lines of their own."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.support import base_config, final_run, make_settings, run_cli, wait_until, write_config
from tests.trigger.hookkit import body_of, github_headers, github_push, github_trigger
from trigger.cli.logs import JsonFormatter, TextFormatter, log_handler, run_of, tame_dbos_logger
from trigger.core import secrets
from trigger.core.logfields import ids

FORGED = "2026-11-23T10:00:00 INFO trigger.ingest: delivery FORGED outcome=accepted"
# Everything a terminal or a line splitter (str.splitlines) takes as a new line, or as
# a way back over the previous one.
BREAKS = ["\n", "\r", "\x0b", "\x1c", "\x85", "\u2028", "\x1b[1A\x1b[2K\r"]


def _json_lines(log: Callable[[logging.Logger], None]) -> list[dict[str, Any]]:
    """What ``log`` writes through the JSON handler ``serve --log-format json`` uses."""
    stream = io.StringIO()
    logger = logging.getLogger("workflows.queue")
    handler = log_handler("json", stream)
    logger.addHandler(handler)
    try:
        log(logger)
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_carries_the_ids_its_call_passed_as_fields() -> None:
    [data] = _json_lines(
        lambda log: log.warning(
            "enqueued run %s event=%s branch=%s",
            "run:orders:e1",
            "e1",
            "u.orders",
            extra=ids(run_id="run:orders:e1", event_id="e1", branch="u.orders", job_id=None),
        )
    )
    assert list(data)[:4] == ["time", "level", "logger", "message"]
    assert data["level"] == "WARNING" and data["logger"] == "workflows.queue"
    assert data["message"] == "enqueued run run:orders:e1 event=e1 branch=u.orders"
    # The trigger comes from the run id; an id the call did not know is not a field.
    assert (data["run_id"], data["trigger"], data["event_id"]) == ("run:orders:e1", "orders", "e1")
    assert data["branch"] == "u.orders" and "job_id" not in data
    assert data["time"].endswith("+00:00")


def test_ids_are_never_read_out_of_the_message() -> None:
    # The old formatter read "trigger": "fire" out of "bauplan-trigger fire", and a run,
    # trigger and event out of any text that looked like one.
    lines = _json_lines(
        lambda log: (
            log.warning("fire it: bauplan-trigger fire %s --wait", "orders"),
            log.warning("delivery x ref=%s", "run:evil:e trigger=evil event=forged"),
        )
    )
    assert [sorted(line) for line in lines] == [["level", "logger", "message", "time"]] * 2


def test_a_field_holding_a_secret_is_redacted_in_json_and_absent_from_text() -> None:
    url = "https://hooks.example.com/services/T0LOGS/B0LOGS/" + "s3cretlogfield" * 2
    secrets.read("LOGS_SLACK_URL", {"LOGS_SLACK_URL": url}, url=True)
    secrets.install_log_filter()
    [data] = _json_lines(
        lambda log: log.warning("notifier said %s", url, extra={"url": url, "pair": [url, 1]})
    )
    assert url not in json.dumps(data) and "s3cretlogfield" not in json.dumps(data)
    assert data["url"] == "https://hooks.example.com/***" and data["pair"][1] == 1
    record = logging.makeLogRecord({"msg": "x", "url": url})
    assert "s3cretlogfield" not in TextFormatter().format(record)


def test_a_workflow_id_names_the_run_it_belongs_to() -> None:
    from trigger.core.matching import run_id_for
    from workflows.job import job_workflow_id
    from workflows.notify.outbox import notice_id

    run = run_id_for("orders", "push-1:x")
    assert run_of(run) == run
    assert run_of(job_workflow_id(run, 0)) == run_of(job_workflow_id(run, 3)) == run
    assert run_of(notice_id(run, "data-alerts", "failed")) == run
    assert run_of("sched-bauplan-trigger-nightly-2026-01-01T00:00:00+00:00") is None


@pytest.mark.slow
def test_serve_in_json_writes_only_json_lines_dbos_lines_included(
    tmp_path: Path, project_dir: Path
) -> None:
    from tests.support import cli_env

    config = base_config(tmp_path, project_dir)
    path = write_config(tmp_path / "bauplan-trigger.toml", config)
    # The first submission is refused with a 429: DBOS retries the step and says so on
    # its own logger, from inside the run's workflow.
    armed = run_cli("rehearsal", "fault", "run", "TooManyRequestsError", "--config", str(path))
    assert armed.returncode == 0, armed.stderr
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        command = [sys.executable, "-m", "trigger.cli", "serve", "--config", str(path)]
        proc = subprocess.Popen(
            [*command, "--log-format", "json"], stdout=stdout, stderr=stderr, env=cli_env()
        )
    try:
        wait_until(lambda: "serving role=" in err.read_text(), timeout=90, what="serve")
        fired = run_cli(
            *("fire", "orders", "--config", str(path), "--param", "run_date=j"),
            *("--event-id", "json-1", "--wait", "--timeout", "60"),
        )
        assert fired.returncode == 0, fired.stderr
        wait_until(lambda: "finished run" in err.read_text(), timeout=60, what="finish")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert out.read_text() == ""
    lines = [json.loads(line) for line in err.read_text().splitlines()]
    assert all(list(line)[:4] == ["time", "level", "logger", "message"] for line in lines)
    run = {"run_id": "run:orders:json-1", "trigger": "orders"}
    [submitted] = [line for line in lines if line["message"].startswith("submitted run")]
    assert submitted.items() >= {**run, "event_id": "json-1"}.items(), submitted
    assert submitted["job_id"] and submitted["branch"]
    [finished] = [line for line in lines if line["message"].startswith("finished run")]
    assert finished.items() >= {**run, "event_id": "json-1", "status": "success"}.items()
    # Lines from inside the run's workflow that did not pass the run: ours and DBOS's.
    created = next(line for line in lines if line["message"].startswith("created branch"))
    assert created.items() >= run.items()
    retried = next(line for line in lines if "automatically retried" in line["message"])
    assert retried["logger"] == "dbos" and retried["level"] == "WARNING"
    assert retried.items() >= run.items()
    guard = [line for line in lines if line["logger"] == "trigger.ops.guard"]
    assert "without a token: serving it only because" in guard[0]["message"]
    assert not [line for line in lines if line.get("trigger") not in (None, "orders")]


def test_dbos_lines_are_ours_even_when_dbos_set_its_logger_up_first(tmp_path: Path) -> None:
    # DBOS() puts its own console handler on its logger when the logger has none yet.
    script = f"""
import logging
from dbos import DBOS
url = "sqlite:///{tmp_path / "sys.sqlite"}"
DBOS(config={{"name": "logs-test", "system_database_url": url, "log_level": "WARNING"}})
from trigger.cli.logs import setup_logging
setup_logging(fmt="json")
logging.getLogger("dbos").warning("a line of DBOS's own")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    [line] = [json.loads(line) for line in done.stderr.splitlines()]
    assert (line["logger"], line["level"], line["message"]) == (
        "dbos",
        "WARNING",
        "a line of DBOS's own",
    )


class _Lines(logging.Handler):
    """What a text handler on DBOS's logger would print, traceback included."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_a_retried_step_names_its_run_and_the_error(tmp_path: Path, project_dir: Path) -> None:
    from trigger.core.event import manual_event
    from trigger.sources.manual import fire_event
    from workflows import app
    from workflows.bauplan.rehearsal import Ledger
    from workflows.intake import Enqueuer
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
        fire_event(enqueuer, event, source_addr="test")
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
        "error=RunRefused: Bauplan run failed, will retry: TooManyRequestsError: "
        "(429, 'TooManyRequestsError', 'slow down')"
    ]


def _record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    info = sys.exc_info() if exc else None
    return logging.LogRecord("trigger.ingest", logging.INFO, __file__, 1, message, args, info)


def test_a_text_line_escapes_what_came_from_outside_and_indents_a_traceback() -> None:
    line = TextFormatter().format(_record("delivery %s ref=%s", "x", "main\n" + FORGED))
    assert line.endswith("delivery x ref=main\\n" + FORGED) and len(line.splitlines()) == 1
    try:
        raise KeyError("a\r\n" + FORGED + "\x1b[31m")
    except KeyError:
        lines = TextFormatter().format(_record("failed %s", "d-1", exc=True)).splitlines()
    assert lines[0].endswith("trigger.ingest: failed d-1")
    assert all(line.startswith("  ") for line in lines[1:]) and "\x1b" not in "".join(lines)


def test_a_json_line_is_one_line_whatever_the_values_hold() -> None:
    for brk in [*BREAKS, "\ud800"]:
        line = JsonFormatter().format(_record("delivery %s", f"x{brk}{FORGED}"))
        assert line.isascii() and len(line.splitlines()) == 1
        assert json.loads(line)["message"] == f"delivery x{brk}{FORGED}"


@pytest.mark.slow
def test_a_request_path_a_pushed_ref_a_header_or_a_commit_message_cannot_forge_a_line(
    tmp_path: Path, project_dir: Path, serve_process: Any
) -> None:
    config = base_config(tmp_path, project_dir, triggers=[github_trigger(project_dir)])
    proc = serve_process(write_config(tmp_path / "bauplan-trigger.toml", config))
    url = f"http://{config['service']['listen']}"
    for n, brk in enumerate(BREAKS):
        # No authentication is needed to have a path logged.
        httpx.post(f"{url}/hooks/generic/x{quote(brk + FORGED)}", content=b"{}", timeout=30)
        head = {**github_push()["head_commit"], "message": f"Fix{brk}{FORGED}"}
        for delivery, data in (
            (f"ref-{n}", github_push(ref=f"refs/heads/x{brk}{FORGED}")),
            (f"msg-{n}", github_push(head_commit=head, ref=f"refs/heads/m{n}")),
        ):
            body = body_of(data)
            httpx.post(
                f"{url}/hooks/github", content=body, headers=github_headers(body, delivery=delivery)
            )
        # A header value holds no CR or LF, but any other byte: UTF-8 C1 and U+2028.
        body = body_of(github_push())
        value = f"push{brk}{FORGED}".encode().replace(b"\n", b"").replace(b"\r", b"")
        _raw_post(config["service"]["listen"], github_headers(body, delivery=f"h-{n}"), value, body)
    # Each answer went out after its line; the path, ref and message ones always have one.
    assert proc.log().count(" delivery ") >= 3 * len(BREAKS)
    proc.stop()
    lines = proc.log().splitlines()
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
    assert [line for line in lines if not (stamp.match(line) or line.startswith(" "))] == []
    assert not [line for line in lines if line.startswith(FORGED[:19])]
    assert "\x1b" not in proc.log()


def _raw_post(listen: str, headers: dict[str, str], event: bytes, body: bytes) -> None:
    """A GitHub delivery whose X-GitHub-Event header carries raw bytes httpx would refuse."""
    import socket

    host, port = listen.rsplit(":", 1)
    lines = [b"POST /hooks/github HTTP/1.1", b"Host: x", b"Connection: close"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items() if k != "X-GitHub-Event"]
    lines += [b"X-GitHub-Event: " + event, f"Content-Length: {len(body)}".encode()]
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        while conn.recv(65536):
            pass
