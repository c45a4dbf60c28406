"""No URL, token or signing secret in any log line, stored record or view of a run,
not even when a receiver echoes them back or Bauplan quotes one in an error."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.support import base_config, final_run, run_cli, wait_until, write_config
from tests.trigger.server import client_for
from tests.workflows.notify.conftest import (
    GITHUB_TOKEN,
    HOOK_PATH,
    SLACK_PATH,
    WEBHOOK_KEY,
    WEBHOOK_SECRET,
    ci_trigger,
    notified,
    notifier_config,
    notify_env,
)
from tests.workflows.notify.receiver import Reply, echo_authorization, echo_path
from tests.workflows.notify.test_delivery import start_run
from trigger.ops.api import close_api
from trigger.service import create_app
from workflows.bauplan.rehearsal import Ledger
from workflows.runtime import ledger_path

SECRETS = [
    SLACK_PATH,
    SLACK_PATH.rsplit("/", 1)[1],
    "T0SECRET",
    HOOK_PATH,
    HOOK_PATH.rsplit("/", 1)[1],
    GITHUB_TOKEN,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET.removeprefix("whsec_"),
    WEBHOOK_KEY.decode(),
]


def stored_cells(url: str) -> list[tuple[str, str, bytes]]:
    """(table, column, value) for every cell of every table in the system database."""
    engine = sa.create_engine(url)
    cells: list[tuple[str, str, bytes]] = []
    try:
        inspector = sa.inspect(engine)
        schemas = [None] if url.startswith("sqlite") else ["dbos", "public"]
        with engine.connect() as conn:
            for schema in schemas:
                for table in inspector.get_table_names(schema=schema):
                    meta = sa.Table(table, sa.MetaData(), schema=schema, autoload_with=conn)
                    for row in conn.execute(sa.select(meta)).mappings():
                        for column, value in row.items():
                            if value is not None:
                                cells.append((table, column, str(value).encode()))
    finally:
        engine.dispose()
    assert {"workflow_status", "operation_outputs", "workflow_events"} <= {t for t, _, _ in cells}
    return cells


def decoded(value: bytes) -> bytes:
    """DBOS stores inputs, outputs, events and errors as base64 pickles: look inside, at
    the bytes and at what they unpickle to."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""
    try:
        shown = repr(pickle.loads(raw)).encode()  # noqa: S301  (the test's own database)
    except Exception:
        shown = b""
    return raw + b"\n" + shown


def assert_stored_nowhere(settings: Any) -> None:
    cells = stored_cells(settings.database_url())
    assert any(decoded(v) for _, _, v in cells)  # the pickles were really looked into
    for secret in SECRETS:
        needle = secret.encode()
        found = [(t, c) for t, c, v in cells if needle in v or needle in decoded(v)]
        assert not found, f"{secret!r} stored in {found}"


def assert_logged_nowhere(caplog: pytest.LogCaptureFixture) -> None:
    lines = [record.getMessage() for record in caplog.records] + [caplog.text]
    assert any("notification" in line for line in lines)
    for secret in SECRETS:
        assert not [line for line in lines if secret in line], f"{secret!r} in a log line"


