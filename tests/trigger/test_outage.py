"""The system database going away under a running ``serve``: 503s with a sentence, two
log lines for the whole outage, and one error line from the CLI."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.forwarder import forwarding
from tests.support import base_config, run_cli, wait_until, write_config
from trigger.core import outage

# Long enough for DBOS's queue threads, scheduler and listener to fail many times over.
OUTAGE_SECONDS = 5.0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_an_outage_answers_503_and_logs_two_lines(
    tmp_path: Path, project_dir: Path, backend: str, serve_process: Any
) -> None:
    target = sa.make_url(backend)
    with forwarding(target.host or "127.0.0.1", target.port or 5432) as database:
        env = {"DBOS_SYSTEM_DATABASE_URL": target.set(port=database.port).render_as_string()}
        config_data = base_config(tmp_path, project_dir)
        config = write_config(tmp_path / "bauplan-trigger.toml", config_data)
        serve = serve_process(config, env)
        api = f"http://{config_data['service']['listen']}"
        # Quiet: the last start-up lines are out and the database answers.
        wait_until(
            lambda: (
                all(line in serve.log() for line in ("Started server process", "operator API on"))
                and httpx.get(f"{api}/healthz").status_code == 200
            ),
            what="serve to finish starting",
        )
        quiet_until = len(serve.log().splitlines())

        database.cut()
        wait_until(lambda: "system database unreachable" in serve.log(), what="the outage line")
        commands = [
            run_cli("runs", "--config", str(config), env=env),
            run_cli("fire", "orders", "--config", str(config), "--param", "run_date=d", env=env),
        ]
        answers: list[httpx.Response] = []
        ends = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < ends:
            answers += [httpx.get(f"{api}/api/runs"), httpx.get(f"{api}/")]
        database.restore()
        wait_until(lambda: "reachable again" in serve.log(), what="the line ending the outage")
        after = httpx.get(f"{api}/api/runs")
        outage_lines = serve.log().splitlines()[quiet_until:]

    assert {answer.status_code for answer in answers} == {503}
    api_answer, page_answer = answers[0], answers[1]
    assert api_answer.json()["error"].startswith(
        f'cannot reach the system database (connection to server at "127.0.0.1", port '
        f"{database.port} failed: Connection refused)"
    )
    assert api_answer.headers["retry-after"] == str(outage.RETRY_AFTER_SECONDS)
    assert page_answer.headers["content-type"].startswith("text/html")
    assert "cannot read its system database" in page_answer.text
    assert after.status_code == 200, after.text

    for command in commands:
        assert command.returncode == 1, command
        assert command.stderr.startswith("error: cannot reach the system database ("), command
        assert len(command.stderr.splitlines()) == 1, command.stderr

    assert len(outage_lines) == 2, "\n".join(outage_lines[:40])
    started, ended = outage_lines
    shape = re.search(
        r"WARNING trigger\.core\.outage: system database unreachable: (?P<why>.+) \(noticed by "
        r"(?P<who>\S+?)(: .+)?\); holding back its errors until it answers again$",
        started,
    )
    assert shape is not None, started
    # Whichever part of serve noticed first: a dropped connection or a refused one.
    assert shape["why"].endswith(
        (
            "server closed the connection unexpectedly",
            f"port {database.port} failed: Connection refused",
        )
    ), started
    assert re.search(
        r"INFO trigger\.core\.outage: system database reachable again after \d+\.\ds "
        r"\(held back \d+ log lines about it\)$",
        ended,
    ), ended
