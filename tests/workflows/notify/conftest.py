"""Receivers on loopback and notifier configs for the notification tests."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import wait_until
from tests.workflows.notify.receiver import Receiver

# Distinctive values, so the secret-grep test finds any copy of them anywhere.
SLACK_PATH = "/services/T0SECRET/B0SECRET/slackSECRETtoken42"
HOOK_PATH = "/hooks/hookSECRETpath77"
GITHUB_TOKEN = "ghp_githubSECRETtoken0123456789abcdef"
WEBHOOK_KEY = b"webhook-signing-key-SECRET-32byte"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_KEY).decode()
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def receiver() -> Iterator[Any]:
    made: list[Receiver] = []

    def make(port: int = 0) -> Receiver:
        item = Receiver(port)
        made.append(item)
        return item

    yield make
    for item in made:
        item.close()


def notifier_config(
    slack: str | None = None,
    hook: str | None = None,
    github: str | None = None,
    **common: Any,
) -> dict[str, Any]:
    """[notifiers.*] for the given receiver base URLs; ``common`` goes into each."""
    fast = {"retry_interval": 0.05, "retry_max_interval": 0.2, "timeout": 5.0, **common}
    out: dict[str, Any] = {}
    if slack:
        out["alerts"] = {"kind": "slack", "url_env": "NT_SLACK_URL", "channel": "#data", **fast}
    if hook:
        out["ops"] = {
            "kind": "webhook",
            "url_env": "NT_HOOK_URL",
            "secret_env": "NT_HOOK_SECRET",
            "headers": {"X-Team": "data"},
            **fast,
        }
    if github:
        out["commits"] = {
            "kind": "github_status",
            "token_env": "NT_GITHUB_TOKEN",
            "api_url": github + "/api/v3",
            "run_url": "https://trigger.example.com/runs",
            **fast,
        }
    return out


def notify_env(slack: str | None = None, hook: str | None = None) -> dict[str, str]:
    env = {"NT_HOOK_SECRET": WEBHOOK_SECRET, "NT_GITHUB_TOKEN": GITHUB_TOKEN}
    if slack:
        env["NT_SLACK_URL"] = slack + SLACK_PATH
    if hook:
        env["NT_HOOK_URL"] = hook + HOOK_PATH
    return env


def ci_trigger(project_dir: Any, notify: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": "ci",
        "project_dir": str(project_dir),
        "branch": "ci",
        "parameters": {"mode": "full"},
        "notify": notify,
        **extra,
    }


_ENDED = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


def notices_of(client: Any, run_id: str) -> list[Any]:
    """The notice workflows a run enqueued (their DBOS statuses)."""
    from workflows.notify.outbox import notice_ids

    ids = notice_ids(client.list_workflow_steps(run_id, load_output=False))
    return list(client.list_workflows(workflow_ids=ids, load_input=False)) if ids else []


def notified(enqueuer: Any, run_id: str, timeout: float = 90) -> dict[str, Any]:
    """Wait for a run and every notice it enqueued to end; the run's record."""
    from workflows.records import show_run

    def ended(rows: list[Any]) -> bool:
        return all(str(row.status) in _ENDED for row in rows)

    client = enqueuer.client
    wait_until(
        lambda: ended(client.list_workflows(workflow_ids=[run_id], load_input=False)),
        timeout=timeout,
        what=f"run {run_id} to end",
    )
    wait_until(
        lambda: ended(notices_of(client, run_id)),
        timeout=timeout,
        what=f"the notices of run {run_id} to end",
    )
    return show_run(client, run_id)
