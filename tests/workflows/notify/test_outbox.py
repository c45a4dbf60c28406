"""The notice outbox: a run enqueues its notices and never waits for a receiver."""

from __future__ import annotations

from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support import final_run
from tests.workflows.notify.conftest import (
    HOOK_PATH,
    SLACK_PATH,
    WEBHOOK_SECRET,
    notices_of,
    notified,
    notifier_config,
    notify_env,
)
from tests.workflows.notify.receiver import Receiver, closed_port_url
from tests.workflows.notify.test_delivery import launch, push_event, start_run
from workflows.notify.outbox import NOTICE_QUEUE, notice_id, partition
from workflows.records import show_run

NAMES = ("alerts", "ops", "commits")  # slack, webhook, github_status in notifier_config
FINALS = ("succeeded", "failed")


def heard(sink: Receiver, run_id: str) -> dict[str, list[str]]:
    """What each notifier's receiver heard about one run, in the order it arrived."""
    out: dict[str, list[str]] = {"alerts": [], "ops": [], "commits": []}
    for request in sink.received():
        if SLACK_PATH in request.path:
            payload = request.json()
            if run_id in payload["blocks"][-1]["elements"][0]["text"]:
                out["alerts"].append(payload["blocks"][0]["text"]["text"].split()[-1])
        elif HOOK_PATH in request.path:
            doc = Webhook(WEBHOOK_SECRET).verify(request.body, request.headers)
            if doc["data"]["run_id"] == run_id:
                out["ops"].append(doc["data"]["status"])
        elif run_id.replace(":", "%3A") in request.json().get("target_url", ""):
            out["commits"].append(request.json()["state"])
    return out


def test_with_every_receiver_down_runs_end_with_their_jobs_and_the_branch_moves_on(
    launched: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch, receiver: Any
) -> None:
    down = closed_port_url()
    # Eight tries 2 s, 4 s, 4 s... apart: each notice is retried for about half a minute.
    notifiers = notifier_config(
        slack=down,
        hook=down,
        github=down,
        on=["started", *FINALS],
        max_attempts=8,
        retry_interval=2.0,
        retry_max_interval=4.0,
    )
    settings, enqueuer = launch(
        launched, project_dir, monkeypatch, notify_env(down, down), notifiers
    )
    first = start_run(settings, enqueuer, push_event("push-1"))
    second = start_run(settings, enqueuer, push_event("push-2"))

    # The second run on the branch waited only for the first one's 0.2 s job.
    later = final_run(enqueuer, second)
    earlier = show_run(enqueuer.client, first)
    assert earlier["status"] == later["status"] == "succeeded"
    assert earlier["branch"] == later["branch"]
    assert not [n for n in earlier["notifications"] if n["status"] != "retrying"]
    notices = {row.workflow_id: row for row in notices_of(enqueuer.client, first)}
    assert set(notices) == {notice_id(first, n, s) for n in NAMES for s in ("started", "succeeded")}
    for name in NAMES:
        started = notices[notice_id(first, name, "started")]
        ending = notices[notice_id(first, name, "succeeded")]
        assert str(started.status) == "PENDING"  # still retrying
        assert str(ending.status) == "ENQUEUED"  # waits for the started notice
        assert (started.priority, ending.priority) == (1, 2)
        assert started.queue_partition_key == ending.queue_partition_key == partition(first, name)
        assert started.queue_name == ending.queue_name == NOTICE_QUEUE
        assert started.app_version == settings.service.application_version

    # The receivers come back: every notice is delivered, each started one first.
    sink = receiver(int(down.rsplit(":", 1)[1]))
    sink.default.status = 201
    for run_id in (first, second):
        run = notified(enqueuer, run_id)
        assert {(n["name"].split(":")[1], n["on"]) for n in run["notifications"]} == {
            (n, s) for n in NAMES for s in ("started", "succeeded")
        }
        assert {n["status"] for n in run["notifications"]} == {"delivered"}
        assert heard(sink, run_id) == {
            "alerts": ["started", "succeeded"],
            "ops": ["started", "succeeded"],
            "commits": ["pending", "success"],
        }


def test_the_notice_queue_polls_at_its_own_pace(
    launched: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polling the notice queue as often as runs doubled an idle serve's CPU: notices
    wait up to ``notice_polling_interval``, and with no notifier nothing can arrive."""
    from dbos import DBOS

    for key, value in notify_env(hook="http://127.0.0.1:9").items():
        monkeypatch.setenv(key, value)
    settings, _ = launched(
        queue={"polling_interval": 0.1, "notice_polling_interval": 0.7},
        notifiers=notifier_config(hook="http://127.0.0.1:9"),
    )
    queue = DBOS.retrieve_queue(NOTICE_QUEUE)
    assert queue is not None and queue.polling_interval_sec == 0.7
    assert settings.queue.notice_polling_interval == 0.7


def test_with_no_notifier_the_notice_queue_is_polled_every_half_minute(launched: Any) -> None:
    from dbos import DBOS

    from workflows.notify.outbox import IDLE_POLLING_INTERVAL
    from workflows.queue import RUN_QUEUE

    launched()
    queue, runs = DBOS.retrieve_queue(NOTICE_QUEUE), DBOS.retrieve_queue(RUN_QUEUE)
    assert queue is not None and runs is not None
    assert queue.polling_interval_sec == IDLE_POLLING_INTERVAL == 30.0
    assert runs.polling_interval_sec == 0.1
