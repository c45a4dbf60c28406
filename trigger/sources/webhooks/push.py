"""A push, from GitHub or GitLab, normalised into event attributes.

Both senders describe a push the same way underneath (ref, before/after sha,
a capped list of commits with added/modified/removed paths); this module turns
those fields into the attributes matching and templates read, validating every
ref and sha on the way in, and every other string by the one rule of
``trigger.core.text``: identifiers with control characters are refused, the commit
message's first line has them removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from trigger.core import text as texts
from trigger.core.errors import HookPayloadError
from trigger.core.event import AttributeValue
from trigger.core.gitref import ZERO_SHA, check_ref, check_sha, split_ref

COMMIT_CAP = 20  # both GitHub and GitLab list at most this many commits
_MAX_PATHS = 5000


@dataclass(frozen=True)
class Push:
    repo: str
    ref: str
    before: str
    after: str
    pusher: str
    commits: list[dict[str, Any]]
    head: dict[str, Any] | None
    # False when the commit list may not hold every changed path.
    commits_complete: bool
    # For tags, the commit the tag points at when the sender says so.
    peeled: str | None = None
    # The repository's web page and where a commit's page is under it (GitHub:
    # ``commit``, GitLab: ``-/commit``), for links in notifications.
    web_url: str | None = None
    commit_path: str = "commit"


def identifier(value: str, *, where: str) -> str:
    """``value`` when it may be an identifier from outside; else the 400's reason."""
    why = texts.problem(value)
    if why is not None:
        raise HookPayloadError(f"{where} {texts.quoted(value)} {why}; such values are refused")
    return value


def text(data: dict[str, Any], key: str, *, where: str, required: bool = True) -> str:
    value = data.get(key)
    if isinstance(value, str) and value:
        return identifier(value, where=f"{where}.{key}")
    if required or value is not None:
        raise HookPayloadError(f"{where}.{key} is missing or not a string")
    return ""


def obj(data: dict[str, Any], key: str, *, where: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise HookPayloadError(f"{where}.{key} is missing or not an object")
    return value


def commit_list(data: dict[str, Any]) -> list[dict[str, Any]]:
    value = data.get("commits", [])
    if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
        raise HookPayloadError("commits must be a list of objects")
    return value


def attributes(push: Push) -> dict[str, AttributeValue]:
    check_ref(push.ref, where="ref")
    before = check_sha(push.before, where="before")
    after = check_sha(push.after, where="after")
    branch, tag = split_ref(push.ref)
    deleted = after == ZERO_SHA
    sha = push.peeled if tag and push.peeled else after
    paths, complete = _paths(push)
    head = push.head or {}
    message = head.get("message")
    stamp = head.get("timestamp") if isinstance(head.get("timestamp"), str) else None
    if stamp:
        identifier(stamp, where="head commit timestamp")
    return {
        "repo": push.repo,
        "git_ref": push.ref,
        "git_branch": branch,
        "git_tag": tag,
        "git_sha": None if deleted else sha,
        "git_short_sha": None if deleted else sha[:7],
        "git_before": before,
        "pusher": push.pusher[:200] or "unknown",
        "deleted": deleted,
        "head_message": _first_line(message if isinstance(message, str) else ""),
        "head_timestamp": stamp[:64] if stamp else None,
        "commits_count": len(push.commits),
        "changed_paths": json.dumps(paths),
        "paths_complete": complete,
        "commit_url": None if deleted else _commit_url(push, sha),
    }


def web_url(data: dict[str, Any], key: str) -> str | None:
    """The repository's web page from the payload, if it can be a link; a push whose
    page is odd still runs, only without the link."""
    value = data.get(key)
    if not isinstance(value, str) or texts.link_problem(value) is not None:
        return None
    return value.rstrip("/")


def _commit_url(push: Push, sha: str) -> str | None:
    if push.web_url is None:
        return None
    url = f"{push.web_url}/{push.commit_path}/{sha}"
    return url if texts.link_problem(url) is None else None


def _paths(push: Push) -> tuple[list[str], bool]:
    seen: dict[str, None] = {}
    for commit in push.commits:
        for key in ("added", "modified", "removed"):
            items = commit.get(key) or []
            if not isinstance(items, list):
                raise HookPayloadError(f"commits[].{key} must be a list of paths")
            for item in items:
                if isinstance(item, str) and item:
                    seen[identifier(item, where=f"commits[].{key} path")] = None
    complete = push.commits_complete and len(seen) <= _MAX_PATHS
    return list(seen)[:_MAX_PATHS], complete


def _first_line(message: str) -> str:
    """Free text: the first line, its control characters removed."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    return texts.stripped(line).strip()[:200]
