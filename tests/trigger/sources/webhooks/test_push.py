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
