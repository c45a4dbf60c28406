"""Branch, tag and path rules on normalised push events: pure, no I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support import make_settings
from tests.trigger.hookkit import commit, github_trigger
from trigger.core.event import Event
from trigger.core.matching import decide
from trigger.sources.webhooks.filters import git_filter
from trigger.sources.webhooks.push import Push, attributes

SHA = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"
BEFORE = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"


def _event(ref: str = "refs/heads/main", *paths: str, complete: bool = True) -> Event:
    push = Push(
        repo="acme/lakehouse",
        ref=ref,
        before=BEFORE,
        after=SHA,
        pusher="octocat",
        commits=[commit(SHA, *paths)],
        head=None,
        commits_complete=complete,
    )
    return Event(kind="github", id="gh-1", attributes=attributes(push))


def _reason(tmp_path: Path, project_dir: Path, event: Event, **rules: Any) -> str | None:
    trig = {**github_trigger(project_dir, **rules), "branch": "orders_{git_short_sha}"}
    settings = make_settings(tmp_path, None, project_dir, triggers=[trig])
    [decision] = decide(event, settings, git_filter)
    return decision.reason


@pytest.mark.parametrize(
    ("rules", "ref", "paths", "expected"),
    [
        ({}, "refs/heads/anything", ["x"], None),
        ({"branches": ["release/*"]}, "refs/heads/release/1.2", ["x"], None),
        ({"branches": ["release/*"]}, "refs/heads/release/a/b", ["x"], "filtered by branches rule"),
        ({"branches": ["release/**"]}, "refs/heads/release/a/b", ["x"], None),
        (
            {"exclude_branches": ["wip-*"]},
            "refs/heads/wip-1",
            ["x"],
            "filtered by exclude_branches rule",
        ),
        ({"paths": ["pipelines/orders/"]}, "refs/heads/main", ["pipelines/orders/a.py"], None),
        ({"paths": ["*.sql"]}, "refs/heads/main", ["deep/down/q.sql"], None),
        ({"paths": ["*.sql"]}, "refs/heads/main", ["README.md"], "filtered by paths rule"),
        (
            {"exclude_paths": ["docs/"]},
            "refs/heads/main",
            ["docs/a.md"],
            "filtered by exclude_paths rule",
        ),
        ({"exclude_paths": ["docs/"]}, "refs/heads/main", ["docs/a.md", "src/x.py"], None),
        ({"tags": ["v*"]}, "refs/tags/v2", [], None),
        ({"tags": ["v*"]}, "refs/tags/nightly", [], "filtered by tags rule"),
        (
            {"repo": "acme/other"},
            "refs/heads/main",
            ["x"],
            "filtered by repo rule (wants acme/other)",
        ),
    ],
)
def test_rules(
    tmp_path: Path, project_dir: Path, rules: Any, ref: str, paths: list[str], expected: Any
) -> None:
    assert _reason(tmp_path, project_dir, _event(ref, *paths), **rules) == expected


def test_unknown_paths_match_path_rules(tmp_path: Path, project_dir: Path) -> None:
    event = _event("refs/heads/main", "README.md", complete=False)
    assert event.attributes["paths_complete"] is False
    assert _reason(tmp_path, project_dir, event, paths=["*.sql"]) is None


def test_repo_names_compare_case_insensitively(tmp_path: Path, project_dir: Path) -> None:
    assert _reason(tmp_path, project_dir, _event(), repo="ACME/Lakehouse") is None
