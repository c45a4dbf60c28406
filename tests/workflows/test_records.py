"""Run records: the numbers and the event that ``runs show``, ``explain`` and the API give."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.workflows.notify.conftest import HOOK_PATH, notified, notifier_config, notify_env
from tests.workflows.notify.receiver import Receiver
from tests.workflows.notify.test_delivery import launch, push_event, start_run
from trigger.cli.runs import describe_run
from trigger.core.event import Event
from trigger.core.eventlog import event_log, record_event
from trigger.ops.explain import explain
from workflows.records import list_runs, show_run

PATHS = ["pipelines/orders/a.sql", "pipelines/orders/b.sql"]


@pytest.fixture
def sink() -> Iterator[Receiver]:
    """A webhook receiver on loopback: what the run's notification said."""
    receiver = Receiver(0)
    yield receiver
    receiver.close()


def pushed(event_id: str = "push-1") -> Event:
    """A push as the GitHub source builds it: the changed paths as a JSON array."""
    attributes = {
        **push_event(event_id).attributes,
        "git_before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "changed_paths": json.dumps(PATHS),
        "paths_complete": True,
    }
    return Event(kind="github", id=event_id, attributes=attributes)


def test_a_failed_runs_duration_is_the_one_its_notification_gives(
    launched: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch, sink: Receiver
) -> None:
    notifiers = notifier_config(hook=sink.url)
    settings, enqueuer = launch(
        launched,
        project_dir,
        monkeypatch,
        notify_env(hook=sink.url),
        notifiers,
        rehearse_outcome="fail",
    )
    run = notified(enqueuer, start_run(settings, enqueuer, pushed()))
    assert run["status"] == "failed"
    [told] = [r.json()["data"] for r in sink.received(HOOK_PATH) if "failed" in r.json()["type"]]
    assert told["duration_seconds"] is not None
    assert run["duration"] == told["duration_seconds"]
    [listed] = list_runs(enqueuer.client)
    assert listed["duration"] == told["duration_seconds"]
    assert f"duration: {told['duration_seconds']:.1f}s" in describe_run(run)
    assert told["event"]["changed_paths"] == PATHS  # the webhook's copy is a list too


def test_runs_show_gives_the_push_and_its_changed_paths_as_a_list(
    launched: Any, project_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, enqueuer = launch(launched, project_dir, monkeypatch, {}, {})
    request = pushed()
    run_id = start_run(settings, enqueuer, request)
    notified(enqueuer, run_id)
    record_event(
        settings,
        "github",
        request.id,
        "accepted",
        None,
        "140.82.115.1",
        [("orders", True, None, run_id)],
        attributes=request.attributes,
    )
    shown = show_run(enqueuer.client, run_id, settings)
    assert shown["event"]["changed_paths"] == PATHS
    assert shown["event"]["paths_complete"] is True
    text = describe_run(shown)
    for needle in (
        "repo           acme/lakehouse",
        "git branch     main",
        "before         6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        f"sha            {request.attributes['git_sha']}",
        "pusher         alice",
        "message        Fix orders",
        f"changed        {PATHS[0]}",
        f"               {PATHS[1]}",
        "paths complete true",
    ):
        assert needle in text, (needle, text)
    story = explain(request.id, event_log(settings), enqueuer.client, settings)
    assert story["events"][0]["attributes"]["changed_paths"] == PATHS
    assert story["runs"][0]["event"]["changed_paths"] == PATHS
