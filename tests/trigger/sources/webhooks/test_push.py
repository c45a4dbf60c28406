"""A push normalised into attributes: identifiers refused, the commit message cleaned."""

from __future__ import annotations

from typing import Any

import pytest

from trigger.core.errors import HookPayloadError
from trigger.sources.webhooks.push import Push, attributes

SHA = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"


def _push(**changes: Any) -> Push:
    fields: dict[str, Any] = {
        "repo": "acme/lakehouse",
        "ref": "refs/heads/main",
        "before": "0" * 39 + "1",
        "after": SHA,
        "pusher": "octocat",
        "commits": [{"id": SHA, "modified": ["pipelines/orders/models.py"]}],
        "head": {"id": SHA, "message": "Update orders", "timestamp": "2026-11-23T10:15:06Z"},
        "commits_complete": True,
        **changes,
    }
    return Push(**fields)


def test_the_commit_message_is_free_text_its_controls_removed() -> None:
    head = {"id": SHA, "message": "\tFix\x1b[31m orders\x7f\u202e é\x00\nsecond line"}
    assert attributes(_push(head=head))["head_message"] == "Fix[31m orders é"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ref": "refs/heads/x\x85y"}, "ref"),
        ({"ref": "refs/heads/x\u2028y"}, "ref"),
        ({"commits": [{"added": ["a\nb.py"]}]}, "commits[].added path"),
        ({"head": {"id": SHA, "timestamp": "2026\r\n"}}, "head commit timestamp"),
    ],
)
def test_identifiers_with_control_characters_are_refused_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(HookPayloadError, match="control character") as caught:
        attributes(_push(**change))
    assert str(caught.value).startswith(field)


def test_the_commit_url_comes_from_the_repositorys_web_page() -> None:
    github = attributes(_push(web_url="https://github.com/acme/lakehouse"))
    assert github["commit_url"] == f"https://github.com/acme/lakehouse/commit/{SHA}"
    gitlab = attributes(_push(web_url="https://gitlab.com/acme/data", commit_path="-/commit"))
    assert gitlab["commit_url"] == f"https://gitlab.com/acme/data/-/commit/{SHA}"
    assert attributes(_push())["commit_url"] is None  # unknown: no link rather than a guess
    deleted = _push(web_url="https://github.com/acme/lakehouse", after="0" * 40)
    assert attributes(deleted)["commit_url"] is None


@pytest.mark.parametrize(
    "page",
    [
        "javascript:alert(1)",
        "https://github.com/acme/x|<!channel>",
        "https://github.com/acme/x> <@U1",
        "https://bot:token@github.com/acme/x",
        "https://github.com/" + "a" * 400,
        42,
    ],
)
def test_a_repository_page_that_cannot_be_a_link_gives_no_commit_url(page: object) -> None:
    from trigger.sources.webhooks.push import web_url

    assert web_url({"html_url": page}, "html_url") is None
