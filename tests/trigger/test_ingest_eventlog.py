"""Every webhook delivery reaches the event log, so `explain` can tell its story."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.trigger.hookkit import body_of, github_headers, github_push, github_trigger
from trigger.core.eventlog import event_log
from trigger.ops.explain import explain


def _post(url: str, data: dict[str, Any], **header_args: Any) -> httpx.Response:
    body = body_of(data)
    return httpx.post(
        f"{url}/hooks/github", content=body, headers=github_headers(body, **header_args)
    )


def test_accepted_filtered_duplicate_and_refused_deliveries_are_explained(
    hooks: Any, project_dir: Path
) -> None:
    settings, enqueuer, url = hooks(
        triggers=[
            github_trigger(project_dir),
            github_trigger(project_dir, name="releases", branches=["release/*"]),
        ]
    )
    accepted = _post(url, github_push(), delivery="acc-1")
    assert accepted.status_code == 202
    [run_id] = accepted.json()["runs"]
    assert _post(url, github_push(), delivery="acc-1").json()["duplicate"] is True
    assert _post(url, github_push(), secret="wrong", delivery="bad-1").status_code == 401

    log = event_log(settings)
    story = explain("gh-acc-1", log, enqueuer.client, settings)
    outcomes = [e["outcome"] for e in story["events"]]
    assert outcomes == ["accepted", "duplicate"]
    verdicts = {d["trigger"]: d for d in story["events"][0]["decisions"]}
    assert verdicts["orders"]["matched"] is True and verdicts["orders"]["run_id"] == run_id
    assert verdicts["releases"]["matched"] is False
    assert "branches" in verdicts["releases"]["reason"]
    assert [r["id"] for r in story["runs"]] == [run_id]

    refused = explain("gh-bad-1", log, enqueuer.client, settings)
    [event] = refused["events"]
    assert event["outcome"] == "rejected"
    assert "401" in event["reason"]
    assert event["source_addr"] == "127.0.0.1"
    assert "wrong" not in str(refused)
