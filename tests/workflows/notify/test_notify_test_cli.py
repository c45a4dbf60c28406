"""``bauplan-trigger notify-test NAME``: a marked test message and the receiver's answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support import base_config, run_cli, write_config
from tests.workflows.notify.conftest import (
    GITHUB_TOKEN,
    SHA,
    SLACK_PATH,
    WEBHOOK_SECRET,
    ci_trigger,
    notifier_config,
    notify_env,
)
from tests.workflows.notify.receiver import Reply


def _config(tmp_path: Path, project_dir: Path, sink: Any) -> Path:
    notifiers = notifier_config(slack=sink.url, hook=sink.url, github=sink.url)
    config = base_config(
        tmp_path,
        project_dir,
        triggers=[ci_trigger(project_dir, ["alerts"])],
        notifiers=notifiers,
    )
    return write_config(tmp_path / "bauplan-trigger.toml", config)


def test_notify_test_sends_a_marked_message_and_reports_the_answer(
    tmp_path: Path, project_dir: Path, receiver: Any
) -> None:
    from standardwebhooks.webhooks import Webhook

    sink = receiver()
    config = _config(tmp_path, project_dir, sink)
    env = notify_env(sink.url, sink.url)
    done = run_cli("notify-test", "alerts", "--config", str(config), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "slack:alerts: delivered (HTTP 200)"
    [message] = sink.received(SLACK_PATH)
    assert message.json()["blocks"][0]["text"]["text"].startswith("[TEST] ")

    done = run_cli(
        "notify-test", "ops", "--status", "failed", "--json", "--config", str(config), env=env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["notifier"] == "webhook:ops"
    [hook] = sink.received("/hooks/")
    doc = Webhook(WEBHOOK_SECRET).verify(hook.body, hook.headers)
    assert doc["type"] == "run.failed" and doc["data"]["test"] is True

    done = run_cli(
        "notify-test",
        "commits",
        "--repo",
        "acme/lakehouse",
        "--sha",
        SHA,
        "--config",
        str(config),
        env=env,
    )
    assert done.returncode == 0, done.stderr
    [status] = sink.received("/statuses/")
    assert status.json()["description"].startswith("TEST from bauplan-trigger notify-test")
    for out in (done.stdout, done.stderr):
        assert GITHUB_TOKEN not in out and SLACK_PATH not in out


def test_notify_test_reports_a_refusal_and_exits_1(
    tmp_path: Path, project_dir: Path, receiver: Any
) -> None:
    sink = receiver().answer(Reply(403, body="invalid_token"))
    config = _config(tmp_path, project_dir, sink)
    done = run_cli("notify-test", "alerts", "--config", str(config), env=notify_env(sink.url))
    assert done.returncode == 1
    assert done.stdout.strip() == "slack:alerts: not delivered: HTTP 403: invalid_token"
    assert len(sink.received()) == 1  # a test is one attempt, no retries

    done = run_cli("notify-test", "alerts", "--config", str(config), env={})
    assert done.returncode == 1
    assert "NT_SLACK_URL (url_env) is not set" in done.stdout

    done = run_cli(
        "notify-test",
        "commits",
        "--repo",
        "acme/x",
        "--sha",
        "abc1234",
        "--config",
        str(config),
        env={},
    )
    assert done.returncode == 1
    assert "needs --repo OWNER/NAME and --sha with the full 40-character" in done.stderr

    done = run_cli("notify-test", "nope", "--config", str(config), env={})
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: no notifier named 'nope'; configured notifiers: alerts, commits, ops"
    )
