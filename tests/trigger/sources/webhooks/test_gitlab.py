"""GitLab push webhooks over real HTTP on loopback, with the X-Gitlab-Token secret."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.support import final_run, make_settings
from tests.trigger.fuzzkit import (
    JSON_VALUES,
    Ingress,
    header_values,
    json_bytes,
    posts_and_reads_back,
)
from tests.trigger.hookkit import (
    body_of,
    commit,
    gitlab_headers,
    gitlab_push,
    ingress_server,
)
from tests.trigger.properties import OUTSIDE_TEXT, examples

AFTER = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
ZERO = "0" * 40


def gitlab_trigger(project_dir: Path, **rules: Any) -> dict[str, Any]:
    section = {"repo": "acme/data/lakehouse", "secret_env": "GITLAB_WEBHOOK_TOKEN", **rules}
    return {
        "name": "orders",
        "project_dir": str(project_dir),
        "branch": "orders_{git_branch}",
        "parameters": {"sha": "{git_short_sha}", "pusher": "{pusher}"},
        "gitlab": section,
    }


def _post(url: str, data: dict[str, Any], **header_args: Any) -> httpx.Response:
    headers = gitlab_headers(**header_args)
    return httpx.post(f"{url}/hooks/gitlab", content=body_of(data), headers=headers, timeout=30)


@pytest.fixture
def offline(tmp_path: Path, project_dir: Path) -> Any:
    """An ingress on SQLite with no worker, for answers that never start a run."""

    def start(**rules: Any) -> Any:
        settings = make_settings(
            tmp_path, None, project_dir, triggers=[gitlab_trigger(project_dir, **rules)]
        )
        settings.state_path.mkdir(parents=True, exist_ok=True)
        return ingress_server(settings)

    return start


def test_a_push_hook_runs_and_a_redelivery_is_a_duplicate(hooks: Any, project_dir: Path) -> None:
    _settings, enqueuer, url = hooks(triggers=[gitlab_trigger(project_dir)])
    first = _post(url, gitlab_push(), uuid="9cdd7a5e-1b2a-4c6e-9a57-3f4c1f0b2a11")
    again = _post(url, gitlab_push(), uuid="9cdd7a5e-1b2a-4c6e-9a57-3f4c1f0b2a11")
    assert first.status_code == 202, first.text
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["runs"] == first.json()["runs"]
    run_id = first.json()["runs"][0]
    run = final_run(enqueuer, run_id, timeout=60)
    assert run["status"] == "succeeded", run
    assert run["parameters"] == {"sha": AFTER[:7], "pusher": "jsmith"}
    assert run["event"]["repo"] == "acme/data/lakehouse"
    assert run["event"]["head_message"] == "fixed readme"
    assert run["event"]["commit_url"] == f"http://example.com/acme/data/lakehouse/-/commit/{AFTER}"


def test_the_idempotency_key_is_the_event_id_when_sent(offline: Any) -> None:
    with offline(branches=["nothing-matches"]) as server:
        headers = {**gitlab_headers(uuid="u-1"), "Idempotency-Key": "key-7"}
        response = httpx.post(
            f"{server.url}/hooks/gitlab", content=body_of(gitlab_push()), headers=headers
        )
    assert response.json()["event"] == "gl-key-7"


def test_a_wrong_or_missing_token_is_401(offline: Any) -> None:
    with offline() as server:
        wrong = _post(server.url, gitlab_push(), token="guess")
        missing = _post(server.url, gitlab_push(), token=None)
    assert (wrong.status_code, missing.status_code) == (401, 401)
    assert "gitlab-token-1234" not in wrong.text


def test_deletions_other_events_and_tags_start_nothing(offline: Any) -> None:
    tag = gitlab_push(object_kind="tag_push", ref="refs/tags/v1.0.0", commits=[])
    with offline() as server:
        deleted = _post(
            server.url, gitlab_push(after=ZERO, commits=[], checkout_sha=None), uuid="del"
        )
        issue = _post(server.url, {"object_kind": "issue"}, event="Issue Hook", uuid="issue")
        tagged = _post(server.url, tag, event="Tag Push Hook", uuid="tag")
    assert "delet" in deleted.json()["ignored"]
    assert "'Issue Hook'" in issue.json()["ignored"]
    assert tagged.json()["ignored"] == "tag push; the trigger has no tags rule"


def test_total_commits_count_over_the_list_makes_paths_unknown(offline: Any) -> None:
    shown = [commit(AFTER, "docs/readme.md")]
    with offline(paths=["pipelines/**"]) as server:
        complete = _post(server.url, gitlab_push(commits=shown, total_commits_count=1))
        truncated = _post(
            server.url, gitlab_push(commits=shown, total_commits_count=45), uuid="u-2"
        )
    assert complete.json()["ignored"] == "filtered by paths rule"
    # Truncated: the path rule cannot be decided, so the trigger matches.
    assert truncated.status_code == 202, truncated.text
    assert truncated.json()["paths_complete"] is False and truncated.json()["runs"]


def test_hostile_refs_are_400(offline: Any) -> None:
    with offline() as server:
        response = _post(server.url, gitlab_push(ref="refs/heads/-oops"))
        sha = _post(server.url, gitlab_push(after="$(reboot)"))
    assert (response.status_code, sha.status_code) == (400, 400)


def test_the_pusher_follows_the_same_rule_as_on_github(offline: Any) -> None:
    with offline() as server:
        nul = _post(server.url, gitlab_push(user_username="js\x00mith"), uuid="s-1")
        named = _post(
            server.url, gitlab_push(user_username="", user_name="John\x1b[8m"), uuid="s-2"
        )
        lone = _post(server.url, gitlab_push(user_name="J\ud800"), uuid="s-3")
    assert [r.status_code for r in (nul, named, lone)] == [400] * 3
    assert nul.json()["error"].startswith("user_username 'js\\x00mith' has a control character")
    assert named.json()["error"].startswith("user_name 'John\\x1b[8m' has a control character")
    assert "field user_name is not valid Unicode" in lone.json()["error"]


@st.composite
def _deliveries(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """A GitLab delivery with the right token, so it reaches parsing: raw bytes, or a push
    whose strings are hostile, with hostile headers."""
    data = gitlab_push()
    for key in ("ref", "user_username", "user_name", "checkout_sha"):
        data[key] = draw(st.just(data[key]) | OUTSIDE_TEXT | st.none())
    data["project"]["path_with_namespace"] = draw(st.just("acme/data/lakehouse") | OUTSIDE_TEXT)
    data["commits"][-1]["message"] = draw(OUTSIDE_TEXT)
    data["commits"][-1]["added"] = draw(st.lists(OUTSIDE_TEXT, max_size=3))
    data.update(draw(st.dictionaries(OUTSIDE_TEXT, JSON_VALUES, max_size=2)))
    body = draw(st.binary(max_size=200) | st.builds(json_bytes, st.just(data), st.booleans()))
    headers: dict[str, Any] = gitlab_headers(uuid=f"fuzz-{uuid.uuid4().hex}")
    headers["X-Gitlab-Event"] = draw(
        st.sampled_from([b"Push Hook", b"Tag Push Hook"]) | header_values()
    )
    headers["Idempotency-Key"] = draw(st.none() | header_values())
    return body, {k: v for k, v in headers.items() if v}


@examples(150)
@given(delivery=_deliveries())
@example(
    delivery=(body_of(gitlab_push(user_username="js\ud800")), gitlab_headers(uuid="example-1"))
)
def test_any_body_with_the_token_gets_a_documented_answer_and_what_is_taken_reads_back(
    ingress: Ingress, delivery: tuple[bytes, dict[str, Any]]
) -> None:
    posts_and_reads_back(ingress, "/hooks/gitlab", delivery)