@pytest.fixture
def every_log_record(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record at DEBUG, DBOS's own included (DBOS's logger does not propagate)."""
    caplog.set_level(logging.DEBUG)
    dbos_logger = logging.getLogger("dbos")
    dbos_logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        dbos_logger.removeHandler(caplog.handler)


def views(settings: Any, run_id: str) -> dict[str, str]:
    """The run as ``runs show --json``, ``GET /api/runs/ID`` and the page show it."""
    env = {"DBOS_SYSTEM_DATABASE_URL": settings.system_database_url}
    shown = run_cli(
        "runs",
        "show",
        "--config",
        str(settings.config_path),
        "--json",
        run_id,
        env=env if settings.system_database_url else None,
    )
    assert shown.returncode == 0, shown.stderr
    app = create_app(settings)
    try:
        with client_for(app) as client:
            api = client.get(f"/api/runs/{run_id}")
            page = client.get(f"/runs/{run_id}")
    finally:
        close_api(app)
        app.state.bauplan_trigger.engine.dispose()
    assert api.status_code == page.status_code == 200, (api.text, page.text)
    return {"runs show --json": shown.stdout, "/api/runs/ID": api.text, "the page": page.text}


def test_secrets_a_receiver_echoes_appear_in_no_log_record_or_view(
    launched: Any,
    project_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver: Any,
    every_log_record: pytest.LogCaptureFixture,
) -> None:
    slack = receiver()
    slack.default = Reply(404, echo=echo_path)  # the body holds the URL's secret path
    hook = receiver().answer(
        Reply(500, echo=echo_path), Reply(429, {"Retry-After": "0"}, echo=echo_path)
    )
    github = receiver()
    github.default = Reply(401, echo=echo_authorization)  # the header, token and all
    notifiers = notifier_config(
        slack=slack.url, hook=hook.url, github=github.url, on=["started", "succeeded", "failed"]
    )
    sections = {"triggers": [ci_trigger(project_dir, sorted(notifiers))], "notifiers": notifiers}
    for key, value in notify_env(slack.url, hook.url).items():
        monkeypatch.setenv(key, value)
    settings, enqueuer = launched(bauplan={"rehearse_outcome": "fail"}, **sections)
    write_config(settings.config_path, base_config(tmp_path, project_dir, **sections))
    logging.getLogger("dbos").setLevel(logging.DEBUG)
    run_id = start_run(settings, enqueuer)
    run = notified(enqueuer, run_id)

    assert run["status"] == "failed"
    # Every notifier ran, took its secret from the environment and had it echoed back.
    assert [r.path for r in slack.received()] == [SLACK_PATH, SLACK_PATH]
    assert [r.answered for r in hook.received()] == [500, 429, 200, 200]
    assert github.received()[0].headers["Authorization"] == f"Bearer {GITHUB_TOKEN}"
    entries = {(n["name"], n["on"]): n for n in run["notifications"]}
    assert entries[("slack:alerts", "failed")]["message"] == (
        "notification slack:alerts failed: HTTP 404: no_service for /***"
    )
    github_failed = entries[("github_status:commits", "failed")]["message"]
    assert github_failed.endswith('"authorization": "Bearer ***"}')
    assert entries[("webhook:ops", "started")]["attempts"] == 3

    assert_logged_nowhere(every_log_record)
    assert_stored_nowhere(settings)
    for path in settings.state_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [s for s in SECRETS if s.encode() in data], f"secret in {path}"
    shown = views(settings, run_id)
    assert len(json.loads(shown["runs show --json"])["notifications"]) == 6
    for name, text in shown.items():
        assert "no_service for /***" in text, name  # the answer is shown, redacted
        assert not [s for s in SECRETS if s in text], f"a secret in {name}"


def test_a_bauplan_error_that_quotes_a_secret_is_stored_and_logged_without_it(
    launched: Any,
    project_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    every_log_record: pytest.LogCaptureFixture,
) -> None:
    # Nothing is sent: the notifier is there only to name the variable holding the token.
    notifiers = notifier_config(github="http://127.0.0.1:9", on=[])
    monkeypatch.setenv("NT_GITHUB_TOKEN", GITHUB_TOKEN)
    settings, enqueuer = launched(
        triggers=[ci_trigger(project_dir, sorted(notifiers))], notifiers=notifiers
    )
    message = f"token {GITHUB_TOKEN} may not read branches"
    Ledger(ledger_path(settings)).inject_fault("has_branch", "ForbiddenError", message, count=5)
    run = final_run(enqueuer, start_run(settings, enqueuer))
    assert run["status"] == "failed"
    assert "token *** may not read branches" in run["error"]
    # DBOS logs the run's traceback as it records the failure, a moment after the status.
    wait_until(
        lambda: "token *** may not read branches" in every_log_record.text,
        what="DBOS's traceback of the failed run",
    )
    lines = [record.getMessage() for record in every_log_record.records]
    assert not [line for line in [*lines, every_log_record.text] if GITHUB_TOKEN in line]
    cells = stored_cells(settings.database_url())
    needle = GITHUB_TOKEN.encode()
    assert not [(t, c) for t, c, v in cells if needle in v or needle in decoded(v)]
