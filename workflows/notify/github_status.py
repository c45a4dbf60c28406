"""GitHub commit statuses: ``pending`` when the job starts, then the outcome.

Only runs started by a GitHub push carry a repository and a commit; for any
other run this notifier has nothing to mark and says so (``skipped``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from urllib.parse import quote

from trigger.core.settings.notify import GithubStatusNotifier
from workflows.notify.http import Outbound, read_env
from workflows.notify.notice import Notice, format_duration, truncate

DESCRIPTION_LIMIT = 140  # GitHub rejects longer descriptions

STATES = {
    "started": "pending",
    "succeeded": "success",
    "failed": "failure",
    "cancelled": "error",
    "superseded": "error",
    "expired": "error",
}
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+\Z")
_SHA = re.compile(r"[0-9a-f]{40}\Z|[0-9a-f]{64}\Z")


def target(notice: Notice) -> tuple[str, str] | None:
    """``(repo, sha)`` for a run started by a GitHub push, else None."""
    event = notice.event
    repo, sha = str(event.get("repo") or ""), str(event.get("git_sha") or "")
    if event.get("kind") != "github" or not is_commit(repo, sha):
        return None
    return repo, sha


def is_commit(repo: str, sha: str) -> bool:
    """``OWNER/NAME`` and a full commit sha: what the statuses API needs."""
    return bool(_REPO.match(repo) and _SHA.match(sha))


def state(notice: Notice) -> str:
    if notice.status == "failed" and notice.job_id is None:
        return "error"  # never reached Bauplan: our problem, not the commit's
    return STATES[notice.status]


def description(notice: Notice) -> str:
    if notice.status == "started":
        text = f"running on {notice.branch} (job {notice.job_id or '-'})"
    elif notice.status == "succeeded":
        text = f"succeeded on {notice.branch} in {format_duration(notice.duration)}"
    else:
        text = f"{notice.status}: {notice.error or 'no detail'}"
    if notice.test:
        text = "TEST from bauplan-trigger notify-test: " + text
    return truncate(" ".join(text.split()), DESCRIPTION_LIMIT)


def payload(notice: Notice, cfg: GithubStatusNotifier) -> dict[str, str]:
    body = {
        "state": state(notice),
        "context": f"{cfg.context_prefix}/{notice.trigger}",
        "description": description(notice),
    }
    if cfg.run_url:
        body["target_url"] = cfg.run_url.rstrip("/") + "/" + quote(notice.run_id, safe="")
    elif notice.run_url:
        body["target_url"] = notice.run_url
    return body


def build(
    notice: Notice,
    cfg: GithubStatusNotifier,
    display: str,
    environ: Mapping[str, str] | None = None,
) -> Outbound | None:
    where = target(notice)
    if where is None:
        return None
    repo, sha = where
    token = read_env(display, "token_env", cfg.token_env, environ)
    url = f"{cfg.api_url.rstrip('/')}/repos/{repo}/statuses/{sha}"
    return Outbound(
        url=url,
        headers={
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Content-Type": "application/json",
        },
        body=json.dumps(payload(notice, cfg)).encode(),
        secrets=(token,),
    )
