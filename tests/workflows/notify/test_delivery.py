"""Durable delivery of a run's notices, on real DBOS (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.workflows.notify.conftest import (
    HOOK_PATH,
    SHA,
    SLACK_PATH,
    WEBHOOK_SECRET,
    ci_trigger,
    notified,
    notifier_config,
    notify_env,
)
from tests.workflows.notify.receiver import Reply, closed_port_url
from trigger.core.event import Event
from trigger.core.matching import build_request


def push_event(event_id: str = "push-1") -> Event:
    return Event(
        kind="github",
        id=event_id,
        attributes={
            "repo": "acme/lakehouse",
            "git_branch": "main",
            "git_sha": SHA,
            "git_short_sha": SHA[:7],
            "pusher": "alice",
            "head_message": "Fix orders",
        },
    )


def start_run(settings: Any, enqueuer: Any, event: Event | None = None) -> str:
    request = build_request(event or push_event(), settings.trigger("ci"), settings)
    return str(enqueuer.enqueue(request).run_id)


def launch(
    launched: Any,
    project_dir: Any,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    notifiers: dict[str, Any],
    **trigger: Any,
) -> tuple[Any, Any]:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return launched(
        triggers=[ci_trigger(project_dir, sorted(notifiers), **trigger)], notifiers=notifiers
    )


def by_name(run: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(n["name"], n["on"]): n for n in run["notifications"]}


def test_a_successful_push_run_notifies_every_kind(
    launched: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch, receiver: Any
) -> None:
    from standardwebhooks.webhooks import Webhook

    sink = receiver()
    github = receiver()
    github.default = Reply(201)  # GitHub answers 201 Created
    notifiers = notifier_config(slack=sink.url, hook=sink.url, github=github.url)
    notifiers["ops"]["on"] = ["started", "succeeded", "failed"]
    settings, enqueuer = launch(
        launched, project_dir, monkeypatch, notify_env(sink.url, sink.url), notifiers
    )
    run = notified(enqueuer, start_run(settings, enqueuer))
    assert run["status"] == "succeeded"

    statuses = [r.json() for r in github.received("/statuses/")]
    assert [s["state"] for s in statuses] == ["pending", "success"]
    assert {s["context"] for s in statuses} == {"bauplan-trigger/ci"}
    assert statuses[1]["target_url"].startswith("https://trigger.example.com/runs/run%3Aci%3A")

    [slack_msg] = sink.received(SLACK_PATH)  # default on: succeeded, failed
    payload = slack_msg.json()
    assert payload["channel"] == "#data"
    assert payload["text"].startswith(":white_check_mark: ci succeeded")
    assert "push to acme/lakehouse@0123456 (main) by alice: Fix orders" in payload["text"]

    hooks = sink.received(HOOK_PATH)
    docs = [Webhook(WEBHOOK_SECRET).verify(h.body, h.headers) for h in hooks]
    assert [d["type"] for d in docs] == ["run.started", "run.succeeded"]
    assert docs[1]["data"]["job_id"] == run["job_id"] and docs[1]["data"]["branch"] == run["branch"]

    seen = by_name(run)
    assert set(seen) == {
        ("github_status:commits", "started"),
        ("github_status:commits", "succeeded"),
        ("webhook:ops", "started"),
        ("webhook:ops", "succeeded"),
        ("slack:alerts", "succeeded"),
    }
    assert all(n["status"] == "delivered" and n["attempts"] == 1 for n in seen.values())
    assert seen[("github_status:commits", "succeeded")]["code"] == 201


def test_a_failed_run_reports_its_error_and_log_and_marks_the_commit_failed(
    launched: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch, receiver: Any
) -> None:
    sink = receiver()
    notifiers = notifier_config(slack=sink.url, github=sink.url)
    settings, enqueuer = launch(
        launched,
        project_dir,
        monkeypatch,
        notify_env(sink.url),
        notifiers,
        rehearse_outcome="fail",
    )
    run = notified(enqueuer, start_run(settings, enqueuer))
    assert run["status"] == "failed"
    assert [r.json()["state"] for r in sink.received("/statuses/")] == ["pending", "failure"]
    [message] = sink.received(SLACK_PATH)
    blocks = message.json()["blocks"]
    assert blocks[0]["text"]["text"] == ":x: ci failed"
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    assert any(s.startswith("*Error*") and "told to fail" in s for s in sections)
    assert any(s.startswith("*Last log lines*\n```") for s in sections)
    assert all(n["status"] == "delivered" for n in run["notifications"])


def test_retry_after_is_waited_out_and_5xx_retried_until_delivered(
    launched: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch, receiver: Any
) -> None:
    slack_sink = receiver().answer(Reply(429, {"Retry-After": "1"}, "rate_limited"), 200)
    hook_sink = receiver().answer(500, 503, 200)
    notifiers = notifier_config(slack=slack_sink.url, hook=hook_sink.url)
    settings, enqueuer = launch(
        launched, project_dir, monkeypatch, notify_env(slack_sink.url, hook_sink.url), notifiers
    )
    run = notified(enqueuer, start_run(settings, enqueuer))
    assert run["status"] == "succeeded"
    first, second = slack_sink.received()
    assert second.at - first.at >= 0.95  # the wait Retry-After asked for (a lower bound)
    assert [r.answered for r in hook_sink.received()] == [500, 503, 200]
    ids = {r.headers["webhook-id"] for r in hook_sink.received()}
    assert len(ids) == 1
    seen = by_name(run)
    assert seen[("slack:alerts", "succeeded")]["attempts"] == 2
    assert seen[("webhook:ops", "succeeded")]["attempts"] == 3
    assert {n["status"] for n in seen.values()} == {"delivered"}


def test_a_retry_after_longer_than_the_cap_is_capped(
    launched: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch, receiver: Any
) -> None:
    sink = receiver().answer(Reply(429, {"Retry-After": "3600"}), 200)
    notifiers = notifier_config(slack=sink.url, retry_after_cap=0.2)
    settings, enqueuer = launch(launched, project_dir, monkeypatch, notify_env(sink.url), notifiers)
    run = notified(enqueuer, start_run(settings, enqueuer))
    assert by_name(run)[("slack:alerts", "succeeded")]["status"] == "delivered"
    assert len(sink.received()) == 2


def test_a_permanent_4xx_is_not_retried_and_the_run_stays_succeeded(
    launched: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch, receiver: Any
) -> None:
    sink = receiver().answer(Reply(404, body="no_service"))
    notifiers = notifier_config(slack=sink.url)
    settings, enqueuer = launch(launched, project_dir, monkeypatch, notify_env(sink.url), notifiers)
    run = notified(enqueuer, start_run(settings, enqueuer))
    assert run["status"] == "succeeded"
    assert len(sink.received()) == 1
    [entry] = run["notifications"]
    assert entry["status"] == "failed" and entry["attempts"] == 1 and entry["code"] == 404
    assert entry["message"] == "notification slack:alerts failed: HTTP 404: no_service"


@pytest.mark.parametrize("outcome", ["success", "fail"])
def test_a_down_receiver_never_changes_the_runs_status(
    launched: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch, receiver: Any, outcome: str
) -> None:
    down = closed_port_url()
    flaky = receiver()
    flaky.default = Reply(500)
    notifiers = notifier_config(slack=down, hook=flaky.url, max_attempts=3)
    settings, enqueuer = launch(
        launched,
        project_dir,
        monkeypatch,
        notify_env(down, flaky.url),
        notifiers,
        rehearse_outcome=outcome,
    )
    run = notified(enqueuer, start_run(settings, enqueuer))
    assert run["status"] == ("succeeded" if outcome == "success" else "failed")
    assert len(flaky.received()) == 3  # max_attempts, counting the first
    final_status = "succeeded" if outcome == "success" else "failed"
    seen = by_name(run)
    slack_entry = seen[("slack:alerts", final_status)]
    assert slack_entry["status"] == "failed" and slack_entry["attempts"] == 3
    assert slack_entry["message"].startswith("notification slack:alerts failed: could not reach")
    hook_entry = seen[("webhook:ops", final_status)]
    assert hook_entry["message"] == "notification webhook:ops failed: HTTP 500: ok after 3 attempts"
    if outcome == "fail":
        assert "told to fail" in run["error"]


def test_a_manual_run_skips_the_commit_status(
    launched: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch, receiver: Any
) -> None:
    sink = receiver()
    notifiers = notifier_config(github=sink.url)
    settings, enqueuer = launch(launched, project_dir, monkeypatch, notify_env(), notifiers)
    manual = Event(kind="manual", id="m-1", attributes={"trigger": "ci", "fired_by": "bob"})
    run = notified(enqueuer, start_run(settings, enqueuer, manual))
    assert run["status"] == "succeeded"
    assert sink.received() == []
    assert {n["status"] for n in run["notifications"]} == {"skipped"}
