"""No URL, token or signing secret in any log line or any stored record of a run."""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

import pytest
import sqlalchemy as sa

from tests.workflows.notify.conftest import (
    GITHUB_TOKEN,
    HOOK_PATH,
    SLACK_PATH,
    WEBHOOK_KEY,
    WEBHOOK_SECRET,
    notified,
    notifier_config,
    notify_env,
)
from tests.workflows.notify.receiver import Reply
from tests.workflows.notify.test_delivery import launch, start_run

SECRETS = [
    SLACK_PATH.rsplit("/", 1)[1],
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
    """DBOS stores inputs, outputs and events as base64 pickles: look inside too."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def test_no_secret_in_any_log_line_or_stored_record(
    launched: Any,
    project_dir: Any,
    monkeypatch: pytest.MonkeyPatch,
    receiver: Any,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Any,
) -> None:
    sink = receiver().answer(
        Reply(500),  # first delivery attempt of the first notification: retried
        Reply(429, {"Retry-After": "0"}),
    )
    github = receiver()
    # A receiver that echoes the token back must not get it into the record either.
    github.default = Reply(401, body=f'{{"message": "Bad credentials {GITHUB_TOKEN}"}}')
    notifiers = notifier_config(
        slack=sink.url, hook=sink.url, github=github.url, on=["started", "succeeded", "failed"]
    )
    caplog.set_level(logging.DEBUG)
    dbos_logger = logging.getLogger("dbos")
    dbos_logger.addHandler(caplog.handler)
    try:
        settings, enqueuer = launch(
            launched,
            project_dir,
            monkeypatch,
            notify_env(sink.url, sink.url),
            notifiers,
            rehearse_outcome="fail",
        )
        dbos_logger.setLevel(logging.DEBUG)
        run = notified(enqueuer, start_run(settings, enqueuer))
    finally:
        dbos_logger.removeHandler(caplog.handler)
    assert run["status"] == "failed"
    # Every notifier really ran and took its secret from the environment.
    assert len(sink.received(SLACK_PATH)) >= 2 and len(sink.received(HOOK_PATH)) >= 2
    assert github.received()[0].headers["Authorization"] == f"Bearer {GITHUB_TOKEN}"
    states = {(n["name"], n["on"]): n["status"] for n in run["notifications"]}
    assert states[("github_status:commits", "failed")] == "failed"
    assert states[("slack:alerts", "failed")] == "delivered"

    lines = [record.getMessage() for record in caplog.records]
    lines += [caplog.text, str(run)]
    assert any("notification" in line for line in lines)
    for secret in SECRETS:
        assert not [line for line in lines if secret in line], f"{secret!r} in a log line"

    cells = stored_cells(settings.database_url())
    for secret in SECRETS:
        needle = secret.encode()
        found = [(t, c) for t, c, v in cells if needle in v or needle in decoded(v)]
        assert not found, f"{secret!r} stored in {found}"
    for path in settings.state_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [s for s in SECRETS if s.encode() in data], f"secret in {path}"
