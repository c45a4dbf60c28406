"""Commit statuses: state mapping, description, target_url, and the request GitHub gets."""

from __future__ import annotations

from typing import Any

import pytest

from tests.workflows.notify.conftest import GITHUB_TOKEN
from tests.workflows.notify.test_slack import notice
from trigger.core.settings.notify import GithubStatusNotifier
from workflows.notify import github_status
from workflows.notify.delivery import send_once

CFG = GithubStatusNotifier(
    kind="github_status", token_env="GH_TOKEN", run_url="https://runs.example.com/r/"
)


@pytest.mark.parametrize(
    ("overrides", "state"),
    [
        ({"status": "started", "finished_at": None}, "pending"),
        ({"status": "succeeded"}, "success"),
        ({"status": "failed", "error": "boom"}, "failure"),
        ({"status": "failed", "error": "no branch", "job_id": None}, "error"),
        ({"status": "cancelled", "error": "replaced"}, "error"),
        ({"status": "superseded", "error": "replaced"}, "error"),
    ],
)
def test_run_statuses_map_to_commit_states(overrides: dict[str, Any], state: str) -> None:
    body = github_status.payload(notice(**overrides), CFG)
    assert body["state"] == state
    assert body["context"] == "bauplan-trigger/orders"
    assert body["target_url"] == "https://runs.example.com/r/run%3Aorders%3Adelivery-1"
    assert len(body["description"]) <= github_status.DESCRIPTION_LIMIT


def test_a_long_error_is_cut_to_githubs_description_limit() -> None:
    body = github_status.payload(notice(status="failed", error="x " * 500), CFG)
    assert len(body["description"]) == github_status.DESCRIPTION_LIMIT


def test_runs_not_started_by_a_github_push_are_skipped() -> None:
    manual = notice(event={"kind": "manual", "fired_by": "bob"})
    assert github_status.build(manual, CFG, "github_status:commits", {"GH_TOKEN": "t"}) is None
    answer = send_once("commits", CFG, manual, {"GH_TOKEN": "t"})
    assert answer["skipped"] and not answer["delivered"]


def test_the_status_is_posted_to_the_configured_api_with_the_token(receiver: Any) -> None:
    api = receiver().answer(201)
    cfg = CFG.model_copy(update={"api_url": api.url + "/api/v3"})
    answer = send_once("commits", cfg, notice(), {"GH_TOKEN": GITHUB_TOKEN})
    assert answer["delivered"] and answer["code"] == 201
    [request] = api.received()
    assert request.path == f"/api/v3/repos/acme/lakehouse/statuses/{'0123456789abcdef' * 2}01234567"
    assert request.headers["Authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert request.json()["state"] == "success"
